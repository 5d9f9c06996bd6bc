/* SPDX-License-Identifier: Apache-2.0 */
/* backward.h — the composed backward's small kernels (backward.cu), on the
 * layer's view after the backward's routing plan; each does nothing when
 * the plan's status is not OK (but topk grad, which then writes NaN). */
#ifndef COMET_KERNELS_BACKWARD_H
#define COMET_KERNELS_BACKWARD_H

#include <stdint.h>

#include "comet.h"
#include "kernels/comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* w [T, K] of this rank's slots into the receivers' row_weight, then
 * comet's barrier (every rank's weights are in). */
comet_status_t comet_bw_row_weights_launch(const comet_comm_view_t *v, int T, const float *w,
                                           struct CUstream_st *s);
/* comet's barrier `index` (COMET_BAR_BACKWARD*) of the call (no-op at W = 1);
 * each index once per epoch. */
comet_status_t comet_bw_barrier_launch(const comet_comm_view_t *v, int index,
                                       struct CUstream_st *s);
/* h [rows, F] = act(z), z [rows, N1] (N1 = 2F for SwiGLU). */
comet_status_t comet_bw_activation_launch(const comet_comm_view_t *v, const void *z, void *h,
                                          int F, int act, struct CUstream_st *s);
/* D[r] *= row_weight[r], in place. */
comet_status_t comet_bw_scale_rows_launch(const comet_comm_view_t *v, void *D,
                                          struct CUstream_st *s);
/* From z [rows, N1] and dh_u [rows, F]: h [rows, F] = act(z), the
 * window's row_dot[r] = <dh_u[r], h[r]> (fp32), da [rows, N1] = act'(z) .
 * (row_weight[r] * dh_u[r]). */
comet_status_t comet_bw_act_backward_launch(const comet_comm_view_t *v, const void *z,
                                            const void *dh, void *da, void *h, int F, int act,
                                            struct CUstream_st *s);
/* dtw [T, K] = the tp sum of row_dot at each slot's rows (0 dropped). */
comet_status_t comet_bw_topk_grad_launch(const comet_comm_view_t *v, int T, float *dtw,
                                         struct CUstream_st *s);
/* p[0..n) = x (a grid within the view's SM budget). */
comet_status_t comet_bw_fill_launch(const comet_comm_view_t *v, float *p, int64_t n, float x,
                                    struct CUstream_st *s);

#ifdef __cplusplus
}
#endif
#endif
