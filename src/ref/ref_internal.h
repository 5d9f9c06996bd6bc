/* SPDX-License-Identifier: Apache-2.0 */
/* ref_internal.h — what the reference's files share: the simulated world
 * (inputs converted to double, per-rank intermediate tensors), the rounding
 * points, the one inner loop (axpy) every GEMM and reduction goes through,
 * and the activations with their derivatives.
 *
 * One code path serves both precisions: values are doubles; with
 * `emulate` set, ref_f32 / ref_dt round them to fp32 / dtype at the points
 * ref.h lists, otherwise they are identities (the fp64 path). Every product
 * formed in the emulated path is of a dtype value and a dtype or fp32 value,
 * so it is exact in double and "round(acc + a*b) to fp32" is what one fp32
 * fused multiply-add gives.
 *
 * Functions with linkage are named comet_refi_* (reference, internal) so the
 * static library exports nothing a user's names could clash with. */
#ifndef COMET_REF_INTERNAL_H
#define COMET_REF_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "convert.h"
#include "plan.h"
#include "ref.h"

typedef struct ref_ctx {
  const char *op;           /* public function name, for messages */
  comet_plan_dims_t d;
  int W, El, K, H;
  int F;                    /* F/tp: this rank's shard of the FFN width */
  int N1;                   /* w1 rows per local expert (2F/tp for swiglu) */
  comet_activation_t act;
  int emulate;              /* 1: dtype path; 0: fp64 */
  comet_dtype_t dtype;
  comet_plan_t plan;
  int *T;                   /* [W] tokens per source rank */
  const int32_t **ids;      /* [W] borrowed topk_ids */
  /* [W] inputs as double (NULL where an op does not read them) */
  double **x, **tw, **w1, **w2;
  /* [W] per receiving rank q, rows in plan order */
  double **A;               /* [rows, H]   dispatched token rows */
  double **z;               /* [rows, N1]  fc1 pre-activation (fp32 accumulators) */
  double **h;               /* [rows, F]   activation output */
  double **y;               /* [rows, H]   fc2 output (partial over tp) */
} ref_ctx_t;

/* Which inputs an op reads. */
enum { REF_X = 1, REF_IDS = 2, REF_TW = 4, REF_W1 = 8, REF_W2 = 16, REF_ALL = 31 };

/* Element kinds of caller arrays. */
typedef enum { REF_KIND_DTYPE, REF_KIND_F32, REF_KIND_F64 } ref_kind_t;

/* What one rank's array is counted in: rows it receives, tokens it holds,
 * or one per rank (weights). */
typedef enum { REF_PER_ROW, REF_PER_TOKEN, REF_PER_RANK } ref_unit_t;

static inline int64_t ref_count(const ref_ctx_t *c, ref_unit_t u, int r, int64_t per) {
  return per * (u == REF_PER_ROW ? c->plan.ranks[r].rows : u == REF_PER_TOKEN ? c->T[r] : 1);
}

/* ---- ref_ctx.c ---- */
/* Validates cfg and the inputs of ranks that `need` names, builds the plan
 * and converts those inputs to double. ranks is a comet_ref_rank_t array if
 * emulate, else a comet_ref_rank_f64_t array. On failure nothing is left to
 * free; on success free with ref_ctx_free. */
comet_status_t comet_refi_ctx_open(ref_ctx_t *c, const char *op, const comet_layer_config_t *cfg,
                            int emulate, const void *ranks, int need);
void comet_refi_ctx_free(ref_ctx_t *c);
/* One zeroed array of ref_count(c, u, r, per) doubles per rank r. */
comet_status_t comet_refi_alloc(ref_ctx_t *c, double ***arr, ref_unit_t u, int64_t per);
void comet_refi_free(const ref_ctx_t *c, double ***arr);
/* Converts n elements between a caller array and doubles. */
void comet_refi_load(const ref_ctx_t *c, double *dst, const void *src, size_t n, ref_kind_t kind);
void comet_refi_store(const ref_ctx_t *c, void *dst, const double *src, size_t n, ref_kind_t kind);

/* A caller's table of W per-rank pointers: the table must be non-NULL unless
 * optional, and entry r non-NULL wherever rank r has elements. Sets st and
 * jumps to label on failure. */
#define REF_CHECK_TABLE(st, label, c, table, name, unit, per, optional)                            \
  do {                                                                                             \
    if (!(table)) {                                                                                \
      if (optional) break;                                                                         \
      (st) = comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: %s is NULL", (c)->op, (name));       \
      goto label;                                                                                  \
    }                                                                                              \
    for (int r_ = 0; r_ < (c)->W; ++r_) {                                                          \
      int64_t n_ = ref_count((c), (unit), r_, (per));                                              \
      if (n_ > 0 && !(table)[r_]) {                                                                \
        (st) = comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: %s[%d] is NULL (rank %d has "      \
                               "%lld elements of it)", (c)->op, (name), r_, r_, (long long)n_);    \
        goto label;                                                                                \
      }                                                                                            \
    }                                                                                              \
  } while (0)

/* Copies between a caller's table (if non-NULL) and per-rank doubles. */
#define REF_STORE_TABLE(c, table, src, unit, per, kind)                                            \
  do {                                                                                             \
    if (table)                                                                                     \
      for (int r_ = 0; r_ < (c)->W; ++r_) {                                                        \
        int64_t n_ = ref_count((c), (unit), r_, (per));                                            \
        if (n_ > 0) comet_refi_store((c), (table)[r_], (src)[r_], (size_t)n_, (kind));             \
      }                                                                                            \
  } while (0)
#define REF_LOAD_TABLE(c, dst, table, unit, per, kind)                                             \
  do {                                                                                             \
    for (int r_ = 0; r_ < (c)->W; ++r_) {                                                          \
      int64_t n_ = ref_count((c), (unit), r_, (per));                                              \
      if (n_ > 0) comet_refi_load((c), (dst)[r_], (table)[r_], (size_t)n_, (kind));                \
    }                                                                                              \
  } while (0)

/* ---- ref_math.c ---- */
/* C[M,N] = A[M,K] @ B[K,N]: A's (i,k) at A[i*ars + k*acs], B row-major with
 * row stride ldb, C row-major with row stride ldc (overwritten; zeros when
 * K = 0). Sums over k ascending, rounded to fp32 at each step if fp32. */
void comet_refi_gemm(int64_t M, int64_t N, int64_t K, const double *A, int64_t ars, int64_t acs,
              const double *B, int64_t ldb, double *C, int64_t ldc, int fp32);
/* dst[cols, rows] = src[rows, cols]^T */
void comet_refi_transpose(const double *src, int64_t rows, int64_t cols, double *dst);

/* ---- stages (ref_layer0.c, ref_layer1.c, ref_backward.c) ---- */
/* A, z, h of every rank from x, topk_ids, w1. */
comet_status_t comet_refi_layer0(ref_ctx_t *c);
/* y of every rank from h and w2. */
comet_status_t comet_refi_layer1_gemm(ref_ctx_t *c);
/* out[s][t] = sum_k sum_tp (w[t,k] or 1) * rows_q[dest_row]: the combine of
 * y (weighted) in the forward and of dA (unweighted) in the backward. */
void comet_refi_combine(const ref_ctx_t *c, double *const *rows, int weighted, double *const *out);
/* Gradients (each table may be NULL) from the forward state and dout. */
comet_status_t comet_refi_backward(ref_ctx_t *c, double *const *dout, double *const *dx,
                            double *const *dw1, double *const *dw2, double *const *dtw);

/* ---- rounding points and the inner loop ---- */
static inline double ref_f32(const ref_ctx_t *c, double v) {
  return c->emulate ? (double)(float)v : v;
}
/* To fp32 first (the GPU computes the value in fp32), then to dtype. */
static inline double ref_dt(const ref_ctx_t *c, double v) {
  return c->emulate ? (double)comet_round_f32((float)v, c->dtype) : v;
}
static inline void ref_dt_array(const ref_ctx_t *c, double *v, int64_t n) {
  if (c->emulate)
    for (int64_t i = 0; i < n; ++i) v[i] = ref_dt(c, v[i]);
}
/* y += a*x, each element rounded to fp32 if fp32. */
static inline void ref_axpy(double *restrict y, double a, const double *restrict x, int64_t n,
                            int fp32) {
  if (fp32)
    for (int64_t j = 0; j < n; ++j) y[j] = (double)(float)(y[j] + a * x[j]);
  else
    for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

/* ---- activations (gelu: tanh form) ---- */
static inline double ref_sigmoid(double g) {
  if (g >= 0) return 1.0 / (1.0 + exp(-g));
  double e = exp(g);
  return e / (1.0 + e);
}
#define REF_GELU_C 0.7978845608028654 /* sqrt(2/pi) */
static inline double ref_gelu(double v) {
  return 0.5 * v * (1.0 + tanh(REF_GELU_C * (v + 0.044715 * v * v * v)));
}
static inline double ref_gelu_grad(double v) {
  double th = tanh(REF_GELU_C * (v + 0.044715 * v * v * v));
  return 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * REF_GELU_C * (1.0 + 3 * 0.044715 * v * v);
}

#endif /* COMET_REF_INTERNAL_H */
