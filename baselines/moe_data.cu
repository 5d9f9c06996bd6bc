/* SPDX-License-Identifier: Apache-2.0 */
/* moe_data.cu — reproducible random MoE inputs (see moe_data.h). The GPU
 * and host fills share the index arithmetic and comet_md_unit, and round
 * with the same round-to-nearest-even, so both give the same bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "moe_data.h"
#include "ref/convert.h"

namespace {

struct shard {
  int64_t El, rows_l, H, F, Fl, g, i, gated, R, E;
};

shard make_shard(const comet_layer_config_t *c, int g, int i) {
  shard s;
  s.E = c->num_experts;
  s.El = c->num_experts / c->ep;
  s.H = c->hidden;
  s.F = c->ffn;
  s.Fl = c->ffn / c->tp;
  s.gated = c->activation == COMET_ACT_SWIGLU;
  s.rows_l = s.gated ? 2 * s.Fl : s.Fl;
  s.R = s.gated ? 2 * s.F : s.F;
  s.g = g;
  s.i = i;
  return s;
}

/* Global index of local w1 element (el, r, h) and w2 element (el, h, c). */
__host__ __device__ inline uint64_t w1_gidx(const shard &s, int64_t el, int64_t r, int64_t h) {
  const int64_t e = s.g * s.El + el;
  const int64_t grow = (s.gated && r >= s.Fl) ? s.F + s.i * s.Fl + (r - s.Fl) : s.i * s.Fl + r;
  return (uint64_t)((e * s.R + grow) * s.H + h);
}
__host__ __device__ inline uint64_t w2_gidx(const shard &s, int64_t el, int64_t h, int64_t c) {
  const int64_t e = s.g * s.El + el;
  return (uint64_t)((e * s.H + h) * s.F + s.i * s.Fl + c);
}

__device__ inline uint16_t round_bits(float v, int fp16) {
  if (fp16) return __half_as_ushort(__float2half_rn(v));
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

__global__ void fill_w_kernel(uint16_t *w, shard s, int which, uint64_t seed, float scale,
                              int fp16, int64_t n) {
  for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < n;
       x += (int64_t)gridDim.x * blockDim.x) {
    uint64_t gi;
    if (which == COMET_MD_W1) {
      const int64_t h = x % s.H, r = (x / s.H) % s.rows_l, el = x / (s.H * s.rows_l);
      gi = w1_gidx(s, el, r, h);
    } else {
      const int64_t c = x % s.Fl, h = (x / s.Fl) % s.H, el = x / (s.Fl * s.H);
      gi = w2_gidx(s, el, h, c);
    }
    w[x] = round_bits(__fmul_rn(comet_md_unit(seed, which, gi), scale), fp16);
  }
}

__global__ void fill_x_kernel(uint16_t *x, int64_t n, int H, int rank, uint64_t seed, int fp16) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n;
       k += (int64_t)gridDim.x * blockDim.x)
    x[k] = round_bits(comet_md_unit(seed, COMET_MD_X + 16 * (uint64_t)(rank + 1), (uint64_t)k), fp16);
}

cudaError_t launch_fill(uint16_t *w, const shard &s, int which, uint64_t seed, float scale, int fp16,
                        int64_t n, cudaStream_t stream) {
  if (n > 0) fill_w_kernel<<<1024, 256, 0, stream>>>(w, s, which, seed, scale, fp16, n);
  return cudaGetLastError();
}

}  // namespace

extern "C" float comet_md_w1_scale(const comet_layer_config_t *cfg) {
  return 1.0f / sqrtf((float)cfg->hidden);
}
extern "C" float comet_md_w2_scale(const comet_layer_config_t *cfg) {
  return 1.0f / sqrtf((float)cfg->ffn);
}

extern "C" cudaError_t comet_md_fill_w1(void *w1, const comet_layer_config_t *cfg, int g, int i,
                                        uint64_t seed, cudaStream_t stream) {
  shard s = make_shard(cfg, g, i);
  return launch_fill((uint16_t *)w1, s, COMET_MD_W1, seed, comet_md_w1_scale(cfg),
                     cfg->dtype == COMET_DTYPE_FP16, s.El * s.rows_l * s.H, stream);
}

extern "C" cudaError_t comet_md_fill_w2(void *w2, const comet_layer_config_t *cfg, int g, int i,
                                        uint64_t seed, cudaStream_t stream) {
  shard s = make_shard(cfg, g, i);
  return launch_fill((uint16_t *)w2, s, COMET_MD_W2, seed, comet_md_w2_scale(cfg),
                     cfg->dtype == COMET_DTYPE_FP16, s.El * s.H * s.Fl, stream);
}

static uint16_t host_bits(float v, comet_dtype_t dt) {
  return dt == COMET_DTYPE_FP16 ? comet_f32_to_fp16(v) : comet_f32_to_bf16(v);
}

extern "C" void comet_md_fill_w1_expert_host(uint16_t *p, const comet_layer_config_t *cfg, int g,
                                             int i, int el, uint64_t seed) {
  shard s = make_shard(cfg, g, i);
  const float scale = comet_md_w1_scale(cfg);
  for (int64_t r = 0; r < s.rows_l; ++r)
    for (int64_t h = 0; h < s.H; ++h)
      p[r * s.H + h] =
          host_bits(comet_md_unit(seed, COMET_MD_W1, w1_gidx(s, el, r, h)) * scale, cfg->dtype);
}

extern "C" void comet_md_fill_w2_expert_host(uint16_t *p, const comet_layer_config_t *cfg, int g,
                                             int i, int el, uint64_t seed) {
  shard s = make_shard(cfg, g, i);
  const float scale = comet_md_w2_scale(cfg);
  for (int64_t h = 0; h < s.H; ++h)
    for (int64_t c = 0; c < s.Fl; ++c)
      p[h * s.Fl + c] =
          host_bits(comet_md_unit(seed, COMET_MD_W2, w2_gidx(s, el, h, c)) * scale, cfg->dtype);
}

extern "C" void comet_md_fill_w1_host(uint16_t *w1, const comet_layer_config_t *cfg, int g, int i,
                                      uint64_t seed) {
  shard s = make_shard(cfg, g, i);
  for (int el = 0; el < (int)s.El; ++el)
    comet_md_fill_w1_expert_host(w1 + el * s.rows_l * s.H, cfg, g, i, el, seed);
}

extern "C" void comet_md_fill_w2_host(uint16_t *w2, const comet_layer_config_t *cfg, int g, int i,
                                      uint64_t seed) {
  shard s = make_shard(cfg, g, i);
  for (int el = 0; el < (int)s.El; ++el)
    comet_md_fill_w2_expert_host(w2 + el * s.H * s.Fl, cfg, g, i, el, seed);
}

extern "C" cudaError_t comet_md_fill_x(void *x, int T, int H, comet_dtype_t dt, int rank,
                                       uint64_t seed, cudaStream_t stream) {
  const int64_t n = (int64_t)T * H;
  if (n > 0)
    fill_x_kernel<<<1024, 256, 0, stream>>>((uint16_t *)x, n, H, rank, seed,
                                            dt == COMET_DTYPE_FP16);
  return cudaGetLastError();
}

extern "C" void comet_md_x_row_host(uint16_t *row, int t, int H, comet_dtype_t dt, int rank,
                                    uint64_t seed) {
  for (int h = 0; h < H; ++h)
    row[h] = host_bits(comet_md_unit(seed, COMET_MD_X + 16 * (uint64_t)(rank + 1),
                                     (uint64_t)t * H + h),
                       dt);
}

/* ---- routing ---- */

namespace {
struct rng {
  uint64_t s;
  uint64_t next() { return comet_md_mix(s++); }
  double uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); } /* [0,1) */
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  }
};
}  // namespace

extern "C" double comet_md_expert_probs(double *p, int E, const comet_md_routing_t *r,
                                        uint64_t seed) {
  rng g{comet_md_mix(seed ^ 0x70726f6273ull)};
  double sum = 0;
  for (int e = 0; e < E; ++e) {
    double v = 1.0 / E + (r && r->skew > 0 ? r->skew * g.normal() : 0.0);
    p[e] = v > 0 ? v : 0;
  }
  const int empty = r ? r->empty_experts : 0;
  for (int k = 0; k < empty && k < E - 1; ++k) { /* zero `empty` distinct experts */
    int e = (int)(g.next() % (uint64_t)E);
    for (int step = 0; step < E && p[e] == 0; ++step) e = (e + 1) % E;
    p[e] = 0;
  }
  for (int e = 0; e < E; ++e) sum += p[e];
  if (sum <= 0) { /* everything clamped away: fall back to the first expert */
    p[0] = 1;
    sum = 1;
  }
  double mean = 1.0 / E, var = 0;
  for (int e = 0; e < E; ++e) {
    p[e] /= sum;
    var += (p[e] - mean) * (p[e] - mean);
  }
  return sqrt(var / E);
}

extern "C" void comet_md_routing_host(int32_t *ids, float *weights, int T, int K, int E,
                                      const double *p, const comet_md_routing_t *r, int rank,
                                      uint64_t seed) {
  rng g{comet_md_mix(seed ^ comet_md_mix(0x726f757465ull + (uint64_t)rank))};
  const double drop = r ? r->drop : 0.0;
  int nonzero = 0;
  for (int e = 0; e < E; ++e) nonzero += p[e] > 0;
  for (int t = 0; t < T; ++t) {
    int32_t *id = ids + (size_t)t * K;
    float *w = weights + (size_t)t * K;
    double left = 1.0;
    for (int k = 0; k < K; ++k) {
      id[k] = -1;
      if (k >= nonzero) continue; /* fewer usable experts than K: the rest dropped */
      double u = g.uniform() * left, acc = 0;
      int pick = -1;
      for (int e = 0; e < E; ++e) {
        int used = 0;
        for (int k2 = 0; k2 < k; ++k2) used |= id[k2] == e;
        if (used || p[e] <= 0) continue;
        acc += p[e];
        pick = e;
        if (u < acc) break;
      }
      id[k] = pick;
      if (pick >= 0) left -= p[pick];
      if (left < 1e-12) left = 1e-12;
    }
    double sw = 0;
    for (int k = 0; k < K; ++k) {
      if (id[k] >= 0 && drop > 0 && g.uniform() < drop) id[k] = -1;
      w[k] = id[k] >= 0 ? (float)(0.1 + g.uniform()) : 0.0f;
      sw += w[k];
    }
    for (int k = 0; k < K; ++k)
      if (sw > 0) w[k] = (float)(w[k] / sw);
  }
}

extern "C" int comet_md_parse_routing(const char *s, comet_md_routing_t *r) {
  if (!s || !r) return -1;
  if (strcmp(s, "uniform") == 0) {
    r->skew = 0;
    return 0;
  }
  if (strncmp(s, "skew:", 5) == 0) {
    char *end = NULL;
    double v = strtod(s + 5, &end);
    if (end && *end == '\0' && end != s + 5 && v >= 0 && v < 1) {
      r->skew = v;
      return 0;
    }
  }
  return -1;
}
