/* layer.c — comet layers: config check across ranks, the symmetric
 * workspace (ncclMemAlloc + NCCL_WIN_COLL_SYMMETRIC window), the NCCL device
 * communicator, local scratch, and the communication steps. */
#include "layer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "error.h"

#define ALIGN 256
static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Takes `bytes` (aligned) at *cursor and returns the region's offset. */
static size_t take(size_t *cursor, size_t bytes) {
  size_t off = *cursor;
  *cursor += align_up(bytes ? bytes : 1);
  return off;
}

comet_status_t comet_layer_carve(const comet_layer_config_t *cfg, int world,
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
   *   counts     int32 [2][W][E]       per-source expert counts, double-buffered by epoch
   *   errors     int32x4 [2][W]        first bad id of each source
   *   dflags     uint64 [El][W]        dispatch arrival flag per (local expert, arrival j)
   *   cflags     uint64 [W]            combine arrival flag per sending rank
   *   row_src, row_token, row_slot     int32 [cap] each: who sent each received row
   *   rows       [cap][H] dtype        dispatched rows
   *   x          [T][H] dtype          this rank's tokens, pulled by the dispatch
   *   y          [cap][H] dtype        expert outputs the combine pulls home
   *   ret        [T*K*tp][H] dtype     rows pushed home (push combine)
   * each region starts on a 256-byte boundary. */
  size_t c = 0;
  v->off_counts = take(&c, 2 * W * E * sizeof(int32_t));
  v->off_errors = take(&c, 2 * W * 4 * sizeof(int32_t));
  v->off_dflags = take(&c, El * W * sizeof(uint64_t));
  v->off_cflags = take(&c, W * sizeof(uint64_t));
  v->off_row_src = take(&c, cap * sizeof(int32_t));
  v->off_row_token = take(&c, cap * sizeof(int32_t));
  v->off_row_slot = take(&c, cap * sizeof(int32_t));
  v->off_rows = take(&c, cap * row_bytes);
  v->off_x = take(&c, T * row_bytes);
  v->off_y = take(&c, cap * row_bytes);
  v->off_ret = take(&c, T * K * tp * row_bytes);
  *win_bytes = c;

  /* Local scratch (cudaMalloc):
   *   cta_counts    int32 [ceil(T/256)][E]   per plan CTA
   *   err_key       uint32                   smallest bad t*K+k
   *   all_counts    int32 [W][E]
   *   expert_offset int32 [El+1]
   *   block_offset  int32 [El*(W+1)]
   *   send_offset   int32 [E+1]
   *   send_list     int32 [T*K]
   *   send_base     int32 [E*tp]
   *   dest_row      int32 [T*K*tp]
   *   dispatch_done uint32 [E]
   *   pulled_done   uint32 [El*W]
   *   combine_done  uint32 [W]
   *   status        comet_route_status_t */
  size_t s = 0;
  size_t o_cta = take(&s, plan_ctas * E * 4), o_err = take(&s, 4), o_all = take(&s, W * E * 4);
  size_t o_eoff = take(&s, (El + 1) * 4), o_boff = take(&s, El * (W + 1) * 4);
  size_t o_soff = take(&s, (E + 1) * 4), o_slist = take(&s, T * K * 4);
  size_t o_sbase = take(&s, E * tp * 4), o_dest = take(&s, T * K * tp * 4);
  size_t o_dd = take(&s, E * 4), o_pd = take(&s, El * W * 4), o_cd = take(&s, W * 4);
  size_t o_st = take(&s, sizeof(comet_route_status_t));
  *scratch_bytes = s;
  if (scratch) {
    v->cta_counts = (int32_t *)(scratch + o_cta);
    v->err_key = (uint32_t *)(scratch + o_err);
    v->all_counts = (int32_t *)(scratch + o_all);
    v->expert_offset = (int32_t *)(scratch + o_eoff);
    v->block_offset = (int32_t *)(scratch + o_boff);
    v->send_offset = (int32_t *)(scratch + o_soff);
    v->send_list = (int32_t *)(scratch + o_slist);
    v->send_base = (int32_t *)(scratch + o_sbase);
    v->dest_row = (int32_t *)(scratch + o_dest);
    v->dispatch_done = (uint32_t *)(scratch + o_dd);
    v->pulled_done = (uint32_t *)(scratch + o_pd);
    v->combine_done = (uint32_t *)(scratch + o_cd);
    v->status = (comet_route_status_t *)(scratch + o_st);
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
  return COMET_OK;
}

/* ---- config agreement across ranks ---- */

#define CFG_FIELDS 10
static const char *const cfg_field_names[CFG_FIELDS] = {
    "hidden", "ffn", "num_experts", "topk", "ep", "tp", "max_tokens_per_rank",
    "max_rows_per_rank", "dtype", "activation"};

typedef struct cfg_wire {
  uint32_t magic;
  uint32_t version;
  int32_t field[CFG_FIELDS];
  uint64_t hash; /* FNV-1a of the fields: a quick equality test */
} cfg_wire_t;

static cfg_wire_t cfg_to_wire(const comet_layer_config_t *c) {
  cfg_wire_t w;
  memset(&w, 0, sizeof w);
  w.magic = 0x636f6d74u; /* "comt" */
  w.version = (uint32_t)COMET_VERSION_CODE;
  int32_t f[CFG_FIELDS] = {c->hidden, c->ffn, c->num_experts, c->topk, c->ep, c->tp,
                           c->max_tokens_per_rank, c->max_rows_per_rank, (int32_t)c->dtype,
                           (int32_t)c->activation};
  memcpy(w.field, f, sizeof f);
  uint64_t h = 1469598103934665603ull;
  const unsigned char *p = (const unsigned char *)w.field;
  for (size_t i = 0; i < sizeof w.field; ++i) h = (h ^ p[i]) * 1099511628211ull;
  w.hash = h;
  return w;
}

/* All-gathers every rank's config; fails on every rank, naming the first
 * differing field, if any two differ. */
static comet_status_t check_configs_agree(comet_context_t ctx, const comet_layer_config_t *cfg) {
  const int W = ctx->world;
  cfg_wire_t mine = cfg_to_wire(cfg);
  cfg_wire_t *all = calloc((size_t)W, sizeof(cfg_wire_t));
  void *dbuf = NULL;
  comet_status_t st = COMET_OK;
  if (!all) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "layer: host allocation failed");
  COMET_CUDA_GOTO(cudaMalloc(&dbuf, sizeof(cfg_wire_t) * (size_t)(W + 1)), st, done);
  COMET_CUDA_GOTO(cudaMemcpyAsync((char *)dbuf + sizeof(cfg_wire_t) * (size_t)W, &mine, sizeof mine,
                                  cudaMemcpyHostToDevice, ctx->stream), st, done);
  COMET_NCCL_GOTO(ncclAllGather((char *)dbuf + sizeof(cfg_wire_t) * (size_t)W, dbuf,
                                sizeof(cfg_wire_t), ncclUint8, ctx->comm, ctx->stream), st, done);
  COMET_CUDA_GOTO(cudaMemcpyAsync(all, dbuf, sizeof(cfg_wire_t) * (size_t)W, cudaMemcpyDeviceToHost,
                                  ctx->stream), st, done);
  COMET_CUDA_GOTO(cudaStreamSynchronize(ctx->stream), st, done);
  for (int r = 1; r < W && st == COMET_OK; ++r) {
    if (all[r].magic != all[0].magic || all[r].version != all[0].version) {
      st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "layer create: rank %d runs comet version %u, rank 0 runs %u", r,
                           all[r].version, all[0].version);
      break;
    }
    if (all[r].hash == all[0].hash && !memcmp(all[r].field, all[0].field, sizeof all[0].field))
      continue;
    for (int f = 0; f < CFG_FIELDS; ++f)
      if (all[r].field[f] != all[0].field[f]) {
        st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "layer create: configs differ across ranks: rank %d has %s = %d, "
                             "rank 0 has %s = %d (this is rank %d)",
                             r, cfg_field_names[f], all[r].field[f], cfg_field_names[f],
                             all[0].field[f], ctx->rank);
        break;
      }
  }
done:
  if (dbuf) cudaFree(dbuf);
  free(all);
  return st;
}

/* A collective no-op that completes only once every rank got here. */
static comet_status_t ranks_barrier(comet_context_t ctx, int32_t *dword) {
  COMET_NCCL(ncclAllReduce(dword, dword, 1, ncclInt32, ncclSum, ctx->comm, ctx->stream));
  COMET_CUDA(cudaStreamSynchronize(ctx->stream));
  return COMET_OK;
}

/* ---- create / destroy ---- */

static void layer_teardown(comet_layer_t L) {
  /* reverse order of layer_setup */
  if (L->h_buf) cudaFree(L->h_buf);
  if (L->scratch) cudaFree(L->scratch);
  if (L->devcomm) comet_devcomm_destroy(L->ctx->comm, L->devcomm);
  if (L->win) ncclCommWindowDeregister(L->ctx->comm, L->win);
  if (L->win_base) {
    if (L->ctx->world > 1) ncclMemFree(L->win_base);
    else cudaFree(L->win_base);
  }
  L->h_buf = L->scratch = L->devcomm = L->win_base = NULL;
  L->win = NULL;
}

comet_status_t comet_layer_create(comet_layer_t *out, comet_context_t ctx,
                                  const comet_layer_config_t *cfg) {
  COMET_ARG(out != NULL, "layer is NULL");
  *out = NULL;
  COMET_ARG(ctx != NULL, "ctx is NULL");
  COMET_CHECK(comet_config_validate(cfg, ctx->world));
  COMET_CUDA(cudaSetDevice(ctx->device));
  /* Every rank validated its own config; a mismatch would make the
   * collective allocations below disagree (and hang), so check first. */
  COMET_CHECK(check_configs_agree(ctx, cfg));

  struct comet_layer *L = calloc(1, sizeof *L);
  if (!L) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "layer: host allocation failed");
  comet_status_t st = COMET_OK;
  L->ctx = ctx;
  L->cfg = *cfg;
  L->dims.num_experts = cfg->num_experts;
  L->dims.topk = cfg->topk;
  L->dims.ep = cfg->ep;
  L->dims.tp = cfg->tp;
  L->row_capacity = comet_config_row_capacity(cfg);
  comet_comm_view_t *v = &L->view;
  COMET_CHECK_GOTO(comet_layer_carve(cfg, ctx->world, v, &L->win_bytes, &L->scratch_bytes, NULL),
                   st, fail);

  if (ctx->world > 1) {
    COMET_NCCL_GOTO(ncclMemAlloc(&L->win_base, L->win_bytes), st, fail);
    COMET_NCCL_GOTO(ncclCommWindowRegister(ctx->comm, L->win_base, L->win_bytes, &L->win,
                                           NCCL_WIN_COLL_SYMMETRIC), st, fail);
    /* The plan's kernels use LSA barrier 0 (one CTA each). */
    COMET_CHECK_GOTO(comet_devcomm_create(ctx->comm, 1, &L->devcomm), st, fail);
  } else {
    /* NCCL gives a 1-rank communicator no symmetric memory; nothing is
     * shared, so plain device memory serves (kernels see win == NULL). */
    COMET_CUDA_GOTO(cudaMalloc(&L->win_base, L->win_bytes), st, fail);
  }
  COMET_CUDA_GOTO(cudaMalloc(&L->scratch, L->scratch_bytes), st, fail);
  COMET_CUDA_GOTO(cudaMalloc(&L->h_buf, (size_t)L->row_capacity * (size_t)(cfg->ffn / cfg->tp) *
                                            comet_dtype_size(cfg->dtype)),
                  st, fail);
  COMET_CHECK_GOTO(comet_layer_carve(cfg, ctx->world, v, &L->win_bytes, &L->scratch_bytes,
                                     (char *)L->scratch), st, fail);
  v->rank = ctx->rank;
  v->sm_count = ctx->sm_count;
  v->win = (void *)L->win;
  v->devcomm = L->devcomm;
  v->win_local = (char *)L->win_base;

  /* Flags start at 0 (epochs start at 1); err_key at "no error". */
  COMET_CUDA_GOTO(cudaMemsetAsync(L->win_base, 0, L->win_bytes, ctx->stream), st, fail);
  COMET_CUDA_GOTO(cudaMemsetAsync(L->scratch, 0, L->scratch_bytes, ctx->stream), st, fail);
  COMET_CUDA_GOTO(cudaMemsetAsync(v->err_key, 0xff, sizeof(uint32_t), ctx->stream), st, fail);
  /* No peer may write into this window before it is cleared: a collective
   * after the memsets (status.pad is a zeroed int to all-reduce). */
  COMET_CHECK_GOTO(ranks_barrier(ctx, &v->status->pad[0]), st, fail);
  *out = L;
  return COMET_OK;
fail:
  layer_teardown(L);
  free(L);
  return st;
}

comet_status_t comet_layer_destroy(comet_layer_t L) {
  if (!L) return COMET_OK;
  comet_status_t st = COMET_OK;
  if (cudaSetDevice(L->ctx->device) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess)
    st = comet_set_error(COMET_ERR_CUDA, "layer destroy: device %d did not synchronize",
                         L->ctx->device);
  layer_teardown(L);
  free(L);
  return st;
}

/* ---- the communication steps ---- */

const comet_comm_view_t *comet_layer_view(comet_layer_t L) { return &L->view; }

int comet_layer_default_ctas(comet_layer_t L) {
  (void)L;
  return 24;
}

comet_status_t comet_layer_plan(comet_layer_t L, int num_tokens, const int32_t *ids,
                                cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(num_tokens >= 0 && num_tokens <= L->cfg.max_tokens_per_rank,
            "num_tokens = %d on rank %d exceeds the layer's max_tokens_per_rank = %d (the "
            "workspace holds no more); no kernel was launched",
            num_tokens, L->ctx->rank, L->cfg.max_tokens_per_rank);
  COMET_ARG(num_tokens == 0 || ids != NULL, "topk_ids is NULL with num_tokens = %d", num_tokens);
  COMET_CHECK(comet_plan_device_launch(&L->view, L->epoch + 1, num_tokens, ids, stream));
  L->epoch++;
  L->planned_tokens = num_tokens;
  return COMET_OK;
}

static int pick_ctas(comet_layer_t L, int ctas) {
  if (ctas <= 0) ctas = comet_layer_default_ctas(L);
  return ctas;
}

comet_status_t comet_layer_dispatch(comet_layer_t L, const void *x, int ctas, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(L->epoch > 0, "dispatch before any comet_layer_plan");
  COMET_ARG(L->planned_tokens == 0 || x != NULL, "x is NULL");
  return comet_dispatch_launch(&L->view, L->epoch, x, L->planned_tokens, pick_ctas(L, ctas), stream);
}

comet_status_t comet_layer_combine(comet_layer_t L, const void *y, const int32_t *ids,
                                   const float *w, void *out, int ctas, cudaStream_t stream) {
  COMET_ARG(L != NULL, "layer is NULL");
  COMET_ARG(L->epoch > 0, "combine before any comet_layer_plan");
  COMET_ARG(L->planned_tokens == 0 || (ids && w && out), "topk_ids, topk_weights or out is NULL");
  return comet_combine_launch(&L->view, L->epoch, y, L->planned_tokens, ids, w, out,
                              pick_ctas(L, ctas), stream);
}

comet_status_t comet_layer_route_status(comet_layer_t L, cudaStream_t stream,
                                        comet_route_status_t *out) {
  COMET_ARG(L != NULL, "layer is NULL");
  comet_route_status_t s;
  COMET_CUDA(cudaStreamSynchronize(stream));
  COMET_CUDA(cudaMemcpy(&s, L->view.status, sizeof s, cudaMemcpyDeviceToHost));
  if (out) *out = s;
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
    default:
      return comet_set_error(COMET_ERR_INTERNAL, "routing status code %d is unknown", s.code);
  }
}
