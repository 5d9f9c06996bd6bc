/* SPDX-License-Identifier: Apache-2.0 */
/* forward_test.h — shared by the forward's GPU tests (test_forward,
 * test_graph_replay, test_faults): every rank's inputs regenerated
 * identically on every rank from a seed, device copies of one rank's, the
 * relative error against the CPU reference, test configs. */
#ifndef COMET_FORWARD_TEST_H
#define COMET_FORWARD_TEST_H

#include <math.h>

#include "comm_test.h"
#include "ref/convert.h"
#include "ref/ref.h"

typedef struct tshape {
  int E, K, H, F, T_max;
  comet_dtype_t dtype;
  comet_activation_t act;
} tshape_t;

/* Every rank's inputs, regenerated identically in every process. */
typedef struct world_data {
  int W;
  int tokens[8];
  uint16_t *x[8], *w1[8], *w2[8];
  int32_t *ids[8];
  float *wt[8];
  comet_ref_rank_t ref[8];
} world_data_t;

static inline void make_world(world_data_t *d, const comet_layer_config_t *c, int W, int kind,
                       uint64_t seed, int zero_rank) {
  const int fp16 = c->dtype == COMET_DTYPE_FP16, El = c->num_experts / c->ep;
  const size_t w1n = (size_t)El * comet_config_w1_rows(c) * c->hidden;
  const size_t w2n = (size_t)El * c->hidden * (c->ffn / c->tp);
  memset(d, 0, sizeof *d);
  d->W = W;
  for (int r = 0; r < W; ++r) {
    const int T = r == zero_rank ? 0 : c->max_tokens_per_rank - (r % 5) * c->max_tokens_per_rank / 5;
    d->tokens[r] = T;
    d->x[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)T * c->hidden + 1));
    d->ids[r] = (int32_t *)malloc(sizeof(int32_t) * ((size_t)T * c->topk + 1));
    d->wt[r] = (float *)malloc(sizeof(float) * ((size_t)T * c->topk + 1));
    d->w1[r] = (uint16_t *)malloc(sizeof(uint16_t) * w1n);
    d->w2[r] = (uint16_t *)malloc(sizeof(uint16_t) * w2n);
    gen_bits16(mix_seed(seed, 1, r, kind), (size_t)T * c->hidden, d->x[r], fp16);
    gen_ids(kind, mix_seed(seed, 2, r, kind), c->num_experts, c->topk, T, d->ids[r]);
    uint64_t s = mix_seed(seed, 3, r, kind);
    for (size_t i = 0; i < (size_t)T * c->topk; ++i) d->wt[r][i] = test_rand_uniform(&s, 0.0f, 1.0f);
    /* weights scaled down so activations stay O(1) */
    gen_bits16(mix_seed(seed, 4, r, 0), w1n, d->w1[r], fp16);
    gen_bits16(mix_seed(seed, 5, r, 0), w2n, d->w2[r], fp16);
    for (size_t i = 0; i < w1n; ++i)
      d->w1[r][i] = fp16 ? comet_f32_to_fp16(comet_fp16_to_f32(d->w1[r][i]) * 0.05f)
                         : comet_f32_to_bf16(comet_bf16_to_f32(d->w1[r][i]) * 0.05f);
    for (size_t i = 0; i < w2n; ++i)
      d->w2[r][i] = fp16 ? comet_f32_to_fp16(comet_fp16_to_f32(d->w2[r][i]) * 0.05f)
                         : comet_f32_to_bf16(comet_bf16_to_f32(d->w2[r][i]) * 0.05f);
    d->ref[r] = (comet_ref_rank_t){T, d->x[r], d->ids[r], d->wt[r], d->w1[r], d->w2[r]};
  }
}

static inline void free_world(world_data_t *d) {
  for (int r = 0; r < d->W; ++r) {
    free(d->x[r]); free(d->ids[r]); free(d->wt[r]); free(d->w1[r]); free(d->w2[r]);
  }
}

/* Device copies of this rank's inputs. */
typedef struct dev_in {
  void *x, *w1, *w2, *out, *h;
  int32_t *ids;
  float *wt;
} dev_in_t;

static inline void *upload(const void *src, size_t bytes) {
  void *p = NULL;
  CUDA_OK(test_malloc(&p, bytes ? bytes : 16));
  if (bytes && src) CUDA_OK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
  return p;
}

static inline dev_in_t upload_rank(const world_data_t *d, const comet_layer_config_t *c, int r,
                            int64_t rows_cap) {
  const int T = d->tokens[r], El = c->num_experts / c->ep;
  dev_in_t g;
  g.x = upload(d->x[r], sizeof(uint16_t) * (size_t)T * c->hidden);
  g.ids = (int32_t *)upload(d->ids[r], sizeof(int32_t) * (size_t)T * c->topk);
  g.wt = (float *)upload(d->wt[r], sizeof(float) * (size_t)T * c->topk);
  g.w1 = upload(d->w1[r], sizeof(uint16_t) * (size_t)El * comet_config_w1_rows(c) * c->hidden);
  g.w2 = upload(d->w2[r], sizeof(uint16_t) * (size_t)El * c->hidden * (c->ffn / c->tp));
  g.out = upload(NULL, sizeof(uint16_t) * ((size_t)T * c->hidden + 8)); /* + poisoned tail */
  g.h = upload(NULL, sizeof(uint16_t) * (size_t)rows_cap * (c->ffn / c->tp));
  return g;
}

static inline void free_dev(dev_in_t *g) {
  test_free(g->x); test_free(g->ids); test_free(g->wt); test_free(g->w1); test_free(g->w2);
  test_free(g->out); test_free(g->h);
}

/* ||got - ref|| / ||ref|| over n dtype elements; NaN anywhere -> INFINITY. */
static inline double rel_err(const uint16_t *got, const uint16_t *ref, size_t n, int fp16) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = fp16 ? comet_fp16_to_f32(got[i]) : comet_bf16_to_f32(got[i]);
    const double b = fp16 ? comet_fp16_to_f32(ref[i]) : comet_bf16_to_f32(ref[i]);
    if (isnan(a) || isnan(b)) return INFINITY;
    num += (a - b) * (a - b);
    den += b * b;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline comet_layer_config_t make_cfg(const tshape_t *s, int ep, int tp) {
  comet_layer_config_t c = COMET_LAYER_CONFIG_INITIALIZER;
  c.hidden = s->H; c.ffn = s->F; c.num_experts = s->E; c.topk = s->K; c.ep = ep; c.tp = tp;
  c.max_tokens_per_rank = s->T_max; c.dtype = s->dtype; c.activation = s->act;
  return c;
}

/* One test case: a routing kind on a fresh layer of one layout and shape. */
typedef void (*fw_case_fn)(comet_layer_t L, const comet_layer_config_t *c,
                           const comet_rank_info_t *info, cudaStream_t stream, int kind,
                           uint64_t seed, int zero_rank, const char *label);
/* Checks on the first shape's fresh layer of each layout, before its cases. */
typedef void (*fw_layer_fn)(comet_layer_t L, cudaStream_t stream);

/* The forward tests' matrix on this rank's context: every EP x TP layout of
 * W, three shapes (SwiGLU bf16, GELU fp16, none bf16), every routing kind on
 * the first shape and uniform on the others; quick: quick_shape only, the
 * kinds in quick_kinds (a bit mask). */
static inline void run_matrix(const comet_rank_info_t *info, comet_context_t ctx, uint64_t seed,
                              int quick, const tshape_t *quick_shape, unsigned quick_kinds,
                              fw_layer_fn first, fw_case_fn fn) {
  const int W = info->world;
  cudaStream_t stream = comet_context_stream(ctx);
  const tshape_t shapes[3] = {{8, 2, 256, 512, 96, COMET_DTYPE_BF16, COMET_ACT_SWIGLU},
                              {16, 4, 264, 384, 80, COMET_DTYPE_FP16, COMET_ACT_GELU},
                              {4, 1, 128, 256, 64, COMET_DTYPE_BF16, COMET_ACT_NONE}};
  const int nshapes = quick ? 1 : 3;
  for (int ep = W; ep >= 1; --ep) {
    if (W % ep) continue;
    const int tp = W / ep;
    for (int si = 0; si < nshapes; ++si) {
      const tshape_t *sh = quick ? quick_shape : &shapes[si];
      if (sh->E % ep || (sh->F / tp) % 8) continue;
      comet_layer_config_t c = make_cfg(sh, ep, tp);
      comet_layer_t L = NULL;
      CHECK_OK(comet_layer_create(&L, ctx, &c));
      if (!L) return;
      if (si == 0 && first) first(L, stream);
      for (int kind = 0; kind < (si == 0 ? ROUTE_KINDS : 1); ++kind) {
        if (quick && !(quick_kinds & (1u << kind))) continue;
        char label[128];
        const int zero_rank = kind == ROUTE_DROPPED ? W - 1 : -1;
        snprintf(label, sizeof label, "W%d ep%d tp%d E%d K%d %s %s %s%s", W, ep, tp, c.num_experts,
                 c.topk, comet_dtype_name(c.dtype), comet_activation_name(c.activation),
                 route_names[kind], zero_rank >= 0 ? " +empty rank" : "");
        fn(L, &c, info, stream, kind, mix_seed(seed, si, ep, kind), zero_rank, label);
      }
      CHECK_OK(comet_layer_destroy(L));
    }
  }
}

#endif /* COMET_FORWARD_TEST_H */
