/* SPDX-License-Identifier: Apache-2.0 */
/* ref_layer0.c — layer0 on every rank q: gather the rows the plan sends to
 * q (A_q), z = A_q @ w1[e]^T per local expert, h = act(z). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref_internal.h"

/* h row from z row: swiglu reads gate column j and up column F + j. */
static void activate(const ref_ctx_t *c, const double *z, double *h) {
  const int F = c->F;
  for (int j = 0; j < F; ++j) {
    double v;
    switch (c->act) {
      case COMET_ACT_SWIGLU: v = z[j] * ref_sigmoid(z[j]) * z[F + j]; break;
      case COMET_ACT_GELU: v = ref_gelu(z[j]); break;
      default: v = z[j]; break;
    }
    h[j] = ref_dt(c, v);
  }
}

comet_status_t comet_refi_layer0(ref_ctx_t *c) {
  const int H = c->H, N1 = c->N1, F = c->F;
  COMET_CHECK(comet_refi_alloc(c, &c->A, REF_PER_ROW, H));
  COMET_CHECK(comet_refi_alloc(c, &c->z, REF_PER_ROW, N1));
  COMET_CHECK(comet_refi_alloc(c, &c->h, REF_PER_ROW, F));
  double *wt = malloc(sizeof(double) * (size_t)N1 * (size_t)H); /* one expert's w1^T */
  if (!wt) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "%s: host allocation failed", c->op);
  for (int q = 0; q < c->W; ++q) {
    const comet_rank_plan_t *rp = &c->plan.ranks[q];
    for (int64_t r = 0; r < rp->rows; ++r)
      memcpy(c->A[q] + r * H, c->x[rp->row_src[r]] + (int64_t)rp->row_token[r] * H,
             sizeof(double) * (size_t)H);
    for (int el = 0; el < c->El; ++el) {
      const int64_t r0 = rp->expert_offset[el], r1 = rp->expert_offset[el + 1];
      if (r1 == r0) continue;
      comet_refi_transpose(c->w1[q] + (int64_t)el * N1 * H, N1, H, wt);
      comet_refi_gemm(r1 - r0, N1, H, c->A[q] + r0 * H, H, 1, wt, N1, c->z[q] + r0 * N1, N1,
                      c->emulate);
    }
    for (int64_t r = 0; r < rp->rows; ++r) activate(c, c->z[q] + r * N1, c->h[q] + r * F);
  }
  free(wt);
  return COMET_OK;
}
