/* SPDX-License-Identifier: Apache-2.0 */
/* test_ref_common.h — what the reference's tests share: a random MoE
 * problem for W simulated ranks (inputs in dtype bits and the same values as
 * doubles), routings with the awkward cases (skew, empty experts, dropped
 * slots, ranks without tokens), the unsharded expert weights assembled from
 * the shards, and error norms. Static inline functions: each test includes it once. */
#ifndef COMET_TEST_REF_COMMON_H
#define COMET_TEST_REF_COMMON_H

#include <math.h>
#include <stdlib.h>

#include "ref/convert.h"
#include "ref/ref.h"
#include "test_util.h"

enum { TR_MAX_W = 8 };

/* Routing modes. */
enum { TR_UNIFORM, TR_ONE_EXPERT, TR_EVEN_EXPERTS, TR_DROPPED, TR_NUM_MODES };

typedef struct tr_problem {
  comet_layer_config_t cfg;
  int W, El, Fs, N1; /* Fs = F/tp, N1 = w1 rows per local expert */
  int T[TR_MAX_W];
  uint16_t *x[TR_MAX_W], *w1[TR_MAX_W], *w2[TR_MAX_W];
  int32_t *ids[TR_MAX_W];
  float *tw[TR_MAX_W];
  double *xd[TR_MAX_W], *w1d[TR_MAX_W], *w2d[TR_MAX_W], *twd[TR_MAX_W]; /* same values */
  comet_ref_rank_t ranks[TR_MAX_W];
  comet_ref_rank_f64_t ranks64[TR_MAX_W];
} tr_problem_t;

static inline void *tr_alloc(size_t bytes) {
  void *p = calloc(bytes ? bytes : 1, 1);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  return p;
}

/* Random dtype values uniform in [-scale, scale), as bits and as doubles. */
static inline void tr_fill(uint64_t *rng, comet_dtype_t dt, size_t n, float scale, uint16_t **bits,
                    double **vals) {
  *bits = tr_alloc(n * sizeof(uint16_t));
  *vals = tr_alloc(n * sizeof(double));
  for (size_t i = 0; i < n; ++i) {
    comet_store_f32(*bits, i, test_rand_uniform(rng, -scale, scale), dt);
    (*vals)[i] = comet_load_f32(*bits, i, dt);
  }
}

/* One token's K distinct experts (or -1) under a routing mode. */
static inline void tr_route_token(uint64_t *rng, int mode, int E, int K, int hot, int32_t *row) {
  for (int k = 0; k < K; ++k) {
    int e, tries = 0;
    for (;;) {
      e = test_rand_int(rng, 0, E - 1);
      if (mode == TR_ONE_EXPERT && k == 0) e = hot;
      if (mode == TR_EVEN_EXPERTS) e = (e / 2) * 2;
      if (mode == TR_DROPPED && test_rand_int(rng, 0, 2) == 0) e = -1;
      int dup = 0;
      for (int k2 = 0; k2 < k; ++k2) dup |= e >= 0 && row[k2] == e;
      if (!dup) break;
      if (++tries > 100) { e = -1; break; } /* not enough distinct experts in this mode */
    }
    row[k] = e;
  }
}

/* A random problem. T[s] random in 0..max_tokens (zero_rank >= 0 gets 0). */
static inline void tr_make(tr_problem_t *p, uint64_t *rng, int ep, int tp, int E, int K, int H,
                           int F, comet_activation_t act, comet_dtype_t dt, int max_tokens,
                           int mode, int zero_rank) {
  memset(p, 0, sizeof *p);
  comet_layer_config_t c = COMET_LAYER_CONFIG_INITIALIZER;
  c.hidden = H; c.ffn = F; c.num_experts = E; c.topk = K; c.ep = ep; c.tp = tp;
  c.dtype = dt; c.activation = act; c.max_tokens_per_rank = max_tokens;
  p->cfg = c;
  p->W = ep * tp;
  p->El = E / ep;
  p->Fs = F / tp;
  p->N1 = act == COMET_ACT_SWIGLU ? 2 * p->Fs : p->Fs;
  const int hot = test_rand_int(rng, 0, E - 1);
  for (int s = 0; s < p->W; ++s) {
    const int T = s == zero_rank ? 0 : test_rand_int(rng, max_tokens / 2, max_tokens);
    p->T[s] = T;
    tr_fill(rng, dt, (size_t)T * H, 1.0f, &p->x[s], &p->xd[s]);
    tr_fill(rng, dt, (size_t)p->El * p->N1 * H, 1.0f / sqrtf((float)H), &p->w1[s], &p->w1d[s]);
    tr_fill(rng, dt, (size_t)p->El * H * p->Fs, 1.0f / sqrtf((float)F), &p->w2[s], &p->w2d[s]);
    p->ids[s] = tr_alloc(sizeof(int32_t) * (size_t)T * K);
    p->tw[s] = tr_alloc(sizeof(float) * (size_t)T * K);
    p->twd[s] = tr_alloc(sizeof(double) * (size_t)T * K);
    for (int t = 0; t < T; ++t) {
      tr_route_token(rng, mode, E, K, hot, p->ids[s] + (size_t)t * K);
      if (mode == TR_DROPPED && t == 0)
        for (int k = 0; k < K; ++k) p->ids[s][k] = -1; /* a token with every slot dropped */
    }
    for (int i = 0; i < T * K; ++i) {
      p->tw[s][i] = test_rand_uniform(rng, 0.05f, 1.0f);
      p->twd[s][i] = p->tw[s][i];
    }
    p->ranks[s] = (comet_ref_rank_t){T, p->x[s], p->ids[s], p->tw[s], p->w1[s], p->w2[s]};
    p->ranks64[s] = (comet_ref_rank_f64_t){T, p->xd[s], p->ids[s], p->twd[s], p->w1d[s], p->w2d[s]};
    if (T == 0) { /* a rank without tokens may pass NULL token arrays */
      p->ranks[s].x = NULL; p->ranks[s].topk_ids = NULL; p->ranks[s].topk_weights = NULL;
      p->ranks64[s].x = NULL; p->ranks64[s].topk_ids = NULL; p->ranks64[s].topk_weights = NULL;
    }
  }
}

static inline void tr_free(tr_problem_t *p) {
  for (int s = 0; s < p->W; ++s) {
    free(p->x[s]); free(p->w1[s]); free(p->w2[s]); free(p->ids[s]); free(p->tw[s]);
    free(p->xd[s]); free(p->w1d[s]); free(p->w2d[s]); free(p->twd[s]);
  }
}

static inline const char *tr_describe(const tr_problem_t *p) {
  static char buf[256];
  snprintf(buf, sizeof buf, "ep %d tp %d E %d K %d H %d F %d %s %s T [%d %d %d %d ...]",
           p->cfg.ep, p->cfg.tp, p->cfg.num_experts, p->cfg.topk, p->cfg.hidden, p->cfg.ffn,
           comet_activation_name(p->cfg.activation), comet_dtype_name(p->cfg.dtype), p->T[0],
           p->W > 1 ? p->T[1] : -1, p->W > 2 ? p->T[2] : -1, p->W > 3 ? p->T[3] : -1);
  return buf;
}

/* Error of got against want (n doubles): ||got - want|| / ||want|| and max |got - want|. */
typedef struct tr_err { double rel, max_abs, max_want; } tr_err_t;
static inline void tr_err_add(tr_err_t *e, double *num, double *den, const double *got,
                              const double *want, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    double d = fabs(got[i] - want[i]);
    if (isnan(d) || d > e->max_abs) e->max_abs = d; /* a NaN sticks */
    if (fabs(want[i]) > e->max_want) e->max_want = fabs(want[i]);
    *num += d * d;
    *den += want[i] * want[i];
  }
}
static inline void tr_err_finish(tr_err_t *e, double num, double den) {
  e->rel = den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif /* COMET_TEST_REF_COMMON_H */
