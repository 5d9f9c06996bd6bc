/* SPDX-License-Identifier: Apache-2.0 */
/* test_ref_args.c — the reference's argument checks: NULL pointers and
 * inconsistent shapes get INVALID_ARGUMENT with a message naming the
 * argument; bad routings get ROUTING (from the plan) naming rank, token,
 * slot and value; nothing is computed from a bad call. */
#include "test_ref_common.h"

int main(void) {
  uint64_t rng = test_seed("test_ref_args");
  tr_problem_t p;
  /* ep 2 x tp 2, E 4, K 2; rank 3 has no tokens (its token arrays are NULL). */
  tr_make(&p, &rng, 2, 2, 4, 2, 16, 32, COMET_ACT_SWIGLU, COMET_DTYPE_BF16, 6, TR_UNIFORM, 3);
  const int W = p.W, H = 16;
  uint16_t *out[TR_MAX_W], *h[TR_MAX_W], *dx[TR_MAX_W];
  const uint16_t *dout[TR_MAX_W], *hin[TR_MAX_W];
  double *o64[TR_MAX_W];
  comet_plan_t plan;
  CHECK_OK(comet_ref_plan(&plan, &p.cfg, p.ranks));
  for (int s = 0; s < W; ++s) {
    out[s] = tr_alloc((size_t)p.T[s] * H * 2);
    dx[s] = tr_alloc((size_t)p.T[s] * H * 2);
    dout[s] = out[s];
    h[s] = tr_alloc((size_t)plan.ranks[s].rows * p.Fs * 2);
    hin[s] = h[s];
    o64[s] = tr_alloc((size_t)p.T[s] * H * sizeof(double));
  }
  const comet_ref_grads_t grads = {dx, NULL, NULL, NULL};
  CHECK_OK(comet_ref_forward(&p.cfg, p.ranks, out, NULL, NULL));
  CHECK_OK(comet_ref_backward(&p.cfg, p.ranks, dout, &grads));
  CHECK_OK(comet_ref_forward_f64(&p.cfg, p.ranks64, o64));
  CHECK_OK(comet_ref_layer0(&p.cfg, p.ranks, h));
  CHECK_OK(comet_ref_layer1(&p.cfg, p.ranks, hin, out, NULL));

  /* NULL pointers. */
  CHECK_ERR(comet_ref_forward(NULL, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward: cfg is NULL");
  CHECK_ERR(comet_ref_forward(&p.cfg, NULL, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward: ranks is NULL");
  CHECK_ERR(comet_ref_forward(&p.cfg, p.ranks, NULL, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward: out is NULL");
  CHECK_ERR(comet_ref_plan(NULL, &p.cfg, p.ranks), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_plan: plan is NULL");
  uint16_t *out_bad[TR_MAX_W];
  memcpy(out_bad, out, sizeof out);
  out_bad[1] = NULL;
  CHECK_ERR(comet_ref_forward(&p.cfg, p.ranks, out_bad, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward: out[1] is NULL");
  out_bad[1] = out[1];
  out_bad[3] = NULL; /* rank 3 has no tokens: fine */
  CHECK_OK(comet_ref_forward(&p.cfg, p.ranks, out_bad, NULL, NULL));

  comet_ref_rank_t bad[TR_MAX_W];
  const struct { int rank, field; const char *msg; } nulls[] = {
      {0, 0, "comet_ref_forward: ranks[0].x is NULL"},
      {2, 1, "comet_ref_forward: ranks[2].topk_ids is NULL"},
      {1, 2, "comet_ref_forward: ranks[1].topk_weights is NULL"},
      {3, 3, "comet_ref_forward: ranks[3].w1 is NULL"}, /* weights needed without tokens */
      {2, 4, "comet_ref_forward: ranks[2].w2 is NULL"},
  };
  for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; ++i) {
    memcpy(bad, p.ranks, sizeof bad);
    comet_ref_rank_t *r = &bad[nulls[i].rank];
    switch (nulls[i].field) {
      case 0: r->x = NULL; break;
      case 1: r->topk_ids = NULL; break;
      case 2: r->topk_weights = NULL; break;
      case 3: r->w1 = NULL; break;
      default: r->w2 = NULL; break;
    }
    CHECK_ERR(comet_ref_forward(&p.cfg, bad, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
              nulls[i].msg);
  }
  /* Each op needs only its own inputs. */
  memcpy(bad, p.ranks, sizeof bad);
  for (int s = 0; s < W; ++s) { bad[s].w2 = NULL; bad[s].topk_weights = NULL; }
  CHECK_OK(comet_ref_layer0(&p.cfg, bad, h));
  CHECK_ERR(comet_ref_layer1(&p.cfg, bad, hin, out, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_layer1: ranks[0].topk_weights is NULL");
  memcpy(bad, p.ranks, sizeof bad);
  for (int s = 0; s < W; ++s) { bad[s].x = NULL; bad[s].w1 = NULL; }
  CHECK_OK(comet_ref_layer1(&p.cfg, bad, hin, out, NULL));
  CHECK_ERR(comet_ref_layer0(&p.cfg, bad, h), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_layer0: ranks[0].x is NULL");
  CHECK_ERR(comet_ref_layer0(&p.cfg, p.ranks, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_layer0: h is NULL");
  CHECK_ERR(comet_ref_layer1(&p.cfg, p.ranks, NULL, out, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_layer1: h is NULL");
  const uint16_t *hin_bad[TR_MAX_W];
  memcpy(hin_bad, hin, sizeof hin);
  hin_bad[2] = NULL; /* rank 2 receives rows (every expert sits on ranks 0..3) */
  if (plan.ranks[2].rows > 0)
    CHECK_ERR(comet_ref_layer1(&p.cfg, p.ranks, hin_bad, out, NULL), COMET_ERR_INVALID_ARGUMENT,
              "comet_ref_layer1: h[2] is NULL");
  CHECK_ERR(comet_ref_backward(&p.cfg, p.ranks, NULL, &grads), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_backward: dout is NULL");
  CHECK_ERR(comet_ref_backward(&p.cfg, p.ranks, dout, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_backward: grads is NULL");
  uint16_t *dx_bad[TR_MAX_W];
  memcpy(dx_bad, dx, sizeof dx);
  dx_bad[0] = NULL;
  const comet_ref_grads_t grads_bad = {dx_bad, NULL, NULL, NULL};
  CHECK_ERR(comet_ref_backward(&p.cfg, p.ranks, dout, &grads_bad), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_backward: grads->dx[0] is NULL");
  comet_ref_grads_f64_t g64 = {NULL, NULL, NULL, NULL};
  CHECK_ERR(comet_ref_backward_f64(&p.cfg, p.ranks64, NULL, &g64), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_backward_f64: dout is NULL");
  comet_ref_rank_f64_t bad64[TR_MAX_W];
  memcpy(bad64, p.ranks64, sizeof bad64);
  bad64[1].w2 = NULL;
  CHECK_ERR(comet_ref_forward_f64(&p.cfg, bad64, o64), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward_f64: ranks[1].w2 is NULL");

  /* Shapes and config. */
  comet_layer_config_t c = p.cfg;
  c.ffn = 33;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->ffn = 33 is not a positive multiple of cfg->tp = 2");
  c = p.cfg; c.num_experts = 5; c.topk = 2;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->num_experts = 5 is not a positive multiple of cfg->ep = 2");
  c = p.cfg; c.topk = 5;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->topk = 5 must be in 1..num_experts (4)");
  c = p.cfg; c.topk = 0;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->topk = 0");
  c = p.cfg; c.hidden = 0;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->hidden = 0");
  c = p.cfg; c.ep = 0;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->ep = 0");
  c = p.cfg; c.size = 4;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->size = 4");
  c = p.cfg; c.activation = (comet_activation_t)7;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "cfg->activation = 7");
  c = p.cfg; c.dtype = COMET_DTYPE_FP8_E4M3;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_UNSUPPORTED,
            "cfg->dtype = fp8_e4m3");
  CHECK_OK(comet_ref_forward_f64(&c, p.ranks64, o64)); /* the fp64 path ignores dtype */
  memcpy(bad, p.ranks, sizeof bad);
  bad[2].num_tokens = -1;
  CHECK_ERR(comet_ref_forward(&p.cfg, bad, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "comet_ref_forward: ranks[2].num_tokens = -1 is negative");
  c = p.cfg; c.max_tokens_per_rank = 1; /* limits as on the GPU when given */
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_INVALID_ARGUMENT,
            "max_tokens_per_rank (1)");

  /* Routing errors come from the plan. */
  int32_t ids_bad[64];
  memcpy(ids_bad, p.ids[1], sizeof(int32_t) * (size_t)p.T[1] * 2);
  ids_bad[1 * 2 + 0] = 9;
  memcpy(bad, p.ranks, sizeof bad);
  bad[1].topk_ids = ids_bad;
  CHECK_ERR(comet_ref_forward(&p.cfg, bad, out, NULL, NULL), COMET_ERR_ROUTING,
            "topk_ids[1][0] = 9 on rank 1 is out of range [0, 4)");
  CHECK_ERR(comet_ref_backward(&p.cfg, bad, dout, &grads), COMET_ERR_ROUTING,
            "topk_ids[1][0] = 9 on rank 1");
  ids_bad[1 * 2 + 0] = -2;
  CHECK_ERR(comet_ref_layer0(&p.cfg, bad, h), COMET_ERR_ROUTING, "topk_ids[1][0] = -2 on rank 1");
  ids_bad[1 * 2 + 0] = 3;
  ids_bad[1 * 2 + 1] = 3;
  CHECK_ERR(comet_ref_forward(&p.cfg, bad, out, NULL, NULL), COMET_ERR_ROUTING,
            "topk_ids[1][1] = 3 on rank 1 repeats an expert");
  c = p.cfg; c.max_rows_per_rank = 1;
  CHECK_ERR(comet_ref_forward(&c, p.ranks, out, NULL, NULL), COMET_ERR_ROUTING,
            "more than its row capacity 1");

  for (int s = 0; s < W; ++s) { free(out[s]); free(dx[s]); free(h[s]); free(o64[s]); }
  comet_plan_free(&plan);
  tr_free(&p);
  return test_finish("test_ref_args");
}
