/* SPDX-License-Identifier: Apache-2.0 */
/* moe_data.h — reproducible random MoE inputs for benchmarks and tests.
 *
 * Every element is a pure function of (seed, stream, global index), so a
 * rank fills its shard on the GPU and any process can rebuild any rank's
 * data on the host, bit for bit (the check in `comet bench` does). Values
 * are uniform in [-1, 1) times a scale, never all zero. Routing (ids,
 * weights) is drawn on the host from a per-(seed, rank) generator.
 *
 * Global weights (the unsharded model): w1 [E, R, H] with R = 2F (gate rows
 * [0, F), up rows [F, 2F)) or F; w2 [E, H, F]. Rank (g, i) holds experts
 * g*El .. g*El+El-1 and, of each, gate/up rows i*Fl .. i*Fl+Fl-1 of w1 and
 * columns i*Fl .. of w2 (Megatron's expert tensor parallel split). */
#ifndef COMET_MOE_DATA_H
#define COMET_MOE_DATA_H

#include <stdint.h>

#include <cuda_runtime.h>

#include "comet.h"
#include "hd.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { COMET_MD_X = 1, COMET_MD_W1 = 2, COMET_MD_W2 = 3 };

COMET_HD uint64_t comet_md_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1): a 24-bit integer times 2^-23 minus 1, exact in fp32. */
COMET_HD float comet_md_unit(uint64_t seed, uint64_t stream, uint64_t idx) {
  const uint64_t h = comet_md_mix(seed ^ comet_md_mix(stream * 0x100000001B3ull ^ idx));
  return (float)(h >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

/* Scales that keep activations O(1): x ~ U(-1,1), w1 / sqrt(H), w2 / sqrt(F). */
float comet_md_w1_scale(const comet_layer_config_t *cfg);
float comet_md_w2_scale(const comet_layer_config_t *cfg);

/* Shard (g = ep_rank, i = tp_rank) of the global weights, in cfg->dtype,
 * on the GPU (device pointers, stream-ordered) or on the host (uint16 bits;
 * the _expert variants fill local expert el alone into dst, [w1_rows, H] or
 * [H, F/tp], so threads can fill experts in parallel). */
cudaError_t comet_md_fill_w1(void *w1, const comet_layer_config_t *cfg, int g, int i,
                             uint64_t seed, cudaStream_t stream);
cudaError_t comet_md_fill_w2(void *w2, const comet_layer_config_t *cfg, int g, int i,
                             uint64_t seed, cudaStream_t stream);
void comet_md_fill_w1_host(uint16_t *w1, const comet_layer_config_t *cfg, int g, int i,
                           uint64_t seed);
void comet_md_fill_w2_host(uint16_t *w2, const comet_layer_config_t *cfg, int g, int i,
                           uint64_t seed);
void comet_md_fill_w1_expert_host(uint16_t *dst, const comet_layer_config_t *cfg, int g, int i,
                                  int el, uint64_t seed);
void comet_md_fill_w2_expert_host(uint16_t *dst, const comet_layer_config_t *cfg, int g, int i,
                                  int el, uint64_t seed);

/* Tokens of `rank`: x [T, H]; token t's row is a function of (seed, rank, t). */
cudaError_t comet_md_fill_x(void *x, int T, int H, comet_dtype_t dt, int rank, uint64_t seed,
                            cudaStream_t stream);
/* One row t of rank's tokens on the host. */
void comet_md_x_row_host(uint16_t *row, int t, int H, comet_dtype_t dt, int rank, uint64_t seed);

/* How routing is drawn. */
typedef struct comet_md_routing {
  double skew;       /* standard deviation of the experts' load fractions; 0 = uniform */
  double drop;       /* fraction of (t, k) slots set to -1 (dropped) */
  int empty_experts; /* this many experts (chosen by the seed) get no tokens */
} comet_md_routing_t;

/* Expert load fractions p[E] (sum 1) shared by all ranks: 1/E + skew * N(0,1),
 * clamped at 0 and renormalized; empty experts get 0. Returns the realized
 * standard deviation of p. */
double comet_md_expert_probs(double *p, int E, const comet_md_routing_t *r, uint64_t seed);

/* ids [T, K] (K distinct experts drawn from p without replacement, then
 * slots dropped with probability r->drop) and weights [T, K] (positive,
 * summing to 1 over a token's kept slots) of `rank`. */
void comet_md_routing_host(int32_t *ids, float *weights, int T, int K, int E, const double *p,
                           const comet_md_routing_t *r, int rank, uint64_t seed);

/* Parses "uniform" or "skew:S" into r (drop/empty untouched). 0 on success. */
int comet_md_parse_routing(const char *s, comet_md_routing_t *r);

#ifdef __cplusplus
}
#endif
#endif
