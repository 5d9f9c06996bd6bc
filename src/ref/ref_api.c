/* SPDX-License-Identifier: Apache-2.0 */
/* ref_api.c — the reference's entry points (ref.h): check the caller's
 * tables, run the stages on doubles, store the results in the caller's
 * precision. */
#include <string.h>

#include "error.h"
#include "ref_internal.h"

comet_status_t comet_ref_plan(comet_plan_t *plan, const comet_layer_config_t *cfg,
                              const comet_ref_rank_t *ranks) {
  COMET_ARG(plan != NULL, "comet_ref_plan: plan is NULL");
  memset(plan, 0, sizeof *plan);
  ref_ctx_t c;
  COMET_CHECK(comet_refi_ctx_open(&c, "comet_ref_plan", cfg, 1, ranks, REF_IDS));
  *plan = c.plan; /* moved out */
  memset(&c.plan, 0, sizeof c.plan);
  comet_refi_ctx_free(&c);
  return COMET_OK;
}

comet_status_t comet_ref_layer0(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                uint16_t *const *h) {
  ref_ctx_t c;
  comet_status_t st = COMET_OK;
  COMET_CHECK(comet_refi_ctx_open(&c, "comet_ref_layer0", cfg, 1, ranks, REF_X | REF_IDS | REF_W1));
  REF_CHECK_TABLE(st, done, &c, h, "h", REF_PER_ROW, c.F, 0);
  COMET_CHECK_GOTO(comet_refi_layer0(&c), st, done);
  REF_STORE_TABLE(&c, h, c.h, REF_PER_ROW, c.F, REF_KIND_DTYPE);
done:
  comet_refi_ctx_free(&c);
  return st;
}

comet_status_t comet_ref_layer1(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                const uint16_t *const *h, uint16_t *const *out,
                                uint16_t *const *y) {
  ref_ctx_t c;
  comet_status_t st = COMET_OK;
  double **o = NULL;
  COMET_CHECK(
      comet_refi_ctx_open(&c, "comet_ref_layer1", cfg, 1, ranks, REF_IDS | REF_TW | REF_W2));
  REF_CHECK_TABLE(st, done, &c, h, "h", REF_PER_ROW, c.F, 0);
  REF_CHECK_TABLE(st, done, &c, out, "out", REF_PER_TOKEN, c.H, 0);
  REF_CHECK_TABLE(st, done, &c, y, "y", REF_PER_ROW, c.H, 1);
  COMET_CHECK_GOTO(comet_refi_alloc(&c, &c.h, REF_PER_ROW, c.F), st, done);
  REF_LOAD_TABLE(&c, c.h, h, REF_PER_ROW, c.F, REF_KIND_DTYPE);
  COMET_CHECK_GOTO(comet_refi_layer1_gemm(&c), st, done);
  COMET_CHECK_GOTO(comet_refi_alloc(&c, &o, REF_PER_TOKEN, c.H), st, done);
  comet_refi_combine(&c, c.y, 1, o);
  REF_STORE_TABLE(&c, out, o, REF_PER_TOKEN, c.H, REF_KIND_DTYPE);
  REF_STORE_TABLE(&c, y, c.y, REF_PER_ROW, c.H, REF_KIND_DTYPE);
done:
  comet_refi_free(&c, &o);
  comet_refi_ctx_free(&c);
  return st;
}

/* The forward of both precisions, into per-rank doubles *o [T_s, H]. */
static comet_status_t forward(ref_ctx_t *c, double ***o) {
  COMET_CHECK(comet_refi_layer0(c));
  COMET_CHECK(comet_refi_layer1_gemm(c));
  COMET_CHECK(comet_refi_alloc(c, o, REF_PER_TOKEN, c->H));
  comet_refi_combine(c, c->y, 1, *o);
  return COMET_OK;
}

comet_status_t comet_ref_forward(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                 uint16_t *const *out, uint16_t *const *h, uint16_t *const *y) {
  ref_ctx_t c;
  comet_status_t st = COMET_OK;
  double **o = NULL;
  COMET_CHECK(comet_refi_ctx_open(&c, "comet_ref_forward", cfg, 1, ranks, REF_ALL));
  REF_CHECK_TABLE(st, done, &c, out, "out", REF_PER_TOKEN, c.H, 0);
  REF_CHECK_TABLE(st, done, &c, h, "h", REF_PER_ROW, c.F, 1);
  REF_CHECK_TABLE(st, done, &c, y, "y", REF_PER_ROW, c.H, 1);
  COMET_CHECK_GOTO(forward(&c, &o), st, done);
  REF_STORE_TABLE(&c, out, o, REF_PER_TOKEN, c.H, REF_KIND_DTYPE);
  REF_STORE_TABLE(&c, h, c.h, REF_PER_ROW, c.F, REF_KIND_DTYPE);
  REF_STORE_TABLE(&c, y, c.y, REF_PER_ROW, c.H, REF_KIND_DTYPE);
done:
  comet_refi_free(&c, &o);
  comet_refi_ctx_free(&c);
  return st;
}

comet_status_t comet_ref_forward_f64(const comet_layer_config_t *cfg,
                                     const comet_ref_rank_f64_t *ranks, double *const *out) {
  ref_ctx_t c;
  comet_status_t st = COMET_OK;
  double **o = NULL;
  COMET_CHECK(comet_refi_ctx_open(&c, "comet_ref_forward_f64", cfg, 0, ranks, REF_ALL));
  REF_CHECK_TABLE(st, done, &c, out, "out", REF_PER_TOKEN, c.H, 0);
  COMET_CHECK_GOTO(forward(&c, &o), st, done);
  REF_STORE_TABLE(&c, out, o, REF_PER_TOKEN, c.H, REF_KIND_F64);
done:
  comet_refi_free(&c, &o);
  comet_refi_ctx_free(&c);
  return st;
}

/* Gradients into per-rank doubles: g[0..3] = dx, dw1, dw2, dtopk_weights,
 * each allocated only if want[i]. */
static comet_status_t backward(ref_ctx_t *c, double **dout, const int want[4], double **g[4]) {
  double **o = NULL;
  COMET_CHECK(forward(c, &o)); /* out itself is not needed */
  comet_refi_free(c, &o);
  const ref_unit_t unit[4] = {REF_PER_TOKEN, REF_PER_RANK, REF_PER_RANK, REF_PER_TOKEN};
  const int64_t per[4] = {c->H, (int64_t)c->El * c->N1 * c->H, (int64_t)c->El * c->H * c->F,
                          c->K};
  for (int i = 0; i < 4; ++i)
    if (want[i]) COMET_CHECK(comet_refi_alloc(c, &g[i], unit[i], per[i]));
  return comet_refi_backward(c, dout, g[0], g[1], g[2], g[3]);
}

/* The two backward entry points differ only in the element type of their
 * tables (dtype bits or double): one body, with the tables as void. */
typedef struct grad_tables {
  void *const *dx, *const *dw1, *const *dw2, *const *dtopk;
} grad_tables_t;

static comet_status_t backward_entry(const char *op, const comet_layer_config_t *cfg, int emulate,
                                     const void *ranks, const void *const *dout,
                                     const grad_tables_t *grads, ref_kind_t kind,
                                     ref_kind_t dtopk_kind) {
  ref_ctx_t c;
  comet_status_t st = COMET_OK;
  double **d = NULL, **g[4] = {NULL, NULL, NULL, NULL};
  COMET_CHECK(comet_refi_ctx_open(&c, op, cfg, emulate, ranks, REF_ALL));
  const int64_t w1n = (int64_t)c.El * c.N1 * c.H, w2n = (int64_t)c.El * c.H * c.F;
  REF_CHECK_TABLE(st, done, &c, dout, "dout", REF_PER_TOKEN, c.H, 0);
  if (!grads) {
    st = comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: grads is NULL", op);
    goto done;
  }
  REF_CHECK_TABLE(st, done, &c, grads->dx, "grads->dx", REF_PER_TOKEN, c.H, 1);
  REF_CHECK_TABLE(st, done, &c, grads->dw1, "grads->dw1", REF_PER_RANK, w1n, 1);
  REF_CHECK_TABLE(st, done, &c, grads->dw2, "grads->dw2", REF_PER_RANK, w2n, 1);
  REF_CHECK_TABLE(st, done, &c, grads->dtopk, "grads->dtopk_weights", REF_PER_TOKEN, c.K, 1);
  COMET_CHECK_GOTO(comet_refi_alloc(&c, &d, REF_PER_TOKEN, c.H), st, done);
  REF_LOAD_TABLE(&c, d, dout, REF_PER_TOKEN, c.H, kind);
  const int want[4] = {grads->dx != NULL, grads->dw1 != NULL, grads->dw2 != NULL,
                       grads->dtopk != NULL};
  COMET_CHECK_GOTO(backward(&c, d, want, g), st, done);
  REF_STORE_TABLE(&c, grads->dx, g[0], REF_PER_TOKEN, c.H, kind);
  REF_STORE_TABLE(&c, grads->dw1, g[1], REF_PER_RANK, w1n, kind);
  REF_STORE_TABLE(&c, grads->dw2, g[2], REF_PER_RANK, w2n, kind);
  REF_STORE_TABLE(&c, grads->dtopk, g[3], REF_PER_TOKEN, c.K, dtopk_kind);
done:
  comet_refi_free(&c, &d);
  for (int i = 0; i < 4; ++i) comet_refi_free(&c, &g[i]);
  comet_refi_ctx_free(&c);
  return st;
}

comet_status_t comet_ref_backward(const comet_layer_config_t *cfg, const comet_ref_rank_t *ranks,
                                  const uint16_t *const *dout, const comet_ref_grads_t *grads) {
  grad_tables_t t;
  if (grads)
    t = (grad_tables_t){(void *const *)grads->dx, (void *const *)grads->dw1,
                        (void *const *)grads->dw2, (void *const *)grads->dtopk_weights};
  return backward_entry("comet_ref_backward", cfg, 1, ranks, (const void *const *)dout,
                        grads ? &t : NULL, REF_KIND_DTYPE, REF_KIND_F32);
}

comet_status_t comet_ref_backward_f64(const comet_layer_config_t *cfg,
                                      const comet_ref_rank_f64_t *ranks,
                                      const double *const *dout,
                                      const comet_ref_grads_f64_t *grads) {
  grad_tables_t t;
  if (grads)
    t = (grad_tables_t){(void *const *)grads->dx, (void *const *)grads->dw1,
                        (void *const *)grads->dw2, (void *const *)grads->dtopk_weights};
  return backward_entry("comet_ref_backward_f64", cfg, 0, ranks, (const void *const *)dout,
                        grads ? &t : NULL, REF_KIND_F64, REF_KIND_F64);
}
