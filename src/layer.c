/* SPDX-License-Identifier: Apache-2.0 */
/* layer.c — comet layers: the creation protocol (every rank's config
 * exchanged first, then validated on every rank; local allocations agreed
 * before the collective window), the symmetric workspace and local scratch,
 * the fault record, call ordering across streams, and the communication
 * steps with their status messages. */
#include "layer.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "error.h"
#include "kernels/fill.h"
#include "kernels/gemm/gemm.h"
#include "kernels/saved_z.h"

#define ALIGN 256
static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Takes `bytes` (aligned) at *cursor and returns the region's offset. */
static size_t take(size_t *cursor, size_t bytes) {
  size_t off = *cursor;
  *cursor += align_up(bytes ? bytes : 1);
  return off;
}

comet_status_t comet_layer_carve(const comet_layer_config_t *cfg, int world, int dmode, int cmode,
                                 comet_comm_view_t *v, size_t *win_bytes, size_t *scratch_bytes,
                                 char *scratch) {
  const size_t W = (size_t)world, E = (size_t)cfg->num_experts, K = (size_t)cfg->topk;
  const size_t El = E / (size_t)cfg->ep, tp = (size_t)cfg->tp, T = (size_t)cfg->max_tokens_per_rank;
  const size_t row_bytes = (size_t)cfg->hidden * comet_dtype_size(cfg->dtype);
  const int64_t cap64 = comet_config_row_capacity(cfg);
  if (cap64 > INT32_MAX)
    return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "row capacity %lld overflows 32-bit row indices: set max_rows_per_rank",
                           (long long)cap64);
  const size_t cap = (size_t)cap64;
  const size_t plan_ctas = (T + COMET_PLAN_TOKENS_PER_CTA - 1) / COMET_PLAN_TOKENS_PER_CTA;

  /* Window (the same offsets on every rank):
   *   bar        uint64 [W]            barrier sequence reached by each rank
   *   fault      uint32                a peer's wait gave up (rank + 1)
   *   counts     int32 [2][W][E]       per-source expert counts, double-buffered by epoch
   *   errors     int32x4 [2][W]        first bad id (or bad arguments) of each source
   *   argerr     comet_arg_fault_t [W] combine-begin arguments of each source
   *   dflags     uint64 [El][W]        dispatch arrival flag per (local expert, arrival j)
   *   tcount     uint64 [max_mtiles]   rows arrived per natural M-tile (fused layer0)
   *   l1flags    uint64 [max_mtiles][ceil(H/256)]  y block stored at epoch (fused layer1)
   *   cflags     uint64 [W]            combine arrival flag per sending rank (push combine)
   *   row_src, row_token, row_slot     int32 [cap] each: who sent each received row
   *   row_weight, row_dot               float [cap] each: the backward's weight and dot per row
   *   rows = y   [cap][H] dtype        dispatched rows; later the expert outputs the
   *                                    combine pulls home (rows are dead by then)
   *   x          [T][H] dtype          this rank's tokens (pull dispatch only)
   *   ret        [T*K*tp][H] dtype     rows pushed home (push combine only)
   * each region starts on a 256-byte boundary. */
  size_t c = 0;
  v->off_bar = take(&c, W * sizeof(uint64_t));
  v->off_fault = take(&c, sizeof(uint32_t));
  v->off_counts = take(&c, 2 * W * E * sizeof(int32_t));
  v->off_errors = take(&c, 2 * W * 4 * sizeof(int32_t));
  v->off_argerr = take(&c, W * sizeof(comet_arg_fault_t));
  v->off_dflags = take(&c, El * W * sizeof(uint64_t));
  const size_t max_mtiles = (cap + COMET_GEMM_TILE_M - 1) / COMET_GEMM_TILE_M + El;
  v->off_tcount = take(&c, max_mtiles * sizeof(uint64_t));
  const size_t l1_blocks = ((size_t)cfg->hidden + COMET_L1_BLOCK - 1) / COMET_L1_BLOCK;
  v->off_l1flags = take(&c, max_mtiles * l1_blocks * sizeof(uint64_t));
  v->off_cflags = take(&c, W * sizeof(uint64_t));
  v->off_row_src = take(&c, cap * sizeof(int32_t));
  v->off_row_token = take(&c, cap * sizeof(int32_t));
  v->off_row_slot = take(&c, cap * sizeof(int32_t));
  v->off_row_weight = take(&c, cap * sizeof(float));
  v->off_row_dot = take(&c, cap * sizeof(float));
  v->off_rows = take(&c, cap * row_bytes);
  v->off_y = v->off_rows;
  v->off_x = dmode == COMET_DISPATCH_PULL ? take(&c, T * row_bytes) : 0;
  v->off_ret = cmode == COMET_COMBINE_PUSH ? take(&c, T * K * tp * row_bytes) : 0;
  *win_bytes = c;

  /* Local scratch (cudaMalloc):
   *   epoch, combined_epoch, began_epoch   uint64 each
   *   fault         comet_fault_t
   *   cta_counts    int32 [ceil(T/256)][E]   per plan CTA
   *   err_key       uint32                   smallest bad t*K+k
   *   all_counts    int32 [W][E]
   *   expert_offset int32 [El+1]
   *   block_offset  int32 [El*(W+1)]
   *   send_offset   int32 [E+1]
   *   send_list     int32 [T*K]
   *   send_base     int32 [E*tp]
   *   dest_row      int32 [T*K*tp]
   *   slot_expert   int32 [T*K]
   *   recv_row0, recv_tile0  int32 [E] each
   *   l0_tiles      comet_mtile_t [max_mtiles], l0_count int32
   *   l1_tiles      comet_mtile_t [max_mtiles], l1_count int32
   *   tile_next     uint32 [2]   dynamic tile counters of the fused layer0 / layer1
   *   dispatch_done uint32 [E]
   *   pulled_done   uint32 [El*W]
   *   combine_done  uint32 [W]
   *   status        comet_route_status_t
   *   pending       comet_arg_fault_t */
  size_t s = 0;
  size_t o_ep = take(&s, 3 * sizeof(uint64_t)), o_fault = take(&s, sizeof(comet_fault_t));
  size_t o_cta = take(&s, plan_ctas * E * 4), o_err = take(&s, 4), o_all = take(&s, W * E * 4);
  size_t o_eoff = take(&s, (El + 1) * 4), o_boff = take(&s, El * (W + 1) * 4);
  size_t o_soff = take(&s, (E + 1) * 4), o_slist = take(&s, T * K * 4);
  size_t o_sbase = take(&s, E * tp * 4), o_dest = take(&s, T * K * tp * 4);
  size_t o_sexp = take(&s, T * K * 4);
  size_t o_rrow = take(&s, E * 4), o_rtile = take(&s, E * 4);
  size_t o_l0 = take(&s, max_mtiles * sizeof(comet_mtile_t)), o_l0n = take(&s, 4);
  size_t o_l1 = take(&s, max_mtiles * sizeof(comet_mtile_t)), o_l1n = take(&s, 4);
  size_t o_next = take(&s, 2 * sizeof(uint32_t));
  size_t o_dd = take(&s, E * 4), o_pd = take(&s, El * W * 4), o_cd = take(&s, W * 4);
  size_t o_st = take(&s, sizeof(comet_route_status_t));
  size_t o_pend = take(&s, sizeof(comet_arg_fault_t));
  *scratch_bytes = s;
  if (scratch) {
    v->epoch = (uint64_t *)(scratch + o_ep);
    v->combined_epoch = v->epoch + 1;
    v->began_epoch = v->epoch + 2;
    v->fault = (comet_fault_t *)(scratch + o_fault);
    v->cta_counts = (int32_t *)(scratch + o_cta);
    v->err_key = (uint32_t *)(scratch + o_err);
    v->all_counts = (int32_t *)(scratch + o_all);
    v->expert_offset = (int32_t *)(scratch + o_eoff);
    v->block_offset = (int32_t *)(scratch + o_boff);
    v->send_offset = (int32_t *)(scratch + o_soff);
    v->send_list = (int32_t *)(scratch + o_slist);
    v->send_base = (int32_t *)(scratch + o_sbase);
    v->dest_row = (int32_t *)(scratch + o_dest);
    v->slot_expert = (int32_t *)(scratch + o_sexp);
    v->recv_row0 = (int32_t *)(scratch + o_rrow);
    v->recv_tile0 = (int32_t *)(scratch + o_rtile);
    v->l0_tiles = (comet_mtile_t *)(scratch + o_l0);
    v->l0_count = (int32_t *)(scratch + o_l0n);
    v->l1_tiles = (comet_mtile_t *)(scratch + o_l1);
    v->l1_count = (int32_t *)(scratch + o_l1n);
    v->tile_next = (uint32_t *)(scratch + o_next);
    v->dispatch_done = (uint32_t *)(scratch + o_dd);
    v->pulled_done = (uint32_t *)(scratch + o_pd);
    v->combine_done = (uint32_t *)(scratch + o_cd);
    v->status = (comet_route_status_t *)(scratch + o_st);
    v->pending = (comet_arg_fault_t *)(scratch + o_pend);
  }
  v->world = world;
  v->num_experts = cfg->num_experts;
  v->topk = cfg->topk;
  v->ep = cfg->ep;
  v->tp = cfg->tp;
  v->hidden = cfg->hidden;
  v->dtype = (int)cfg->dtype;
  v->elem_bytes = (int)comet_dtype_size(cfg->dtype);
  v->max_tokens = cfg->max_tokens_per_rank;
  v->row_capacity = cap64;
  v->max_mtiles = (int)max_mtiles;
  v->l1_blocks = (int)l1_blocks;
  v->dispatch_mode = dmode;
  v->combine_mode = cmode;
  return COMET_OK;
}

static size_t h_buf_bytes(const comet_layer_config_t *cfg) {
  return (size_t)comet_config_row_capacity(cfg) * (size_t)(cfg->ffn / cfg->tp) *
         comet_dtype_size(cfg->dtype);
}

comet_status_t comet_layer_workspace_bytes(const comet_layer_config_t *cfg, int world, size_t *bytes) {
  COMET_ARG(bytes != NULL, "bytes is NULL");
  COMET_CHECK(comet_config_validate(cfg, world));
  int dm = 0, cm = 0, fl = 0, fl1 = 0;
  comet_protocol_modes_from_env(&dm, &cm, &fl, &fl1);
  comet_comm_view_t v;
  memset(&v, 0, sizeof v);
  size_t wb = 0, sb = 0;
  COMET_CHECK(comet_layer_carve(cfg, world, dm, cm, &v, &wb, &sb, NULL));
  *bytes = wb + sb + h_buf_bytes(cfg) + comet_gemm_split_ws_bytes(comet_gemm_split_slots(INT_MAX));
  return COMET_OK;
}

void comet_protocol_modes_from_env(int *dm, int *cm, int *fused_layer0, int *fused_layer1) {
  const char *d = getenv("COMET_DISPATCH_MODE"), *c = getenv("COMET_COMBINE_MODE");
  const char *l0 = getenv("COMET_LAYER0"), *l1 = getenv("COMET_LAYER1");
  /* the fused layer1 is opt-in (COMET_LAYER1=fused) until it has run on a
   * GPU; it needs the pull combine */
  *fused_layer1 = l1 && !strcmp(l1, "fused") && !(c && !strcmp(c, "push"));
  /* the fused layer0 needs the push dispatch (its movers push); "composed"
   * runs the separate kernels (for A/B timing) */
  *fused_layer0 = !(l0 && !strcmp(l0, "composed")) && !(d && (!strcmp(d, "pull") || !strcmp(d, "tma")));
  *dm = d && !strcmp(d, "pull") ? COMET_DISPATCH_PULL
      : d && !strcmp(d, "tma")  ? COMET_DISPATCH_TMA
                                : COMET_DISPATCH_PUSH; /* faster on 4x H100 and 2x H200 */
  *cm = c && !strcmp(c, "push") ? COMET_COMBINE_PUSH : COMET_COMBINE_PULL;
}

/* ---- the creation protocol ---- */

#define CFG_FIELDS 14
static const char *const cfg_field_names[CFG_FIELDS] = {
    "hidden", "ffn", "num_experts", "topk", "ep", "tp", "max_tokens_per_rank",
    "max_rows_per_rank", "dtype", "activation", "COMET_DISPATCH_MODE", "COMET_COMBINE_MODE",
    "COMET_LAYER0", "COMET_LAYER1"};
#define WIRE_MSG 240

/* What each rank brings to layer creation: its config as it is (zeroed if
 * NULL), whether it validated here, and why not. */
typedef struct cfg_wire {
  uint32_t magic;
  uint32_t version;
  int32_t status; /* comet_status_t of this rank's own validation */
  int32_t field[CFG_FIELDS];
  char msg[WIRE_MSG];
} cfg_wire_t;

/* One rank's outcome of a local step (allocation), exchanged. */
typedef struct step_wire {
  int32_t status;
  char msg[WIRE_MSG];
} step_wire_t;

static cfg_wire_t cfg_to_wire(const comet_layer_config_t *c, int world, int dm, int cm, int fl,
                              int fl1) {
  cfg_wire_t w;
  memset(&w, 0, sizeof w);
  w.magic = 0x636f6d74u; /* "comt" */
  w.version = (uint32_t)COMET_VERSION_CODE;
  w.status = (int32_t)comet_config_validate(c, world);
  if (w.status != COMET_OK) snprintf(w.msg, sizeof w.msg, "%s", comet_last_error());
  if (c && c->size == sizeof *c) {
    int32_t f[CFG_FIELDS] = {c->hidden, c->ffn, c->num_experts, c->topk, c->ep, c->tp,
                             c->max_tokens_per_rank, c->max_rows_per_rank, (int32_t)c->dtype,
                             (int32_t)c->activation, dm, cm, fl, fl1};
    memcpy(w.field, f, sizeof f);
  }
  return w;
}

/* All-gathers every rank's record; fails on every rank naming the first bad
 * rank (its own message), or the first field that differs from rank 0's. */
static comet_status_t agree_on_config(comet_context_t ctx, const comet_layer_config_t *cfg, int dm,
                                      int cm, int fl, int fl1) {
  const int W = ctx->world;
  cfg_wire_t mine = cfg_to_wire(cfg, W, dm, cm, fl, fl1);
  cfg_wire_t *all = calloc((size_t)W, sizeof(cfg_wire_t));
  if (!all) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "layer: host allocation failed");
  comet_status_t st = ctx->tp->ops->allgather(ctx->tp, &mine, all, sizeof mine);
  for (int r = 0; r < W && st == COMET_OK; ++r) {
    if (all[r].magic != all[0].magic || all[r].version != all[0].version)
      st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "layer create: rank %d runs comet version %u, rank 0 runs %u (this is rank %d)",
                           r, all[r].version, all[0].version, ctx->rank);
    else if (all[r].status != COMET_OK)
      st = comet_set_error((comet_status_t)all[r].status,
                           "layer create: rank %d's config is refused: %.*s (this is rank %d)", r,
                           WIRE_MSG, all[r].msg, ctx->rank);
  }
  for (int r = 1; r < W && st == COMET_OK; ++r)
    for (int f = 0; f < CFG_FIELDS; ++f)
      if (all[r].field[f] != all[0].field[f]) {
        st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "layer create: configs differ across ranks: rank %d has %s = %d, "
                             "rank 0 has %s = %d (this is rank %d)",
                             r, cfg_field_names[f], all[r].field[f], cfg_field_names[f],
                             all[0].field[f], ctx->rank);
        break;
      }
  free(all);
  return st;
}

/* Exchanges the outcome of a local step; fails on every rank if any failed. */
static comet_status_t agree_on_step(comet_context_t ctx, comet_status_t local, const char *what) {
  const int W = ctx->world;
  step_wire_t mine;
  memset(&mine, 0, sizeof mine);
  mine.status = (int32_t)local;
  if (local != COMET_OK) snprintf(mine.msg, sizeof mine.msg, "%s", comet_last_error());
  step_wire_t *all = calloc((size_t)W, sizeof(step_wire_t));
  if (!all) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "layer: host allocation failed");
  comet_status_t st = ctx->tp->ops->allgather(ctx->tp, &mine, all, sizeof mine);
  for (int r = 0; r < W && st == COMET_OK; ++r)
    if (all[r].status != COMET_OK)
      st = comet_set_error((comet_status_t)all[r].status, "layer create: %s failed on rank %d: %.*s "
                           "(this is rank %d)", what, r, WIRE_MSG, all[r].msg, ctx->rank);
  free(all);
  return st;
}

/* ---- create / destroy ---- */

static void free_local(comet_layer_t L) {
  if (L->last_call) cudaEventDestroy(L->last_call);
  if (L->plan_done) cudaEventDestroy(L->plan_done);
  if (L->fault_host) cudaFreeHost(L->fault_host);
  if (L->status_host) cudaFreeHost(L->status_host);
  if (L->h_buf) cudaFree(L->h_buf);
  if (L->scratch) cudaFree(L->scratch);
  if (L->bw_ws) cudaFree(L->bw_ws);
  if (L->split_ws) cudaFree(L->split_ws);
  L->bw_ws = L->split_ws = NULL;
  L->last_call = L->plan_done = NULL;
  L->fault_host = NULL;
  L->status_host = NULL;
  L->h_buf = L->scratch = NULL;
}

static comet_status_t alloc_local(comet_layer_t L) {
  comet_context_t ctx = L->ctx;
  if (ctx->inject & COMET_INJECT_ALLOC)
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "cudaMalloc of the layer's scratch failed "
                           "(injected fault)");
  COMET_CUDA(cudaMalloc(&L->scratch, L->scratch_bytes));
  COMET_CUDA(cudaMalloc(&L->h_buf, h_buf_bytes(&L->cfg)));
  L->split_slots = comet_gemm_split_slots(ctx->sm_budget);
  COMET_CUDA(cudaMalloc(&L->split_ws, comet_gemm_split_ws_bytes(L->split_slots)));
  COMET_CUDA(cudaHostAlloc((void **)&L->fault_host, sizeof(comet_fault_t), cudaHostAllocMapped));
  memset(L->fault_host, 0, sizeof(comet_fault_t));
  COMET_CUDA(cudaHostAlloc((void **)&L->status_host, sizeof(comet_route_status_t), cudaHostAllocMapped));
  memset(L->status_host, 0, sizeof(comet_route_status_t));
  COMET_CUDA(cudaEventCreateWithFlags(&L->last_call, cudaEventDisableTiming));
  COMET_CUDA(cudaEventCreateWithFlags(&L->plan_done, cudaEventDisableTiming));
  return COMET_OK;
}

/* The view's pointers into the window and scratch; everything zeroed (flags
 * start at 0, epochs at 1; err_key at "no error"). */
static comet_status_t setup_window(comet_layer_t L) {
  comet_context_t ctx = L->ctx;
  comet_comm_view_t *v = &L->view;
  COMET_CHECK(comet_layer_carve(&L->cfg, ctx->world, v->dispatch_mode, v->combine_mode, v,
                                &L->win_bytes, &L->scratch_bytes, (char *)L->scratch));
  v->rank = ctx->rank;
  v->sm_budget = ctx->sm_budget;
  v->timeout_ns = (uint64_t)(ctx->timeout_s * 1e9);
  v->win_local = L->win.local;
  for (int p = 0; p < ctx->world; ++p) v->peer[p] = L->win.peer[p];
  void *fh = NULL;
  COMET_CUDA(cudaHostGetDevicePointer(&fh, L->fault_host, 0));
  v->fault_host = (comet_fault_t *)fh;
  void *sh = NULL;
  COMET_CUDA(cudaHostGetDevicePointer(&sh, L->status_host, 0));
  v->status_host = (comet_route_status_t *)sh;
  v->abort = ctx->abort_dev;
  /* kernels, not cudaMemsetAsync: a peer past its creation may already spin
   * in its first call (kernels/fill.h) */
  COMET_CHECK(comet_fill_bytes_launch(L->win.local, 0, L->win_bytes, ctx->stream));
  COMET_CHECK(comet_fill_bytes_launch(L->scratch, 0, L->scratch_bytes, ctx->stream));
  COMET_CHECK(comet_fill_bytes_launch(L->split_ws, 0, comet_gemm_split_ws_bytes(L->split_slots), ctx->stream));
  COMET_CHECK(comet_fill_bytes_launch(v->err_key, 0xff, sizeof(uint32_t), ctx->stream));
  COMET_CUDA(cudaStreamSynchronize(ctx->stream));
  return COMET_OK;
}

comet_status_t comet_layer_create(comet_layer_t *out, comet_context_t ctx,
                                  const comet_layer_config_t *cfg) {
  COMET_ARG(out != NULL, "layer is NULL");
  *out = NULL;
  COMET_ARG(ctx != NULL, "ctx is NULL");
  COMET_CHECK(comet_context_make_current(ctx));
  int dm = 0, cm = 0, fl = 0, fl1 = 0;
  comet_protocol_modes_from_env(&dm, &cm, &fl, &fl1);
  /* Exchange first, validate after, on every rank: a config that is bad on
   * one rank only fails every rank instead of leaving them in a collective. */
  COMET_CHECK(agree_on_config(ctx, cfg, dm, cm, fl, fl1));

  struct comet_layer *L = calloc(1, sizeof *L);
  comet_status_t st = L ? COMET_OK
                        : comet_set_error(COMET_ERR_OUT_OF_MEMORY, "layer: host allocation failed");
  if (L) {
    static _Atomic uint64_t layers_made;
    L->ctx = ctx;
    L->uid = atomic_fetch_add(&layers_made, 1) + 1;
    L->cfg = *cfg;
    L->row_capacity = comet_config_row_capacity(cfg);
    L->layer0_path = fl ? COMET_LAYER0_FUSED : COMET_LAYER0_COMPOSED;
    L->gather0 = L->tile0 = -1;
    const char *dyn = getenv("COMET_L0_DYNAMIC");
    L->dynamic0 = !(dyn && dyn[0] == '0'); /* dynamic tiles unless COMET_L0_DYNAMIC=0 */
    const char *bands = getenv("COMET_L0_BANDS");
    L->expert_bands0 = !(bands && !strcmp(bands, "8")); /* one expert a band unless COMET_L0_BANDS=8 */
    const char *stages = getenv("COMET_L0_STAGES");
    L->stages0 = stages && !strcmp(stages, "3") ? 3 : 4;
    L->layer1_path = fl1 ? COMET_LAYER1_FUSED : COMET_LAYER1_COMPOSED;
    st = comet_layer_carve(cfg, ctx->world, dm, cm, &L->view, &L->win_bytes, &L->scratch_bytes, NULL);
    if (st == COMET_OK) st = alloc_local(L);
  }
  /* Every rank's local allocations succeeded before the collective window. */
  comet_status_t agreed = agree_on_step(ctx, st, "allocating the layer's local memory");
  if (agreed != COMET_OK) {
    if (L) free_local(L);
    free(L);
    return agreed;
  }
  st = ctx->tp->ops->sym_alloc(ctx->tp, L->win_bytes, &L->win); /* collective, agreed */
  if (st != COMET_OK) {
    free_local(L);
    free(L);
    return comet_trace_error(st, __FILE__, __LINE__);
  }
  st = setup_window(L);
  /* Every rank cleared its window (an all-gather: also the barrier before
   * any peer writes into it), or every rank fails. */
  agreed = agree_on_step(ctx, st, "clearing the layer's window");
  if (agreed != COMET_OK) {
    ctx->tp->ops->sym_free(ctx->tp, &L->win);
    free_local(L);
    free(L);
    return agreed;
  }
  *out = L;
  return COMET_OK;
}

comet_status_t comet_layer_destroy(comet_layer_t L) {
  if (!L) return COMET_OK;
  comet_status_t st = COMET_OK;
  /* This rank's last call is done (an event, not a device-wide sync: in the
   * loopback world that would also wait for peers that may wait for us). */
  if (comet_context_make_current(L->ctx) != COMET_OK ||
      (L->has_last && cudaEventSynchronize(L->last_call) != cudaSuccess))
    st = comet_set_error(COMET_ERR_CUDA, "layer destroy: the layer's last call on device %d did "
                         "not finish", L->ctx->device);
  /* This rank's own memory first, then the window (collective: every
   * rank's kernels are done with it): the local cudaFrees wait for the whole
   * device, so none of them may come after a meeting a fast peer leaves to
   * launch kernels that wait for this rank. */
  comet_context_t ctx = L->ctx;
  free_local(L);
  comet_status_t fs = ctx->tp->ops->sym_free(ctx->tp, &L->win);
  if (fs != COMET_OK && st == COMET_OK) st = fs;
  free(L);
  return st;
}

/* ---- faults, ordering ---- */

static const char *wait_name(int what) {
  switch (what) {
    case COMET_WAIT_BARRIER: return "barrier";
    case COMET_WAIT_DISPATCH: return "dispatch flag";
    case COMET_WAIT_COMBINE: return "combine flag";
    case COMET_WAIT_TEST: return "test flag";
    case COMET_WAIT_TILE: return "layer0 M-tile row counter";
  }
  return "flag";
}

static const char *barrier_name(int index) {
  switch (index) {
    case COMET_BAR_PLAN: return "the plan's count exchange";
    case COMET_BAR_PLAN_DONE: return "the end of the plan";
    case COMET_BAR_DISPATCH: return "the pull dispatch's start";
    case COMET_BAR_COMBINE_BEGIN: return "comet_gemm_combine's start";
    case COMET_BAR_COMBINE: return "the pull combine's start";
    case COMET_BAR_BACKWARD: return "the backward's row weights";
    case COMET_BAR_BACKWARD_DOT: return "the backward's d topk_weights";
  }
  return "?";
}

comet_status_t comet_layer_fault_status(comet_layer_t L) {
  volatile comet_fault_t *f = (volatile comet_fault_t *)L->fault_host;
  const int code = f->code;
  if (code == COMET_FAULT_NONE) return COMET_OK;
  __sync_synchronize(); /* the fields were written before the code */
  const int rank = f->rank, what = f->what, peer = f->peer, a = f->a, b = f->b;
  const unsigned long long target = f->target, seen = f->seen;
  char where[160];
  if (what == COMET_WAIT_START && code == COMET_FAULT_ABORT) /* no wait had begun */
    snprintf(where, sizeof where, "for nothing yet (at its call's start)");
  else if (what == COMET_WAIT_START)
    snprintf(where, sizeof where, "before its call's first wait (its call's first kernel ran "
             "only after rank %d had given up)", peer);
  else if (what == COMET_WAIT_BARRIER)
    snprintf(where, sizeof where, "at the barrier of %s (sequence %llu, has %llu from rank %d)",
             barrier_name(a), target, seen, peer);
  else
    snprintf(where, sizeof where, "on %s [%d][%d] >= %llu (has %llu) from rank %d", wait_name(what),
             a, b, target, seen, peer);
  switch (code) {
    case COMET_FAULT_TIMEOUT:
      return comet_set_error(COMET_ERR_TIMEOUT,
                             "rank %d gave up after %.3g s waiting %s: rank %d never came; the "
                             "layer is unusable (destroy it and create a new one)",
                             rank, (double)L->view.timeout_ns * 1e-9, where, peer);
    case COMET_FAULT_ABORT:
      return comet_set_error(COMET_ERR_ABORTED,
                             "rank %d was aborted (comet_context_abort) while waiting %s; the layer "
                             "is unusable", rank, where);
    default:
      return comet_set_error(COMET_ERR_TIMEOUT,
                             "rank %d stopped waiting %s: rank %d reported that its own wait gave "
                             "up (timeout or abort; see its error); the layer is unusable",
                             rank, where, peer);
  }
}

comet_status_t comet_layer_call_begin(comet_layer_t L, cudaStream_t stream) {
  L->route_check_due = 0;
  COMET_CHECK(comet_layer_fault_status(L));
  if (!L->has_last || L->last_stream == stream) return COMET_OK;
  enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  COMET_CUDA(cudaStreamIsCapturing(stream, &cap));
  COMET_CUDA(cudaStreamWaitEvent(stream, L->last_call,
                                 cap == cudaStreamCaptureStatusNone ? 0 : cudaEventWaitExternal));
  return COMET_OK;
}

comet_status_t comet_layer_call_end(comet_layer_t L, cudaStream_t stream) {
  enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  COMET_CUDA(cudaStreamIsCapturing(stream, &cap));
  COMET_CUDA(cudaEventRecordWithFlags(L->last_call, stream,
                                      cap == cudaStreamCaptureStatusNone ? 0 : cudaEventRecordExternal));
  L->last_stream = stream;
  L->has_last = 1;
  return COMET_OK;
}

/* ---- the communication steps ---- */

const comet_comm_view_t *comet_layer_view(comet_layer_t L) { return &L->view; }

/* The composed steps' dispatch and combine run alone on the layer's
 * stream. At W = 1 they only move rows within the GPU (a memory-bound
 * gather or top-k sum): the whole SM budget (session 13: see docs/status.md,
 * Fused layer1). Across GPUs 24 CTAs, DeepEP's figure, until a multi-GPU
 * run measures more (issues 15, 16). */
int comet_layer_default_ctas(comet_layer_t L) {
  const int want = L->view.world == 1 ? L->view.sm_budget : 24;
  return L->view.sm_budget < want ? L->view.sm_budget : want;
}

comet_status_t comet_layer_plan(comet_layer_t L, int num_tokens, const int32_t *ids,
                                const comet_arg_fault_t *arg, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  /* The caller's fault (it reports its own message), or one found here. */
  comet_arg_fault_t mine = {COMET_ARG_NONE, 0, 0, 0};
  const int callers = arg && arg->kind != COMET_ARG_NONE;
  if (callers) mine = *arg;
  else if (num_tokens < 0 || num_tokens > L->cfg.max_tokens_per_rank)
    mine = (comet_arg_fault_t){COMET_ARG_TOKENS, COMET_FIELD_ARGS, num_tokens, 0};
  else if (num_tokens > 0 && !ids)
    mine = (comet_arg_fault_t){COMET_ARG_NULL, COMET_FIELD_IDS, 0, 0};
  COMET_CHECK(comet_plan_device_launch(&L->view, num_tokens, ids, &mine, stream));
  L->planned = 1;
  L->planned_tokens = mine.kind == COMET_ARG_NONE ? num_tokens : 0;
  if (callers || mine.kind == COMET_ARG_NONE) return COMET_OK;
  COMET_ARG(mine.kind != COMET_ARG_TOKENS,
            "num_tokens = %d on rank %d is outside 0..max_tokens_per_rank = %d of the layer (the "
            "workspace holds no more); every rank's call fails",
            num_tokens, L->ctx->rank, L->cfg.max_tokens_per_rank);
  return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                         "topk_ids is NULL with num_tokens = %d on rank %d; every rank's call fails",
                         num_tokens, L->ctx->rank);
}

static int pick_ctas(comet_layer_t L, int ctas) {
  if (ctas <= 0) ctas = comet_layer_default_ctas(L);
  return ctas;
}

comet_status_t comet_layer_dispatch(comet_layer_t L, const void *x, int ctas, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(L->planned, "dispatch before any comet_layer_plan");
  COMET_ARG(L->planned_tokens == 0 || x != NULL, "x is NULL");
  return comet_dispatch_launch(&L->view, x, L->planned_tokens, pick_ctas(L, ctas), stream);
}

comet_status_t comet_layer_combine(comet_layer_t L, const void *y, const float *w, void *out,
                                   int ctas, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(L->planned, "combine before any comet_layer_plan");
  COMET_ARG(L->planned_tokens == 0 || (w && out), "topk_weights or out is NULL");
  return comet_combine_launch(&L->view, y, L->planned_tokens, w, out, pick_ctas(L, ctas), stream);
}

static const char *const field_names[COMET_FIELDS] = {"x", "topk_ids", "topk_weights", "w1",
                                                      "w2", "out", "h", "args", "dout",
                                                      "dx, dw1, dw2 and dtopk_weights",
                                                      "saved_z"};

static comet_status_t bad_args_error(const comet_route_status_t *s, comet_layer_t L) {
  const char *f = s->slot >= 0 && s->slot < COMET_FIELDS ? field_names[s->slot] : "?";
  switch (s->token) {
    case COMET_ARG_TOKENS:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's call was refused: its num_tokens = %d is outside "
                             "0..max_tokens_per_rank = %d; no rows were moved (this is rank %d)",
                             s->rank, s->value, L->cfg.max_tokens_per_rank, L->ctx->rank);
    case COMET_ARG_NULL:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's call was refused: its %s is NULL; no rows were moved (this "
                             "is rank %d)", s->rank, f, L->ctx->rank);
    case COMET_ARG_ALIGN:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's call was refused: its %s is not 16-byte aligned; no rows "
                             "were moved (this is rank %d)", s->rank, f, L->ctx->rank);
    case COMET_ARG_REPEATED:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's second comet_gemm_combine of one comet_dispatch_gemm was "
                             "refused (its rows would overwrite what peers still read); run "
                             "comet_dispatch_gemm again first (this is rank %d)",
                             s->rank, L->ctx->rank);
    case COMET_ARG_ALLOC:
      return comet_set_error(COMET_ERR_OUT_OF_MEMORY,
                             "rank %d could not allocate the backward's workspace; every rank's "
                             "comet_moe_backward fails (this is rank %d)", s->rank, L->ctx->rank);
    case COMET_ARG_SAVED_Z:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's comet_moe_backward was refused: its saved_z %s; nothing was "
                             "computed (this is rank %d)", s->rank,
                             s->value == COMET_SAVED_NOT_FILLED
                                 ? "was not filled by a forward in save mode"
                             : s->value == COMET_SAVED_OTHER_LAYER
                                 ? "was filled by another layer's forward"
                                 : "was filled by a forward of other routing or token counts than "
                                   "this backward's (its topk_ids and num_tokens on every rank must "
                                   "be the forward's)",
                             L->ctx->rank);
    case COMET_ARG_TOKENS_DIFFER:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's comet_gemm_combine was refused: its num_tokens = %d differs "
                             "from its comet_dispatch_gemm's (this is rank %d)",
                             s->rank, s->value, L->ctx->rank);
    default:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "rank %d's call was refused: its args struct is NULL or its size (%d) "
                             "is wrong (this is rank %d)", s->rank, s->value, L->ctx->rank);
  }
}

static comet_status_t route_error(comet_layer_t L, comet_route_status_t s);

comet_status_t comet_layer_route_status(comet_layer_t L, cudaStream_t stream,
                                        comet_route_status_t *out) {
  COMET_ARG(L != NULL, "layer is NULL");
  comet_route_status_t s;
  COMET_CUDA(cudaStreamSynchronize(stream));
  COMET_CHECK(comet_layer_fault_status(L));
  COMET_CUDA(cudaMemcpy(&s, L->view.status, sizeof s, cudaMemcpyDeviceToHost));
  if (out) *out = s;
  return route_error(L, s);
}

comet_status_t comet_layer_route_check_queue(comet_layer_t L, cudaStream_t stream) {
  if (L->graph_mode) return COMET_OK;
  /* the status's mirror is written by then (comm.h: status_host) */
  COMET_CUDA(cudaEventRecord(L->plan_done, stream));
  L->route_check_due = 1;
  return COMET_OK;
}

comet_status_t comet_layer_route_check(comet_layer_t L) {
  if (!L->route_check_due) return COMET_OK;
  L->route_check_due = 0;
  COMET_CUDA(cudaEventSynchronize(L->plan_done));
  COMET_CHECK(comet_layer_fault_status(L));
  return route_error(L, *(volatile comet_route_status_t *)L->status_host);
}

/* The routing status s as the call's status and message. */
static comet_status_t route_error(comet_layer_t L, comet_route_status_t s) {
  switch (s.code) {
    case COMET_ROUTE_OK: return COMET_OK;
    case COMET_ROUTE_OUT_OF_RANGE:
      return comet_set_error(COMET_ERR_ROUTING,
                             "topk_ids[%d][%d] = %d on rank %d is out of range [0, %d) (-1 = "
                             "dropped); no rows were moved",
                             s.token, s.slot, s.value, s.rank, L->cfg.num_experts);
    case COMET_ROUTE_DUPLICATE:
      return comet_set_error(COMET_ERR_ROUTING,
                             "topk_ids[%d][%d] = %d on rank %d repeats an expert of the same "
                             "token; no rows were moved",
                             s.token, s.slot, s.value, s.rank);
    case COMET_ROUTE_CAPACITY:
      return comet_set_error(COMET_ERR_ROUTING,
                             "rank %d would receive %d rows, more than its row capacity %lld "
                             "(max_rows_per_rank); no rows were moved",
                             s.rank, s.value, (long long)L->row_capacity);
    case COMET_ROUTE_BAD_ARGS: return bad_args_error(&s, L);
    case COMET_ROUTE_REPEATED:
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "a second combine of one routing plan was refused (run "
                             "comet_dispatch_gemm again first); its output is NaN");
    case COMET_ROUTE_FAULT:
      return comet_set_error(COMET_ERR_INTERNAL, "a wait gave up but left no fault record");
    default:
      return comet_set_error(COMET_ERR_INTERNAL, "routing status code %d is unknown", s.code);
  }
}

struct comet_saved_trailer *comet_layer_saved_trailer(comet_layer_t L, const void *z) {
  return comet_saved_trailer_of(z, L->row_capacity, comet_saved_row_bytes(&L->cfg));
}
