/* SPDX-License-Identifier: Apache-2.0 */
/* ref_backward.c — gradients of the whole layer from the forward state
 * (A, z, h, y of every rank) and dout. For row r on rank q holding (s, t, k):
 *   dy = w[t,k] * dout_s[t]            (the combine's gradient is a dispatch)
 *   dh = dy @ w2_e,  dw2_e += dy^T h,  dtopk_w[s,t,k] = sum_tp <dout_s[t], y_q[r]>
 *   da = act'(z) . dh                  (swiglu: [dh*up*silu'(gate), dh*silu(gate)])
 *   dw1_e += da^T A,  dA = da @ w1_e,  dx_s[t] = sum_k sum_tp dA (a combine). */
#include <stdlib.h>

#include "error.h"
#include "ref_internal.h"

/* da row from the dh and z rows. */
static void activate_backward(const ref_ctx_t *c, const double *z, const double *dh, double *da) {
  const int F = c->F;
  for (int j = 0; j < F; ++j) {
    switch (c->act) {
      case COMET_ACT_SWIGLU: {
        const double g = z[j], u = z[F + j], sg = ref_sigmoid(g);
        da[j] = ref_dt(c, dh[j] * u * sg * (1.0 + g * (1.0 - sg)));
        da[F + j] = ref_dt(c, dh[j] * g * sg);
        break;
      }
      case COMET_ACT_GELU: da[j] = ref_dt(c, dh[j] * ref_gelu_grad(z[j])); break;
      default: da[j] = ref_dt(c, dh[j]); break;
    }
  }
}

/* dtopk_w[s][t,k] = sum over the tp shards of <dout_s[t], y[dest_row]>. */
static void topk_weights_grad(const ref_ctx_t *c, double *const *dout, double *const *dtw) {
  const int H = c->H, K = c->K, tp = c->d.tp;
  for (int s = 0; s < c->W; ++s) {
    const int32_t *dest = c->plan.ranks[s].dest_row;
    for (int64_t tk = 0; tk < (int64_t)c->T[s] * K; ++tk) {
      const int e = c->ids[s][tk];
      double acc = 0;
      if (e >= 0) {
        const double *d = dout[s] + (tk / K) * H;
        for (int i = 0; i < tp; ++i) {
          const int q = (e / c->El) * tp + i;
          const double *y = c->y[q] + (int64_t)dest[tk * tp + i] * H;
          for (int j = 0; j < H; ++j) acc = ref_f32(c, acc + d[j] * y[j]);
        }
      }
      dtw[s][tk] = acc;
    }
  }
}

comet_status_t comet_refi_backward(ref_ctx_t *c, double *const *dout, double *const *dx,
                            double *const *dw1, double *const *dw2, double *const *dtw) {
  const int H = c->H, F = c->F, N1 = c->N1, fp32 = c->emulate;
  comet_status_t st = COMET_OK;
  double **dy = NULL, **dh = NULL, **da = NULL, **dA = NULL;
  if (dtw) topk_weights_grad(c, dout, dtw);
  COMET_CHECK_GOTO(comet_refi_alloc(c, &dy, REF_PER_ROW, H), st, done);
  COMET_CHECK_GOTO(comet_refi_alloc(c, &dh, REF_PER_ROW, F), st, done);
  COMET_CHECK_GOTO(comet_refi_alloc(c, &da, REF_PER_ROW, N1), st, done);
  if (dx) COMET_CHECK_GOTO(comet_refi_alloc(c, &dA, REF_PER_ROW, H), st, done);
  for (int q = 0; q < c->W; ++q) {
    const comet_rank_plan_t *rp = &c->plan.ranks[q];
    for (int64_t r = 0; r < rp->rows; ++r) {
      const int s = rp->row_src[r];
      const int64_t tk = (int64_t)rp->row_token[r] * c->K + rp->row_slot[r];
      const double w = c->tw[s][tk], *d = dout[s] + (int64_t)rp->row_token[r] * H;
      for (int j = 0; j < H; ++j) dy[q][r * H + j] = ref_dt(c, w * d[j]);
    }
    for (int el = 0; el < c->El; ++el) {
      const int64_t r0 = rp->expert_offset[el], M = rp->expert_offset[el + 1] - r0;
      const double *w1 = c->w1[q] + (int64_t)el * N1 * H, *w2 = c->w2[q] + (int64_t)el * H * F;
      /* An expert with no rows still gets its (zero) weight gradients. */
      if (dw2) {
        double *g2 = dw2[q] + (int64_t)el * H * F;
        comet_refi_gemm(H, F, M, dy[q] + r0 * H, 1, H, c->h[q] + r0 * F, F, g2, F, fp32);
        ref_dt_array(c, g2, (int64_t)H * F);
      }
      if (!dw1 && !dx) continue;
      comet_refi_gemm(M, F, H, dy[q] + r0 * H, H, 1, w2, F, dh[q] + r0 * F, F, fp32);
      for (int64_t r = r0; r < r0 + M; ++r)
        activate_backward(c, c->z[q] + r * N1, dh[q] + r * F, da[q] + r * N1);
      if (dw1) {
        double *g1 = dw1[q] + (int64_t)el * N1 * H;
        comet_refi_gemm(N1, H, M, da[q] + r0 * N1, 1, N1, c->A[q] + r0 * H, H, g1, H, fp32);
        ref_dt_array(c, g1, (int64_t)N1 * H);
      }
      if (dx) {
        comet_refi_gemm(M, H, N1, da[q] + r0 * N1, N1, 1, w1, H, dA[q] + r0 * H, H, fp32);
        ref_dt_array(c, dA[q] + r0 * H, M * H); /* dA travels home as dtype */
      }
    }
  }
  if (dx) comet_refi_combine(c, dA, 0, dx);
done:
  comet_refi_free(c, &dy);
  comet_refi_free(c, &dh);
  comet_refi_free(c, &da);
  comet_refi_free(c, &dA);
  return st;
}
