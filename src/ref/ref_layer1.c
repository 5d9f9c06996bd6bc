/* SPDX-License-Identifier: Apache-2.0 */
/* ref_layer1.c — layer1: y_q = h_q @ w2[e]^T on every rank, and the combine
 * on the tokens' home ranks (also the backward's combine of dA into dx). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref_internal.h"

comet_status_t comet_refi_layer1_gemm(ref_ctx_t *c) {
  const int H = c->H, F = c->F;
  COMET_CHECK(comet_refi_alloc(c, &c->y, REF_PER_ROW, H));
  double *wt = malloc(sizeof(double) * (size_t)H * (size_t)F); /* one expert's w2^T */
  if (!wt) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "%s: host allocation failed", c->op);
  for (int q = 0; q < c->W; ++q) {
    const comet_rank_plan_t *rp = &c->plan.ranks[q];
    for (int el = 0; el < c->El; ++el) {
      const int64_t r0 = rp->expert_offset[el], r1 = rp->expert_offset[el + 1];
      if (r1 == r0) continue;
      comet_refi_transpose(c->w2[q] + (int64_t)el * H * F, H, F, wt);
      comet_refi_gemm(r1 - r0, H, F, c->h[q] + r0 * F, F, 1, wt, H, c->y[q] + r0 * H, H,
                      c->emulate);
    }
    ref_dt_array(c, c->y[q], rp->rows * H); /* y travels home as dtype */
  }
  free(wt);
  return COMET_OK;
}

void comet_refi_combine(const ref_ctx_t *c, double *const *rows, int weighted, double *const *out) {
  const int H = c->H, K = c->K, tp = c->d.tp;
  for (int s = 0; s < c->W; ++s) {
    const int32_t *dest = c->plan.ranks[s].dest_row;
    for (int t = 0; t < c->T[s]; ++t) {
      double *o = out[s] + (int64_t)t * H;
      memset(o, 0, sizeof(double) * (size_t)H);
      for (int k = 0; k < K; ++k) {
        const int64_t tk = (int64_t)t * K + k;
        const int e = c->ids[s][tk];
        if (e < 0) continue; /* dropped */
        const int g = e / c->El;
        const double w = weighted ? c->tw[s][tk] : 1.0;
        for (int i = 0; i < tp; ++i)
          ref_axpy(o, w, rows[g * tp + i] + (int64_t)dest[tk * tp + i] * H, H, c->emulate);
      }
      ref_dt_array(c, o, H);
    }
  }
}
