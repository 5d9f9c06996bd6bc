/* SPDX-License-Identifier: Apache-2.0 */
/* baseline_kernels.h — the baseline's small CUDA kernels (routing counts,
 * permutation, block copies, activation, weighted top-k sum; for the
 * backward: scaled permutation, activation gradient, row dots), each behind a
 * C launcher that takes raw pointers and a stream and returns the launch's
 * cudaError_t. Element type: bf16 or fp16 (is_fp16). */
#ifndef COMET_BASELINE_KERNELS_H
#define COMET_BASELINE_KERNELS_H

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Slots (t, k) are counted in chunks of this many (one CTA each). */
enum { COMET_BL_CHUNK = 256 };

/* Layout of the per-rank status/count vector that the ranks all-gather:
 * [0, E) rows per expert, then: */
enum {
  COMET_BL_BAD_TOKENS = 0, /* + E: tokens with an id out of range or repeated */
  COMET_BL_FIRST_BAD = 1,  /* + E: INT32_MAX - (first bad token), 0 if none */
  COMET_BL_ARG_ERROR = 2,  /* + E: 1 if this rank's call arguments were refused */
  COMET_BL_SAVED = 3,      /* + E: 1 if this rank's backward uses its saved forward */
  COMET_BL_STATUS_SLOTS = 4
};

/* Counts and ranks the slots: counts[0..E) (rows per expert), base[E]
 * (exclusive prefix: first row of expert e in the send buffer), pos[T*K]
 * (row of slot (t,k) in the send buffer, -1 if dropped) and the bad-token
 * slots. Rows go in expert order, then (t, k) order (deterministic).
 * Scratch: chunk [ceil(T*K/CHUNK) * E], slot_rank [T*K]. counts must hold
 * E + COMET_BL_STATUS_SLOTS ints and is zeroed here. */
cudaError_t comet_bl_route(const int32_t *ids, int T, int K, int E, int32_t *counts,
                           int32_t *base, int32_t *pos, int32_t *chunk, int32_t *slot_rank,
                           cudaStream_t stream);

/* send[pos[t*K+k]] = x[t] for every routed slot. Rows of H elements. */
cudaError_t comet_bl_permute(const void *x, const int32_t *pos, int T, int K, int H, void *send,
                             cudaStream_t stream);

/* dst rows [tab[3b], tab[3b]+tab[3b+2]) = src rows [tab[3b+1], ...): nb blocks
 * sorted by dst start, none empty, covering dst rows [0, total_rows). */
cudaError_t comet_bl_copy_blocks(void *dst, const void *src, const int32_t *tab, int nb,
                                 int64_t total_rows, int H, cudaStream_t stream);

/* h[m, j] = act(g[m, :]) for m < M, j < Fl; g has w1_rows = 2Fl (swiglu:
 * gate then up) or Fl columns. act: comet_activation_t. */
cudaError_t comet_bl_activation(const void *g, void *h, int64_t M, int Fl, int act, int is_fp16,
                                cudaStream_t stream);

/* out[t] = sum_k w[t,k] * y[pos[t*K+k]] (fp32, k ascending; dropped slots
 * skipped; a token with none gets zeros). w NULL: unit weights (the
 * backward's dx, the gradient of the dispatch). */
cudaError_t comet_bl_combine(const void *y, const int32_t *pos, const float *w, int T, int K,
                             int H, void *out, int is_fp16, cudaStream_t stream);

/* send[pos[t*K+k]] = w[t,k] * d[t] rounded to dtype, for every routed slot
 * (the backward's dy: the gradient of the weighted top-k sum, per row). */
cudaError_t comet_bl_permute_scaled(const void *d, const int32_t *pos, const float *w, int T,
                                    int K, int H, void *send, int is_fp16, cudaStream_t stream);

/* The activation's gradient in place: z [M, w1_rows] (fc1's output) becomes
 * da = act'(z) . dh, dh [M, Fl]; swiglu: gate columns dh*up*silu'(gate),
 * up columns dh*silu(gate); gelu (tanh form): dh*gelu'(z). fp32 math from
 * the dtype values, rounded once (src/kernels/act.cuh, src/ref). act must
 * not be COMET_ACT_NONE (da = dh then). */
cudaError_t comet_bl_act_backward(void *z, const void *dh, int64_t M, int Fl, int act, int is_fp16,
                                  cudaStream_t stream);

/* dot[t*K+k] = <d[t], y[pos[t*K+k]]> in fp32 (h ascending per lane, then a
 * warp tree), 0 for a dropped slot (the backward's d topk_weights). */
cudaError_t comet_bl_row_dots(const void *d, const void *y, const int32_t *pos, int T, int K,
                              int H, float *dot, int is_fp16, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
