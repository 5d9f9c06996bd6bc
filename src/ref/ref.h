/* SPDX-License-Identifier: Apache-2.0 */
/* ref.h — the CPU reference of the whole MoE layer: every rank of an
 * EP x TP world simulated in one process. It is the oracle the GPU tests
 * compare against, so it follows DESIGN.md section 1 literally and fixes
 * every rounding point (below).
 *
 * Two precisions, one code path (computation is in double inside):
 *  - dtype (comet_ref_forward, ...): inputs and outputs in cfg->dtype
 *    (bf16/fp16 bits), topk weights fp32. GEMMs accumulate in fp32 (each
 *    multiply-add rounded to fp32, k ascending, as one fp32 accumulator
 *    would); a value is rounded to dtype where it would be stored or sent
 *    as dtype on the GPU:
 *      forward : z = A @ w1^T  fp32 accumulators (never stored)
 *                h = act(z)    evaluated from fp32 z, rounded to fp32, then once to dtype
 *                y = h @ w2^T  fp32 accumulation, rounded to dtype (it travels home)
 *                out = sum_k sum_tp w * y   fp32 accumulation (k, then tp, ascending),
 *                              rounded once to dtype
 *      backward: dy = w * dout            rounded to dtype (dispatched to the experts)
 *                dh = dy @ w2             fp32, kept fp32 (fused with the activation)
 *                da = act'(z) . dh        from the fp32 z (recomputed, not a stored dtype
 *                                         copy), rounded to dtype (a GEMM operand)
 *                dw2 = dy^T h, dw1 = da^T A   fp32 over rows in plan order, rounded once
 *                dA = da @ w1             fp32, rounded to dtype (it travels home)
 *                dx = sum_k sum_tp dA     fp32 (k, then tp, ascending), rounded once
 *                dtopk_w = sum_tp <dout, y>   fp32 (tp, then h, ascending), stored fp32
 *  - fp64 (*_f64): everything double, no rounding at all (for finite
 *    differences and as the exact value the dtype path is measured against).
 *
 * Layout (comet.h): world W = ep*tp, rank r = ep_rank*tp + tp_rank; per rank
 * w1 [E/ep, w1_rows, H] (swiglu: gate rows then up rows, w1_rows = 2F/tp;
 * else F/tp), w2 [E/ep, H, F/tp]. Rows on receiving rank q are in the order
 * of the routing plan (plan.h); comet_ref_plan gives that plan.
 *
 * cfg: hidden, ffn, num_experts, topk, ep, tp, dtype, activation are used;
 * the multiple-of-8 rules of the GPU path are not required here (tiny shapes
 * are allowed for finite differences). max_tokens_per_rank and
 * max_rows_per_rank limit the routing as on the GPU when max_tokens_per_rank
 * > 0; 0 means unlimited. The _f64 functions ignore cfg->dtype.
 *
 * Arrays of per-rank pointers have W entries (declare input tables as
 * `const uint16_t *h[W]`: C converts that, not `uint16_t *h[W]`, to
 * `const uint16_t *const *`). A rank with no tokens may pass
 * NULL for its token arrays; a rank that receives no rows may pass NULL h/y.
 * Errors: INVALID_ARGUMENT naming the argument, ROUTING from comet_plan_build,
 * OUT_OF_MEMORY. Outputs are written only when the call succeeds. */
#ifndef COMET_REF_H
#define COMET_REF_H

#include <stdint.h>

#include "comet.h"
#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One rank's inputs, dtype bits (uint16) and fp32 weights. Each op names the
 * fields it reads; the others may be NULL. */
typedef struct comet_ref_rank {
  int num_tokens;             /* T_s >= 0 */
  const uint16_t *x;          /* [T_s, H] */
  const int32_t *topk_ids;    /* [T_s, K], -1 = dropped */
  const float *topk_weights;  /* [T_s, K] */
  const uint16_t *w1;         /* [E/ep, w1_rows, H] */
  const uint16_t *w2;         /* [E/ep, H, F/tp] */
} comet_ref_rank_t;

/* The same in double, for the fp64 path. */
typedef struct comet_ref_rank_f64 {
  int num_tokens;
  const double *x;
  const int32_t *topk_ids;
  const double *topk_weights;
  const double *w1;
  const double *w2;
} comet_ref_rank_f64_t;

/* Backward outputs, W entries each, shaped like the input they belong to;
 * any of the four may be NULL to skip it. */
typedef struct comet_ref_grads {
  uint16_t *const *dx;           /* [T_s, H] */
  uint16_t *const *dw1;          /* like w1 */
  uint16_t *const *dw2;          /* like w2 */
  float *const *dtopk_weights;   /* [T_s, K]; 0 for dropped slots */
} comet_ref_grads_t;

typedef struct comet_ref_grads_f64 {
  double *const *dx;
  double *const *dw1;
  double *const *dw2;
  double *const *dtopk_weights;
} comet_ref_grads_f64_t;

/* The routing plan the reference uses (reads num_tokens and topk_ids), so a
 * caller can size h and y (plan->ranks[q].rows rows). Free with
 * comet_plan_free. */
comet_status_t comet_ref_plan(comet_plan_t *plan, const comet_layer_config_t *cfg,
                              const comet_ref_rank_t *ranks);

/* Layer0 on every rank q: h[q] = act(A_q @ w1^T), [rows_q, F/tp] dtype.
 * Reads x, topk_ids, w1. */
comet_status_t comet_ref_layer0(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                uint16_t *const *h);

/* Layer1 from given h (e.g. the GPU's): y_q = h_q @ w2^T, combined home into
 * out[s] [T_s, H]. y may be NULL (or y[q] NULL) if not wanted. Reads
 * topk_ids, topk_weights, w2. */
comet_status_t comet_ref_layer1(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                const uint16_t *const *h, uint16_t *const *out,
                                uint16_t *const *y);

/* Whole forward: out[s] [T_s, H]; h and y optional as above. Reads all. */
comet_status_t comet_ref_forward(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                 uint16_t *const *out, uint16_t *const *h, uint16_t *const *y);

/* Whole backward of out given dout[s] [T_s, H]. Reads all. */
comet_status_t comet_ref_backward(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                  const uint16_t *const *dout, const comet_ref_grads_t *grads);

/* fp64 forward and backward, no roundings. */
comet_status_t comet_ref_forward_f64(const comet_layer_config_t *cfg,
                                     const comet_ref_rank_f64_t *ranks, double *const *out);
comet_status_t comet_ref_backward_f64(const comet_layer_config_t *cfg,
                                      const comet_ref_rank_f64_t *ranks,
                                      const double *const *dout,
                                      const comet_ref_grads_f64_t *grads);

#ifdef __cplusplus
}
#endif
#endif /* COMET_REF_H */
