/* SPDX-License-Identifier: Apache-2.0 */
/* backward.c — comet_moe_backward, composed from the forward's pieces and
 * the GEMM engine's two backward modes (docs/backward_plan.md), all on the
 * caller's stream with no host sync in graph mode. It saves nothing between
 * forward and backward: it recomputes (activation recompute).
 *
 *   1. plan + dispatch x          A (rows of this rank's experts), window
 *   2. z = A . w1^T (save mode: the forward's saved_z, once its stamp
 *      matches this plan: kernels/saved_z.h)   (workspace; A kept)
 *   3. plan again + dispatch dout D into the window's rows (a new epoch: the
 *                                 flags of step 1 must not satisfy step 3)
 *   4. row weights home -> experts, barrier
 *   5. dh_u = D . w2 (B MN-major); dy = w . D; then one pass: h = act(z),
 *      row_dot = <dh_u, h> (= <D, y>, y = h . w2^T: no fc2 recomputed),
 *      da = act'(z) . (w . dh_u)
 *   6. dw2 = dy^T h, dw1 = da^T A (the grouped reduction over each expert's
 *      rows), dA = da . w1 (B MN-major) into the window's rows
 *   7. dx = combine of dA with unit weights (on every rank: it is collective;
 *      into the workspace where dx was not asked for); d topk_weights = the
 *      tp sum of row_dot at each slot (after a barrier every rank joins)
 *
 * Every GEMM is the deterministic engine, the combine sums in a fixed order:
 * the same bits on every run. */
#include <stdint.h>
#include <string.h>

#include "args.h"
#include "context.h"
#include "error.h"
#include "kernels/backward.h"
#include "kernels/fill.h"
#include "kernels/forward.h"
#include "kernels/gemm/gemm.h"
#include "kernels/saved_z.h"
#include "layer.h"

/* The workspace's regions (elements of the dtype, 256-byte aligned). */
typedef struct bw_ws {
  void *z, *h, *A, *dh, *da;
  float *ones;
  void *dx; /* where dx goes on a rank that did not ask for it (the combine is collective) */
} bw_ws_t;

static size_t up256(size_t x) { return (x + 255) & ~(size_t)255; }

static size_t carve(const comet_layer_t L, bw_ws_t *w, char *base) {
  const comet_layer_config_t *c = &L->cfg;
  const size_t cap = (size_t)L->row_capacity, b = comet_dtype_size(c->dtype);
  const size_t Fl = (size_t)(c->ffn / c->tp), N1 = (size_t)comet_config_w1_rows(c);
  const size_t H = (size_t)c->hidden, TK = (size_t)c->max_tokens_per_rank * c->topk;
  size_t o = 0;
  const size_t sizes[7] = {cap * N1 * b, cap * Fl * b, cap * H * b, cap * Fl * b,
                           cap * N1 * b, TK * sizeof(float), (size_t)c->max_tokens_per_rank * H * b};
  void **slots[7] = {&w->z, &w->h, &w->A, &w->dh, &w->da, (void **)&w->ones, &w->dx};
  for (int i = 0; i < 7; ++i) {
    if (base) *slots[i] = base + o;
    o += up256(sizes[i] ? sizes[i] : 1);
  }
  return o;
}

/* The allocation itself: 0, or 1 (no memory). */
static int make_workspace(comet_layer_t L) {
  bw_ws_t w;
  const size_t bytes = carve(L, &w, NULL);
  void *p = NULL;
  /* cudaMalloc (freed by cudaFree in layer.c): mapped when the call
   * returns, and no rank has launched a kernel of this call yet (the
   * meeting follows). It replaced the stream-ordered pool, suspected in the
   * loopback world's first-backward timeouts, but did not cure them
   * (docs/status.md, Known gaps 11). */
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  L->bw_ws = p;
  L->bw_bytes = bytes;
  carve(L, &w, (char *)p);
  const int64_t tk = (int64_t)L->cfg.max_tokens_per_rank * L->cfg.topk;
  if (comet_bw_fill_launch(&L->view, w.ones, tk, 1.0f, L->ctx->stream) != COMET_OK ||
      cudaStreamSynchronize(L->ctx->stream) != cudaSuccess)
    return 1;
  return 0;
}

/* The workspace, made by the layer's first backward whatever its
 * arguments (every rank's first call is the same collective call), outside
 * capture; then that call meets every rank on the host (the transport's
 * barrier, bounded) before any kernel: a rank still allocating must not
 * find a peer's plan kernel spinning on the GPU (cudaFree-like calls may
 * wait for the whole device, and in the loopback world that includes peers
 * waiting for this rank). A captured first call neither allocates nor
 * meets. *failed: the workspace is missing (no memory, or captured);
 * COMET_OK unless the meeting failed. */
static comet_status_t ensure_workspace(comet_layer_t L, cudaStream_t stream, int *failed) {
  *failed = 0;
  if (L->bw_ws) return COMET_OK;
  enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    *failed = 1;
    return COMET_OK;
  }
  *failed = make_workspace(L);
  if (!L->bw_met) {
    L->bw_met = 1;
    if (L->view.world > 1) COMET_CHECK(L->ctx->tp->ops->barrier(L->ctx->tp)); /* says why */
  }
  return COMET_OK;
}

/* A deterministic grouped GEMM of the layer's experts over its rows, the
 * fields both of the backward's GEMM kinds share. */
static comet_gemm_params_t layer_gemm(comet_layer_t L, const void *a, const void *b, void *c, int n) {
  comet_gemm_params_t g;
  memset(&g, 0, sizeof g);
  g.dtype = L->cfg.dtype;
  g.groups = L->cfg.num_experts / L->cfg.ep;
  g.n = n;
  g.max_rows = L->row_capacity;
  g.a = a;
  g.b = b;
  g.c = c;
  g.group_offset = L->view.expert_offset;
  g.epilogue = COMET_GEMM_EPI_STORE;
  g.num_ctas = L->view.sm_budget;
  g.deterministic = 1;
  g.split_ws = L->split_ws; /* the backward's GEMMs run one after another on its stream */
  g.split_slots = L->split_slots;
  return g;
}

/* C = A . B_e (b_mn_major) or A . B_e^T over each expert's rows. */
static comet_status_t gemm(comet_layer_t L, const void *a, const void *b, void *c, int n, int k,
                           int b_mn_major, cudaStream_t stream) {
  comet_gemm_params_t g = layer_gemm(L, a, b, c, n);
  g.k = k;
  g.b_mn_major = b_mn_major;
  return comet_gemm_grouped(&g, stream);
}

/* The weight gradient C_e [m, n] = sum over expert e's rows of a^T b. */
static comet_status_t weight_grad(comet_layer_t L, const void *a, int m, const void *b, int n,
                                  void *c, cudaStream_t stream) {
  comet_gemm_params_t g = layer_gemm(L, a, b, c, n);
  g.m = m;
  g.k_grouped = 1;
  return comet_gemm_grouped(&g, stream);
}

static comet_status_t backward(comet_layer_t L, const comet_moe_backward_args_t *a,
                               cudaStream_t stream) {
  const comet_layer_config_t *c = &L->cfg;
  const comet_comm_view_t *v = &L->view;
  const int H = c->hidden, Fl = c->ffn / c->tp, N1 = comet_config_w1_rows(c), T = a->num_tokens;
  const int El = c->num_experts / c->ep;
  bw_ws_t w;
  carve(L, &w, (char *)L->bw_ws);
  void *rows = v->win_local + v->off_rows;
  /* 1-2: the forward again, keeping A and z. Every rank makes both plans
   * (a refused one too), and the host checks the status of the second
   * only (once dh's GEMM is queued behind it): so no rank ever waits for a
   * plan that does not come. A refused status makes every kernel in
   * between do nothing. */
  COMET_CHECK(comet_layer_plan(L, T, a->topk_ids, NULL, stream));
  /* save mode: z must be this layer's forward's of this plan (its stamp);
   * a mismatch is this rank's bad argument, which the next plan reports
   * on every rank */
  if (a->saved_z)
    COMET_CHECK(comet_saved_z_check_launch(v, comet_layer_saved_trailer(L, a->saved_z), L->uid, stream));
  COMET_CHECK(comet_layer_dispatch(L, a->x, 0, stream));
  COMET_CHECK(comet_wait_dispatch_launch(v, stream));
  const void *z = a->saved_z ? a->saved_z : w.z;
  if (!a->saved_z) COMET_CHECK(gemm(L, rows, a->w1, w.z, N1, H, 0, stream));
  COMET_CHECK(comet_copy_bytes_launch(w.A, rows, (size_t)L->row_capacity * H * comet_dtype_size(c->dtype),
                                      stream)); /* a kernel (kernels/fill.h) */
  /* 3: dout to the experts, under a new epoch */
  COMET_CHECK(comet_layer_plan_checked(L, T, a->topk_ids, stream));
  COMET_CHECK(comet_layer_dispatch(L, a->dout, 0, stream));
  COMET_CHECK(comet_wait_dispatch_launch(v, stream));
  /* 4-5 */
  COMET_CHECK(comet_bw_row_weights_launch(v, T, a->topk_weights, stream));
  COMET_CHECK(gemm(L, rows, a->w2, w.dh, Fl, H, 1, stream)); /* dh_u */
  COMET_CHECK(comet_layer_route_check(L)); /* the plan's, with dh queued behind it */
  COMET_CHECK(comet_bw_scale_rows_launch(v, rows, stream)); /* rows = dy */
  /* h = act(z), row_dot = <dh_u, h>, da = act'(z) . (w dh_u): one pass */
  COMET_CHECK(comet_bw_act_backward_launch(v, z, w.dh, w.da, w.h, Fl, c->activation, stream));
  /* 6 */
  if (a->dw2) COMET_CHECK(weight_grad(L, rows, H, w.h, Fl, a->dw2, stream));
  if (a->dw1) COMET_CHECK(weight_grad(L, w.da, N1, w.A, H, a->dw1, stream));
  /* dA and its combine on every rank (the combine meets every rank; a rank
   * that did not ask for dx still sends its experts' rows home) */
  COMET_CHECK(gemm(L, w.da, a->w1, rows, H, N1, 1, stream)); /* rows = dA */
  /* 7 */
  void *dx = a->dx ? a->dx : w.dx;
  COMET_CHECK(comet_layer_combine(L, rows, w.ones, dx, 0, stream));
  if (a->dx) COMET_CHECK(comet_poison_on_error_launch(v, a->dx, T, stream));
  COMET_CHECK(comet_bw_barrier_launch(v, COMET_BAR_BACKWARD_DOT, stream)); /* row_dots are in */
  if (a->dtopk_weights) COMET_CHECK(comet_bw_topk_grad_launch(v, T, a->dtopk_weights, stream));
  if (a->dw1) COMET_CHECK(comet_poison_elems_on_error_launch(v, a->dw1, (int64_t)El * N1 * H, stream));
  if (a->dw2) COMET_CHECK(comet_poison_elems_on_error_launch(v, a->dw2, (int64_t)El * H * Fl, stream));
  return COMET_OK;
}

comet_status_t comet_moe_backward(comet_layer_t L, const comet_moe_backward_args_t *a,
                                  cudaStream_t stream) {
  COMET_ARG(L != NULL, "comet_moe_backward: layer is NULL");
  COMET_CHECK(comet_context_make_current(L->ctx));
  COMET_CHECK(comet_layer_call_begin(L, stream));
  comet_arg_fault_t f;
  comet_status_t st = comet_moe_backward_args_check(&L->cfg, a, &f);
  int missing = 0;
  const comet_status_t met = ensure_workspace(L, stream, &missing);
  if (st == COMET_OK && (met != COMET_OK || missing)) {
    bw_ws_t w;
    st = met != COMET_OK ? met
         : comet_set_error(COMET_ERR_OUT_OF_MEMORY,
                           "comet_moe_backward: allocating its workspace (%zu bytes) failed, or the "
                           "layer's first backward is being captured in a CUDA graph (run one "
                           "outside capture first)",
                           carve(L, &w, NULL));
    f = (comet_arg_fault_t){COMET_ARG_ALLOC, COMET_FIELD_ARGS, 0, 0};
  }
  if (st != COMET_OK) return comet_layer_refuse(L, st, &f, stream, 2); /* its two plans */
  st = backward(L, a, stream);
  return comet_layer_finish(L, st, stream);
}
