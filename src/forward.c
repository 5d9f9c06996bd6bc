/* SPDX-License-Identifier: Apache-2.0 */
/* forward.c — comet_moe_forward and its two halves, composed from the
 * layer's communication steps (layer.c) and the grouped GEMM engine
 * (kernels/gemm/gemm.h), all on the caller's stream with no host sync in graph
 * mode:
 *
 *   comet_dispatch_gemm   device routing plan -> dispatch (rows pushed into
 *                         the experts' ranks' windows) + grouped GEMM with
 *                         w1 (fused SwiGLU, or GELU after a plain store)
 *   comet_gemm_combine    grouped GEMM with w2 into the window's y region
 *                         -> combine (rows home, weighted top-k + TP sum)
 *
 * Every call first checks the layer's fault record, orders itself after the
 * layer's previous call (comet_layer_call_begin), and reports bad arguments
 * to every rank through the device plan or the combine's begin kernel.
 *
 * layer0 runs fused by default: one persistent kernel whose mover CTAs
 * dispatch while its GEMM CTAs compute the tiles whose rows are in
 * (kernels/fused/layer0.cu); COMET_LAYER0=composed at layer creation (or a
 * pull/tma dispatch) runs dispatch, wait and GEMM as separate kernels.
 * layer1 runs composed (the GEMM, then the combine) unless the layer was
 * created with COMET_LAYER1=fused: one persistent kernel whose GEMM CTAs
 * publish column blocks that its mover CTAs sum home
 * (kernels/fused/layer1.cu; opt-in until it has run on a GPU). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "context.h"
#include "error.h"
#include "kernels/backward.h"
#include "kernels/forward.h"
#include "kernels/fused/fused.h"
#include "kernels/gemm/gemm.h"
#include "kernels/saved_z.h"
#include "layer.h"
#include "tune/choice.h"

static comet_choice_t choose(comet_layer_t L, int op, int tokens);

comet_status_t comet_layer_set_graph_mode(comet_layer_t L, int on) {
  COMET_ARG(L != NULL, "layer is NULL");
  L->graph_mode = on != 0;
  return COMET_OK;
}

comet_status_t comet_layer_check(comet_layer_t L, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(L->planned, "comet_layer_check: the layer has not run a call yet");
  COMET_CHECK(comet_context_make_current(L->ctx));
  return comet_layer_route_status(L, stream, NULL);
}

/* Plan + (outside graph mode) the host check of its routing status,
 * queued (comet_layer_route_check makes it). */
comet_status_t comet_layer_plan_checked(comet_layer_t L, int num_tokens, const int32_t *ids,
                                     cudaStream_t stream) {
  COMET_CHECK(comet_layer_plan(L, num_tokens, ids, NULL, stream));
  return comet_layer_route_check_queue(L, stream);
}

/* This rank's arguments were bad (local, the message is set): tell every
 * rank through each of the call's plans (so that, in graph mode too, no
 * peer waits for one that never comes), or through the combine's begin
 * exchange for a call without a plan, then fail. */
comet_status_t comet_layer_refuse(comet_layer_t L, comet_status_t local, const comet_arg_fault_t *f,
                             cudaStream_t stream, int plans) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", comet_last_error());
  comet_status_t st = plans ? COMET_OK : comet_combine_begin_launch(&L->view, f, stream);
  for (int i = 0; i < plans && st == COMET_OK; ++i) st = comet_layer_plan(L, 0, NULL, f, stream);
  if (st == COMET_OK) st = comet_layer_call_end(L, stream);
  if (st != COMET_OK) return st;
  return comet_set_error(local, "%s (on rank %d; every rank's call fails)", msg, L->ctx->rank);
}

/* Records the call's end (also after a failure: what was launched is
 * ordered before the next call); the routing check due, if the rest went
 * well; returns the call's status. */
comet_status_t comet_layer_finish(comet_layer_t L, comet_status_t st, cudaStream_t stream) {
  const comet_status_t checked = comet_layer_route_check(L);
  if (st == COMET_OK) st = checked;
  if (st != COMET_OK) {
    comet_trace_error(st, __FILE__, __LINE__);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", comet_last_error());
    comet_layer_call_end(L, stream);
    return comet_set_error(st, "%s", msg);
  }
  return comet_layer_call_end(L, stream);
}

/* The fused layer0 (kernels/fused/layer0.cu): one persistent launch after
 * the plan, movers and GEMM CTAs within the SM budget. */
/* plain: store fc1's every column (w1_rows) into h, no fused activation
 * (the save mode's z). */
static comet_status_t layer0_fused(comet_layer_t L, const void *x, const void *w1, void *h,
                                   int plain, cudaStream_t stream) {
  const comet_layer_config_t *c = &L->cfg;
  comet_fused_layer0_t f = {0};
  f.view = &L->view;
  f.x = x;
  f.w1 = w1;
  f.h = h;
  f.n = plain ? comet_config_w1_rows(c) : c->ffn / c->tp;
  f.swiglu = !plain && c->activation == COMET_ACT_SWIGLU;
  f.gelu = !plain && c->activation == COMET_ACT_GELU;
  L->c0 = choose(L, COMET_TUNE_LAYER0, L->planned_tokens);
  f.gather = L->c0.a == COMET_TUNE_A_GATHERED;
  f.n_comm = L->c0.n_comm;
  f.tile = L->c0.tile;
  f.dynamic = L->dynamic0;
  f.expert_bands = L->expert_bands0;
  f.stages = L->stages0;
  f.mode = (comet_l0_mode_t)L->layer0_path;
  return comet_fused_layer0_launch(&f, stream);
}

/* The composed layer0: dispatch, a wait for this rank's rows, the GEMM. */
static comet_status_t layer0_composed(comet_layer_t L, const void *x, const void *w1, void *h,
                                      int plain, cudaStream_t stream) {
  const comet_layer_config_t *c = &L->cfg;
  const comet_comm_view_t *v = &L->view;
  COMET_CHECK(comet_layer_dispatch(L, x, 0, stream));
  COMET_CHECK(comet_wait_dispatch_launch(v, stream));
  comet_gemm_params_t g = {0};
  g.dtype = c->dtype;
  g.groups = c->num_experts / c->ep;
  g.n = plain ? comet_config_w1_rows(c) : c->ffn / c->tp;
  g.k = c->hidden;
  g.max_rows = L->row_capacity;
  g.a = v->win_local + v->off_rows;
  g.b = w1;
  g.c = h;
  g.group_offset = v->expert_offset;
  g.epilogue = plain                                ? COMET_GEMM_EPI_STORE
               : c->activation == COMET_ACT_SWIGLU ? COMET_GEMM_EPI_SWIGLU
               : c->activation == COMET_ACT_GELU   ? COMET_GEMM_EPI_GELU
                                                   : COMET_GEMM_EPI_STORE;
  g.tile = COMET_GEMM_TILE_AUTO;
  g.num_ctas = v->sm_budget;
  g.deterministic = 1; /* the same bits on every run */
  g.dynamic_tiles = 1; /* as layer1's: Mixtral 2048's launch read 3.0-3.1 GB from DRAM with
                        * static tiles (w1: 1.88), 2.03-2.05 with dynamic ones, and ran
                        * ~1493 against ~1442 us (session 17 runs 1, 3, ncu) */
  g.split_ws = L->split_ws;
  g.split_slots = L->split_slots;
  return comet_gemm_grouped(&g, stream);
}

/* saved_z (save mode): fc1 into z, then h = act(z) by its own pass. */
static comet_status_t layer0(comet_layer_t L, const void *x, const void *w1, void *h,
                             void *saved_z, cudaStream_t stream) {
  const comet_layer_config_t *c = &L->cfg;
  const int plain = saved_z != NULL;
  void *fc1 = plain ? saved_z : h;
  if (comet_layer_layer0_fused(L)) COMET_CHECK(layer0_fused(L, x, w1, fc1, plain, stream));
  else COMET_CHECK(layer0_composed(L, x, w1, fc1, plain, stream));
  if (plain) /* else the GEMM's epilogue applied the activation */
    COMET_CHECK(comet_bw_activation_launch(&L->view, saved_z, h, c->ffn / c->tp, c->activation,
                                           stream));
  L->h_last = h;
  return COMET_OK;
}

int comet_layer_layer0_fused(comet_layer_t L) {
  return L->layer0_path != COMET_LAYER0_COMPOSED && L->view.sm_budget >= 2;
}

/* The fused op's choices for this call (tune/choice.h): the context's
 * tuning table, else the cost model; the layer's overrides win
 * (comet_layer_set_n_comm; the tests' A; COMET_L0_GATHER=0/1 for
 * experiments). */
static comet_choice_t choose(comet_layer_t L, int op, int tokens) {
  const comet_layer_config_t *c = &L->cfg;
  const comet_tune_key_t key = comet_tune_key_for(L->ctx->device_name, L->ctx->world, c);
  comet_cost_shape_t shape = comet_cost_shape_for(L->ctx->world, c, tokens, L->view.sm_budget);
  shape.dynamic = L->dynamic0;
  const comet_cost_device_t dev = comet_cost_device_for(L->ctx->device_name);
  int a_override = L->gather0;
  const char *env = getenv("COMET_L0_GATHER");
  if (a_override < 0 && env && (env[0] == '0' || env[0] == '1')) a_override = env[0] == '1';
  comet_choice_t ch = comet_tune_choose(&L->ctx->tuning, &key, &dev, &shape, op,
                                        op == COMET_TUNE_LAYER0 ? L->n_comm0 : L->n_comm1,
                                        op == COMET_TUNE_LAYER0 ? a_override : -1);
  if (op == COMET_TUNE_LAYER0 && L->tile0 >= 0) ch.tile = L->tile0;
  return ch;
}

comet_status_t comet_layer_set_layer0_tile(comet_layer_t L, int tile) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(tile >= -1 && tile <= 2, "comet_layer_set_layer0_tile: %d is not -1, 0, 1 or 2", tile);
  L->tile0 = tile;
  return COMET_OK;
}

int comet_layer_layer0_gather(comet_layer_t L) {
  return comet_layer_layer0_fused(L) && L->c0.a == COMET_TUNE_A_GATHERED;
}

comet_status_t comet_layer_set_layer0_gather(comet_layer_t L, int gather) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(gather >= -1 && gather <= 1, "comet_layer_set_layer0_gather: %d is not -1, 0 or 1", gather);
  L->gather0 = gather;
  return COMET_OK;
}

int comet_layer_layer0_n_comm(comet_layer_t L) { return comet_layer_layer0_fused(L) ? L->c0.n_comm : 0; }

comet_status_t comet_layer_set_layer0_dynamic(comet_layer_t L, int on) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(on == 0 || on == 1, "comet_layer_set_layer0_dynamic: %d is not 0 or 1", on);
  L->dynamic0 = on;
  return COMET_OK;
}

comet_status_t comet_layer_set_layer0_stages(comet_layer_t L, int stages) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(stages == 3 || stages == 4, "comet_layer_set_layer0_stages: %d is not 3 or 4", stages);
  L->stages0 = stages;
  return COMET_OK;
}

comet_status_t comet_layer_set_layer0_path(comet_layer_t L, int path) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(path >= COMET_LAYER0_FUSED && path <= COMET_LAYER0_COMPOSED,
            "comet_layer_set_layer0_path: path %d unknown", path);
  COMET_ARG(path == COMET_LAYER0_COMPOSED || L->view.dispatch_mode == COMET_DISPATCH_PUSH,
            "comet_layer_set_layer0_path: the fused layer0 needs the push dispatch (the layer "
            "was created with COMET_DISPATCH_MODE=pull or tma)");
  L->layer0_path = path;
  return COMET_OK;
}

comet_status_t comet_layer_set_n_comm(comet_layer_t L, int n_comm) {
  COMET_ARG(L != NULL, "comet_layer_set_n_comm: layer is NULL");
  COMET_ARG(n_comm == 0 || (n_comm >= 1 && n_comm < L->view.sm_budget),
            "comet_layer_set_n_comm: n_comm = %d must be 0 (the default) or 1..%d (this rank's "
            "SM budget of %d less one GEMM CTA)",
            n_comm, L->view.sm_budget - 1, L->view.sm_budget);
  L->n_comm0 = L->n_comm1 = n_comm;
  return COMET_OK;
}

void comet_layer1_gemm_params(comet_layer_t L, const void *h, const void *w2, void *y,
                              comet_gemm_params_t *g) {
  const comet_layer_config_t *c = &L->cfg;
  memset(g, 0, sizeof *g);
  g->dtype = c->dtype;
  g->groups = c->num_experts / c->ep;
  g->n = c->hidden;
  g->k = c->ffn / c->tp;
  g->max_rows = L->row_capacity;
  g->a = h;
  g->b = w2;
  g->c = y;
  g->group_offset = L->view.expert_offset;
  g->epilogue = COMET_GEMM_EPI_STORE;
  g->tile = COMET_GEMM_TILE_AUTO;
  g->num_ctas = L->view.sm_budget;
  g->deterministic = 1; /* the same bits on every run */
  g->dynamic_tiles = 1;  /* session 14 run 1: 1.016x static over bench --ab's 99 rows,
                          * 1.05-1.15x on the routed 2048-token layer1 ones */
  g->split_ws = L->split_ws;
  g->split_slots = L->split_slots;
}

static comet_status_t layer1(comet_layer_t L, const void *h, const void *w2, const float *weights,
                             void *out, cudaStream_t stream) {
  const comet_layer_config_t *c = &L->cfg;
  const comet_comm_view_t *v = &L->view;
  comet_status_t st = COMET_OK;
  if (comet_layer_layer1_fused(L)) {
    COMET_CHECK(comet_layer_route_check(L)); /* comet_gemm_combine's, before the combine starts */
    comet_fused_layer1_t f = {0};
    f.view = v;
    f.h = h;
    f.w2 = w2;
    f.topk_weights = weights;
    f.out = out;
    f.num_tokens = L->planned_tokens;
    f.k = c->ffn / c->tp;
    L->c1 = choose(L, COMET_TUNE_LAYER1, L->planned_tokens);
    f.n_comm = L->c1.n_comm;
    f.mode = (comet_l1_mode_t)L->layer1_path;
    COMET_CHECK(comet_fused_layer1_launch(&f, stream));
  } else {
    void *y = v->win_local + v->off_y;
    comet_gemm_params_t g;
    comet_layer1_gemm_params(L, h, w2, y, &g);
    COMET_CHECK(comet_gemm_grouped(&g, stream));
    /* comet_gemm_combine's check of its begin exchange waits here, while
     * the GPU runs the GEMM (a wait before it left the GPU idle for a host
     * round trip and a launch: by difference ~0.05 ms of Mixtral 2048's
     * 0.90 ms layer1, session 14 run 1); the combine runs only after a
     * good one */
    st = comet_layer_route_check(L);
    if (st == COMET_OK) COMET_CHECK(comet_layer_combine(L, y, weights, out, 0, stream));
  }
  COMET_CHECK(comet_poison_on_error_launch(v, out, L->planned_tokens, stream));
  return st;
}

int comet_layer_layer1_fused(comet_layer_t L) {
  return L->layer1_path != COMET_LAYER1_COMPOSED && L->view.sm_budget >= 2;
}

int comet_layer_layer1_n_comm(comet_layer_t L) { return comet_layer_layer1_fused(L) ? L->c1.n_comm : 0; }

comet_status_t comet_layer_set_layer1_path(comet_layer_t L, int path) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(path >= COMET_LAYER1_FUSED && path <= COMET_LAYER1_COMPOSED,
            "comet_layer_set_layer1_path: path %d unknown", path);
  COMET_ARG(path == COMET_LAYER1_COMPOSED || L->view.combine_mode == COMET_COMBINE_PULL,
            "comet_layer_set_layer1_path: the fused layer1 needs the pull combine (the layer was "
            "created with COMET_COMBINE_MODE=push)");
  L->layer1_path = path;
  return COMET_OK;
}

comet_status_t comet_dispatch_gemm(comet_layer_t L, const comet_dispatch_gemm_args_t *a,
                                   cudaStream_t stream) {
  COMET_ARG(L != NULL, "comet_dispatch_gemm: layer is NULL");
  COMET_CHECK(comet_context_make_current(L->ctx));
  COMET_CHECK(comet_layer_call_begin(L, stream));
  comet_arg_fault_t f;
  comet_status_t st = comet_dispatch_gemm_args_check(&L->cfg, a, &f);
  if (st != COMET_OK) return comet_layer_refuse(L, st, &f, stream, 1);
  st = comet_layer_plan_checked(L, a->num_tokens, a->topk_ids, stream);
  if (st == COMET_OK) st = layer0(L, a->x, a->w1, a->h ? a->h : L->h_buf, NULL, stream);
  return comet_layer_finish(L, st, stream);
}

comet_status_t comet_gemm_combine(comet_layer_t L, const comet_gemm_combine_args_t *a,
                                  cudaStream_t stream) {
  COMET_ARG(L != NULL, "comet_gemm_combine: layer is NULL");
  COMET_ARG(L->planned && L->h_last != NULL,
            "comet_gemm_combine: no comet_dispatch_gemm has run on this layer (its routing plan "
            "is what the combine sends rows home by)");
  COMET_CHECK(comet_context_make_current(L->ctx));
  COMET_CHECK(comet_layer_call_begin(L, stream));
  comet_arg_fault_t f;
  comet_status_t st = comet_gemm_combine_args_check(&L->cfg, a, &f);
  if (st == COMET_OK && a->num_tokens != L->planned_tokens) {
    st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                         "comet_gemm_combine: num_tokens = %d differs from the %d of the last "
                         "comet_dispatch_gemm on this rank",
                         a->num_tokens, L->planned_tokens);
    f = (comet_arg_fault_t){COMET_ARG_TOKENS_DIFFER, COMET_FIELD_ARGS, a->num_tokens, 0};
  }
  if (st != COMET_OK) return comet_layer_refuse(L, st, &f, stream, 0);
  /* every rank's arguments, and the guard against a second combine */
  st = comet_combine_begin_launch(&L->view, NULL, stream);
  if (st == COMET_OK) st = comet_layer_route_check_queue(L, stream); /* layer1 waits for it */
  if (st == COMET_OK) st = layer1(L, a->h ? a->h : L->h_last, a->w2, a->topk_weights, a->out, stream);
  return comet_layer_finish(L, st, stream);
}

comet_status_t comet_moe_forward(comet_layer_t L, const comet_moe_args_t *a, cudaStream_t stream) {
  COMET_ARG(L != NULL, "comet_moe_forward: layer is NULL");
  COMET_CHECK(comet_context_make_current(L->ctx));
  COMET_CHECK(comet_layer_call_begin(L, stream));
  comet_arg_fault_t f;
  comet_status_t st = comet_moe_args_check(&L->cfg, a, &f);
  if (st != COMET_OK) return comet_layer_refuse(L, st, &f, stream, 1);
  st = comet_layer_plan_checked(L, a->num_tokens, a->topk_ids, stream);
  if (st == COMET_OK && a->saved_z) /* the stamp its backward checks */
    st = comet_saved_z_stamp_launch(&L->view, comet_layer_saved_trailer(L, a->saved_z), L->uid, stream);
  if (st == COMET_OK) st = layer0(L, a->x, a->w1, L->h_buf, a->saved_z, stream);
  if (st == COMET_OK) st = comet_layer_route_check(L); /* layer0 is queued: the GPU is busy */
  if (st == COMET_OK) st = layer1(L, L->h_buf, a->w2, a->topk_weights, a->out, stream);
  return comet_layer_finish(L, st, stream);
}
