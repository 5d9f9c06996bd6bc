/* SPDX-License-Identifier: Apache-2.0 */
/* ref_ctx.c — the reference's simulated world: checks the config and every
 * rank's inputs, builds the routing plan, converts inputs to double, and
 * moves per-rank arrays in and out. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref_internal.h"

/* One rank's inputs, whatever their precision. */
typedef struct ref_src {
  int num_tokens;
  const void *x, *tw, *w1, *w2;
  const int32_t *ids;
} ref_src_t;

static ref_src_t src_of(const void *ranks, int emulate, int r) {
  ref_src_t s;
  if (emulate) {
    const comet_ref_rank_t *p = (const comet_ref_rank_t *)ranks + r;
    s.num_tokens = p->num_tokens; s.x = p->x; s.tw = p->topk_weights;
    s.w1 = p->w1; s.w2 = p->w2; s.ids = p->topk_ids;
  } else {
    const comet_ref_rank_f64_t *p = (const comet_ref_rank_f64_t *)ranks + r;
    s.num_tokens = p->num_tokens; s.x = p->x; s.tw = p->topk_weights;
    s.w1 = p->w1; s.w2 = p->w2; s.ids = p->topk_ids;
  }
  return s;
}

static comet_status_t check_config(const char *op, const comet_layer_config_t *g, int emulate) {
  COMET_ARG(g != NULL, "%s: cfg is NULL", op);
  COMET_ARG(g->size == sizeof(comet_layer_config_t),
            "%s: cfg->size = %zu, expected %zu (initialize with COMET_LAYER_CONFIG_INITIALIZER)",
            op, g->size, sizeof(comet_layer_config_t));
  COMET_ARG(g->hidden >= 1, "%s: cfg->hidden = %d must be >= 1", op, g->hidden);
  COMET_ARG(g->ep >= 1, "%s: cfg->ep = %d must be >= 1", op, g->ep);
  COMET_ARG(g->tp >= 1, "%s: cfg->tp = %d must be >= 1", op, g->tp);
  COMET_ARG((int64_t)g->ep * g->tp <= 4096, "%s: cfg->ep * cfg->tp = %lld ranks is too many",
            op, (long long)g->ep * g->tp);
  COMET_ARG(g->ffn >= 1 && g->ffn % g->tp == 0,
            "%s: cfg->ffn = %d is not a positive multiple of cfg->tp = %d", op, g->ffn, g->tp);
  COMET_ARG(g->num_experts >= 1 && g->num_experts % g->ep == 0,
            "%s: cfg->num_experts = %d is not a positive multiple of cfg->ep = %d", op,
            g->num_experts, g->ep);
  COMET_ARG(g->topk >= 1 && g->topk <= g->num_experts,
            "%s: cfg->topk = %d must be in 1..num_experts (%d)", op, g->topk, g->num_experts);
  COMET_ARG(g->activation == COMET_ACT_SWIGLU || g->activation == COMET_ACT_GELU ||
                g->activation == COMET_ACT_NONE,
            "%s: cfg->activation = %d is not a comet_activation_t", op, (int)g->activation);
  COMET_ARG(g->max_tokens_per_rank >= 0 && g->max_rows_per_rank >= 0,
            "%s: cfg->max_tokens_per_rank = %d and cfg->max_rows_per_rank = %d must be >= 0", op,
            g->max_tokens_per_rank, g->max_rows_per_rank);
  if (emulate) {
    if (g->dtype == COMET_DTYPE_FP8_E4M3)
      return comet_set_error(COMET_ERR_UNSUPPORTED, "%s: cfg->dtype = fp8_e4m3 is not supported",
                             op);
    COMET_ARG(g->dtype == COMET_DTYPE_BF16 || g->dtype == COMET_DTYPE_FP16,
              "%s: cfg->dtype = %d is not a comet_dtype_t", op, (int)g->dtype);
  }
  return COMET_OK;
}

static comet_status_t check_rank(const char *op, const ref_src_t *s, int r, int need) {
  const int T = s->num_tokens;
  COMET_ARG(T >= 0, "%s: ranks[%d].num_tokens = %d is negative", op, r, T);
  COMET_ARG(!(need & REF_X) || T == 0 || s->x, "%s: ranks[%d].x is NULL with %d tokens", op, r, T);
  COMET_ARG(!(need & REF_IDS) || T == 0 || s->ids, "%s: ranks[%d].topk_ids is NULL with %d tokens",
            op, r, T);
  COMET_ARG(!(need & REF_TW) || T == 0 || s->tw,
            "%s: ranks[%d].topk_weights is NULL with %d tokens", op, r, T);
  COMET_ARG(!(need & REF_W1) || s->w1, "%s: ranks[%d].w1 is NULL", op, r);
  COMET_ARG(!(need & REF_W2) || s->w2, "%s: ranks[%d].w2 is NULL", op, r);
  return COMET_OK;
}

comet_status_t comet_refi_alloc(ref_ctx_t *c, double ***arr, ref_unit_t u, int64_t per) {
  *arr = calloc((size_t)c->W, sizeof(double *));
  if (!*arr) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "%s: host allocation failed", c->op);
  for (int r = 0; r < c->W; ++r) {
    int64_t n = ref_count(c, u, r, per);
    (*arr)[r] = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!(*arr)[r]) {
      comet_refi_free(c, arr);
      return comet_set_error(COMET_ERR_OUT_OF_MEMORY,
                             "%s: host allocation of %lld doubles for rank %d failed", c->op,
                             (long long)n, r);
    }
  }
  return COMET_OK;
}

void comet_refi_free(const ref_ctx_t *c, double ***arr) {
  if (!*arr) return;
  for (int r = 0; r < c->W; ++r) free((*arr)[r]);
  free(*arr);
  *arr = NULL;
}

void comet_refi_load(const ref_ctx_t *c, double *dst, const void *src, size_t n, ref_kind_t kind) {
  switch (kind) {
    case REF_KIND_DTYPE:
      for (size_t i = 0; i < n; ++i) dst[i] = comet_load_f32(src, i, c->dtype);
      break;
    case REF_KIND_F32:
      for (size_t i = 0; i < n; ++i) dst[i] = ((const float *)src)[i];
      break;
    case REF_KIND_F64: memcpy(dst, src, n * sizeof(double)); break;
  }
}

void comet_refi_store(const ref_ctx_t *c, void *dst, const double *src, size_t n, ref_kind_t kind) {
  switch (kind) {
    case REF_KIND_DTYPE:
      for (size_t i = 0; i < n; ++i) comet_store_f32(dst, i, (float)src[i], c->dtype);
      break;
    case REF_KIND_F32:
      for (size_t i = 0; i < n; ++i) ((float *)dst)[i] = (float)src[i];
      break;
    case REF_KIND_F64: memcpy(dst, src, n * sizeof(double)); break;
  }
}

void comet_refi_ctx_free(ref_ctx_t *c) {
  double ***all[] = {&c->x, &c->tw, &c->w1, &c->w2, &c->A, &c->z, &c->h, &c->y};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) comet_refi_free(c, all[i]);
  comet_plan_free(&c->plan);
  free(c->T);
  free((void *)c->ids);
  c->T = NULL;
  c->ids = NULL;
}

comet_status_t comet_refi_ctx_open(ref_ctx_t *c, const char *op, const comet_layer_config_t *cfg,
                            int emulate, const void *ranks, int need) {
  memset(c, 0, sizeof *c);
  c->op = op;
  COMET_CHECK(check_config(op, cfg, emulate));
  COMET_ARG(ranks != NULL, "%s: ranks is NULL", op);
  const comet_plan_dims_t d = {cfg->num_experts, cfg->topk, cfg->ep, cfg->tp};
  c->d = d;
  c->W = d.ep * d.tp;
  c->El = d.num_experts / d.ep;
  c->K = d.topk;
  c->H = cfg->hidden;
  c->F = cfg->ffn / cfg->tp;
  c->N1 = cfg->activation == COMET_ACT_SWIGLU ? 2 * c->F : c->F;
  c->act = cfg->activation;
  c->emulate = emulate;
  c->dtype = cfg->dtype;
  need |= REF_IDS; /* the plan needs the ids in every op */
  for (int r = 0; r < c->W; ++r) {
    ref_src_t s = src_of(ranks, emulate, r);
    COMET_CHECK(check_rank(op, &s, r, need));
  }

  comet_status_t st = COMET_OK;
  c->T = calloc((size_t)c->W, sizeof(int));
  c->ids = calloc((size_t)c->W, sizeof(int32_t *));
  if (!c->T || !c->ids) {
    st = comet_set_error(COMET_ERR_OUT_OF_MEMORY, "%s: host allocation failed", op);
    goto fail;
  }
  for (int r = 0; r < c->W; ++r) {
    ref_src_t s = src_of(ranks, emulate, r);
    c->T[r] = s.num_tokens;
    c->ids[r] = s.ids;
  }
  /* As on the GPU when the caller gives limits; unlimited otherwise. */
  int max_tokens = cfg->max_tokens_per_rank > 0 ? cfg->max_tokens_per_rank : INT_MAX;
  int64_t capacity = cfg->max_tokens_per_rank > 0 ? comet_config_row_capacity(cfg) : INT64_MAX;
  COMET_CHECK_GOTO(comet_plan_build(&c->plan, d, c->T, c->ids, max_tokens, capacity), st, fail);

  const ref_kind_t tk = emulate ? REF_KIND_DTYPE : REF_KIND_F64;
  const ref_kind_t wk = emulate ? REF_KIND_F32 : REF_KIND_F64;
  const int64_t w1n = (int64_t)c->El * c->N1 * c->H, w2n = (int64_t)c->El * c->H * c->F;
  if (need & REF_X) COMET_CHECK_GOTO(comet_refi_alloc(c, &c->x, REF_PER_TOKEN, c->H), st, fail);
  if (need & REF_TW) COMET_CHECK_GOTO(comet_refi_alloc(c, &c->tw, REF_PER_TOKEN, c->K), st, fail);
  if (need & REF_W1) COMET_CHECK_GOTO(comet_refi_alloc(c, &c->w1, REF_PER_RANK, w1n), st, fail);
  if (need & REF_W2) COMET_CHECK_GOTO(comet_refi_alloc(c, &c->w2, REF_PER_RANK, w2n), st, fail);
  for (int r = 0; r < c->W; ++r) {
    ref_src_t s = src_of(ranks, emulate, r);
    const size_t T = (size_t)s.num_tokens;
    if (c->x && T) comet_refi_load(c, c->x[r], s.x, T * c->H, tk);
    if (c->tw && T) comet_refi_load(c, c->tw[r], s.tw, T * c->K, wk);
    if (c->w1) comet_refi_load(c, c->w1[r], s.w1, (size_t)w1n, tk);
    if (c->w2) comet_refi_load(c, c->w2[r], s.w2, (size_t)w2n, tk);
  }
  return COMET_OK;
fail:
  comet_refi_ctx_free(c);
  return st;
}
