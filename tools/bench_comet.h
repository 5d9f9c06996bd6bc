/* SPDX-License-Identifier: Apache-2.0 */
/* bench_comet.h — comet's side of `comet bench`: its forward and the two
 * halves timed like the baseline, and checked like it, on a comet context
 * the caller made (over NCCL, or a rank of the loopback world). */
#ifndef COMET_BENCH_COMET_H
#define COMET_BENCH_COMET_H

#include <cuda_runtime.h>

#include "bench_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_comet {
  int ran;               /* 0: comet could not run this config (see err) */
  float forward_ms;      /* comet_moe_forward (saving z with args->saved_z) */
  float layer0_ms;       /* comet_dispatch_gemm */
  float layer1_ms;       /* comet_gemm_combine */
  int fused0;            /* layer0 ran fused (else composed) */
  int n_comm0;           /* its mover CTAs */
  int gather0;           /* its A: gathered from x (1) or copied by the movers (0) */
  int from0, tile0;      /* where its n_comm came from (COMET_FROM_*), its tile (0 auto, 1 wide, 2 narrow) */
  int dynamic0;          /* its tiles from a counter, the movers joining the GEMM (COMET_L0_DYNAMIC) */
  int from1;             /* the same for layer1's n_comm */
  float layer0_gemm_only_ms; /* the fused layer0 call with the movers off, rows in place */
  float layer0_comm_only_ms; /* ... with the movers alone */
  int fused1, n_comm1;   /* layer1 ran fused (COMET_LAYER1=fused), with n_comm1 movers */
  float layer1_gemm_only_ms, layer1_comm_only_ms; /* its reference timings, as layer0's */
  /* the composed layer1's GEMM alone (W = 1, with refs): as the layer runs
   * it (dynamic tiles), with static tiles, and again right after the first */
  float layer1_gemm_ms, layer1_gemm_static_ms, layer1_gemm_rand_h_ms;
  float backward_ms;     /* comet_moe_backward, every gradient (with opts.backward), into
                            opts.backward's buffers (save mode with args->saved_z) */
  bench_check_t chk;
  char err[256];
} bench_comet_t;

/* Median of v[0..n) (sorts v in place); bench.c's, shared. */
float bench_median(float *v, int n);

/* v[i] = the largest v[i] over all ranks (the slowest rank's time), through
 * ctx's host all-gather. Collective. Returns non-zero (message printed) on
 * failure. */
int bench_slowest(const comet_rank_info_t *info, comet_context_t ctx, float *v, int n);

/* One step of a timed phase (a forward, a backward, ...) on st: 0, or
 * non-zero when it failed (the phase's own timing then reports why). */
typedef int (*bench_step_fn)(void *arg, cudaStream_t st);

/* Runs step until about preheat_ms of the slowest rank's device time have
 * passed (the same count on every rank: one timed step, gathered), then
 * synchronizes st. The H200 holds its clock at 1980 MHz for the first
 * ~0.3 s of load and settles at ~1500-1600 MHz under its power cap after
 * ~1 s (its power reading averages over about a second; session 9 run 2),
 * so a phase timed right after host work ran faster than one timed after
 * another phase: each timed phase starts from the steady state. Collective
 * over ctx. Returns non-zero on a failure of the harness. */
int bench_preheat(const comet_rank_info_t *info, comet_context_t ctx, cudaStream_t st,
                  float preheat_ms, bench_step_fn step, void *arg);

/* How bench_comet_run runs comet. */
typedef struct bench_comet_opts {
  int warmup, iters;
  int n_comm; /* the fused kernels' movers (0: comet's choice) */
  int gather; /* layer0's A: -1 comet's choice, 0 copied, 1 gathered */
  int tile;   /* layer0's GEMM tile: -1 comet's choice, 0 auto, 1 wide, 2 narrow */
  int refs;   /* also the fused kernels' reference timings (gemm only, comm only) */
  int check, check_tokens;
  unsigned long long seed;
  const comet_md_routing_t *routing;
  const bench_grads_t *backward; /* also time comet_moe_backward, every gradient, from its
                                    dout into its buffers (NULL: not) */
  float preheat_ms; /* before each timed phase (bench_preheat; 0: none) */
} bench_comet_opts_t;

/* Collective over ctx (not destroyed); st is a stream of ctx's rank. One
 * layer per call. Times are the median over `iters` of the slowest rank,
 * after `warmup` forwards. With refs, a fused layer0 (layer1) is also timed
 * in its two reference modes (whole calls, plan included, as the fused time
 * is), interleaved with fused calls that put the rows in place. With check,
 * one more forward on NaN-poisoned output is checked against the CPU
 * reference (bench_check_run). args->saved_z set (a buffer of
 * comet_config_saved_z_bytes): save mode, every forward keeps z there, and
 * with backward each backward follows its own untimed forward and reads it.
 * Returns non-zero only on a failure of the harness itself (CUDA, the
 * transport); comet's own errors land in out->err. */
int bench_comet_run(const comet_rank_info_t *info, const comet_layer_config_t *cfg,
                    comet_context_t ctx, cudaStream_t st, const comet_moe_args_t *args,
                    const bench_comet_opts_t *o, bench_comet_t *out);

#ifdef __cplusplus
}
#endif
#endif
