/* SPDX-License-Identifier: Apache-2.0 */
/* baseline.c — the unfused MoE layer (see baseline.h for the layout).
 *
 * The backward is a Megatron-Core MoE layer's, in one of two modes:
 * recompute (the default) as under full activation recompute: the forward
 * runs again inside the backward call and autograd's steps follow. That is
 * the fair comparison with comet_moe_backward's default, which also
 * recomputes from x and saves nothing between the calls. Save mode
 * (comet_baseline_set_save) is Megatron without recompute: the forward
 * keeps A, z, h, y (home, for d topk_weights), the slot rows d_pos and the
 * call's plan, and the backward starts at step 2 (comet's save mode keeps
 * z alone, so there comet still redoes the dispatch that the baseline
 * skips). One saved forward at a time, consumed by its backward.
 *   1. route, count exchange (the host sync), dispatch x, fc1 (z), act (h),
 *      fc2 (y), keeping A, z and h in the forward's buffers; y goes home as
 *      the forward's combine sends it (unsort, TP reduce-scatter, EP
 *      all-to-all), only its final weighted sum (unused) is skipped. Save
 *      mode: the saved forward did this, with fc2 into y (not over A); the
 *      backward's exchange carries only the ranks' status (its counts are
 *      the forward's, left in d_counts) and replans the same call;
 *   2. at home: d topk_weights[t,k] = <dout[t], y_k> (the gradient of
 *      Megatron's unpermute-with-probs), dy rows = w[t,k] * dout[t] permuted
 *      by expert;
 *   3. dy dispatched as x was (EP all-to-all, TP all-gather, sort);
 *   4. dh = dy . w2, dw2 = dy^T h, da = act'(z) . dh, dw1 = da^T A,
 *      dA = da . w1 (cuBLAS, dtype outputs, fp32 compute; an expert without
 *      rows gets zero weight gradients);
 *   5. dA combined as y was; dx[t] = sum_k of its rows that came home.
 * Every rank runs all the comm and the GEMMs that feed it (dh, dA), whatever
 * it asked for; dw1, dw2, the dots and dx's sum only where asked.
 *
 * Buffers (rows of H elements unless noted; cap = comet_config_row_capacity):
 *   send    [T_max*K]      own rows permuted by expert; later the rows back
 *   r2      [cap]          received rows: TP segment i (rows of TP peer i's
 *                          EP all-to-all), inside it EP source g, then local
 *                          expert; later the expert outputs in that order
 *   sorted  [cap]          the same rows by local expert (i, g inside); later
 *                          fc2's output, but in save mode (only when
 *                          E/ep > 1: with one local expert r2 is already
 *                          sorted)
 *   g1      [cap, w1_rows] fc1's output (backward: then da, in place);
 *   h       [cap, F/tp]    the activation's
 * Backward only, made by its first call (or the first save-mode forward):
 *   y       [cap]          fc2's output (sorted), then dy, then dA; with one
 *                          local expert also their comm buffer (r2's layout;
 *                          else r2 is, once x's rows are sorted)
 *   dh      [cap, F/tp]    dy . w2 (also da without an activation)
 * A buffer is reused once its contents are dead, never while a kernel or a
 * collective still reads it (everything runs in stream order). */
#include "baseline.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "baseline_kernels.h"
#include "error.h"

#define BL_CUDA(x)                                                                   \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess)                                                           \
      return comet_trace_error(                                                      \
          comet_set_error(COMET_ERR_CUDA, "baseline: %s: %s", #x, cudaGetErrorString(e_)), \
          __FILE__, __LINE__);                                                       \
  } while (0)
#define BL_NCCL(x)                                                                   \
  do {                                                                               \
    ncclResult_t r_ = (x);                                                           \
    if (r_ != ncclSuccess)                                                           \
      return comet_trace_error(comet_set_error(COMET_ERR_NCCL, "baseline: %s: %s (%s)", #x, \
                                               ncclGetErrorString(r_), ncclGetLastError(NULL)), \
                               __FILE__, __LINE__);                                  \
  } while (0)
#define BL_BLAS(x)                                                                   \
  do {                                                                               \
    cublasStatus_t s_ = (x);                                                         \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
      return comet_trace_error(comet_set_error(COMET_ERR_CUDA, "baseline: %s: cuBLAS %s", #x, \
                                               cublasGetStatusString(s_)),           \
                               __FILE__, __LINE__);                                  \
  } while (0)

enum { BL_BUCKETS = 40 };
/* The GEMMs: the forward's two, then the backward's. */
enum { BL_FC1, BL_FC2, BL_DH, BL_DW2, BL_DW1, BL_DA, BL_JOBS };

struct comet_baseline {
  comet_layer_config_t cfg;
  int W, rank, ep, tp, g0, i0, E, El, Fl, w1_rows, H, K, Tmax;
  int64_t cap;
  size_t esz;
  ncclDataType_t nccl_dt;
  cudaDataType_t cu_dt;
  ncclComm_t comm, ep_comm, tp_comm;
  int own_ep_comm, own_tp_comm;
  cublasHandle_t cublas;
  /* device */
  int32_t *d_counts, *d_all_counts, *d_base, *d_pos, *d_chunk, *d_slot_rank;
  void *d_send, *d_r2, *d_sorted, *d_g1, *d_h;
  void *d_y, *d_dh; /* backward only */
  char *d_upload;
  /* host (pinned where copied asynchronously) */
  int32_t *h_all_counts, *h_flag;
  char *h_upload;
  size_t upload_bytes;
  int64_t *seg_off, *n1, *send_off, *send_n, *r1_off, *recv_n, *m_el, *off_el;
  int64_t *blk_sorted, *blk_r2; /* [tp][ep][El] block offsets */
  cudaEvent_t ev[5], tev[3]; /* ev: start, dispatched, experts done, end, fc1 (+act) done */
  int have_times;
  comet_baseline_gemm_t mode;
  signed char choice[BL_JOBS][BL_BUCKETS]; /* -1 unknown, else GROUPED or LOOP */
  int last_gemm[BL_JOBS];
  int have_counts;
  int save;      /* comet_baseline_set_save */
  int saved;     /* the last call was a save-mode forward that succeeded */
  int saved_T;   /* and its num_tokens */
  int nb;        /* this call's blocks (plan_call) */
  int64_t total; /* and rows on this rank */
};

/* Layout of the per-call upload: the sort and unsort block tables, then
 * the pointer arrays [A, B, C] of each GEMM (BL_FC1 first), so that a call
 * uploads only the GEMMs it runs. */
static size_t tab_bytes(comet_baseline_t b) { return sizeof(int32_t) * 6 * (size_t)b->W * b->El; }
static int32_t *up_tab(comet_baseline_t b, char *base, int which) {
  return (int32_t *)base + (size_t)which * 3 * (size_t)b->W * (size_t)b->El;
}
static void **up_ptrs(comet_baseline_t b, char *base, int job) {
  return (void **)(base + tab_bytes(b)) + (size_t)job * 3 * b->El;
}
static size_t upload_bytes(comet_baseline_t b, int njobs) {
  return tab_bytes(b) + sizeof(void *) * 3 * (size_t)b->El * njobs;
}

static comet_status_t dev_alloc(void **p, size_t bytes, const char *what) {
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
  if (e != cudaSuccess) {
    *p = NULL; /* a later call tries again (the backward's buffers) */
    cudaGetLastError(); /* not left for the kernel launchers' cudaGetLastError to find */
    return comet_set_error(e == cudaErrorMemoryAllocation ? COMET_ERR_OUT_OF_MEMORY : COMET_ERR_CUDA,
                           "baseline: cudaMalloc of %s (%zu bytes) failed: %s", what, bytes,
                           cudaGetErrorString(e));
  }
  return COMET_OK;
}

comet_status_t comet_baseline_destroy(comet_baseline_t b) {
  if (!b) return COMET_OK;
  for (int i = 0; i < 3; ++i)
    if (b->tev[i]) cudaEventDestroy(b->tev[i]);
  for (int i = 0; i < 5; ++i)
    if (b->ev[i]) cudaEventDestroy(b->ev[i]);
  free(b->seg_off);
  cudaFreeHost(b->h_upload);
  cudaFreeHost(b->h_flag);
  cudaFreeHost(b->h_all_counts);
  cudaFree(b->d_upload);
  cudaFree(b->d_dh);
  cudaFree(b->d_y);
  cudaFree(b->d_h);
  cudaFree(b->d_g1);
  cudaFree(b->d_sorted);
  cudaFree(b->d_r2);
  cudaFree(b->d_send);
  cudaFree(b->d_slot_rank);
  cudaFree(b->d_chunk);
  cudaFree(b->d_pos);
  cudaFree(b->d_base);
  cudaFree(b->d_all_counts);
  cudaFree(b->d_counts);
  if (b->own_tp_comm) ncclCommDestroy(b->tp_comm);
  if (b->own_ep_comm) ncclCommDestroy(b->ep_comm);
  free(b);
  return COMET_OK;
}

static comet_status_t create_impl(comet_baseline_t b, const comet_layer_config_t *cfg) {
  int W = 0, rank = 0;
  BL_NCCL(ncclCommCount(b->comm, &W));
  BL_NCCL(ncclCommUserRank(b->comm, &rank));
  COMET_CHECK(comet_config_validate(cfg, W));
  if (cfg->dtype != COMET_DTYPE_BF16 && cfg->dtype != COMET_DTYPE_FP16)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "baseline: dtype %s is not supported (bf16, fp16)",
                           comet_dtype_name(cfg->dtype));
  b->cfg = *cfg;
  b->W = W;
  b->rank = rank;
  b->ep = cfg->ep;
  b->tp = cfg->tp;
  b->g0 = rank / cfg->tp;
  b->i0 = rank % cfg->tp;
  b->E = cfg->num_experts;
  b->El = cfg->num_experts / cfg->ep;
  b->Fl = cfg->ffn / cfg->tp;
  b->w1_rows = comet_config_w1_rows(cfg);
  b->H = cfg->hidden;
  b->K = cfg->topk;
  b->Tmax = cfg->max_tokens_per_rank;
  b->cap = comet_config_row_capacity(cfg);
  b->esz = 2;
  b->nccl_dt = cfg->dtype == COMET_DTYPE_FP16 ? ncclHalf : ncclBfloat16;
  b->cu_dt = cfg->dtype == COMET_DTYPE_FP16 ? CUDA_R_16F : CUDA_R_16BF;
  b->mode = COMET_BASELINE_GEMM_AUTO;
  memset(b->choice, -1, sizeof b->choice);

  /* EP group of equal tp_rank, TP group of equal ep_rank (collective). */
  if (b->ep > 1 && b->tp > 1) {
    BL_NCCL(ncclCommSplit(b->comm, b->i0, b->g0, &b->ep_comm, NULL));
    b->own_ep_comm = 1;
    BL_NCCL(ncclCommSplit(b->comm, b->g0, b->i0, &b->tp_comm, NULL));
    b->own_tp_comm = 1;
  } else {
    b->ep_comm = b->tp == 1 ? b->comm : NULL;
    b->tp_comm = b->ep == 1 ? b->comm : NULL;
  }

  const size_t E4 = (size_t)b->E + COMET_BL_STATUS_SLOTS, slots = (size_t)b->Tmax * b->K;
  const size_t nchunks = (slots + COMET_BL_CHUNK - 1) / COMET_BL_CHUNK;
  const size_t row = (size_t)b->H * b->esz, cap = (size_t)b->cap;
  COMET_CHECK(dev_alloc((void **)&b->d_counts, sizeof(int32_t) * E4, "counts"));
  COMET_CHECK(dev_alloc((void **)&b->d_all_counts, sizeof(int32_t) * E4 * W, "all counts"));
  COMET_CHECK(dev_alloc((void **)&b->d_base, sizeof(int32_t) * (size_t)b->E, "expert base"));
  COMET_CHECK(dev_alloc((void **)&b->d_pos, sizeof(int32_t) * slots, "slot rows"));
  COMET_CHECK(dev_alloc((void **)&b->d_chunk, sizeof(int32_t) * nchunks * b->E, "chunk counts"));
  COMET_CHECK(dev_alloc((void **)&b->d_slot_rank, sizeof(int32_t) * slots, "slot ranks"));
  COMET_CHECK(dev_alloc(&b->d_send, row * slots, "send rows"));
  COMET_CHECK(dev_alloc(&b->d_r2, row * cap, "received rows"));
  if (b->El > 1) COMET_CHECK(dev_alloc(&b->d_sorted, row * cap, "sorted rows"));
  COMET_CHECK(dev_alloc(&b->d_g1, cap * (size_t)b->w1_rows * b->esz, "fc1 output"));
  if (cfg->activation != COMET_ACT_NONE)
    COMET_CHECK(dev_alloc(&b->d_h, cap * (size_t)b->Fl * b->esz, "activation output"));
  b->upload_bytes = upload_bytes(b, BL_JOBS);
  COMET_CHECK(dev_alloc((void **)&b->d_upload, b->upload_bytes, "call tables"));
  BL_CUDA(cudaMallocHost((void **)&b->h_upload, b->upload_bytes));
  BL_CUDA(cudaMallocHost((void **)&b->h_all_counts, sizeof(int32_t) * E4 * W));
  BL_CUDA(cudaMallocHost((void **)&b->h_flag, sizeof(int32_t)));
  *b->h_flag = 1; /* the source of the status flags' copies (exchange) */
  const size_t n64 = (size_t)b->tp * 2 + (size_t)b->ep * 4 + (size_t)b->El * 2 + 2 * (size_t)W * b->El;
  b->seg_off = calloc(n64, sizeof(int64_t));
  if (!b->seg_off) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "baseline: host allocation failed");
  b->n1 = b->seg_off + b->tp;
  b->send_off = b->n1 + b->tp;
  b->send_n = b->send_off + b->ep;
  b->r1_off = b->send_n + b->ep;
  b->recv_n = b->r1_off + b->ep;
  b->m_el = b->recv_n + b->ep;
  b->off_el = b->m_el + b->El;
  b->blk_sorted = b->off_el + b->El;
  b->blk_r2 = b->blk_sorted + (size_t)W * b->El;
  for (int i = 0; i < 5; ++i) BL_CUDA(cudaEventCreate(&b->ev[i]));
  for (int i = 0; i < 3; ++i) BL_CUDA(cudaEventCreate(&b->tev[i]));
  return COMET_OK;
}

comet_status_t comet_baseline_create(comet_baseline_t *out, const comet_layer_config_t *cfg,
                                     ncclComm_t comm, cublasHandle_t cublas) {
  COMET_ARG(out != NULL, "comet_baseline_create: out is NULL");
  *out = NULL;
  COMET_ARG(comm != NULL && cublas != NULL, "comet_baseline_create: comm or cublas handle is NULL");
  comet_baseline_t b = calloc(1, sizeof *b);
  if (!b) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "baseline: host allocation failed");
  b->comm = comm;
  b->cublas = cublas;
  comet_status_t st = create_impl(b, cfg);
  if (st != COMET_OK) {
    comet_baseline_destroy(b);
    return comet_trace_error(st, __FILE__, __LINE__);
  }
  *out = b;
  return COMET_OK;
}

comet_status_t comet_baseline_set_save(comet_baseline_t b, int on) {
  COMET_ARG(b != NULL, "comet_baseline_set_save: baseline is NULL");
  COMET_ARG(on == 0 || on == 1, "comet_baseline_set_save: on = %d is not 0 or 1", on);
  b->save = on;
  return COMET_OK;
}

comet_status_t comet_baseline_set_gemm(comet_baseline_t b, comet_baseline_gemm_t mode) {
  COMET_ARG(b != NULL, "comet_baseline_set_gemm: baseline is NULL");
  COMET_ARG(mode == COMET_BASELINE_GEMM_AUTO || mode == COMET_BASELINE_GEMM_GROUPED ||
                mode == COMET_BASELINE_GEMM_LOOP,
            "comet_baseline_set_gemm: mode = %d is not a comet_baseline_gemm_t", (int)mode);
  b->mode = mode;
  return COMET_OK;
}

const char *comet_baseline_last_gemm(comet_baseline_t b, int which) {
  if (!b || which < 1 || which > 2) return "?";
  return b->last_gemm[which - 1] == COMET_BASELINE_GEMM_GROUPED ? "grouped"
         : b->last_gemm[which - 1] == COMET_BASELINE_GEMM_LOOP  ? "loop"
                                                                 : "-";
}

const int32_t *comet_baseline_last_counts(comet_baseline_t b) {
  return b && b->have_counts ? b->h_all_counts : NULL;
}

comet_status_t comet_baseline_last_times(comet_baseline_t b, comet_baseline_times_t *t) {
  COMET_ARG(b != NULL && t != NULL, "comet_baseline_last_times: NULL argument");
  COMET_ARG(b->have_times, "comet_baseline_last_times: no forward has completed yet");
  BL_CUDA(cudaEventSynchronize(b->ev[3]));
  BL_CUDA(cudaEventElapsedTime(&t->dispatch_ms, b->ev[0], b->ev[1]));
  BL_CUDA(cudaEventElapsedTime(&t->experts_ms, b->ev[1], b->ev[2]));
  BL_CUDA(cudaEventElapsedTime(&t->fc1_ms, b->ev[1], b->ev[4]));
  BL_CUDA(cudaEventElapsedTime(&t->combine_ms, b->ev[2], b->ev[3]));
  BL_CUDA(cudaEventElapsedTime(&t->total_ms, b->ev[0], b->ev[3]));
  return COMET_OK;
}

/* all_counts[s][e] of the last exchange. */
static int64_t cnt(comet_baseline_t b, int s, int e) {
  return b->h_all_counts[(size_t)s * (b->E + COMET_BL_STATUS_SLOTS) + e];
}

/* Rows rank q = (g, i) receives: every source's rows for g's experts. */
static int64_t rows_of(comet_baseline_t b, int g) {
  int64_t n = 0;
  for (int s = 0; s < b->W; ++s)
    for (int el = 0; el < b->El; ++el) n += cnt(b, s, g * b->El + el);
  return n;
}

/* Rows that source s sends to EP group g. */
static int64_t rows_to_group(comet_baseline_t b, int s, int g) {
  int64_t n = 0;
  for (int el = 0; el < b->El; ++el) n += cnt(b, s, g * b->El + el);
  return n;
}

/* Fails every rank alike when any rank refused its call or routing (op:
 * the call, for the messages). */
static comet_status_t check_exchange(comet_baseline_t b, comet_status_t local, const char *op) {
  const int E = b->E;
  for (int s = 0; s < b->W; ++s) {
    if (cnt(b, s, E + COMET_BL_ARG_ERROR)) {
      if (s == b->rank && local != COMET_OK) return local; /* keep our own message */
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "%s: rank %d refused its call (that rank says why)", op, s);
    }
  }
  for (int s = 1; s < b->W; ++s)
    if (cnt(b, s, E + COMET_BL_SAVED) != cnt(b, 0, E + COMET_BL_SAVED))
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "%s: ranks disagree on save mode (rank 0 %s, rank %d %s; "
                             "comet_baseline_set_save)",
                             op, cnt(b, 0, E + COMET_BL_SAVED) ? "saved" : "recomputes", s,
                             cnt(b, s, E + COMET_BL_SAVED) ? "saved" : "recomputes");
  for (int s = 0; s < b->W; ++s) {
    const int64_t bad = cnt(b, s, E + COMET_BL_BAD_TOKENS);
    if (bad)
      return comet_set_error(COMET_ERR_ROUTING,
                             "%s: rank %d has %lld token(s) whose topk_ids are out of "
                             "range [0, %d) or repeat an expert (first: token %lld)",
                             op, s, (long long)bad, E,
                             (long long)(INT32_MAX - cnt(b, s, E + COMET_BL_FIRST_BAD)));
  }
  for (int g = 0; g < b->ep; ++g) {
    const int64_t rows = rows_of(b, g);
    if (rows > b->cap)
      return comet_set_error(COMET_ERR_ROUTING,
                             "%s: ranks of EP group %d would receive %lld rows, more "
                             "than the row capacity %lld (max_rows_per_rank)",
                             op, g, (long long)rows, (long long)b->cap);
  }
  return COMET_OK;
}

/* Offsets of this call (see the buffer comment at the top), and the sort
 * and unsort block tables in the pinned upload area. Block (i, g, el) holds
 * the rows of source s = g*tp + i for local expert el: in r2 it sits in TP
 * segment i, after the rows of the EP sources before g, after the experts
 * before el; sorted, it sits in expert el after the sources before (i, g). */
static int plan_call(comet_baseline_t b, int64_t *total) {
  const int El = b->El, g0 = b->g0, i0 = b->i0, TP = b->tp, EP = b->ep;
  int64_t run = 0;
  for (int g = 0; g < EP; ++g) { /* own rows by expert = by EP group */
    b->send_off[g] = run;
    b->send_n[g] = rows_to_group(b, b->rank, g);
    run += b->send_n[g];
  }
  run = 0;
  for (int i = 0; i < TP; ++i) {
    b->seg_off[i] = run;
    b->n1[i] = 0;
    for (int g = 0; g < EP; ++g) b->n1[i] += rows_to_group(b, g * TP + i, g0);
    run += b->n1[i];
  }
  *total = run;
  run = 0;
  for (int g = 0; g < EP; ++g) {
    b->r1_off[g] = run;
    b->recv_n[g] = rows_to_group(b, g * TP + i0, g0);
    run += b->recv_n[g];
  }
  run = 0;
  for (int el = 0; el < El; ++el) {
    b->off_el[el] = run;
    b->m_el[el] = 0;
    for (int s = 0; s < b->W; ++s) b->m_el[el] += cnt(b, s, g0 * El + el);
    run += b->m_el[el];
  }
  /* Sorted offsets of every block, walking (el, i, g). */
  int64_t *so = b->blk_sorted;
  for (int el = 0; el < El; ++el) {
    int64_t at = b->off_el[el];
    for (int i = 0; i < TP; ++i)
      for (int g = 0; g < EP; ++g) {
        so[((size_t)i * EP + g) * El + el] = at;
        at += cnt(b, g * TP + i, g0 * El + el);
      }
  }
  /* Walk (i, g, el) = r2 order: the unsort table directly; the sort table
   * then needs the same blocks by sorted offset, i.e. in (el, i, g) order. */
  int32_t *ts = up_tab(b, b->h_upload, 0), *tu = up_tab(b, b->h_upload, 1);
  int nb = 0;
  int64_t r2 = 0;
  for (int i = 0; i < TP; ++i)
    for (int g = 0; g < EP; ++g)
      for (int el = 0; el < El; ++el) {
        const int64_t n = cnt(b, g * TP + i, g0 * El + el);
        b->blk_r2[((size_t)i * EP + g) * El + el] = r2;
        if (n > 0) {
          tu[3 * nb] = (int32_t)r2;
          tu[3 * nb + 1] = (int32_t)so[((size_t)i * EP + g) * El + el];
          tu[3 * nb + 2] = (int32_t)n;
          nb++;
        }
        r2 += n;
      }
  int ns = 0;
  for (int el = 0; el < El; ++el)
    for (int i = 0; i < TP; ++i)
      for (int g = 0; g < EP; ++g) {
        const size_t x = ((size_t)i * EP + g) * El + el;
        const int64_t n = cnt(b, g * TP + i, g0 * El + el);
        if (n == 0) continue;
        ts[3 * ns] = (int32_t)so[x];
        ts[3 * ns + 1] = (int32_t)b->blk_r2[x];
        ts[3 * ns + 2] = (int32_t)n;
        ns++;
      }
  return ns == nb && r2 == *total ? nb : -1;
}

/* ---- GEMMs, one per local expert over its rows ---- */

/* What a GEMM computes, per expert el with rows [off_el, off_el + m_el):
 *   BL_ROWS_WT: c rows [m, n] = p rows [m, kd] . q_el^T, q_el [n, kd] (fc1, fc2)
 *   BL_ROWS_W:  c rows [m, n] = p rows [m, kd] . q_el,   q_el [kd, n] (dh, dA)
 *   BL_WGRAD:   c_el [n, kd] = p rows [m, n]^T . q rows [m, kd]       (dw2, dw1) */
enum { BL_ROWS_WT, BL_ROWS_W, BL_WGRAD };

typedef struct gemm_job {
  int which; /* BL_FC1 ..: its AUTO choices, last_gemm slot and upload pointers */
  int kind;
  const char *p, *q;
  char *c;
  int n, kd;
} gemm_job_t;

/* One expert's product in cuBLAS's column-major terms (a row-major [r, c]
 * matrix is a column-major [c x r] one): C = op(A) . op(B). */
typedef struct gemm_one {
  cublasOperation_t ta, tb;
  int m, n, k, lda, ldb, ldc;
  const void *a, *b;
  void *c;
} gemm_one_t;

static gemm_one_t expert_gemm(comet_baseline_t b, const gemm_job_t *j, int el) {
  const size_t es = b->esz, off = (size_t)b->off_el[el], wel = (size_t)el * j->n * j->kd * es;
  const int m = (int)b->m_el[el];
  gemm_one_t g;
  if (j->kind == BL_WGRAD) { /* c_el^T [kd x n] = q^T [kd x m] . p [m x n] */
    g = (gemm_one_t){CUBLAS_OP_N, CUBLAS_OP_T, j->kd, j->n, m, j->kd, j->n, j->kd,
                     j->q + off * j->kd * es, j->p + off * j->n * es, j->c + wel};
  } else { /* c^T [n x m] = op(q_el) [n x kd] . p^T [kd x m] */
    const int t = j->kind == BL_ROWS_WT;
    g = (gemm_one_t){t ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, j->n, m, j->kd, t ? j->kd : j->n,
                     j->kd, j->n, j->q + wel, j->p + off * j->kd * es, j->c + off * j->n * es};
  }
  return g;
}

static comet_status_t gemm_loop(comet_baseline_t b, const gemm_job_t *j) {
  const float one = 1.0f, zero = 0.0f;
  for (int el = 0; el < b->El; ++el) {
    if (b->m_el[el] == 0) continue;
    const gemm_one_t g = expert_gemm(b, j, el);
    BL_BLAS(cublasGemmEx(b->cublas, g.ta, g.tb, g.m, g.n, g.k, &one, g.a, b->cu_dt, g.lda, g.b,
                         b->cu_dt, g.ldb, &zero, g.c, b->cu_dt, g.ldc, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT));
  }
  return COMET_OK;
}

/* One group per non-empty expert; the pointer arrays are in the upload. */
static comet_status_t gemm_grouped(comet_baseline_t b, const gemm_job_t *j, int ng) {
  if (ng == 0) return COMET_OK;
  enum { MAXG = 1024 };
  if (ng > MAXG)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "baseline: %d groups > %d", ng, MAXG);
  static _Thread_local cublasOperation_t ta[MAXG], tb[MAXG];
  static _Thread_local int m[MAXG], n[MAXG], k[MAXG], ld_a[MAXG], ld_b[MAXG], ld_c[MAXG], gs[MAXG];
  static _Thread_local float alpha[MAXG], beta[MAXG];
  int x = 0;
  for (int el = 0; el < b->El; ++el) {
    if (b->m_el[el] == 0) continue;
    const gemm_one_t g = expert_gemm(b, j, el);
    ta[x] = g.ta;
    tb[x] = g.tb;
    m[x] = g.m;
    n[x] = g.n;
    k[x] = g.k;
    ld_a[x] = g.lda;
    ld_b[x] = g.ldb;
    ld_c[x] = g.ldc;
    gs[x] = 1;
    alpha[x] = 1.0f;
    beta[x] = 0.0f;
    x++;
  }
  void **dp = up_ptrs(b, b->d_upload, j->which);
  BL_BLAS(cublasGemmGroupedBatchedEx(b->cublas, ta, tb, m, n, k, alpha, (const void *const *)dp,
                                     b->cu_dt, ld_a, (const void *const *)(dp + b->El), b->cu_dt,
                                     ld_b, beta, dp + 2 * b->El, b->cu_dt, ld_c, ng, gs,
                                     CUBLAS_COMPUTE_32F));
  return COMET_OK;
}

/* Fills job j's host pointer arrays [A, B, C] (cuBLAS's operands); returns
 * the number of groups (non-empty experts). */
static int fill_ptrs(comet_baseline_t b, const gemm_job_t *j) {
  void **hp = up_ptrs(b, b->h_upload, j->which);
  int x = 0;
  for (int el = 0; el < b->El; ++el) {
    if (b->m_el[el] == 0) continue;
    const gemm_one_t g = expert_gemm(b, j, el);
    hp[x] = (void *)g.a;
    hp[b->El + x] = (void *)g.b;
    hp[2 * b->El + x] = g.c;
    x++;
  }
  return x;
}

static int bucket_of(int64_t rows) {
  int k = 0;
  while (rows > 1 && k < BL_BUCKETS - 1) { rows >>= 1; k++; }
  return k;
}

static comet_status_t time_variant(comet_baseline_t b, const gemm_job_t *j, int ng, int grouped,
                                   cudaStream_t stream, float *ms) {
  comet_status_t st = grouped ? gemm_grouped(b, j, ng) : gemm_loop(b, j); /* warm */
  if (st != COMET_OK) return st;
  BL_CUDA(cudaEventRecord(b->tev[0], stream));
  COMET_CHECK(grouped ? gemm_grouped(b, j, ng) : gemm_loop(b, j));
  BL_CUDA(cudaEventRecord(b->tev[1], stream));
  BL_CUDA(cudaEventSynchronize(b->tev[1]));
  BL_CUDA(cudaEventElapsedTime(ms, b->tev[0], b->tev[1]));
  return COMET_OK;
}

/* The weight gradient of an expert without rows is zeros (no GEMM has it). */
static comet_status_t zero_empty_experts(comet_baseline_t b, const gemm_job_t *j,
                                         cudaStream_t stream) {
  const size_t bytes = (size_t)j->n * j->kd * b->esz;
  for (int el = 0; el < b->El; ++el)
    if (b->m_el[el] == 0) BL_CUDA(cudaMemsetAsync(j->c + el * bytes, 0, bytes, stream));
  return COMET_OK;
}

static comet_status_t gemm_run(comet_baseline_t b, const gemm_job_t *j, int ng,
                               cudaStream_t stream) {
  if (j->kind == BL_WGRAD) COMET_CHECK(zero_empty_experts(b, j, stream));
  int mode = b->mode;
  if (mode == COMET_BASELINE_GEMM_AUTO) {
    signed char *c = &b->choice[j->which][bucket_of(b->total)];
    if (*c < 0 && ng > 0) {
      float tg = INFINITY, tl = INFINITY;
      if (time_variant(b, j, ng, 1, stream, &tg) != COMET_OK) {
        tg = INFINITY; /* grouped GEMM refused (old cuBLAS, shape): use the loop */
        comet_clear_error();
      }
      COMET_CHECK(time_variant(b, j, ng, 0, stream, &tl));
      *c = tg < tl ? COMET_BASELINE_GEMM_GROUPED : COMET_BASELINE_GEMM_LOOP;
    }
    mode = *c < 0 ? COMET_BASELINE_GEMM_LOOP : *c;
  }
  b->last_gemm[j->which] = mode;
  return mode == COMET_BASELINE_GEMM_GROUPED ? gemm_grouped(b, j, ng) : gemm_loop(b, j);
}

/* ---- communication; rbuf: the rows in r2's layout (d_r2, or the backward's) ---- */

static size_t rowsz(comet_baseline_t b) { return (size_t)b->H * b->esz; }

/* EP all-to-all-v within the TP slice: dir 0 sends own rows to the experts'
 * groups (send -> rbuf segment i0), dir 1 brings the outputs back. */
static comet_status_t ep_all_to_all(comet_baseline_t b, int dir, char *rbuf, cudaStream_t stream) {
  char *send = b->d_send, *seg = rbuf + (size_t)b->seg_off[b->i0] * rowsz(b);
  const size_t H = (size_t)b->H;
  if (b->ep == 1) { /* the only peer is this rank: same layout both sides */
    if (b->send_n[0] > 0)
      BL_CUDA(cudaMemcpyAsync(dir == 0 ? seg : send, dir == 0 ? send : seg,
                              (size_t)b->send_n[0] * rowsz(b), cudaMemcpyDeviceToDevice, stream));
    return COMET_OK;
  }
  BL_NCCL(ncclGroupStart());
  ncclResult_t r = ncclSuccess;
  for (int g = 0; g < b->ep && r == ncclSuccess; ++g) {
    char *mine = send + (size_t)b->send_off[g] * rowsz(b);
    char *theirs = seg + (size_t)b->r1_off[g] * rowsz(b);
    const size_t n_out = (size_t)(dir == 0 ? b->send_n[g] : b->recv_n[g]) * H;
    const size_t n_in = (size_t)(dir == 0 ? b->recv_n[g] : b->send_n[g]) * H;
    if (n_out) r = ncclSend(dir == 0 ? mine : theirs, n_out, b->nccl_dt, g, b->ep_comm, stream);
    if (r == ncclSuccess && n_in)
      r = ncclRecv(dir == 0 ? theirs : mine, n_in, b->nccl_dt, g, b->ep_comm, stream);
  }
  ncclResult_t r2 = ncclGroupEnd();
  BL_NCCL(r);
  BL_NCCL(r2);
  return COMET_OK;
}

/* All-gather-v of the TP segments of rbuf (every TP shard needs every row). */
static comet_status_t tp_all_gather(comet_baseline_t b, char *rbuf, cudaStream_t stream) {
  const size_t H = (size_t)b->H;
  BL_NCCL(ncclGroupStart());
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < b->tp && r == ncclSuccess; ++i) {
    if (i == b->i0) continue;
    if (b->n1[b->i0])
      r = ncclSend(rbuf + (size_t)b->seg_off[b->i0] * rowsz(b), (size_t)b->n1[b->i0] * H,
                   b->nccl_dt, i, b->tp_comm, stream);
    if (r == ncclSuccess && b->n1[i])
      r = ncclRecv(rbuf + (size_t)b->seg_off[i] * rowsz(b), (size_t)b->n1[i] * H, b->nccl_dt, i,
                   b->tp_comm, stream);
  }
  ncclResult_t r2e = ncclGroupEnd();
  BL_NCCL(r);
  BL_NCCL(r2e);
  return COMET_OK;
}

/* Reduce-scatter-v: segment i of rbuf summed over the TP group lands on TP
 * rank i (in place). */
static comet_status_t tp_reduce_scatter(comet_baseline_t b, char *rbuf, cudaStream_t stream) {
  BL_NCCL(ncclGroupStart());
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < b->tp && r == ncclSuccess; ++i) {
    if (!b->n1[i]) continue;
    char *p = rbuf + (size_t)b->seg_off[i] * rowsz(b);
    r = ncclReduce(p, p, (size_t)b->n1[i] * b->H, b->nccl_dt, ncclSum, i, b->tp_comm, stream);
  }
  ncclResult_t r2e = ncclGroupEnd();
  BL_NCCL(r);
  BL_NCCL(r2e);
  return COMET_OK;
}

/* ---- the steps both calls are made of ---- */

/* The start of every call: count and permute own rows x (T tokens routed by
 * ids) into send when this rank's call is good (local), exchange counts and
 * status (a refused call joins with its flag), wait for them on the host,
 * fail every rank alike if any refused, and plan the call (b->nb, b->total,
 * the block tables). saved (a save-mode backward): no routing, no rows;
 * d_counts still holds the saved forward's counts (no call since has
 * written it), so the exchange carries them again with the SAVED flag and
 * the plan comes out as the forward's. */
static comet_status_t exchange(comet_baseline_t b, const char *op, comet_status_t local, int saved,
                               int T, const int32_t *ids, const void *x, cudaStream_t stream) {
  const int E = b->E;
  const size_t E4 = (size_t)E + COMET_BL_STATUS_SLOTS;
  b->have_counts = 0;
  if (local == COMET_OK && saved) {
    BL_CUDA(cudaMemcpyAsync(b->d_counts + E + COMET_BL_SAVED, b->h_flag, sizeof(int32_t),
                            cudaMemcpyHostToDevice, stream));
  } else if (local == COMET_OK) {
    BL_CUDA(comet_bl_route(ids, T, b->K, E, b->d_counts, b->d_base, b->d_pos, b->d_chunk,
                           b->d_slot_rank, stream));
    BL_CUDA(comet_bl_permute(x, b->d_pos, T, b->K, b->H, b->d_send, stream));
  } else {
    BL_CUDA(cudaMemsetAsync(b->d_counts, 0, sizeof(int32_t) * E4, stream));
    BL_CUDA(cudaMemcpyAsync(b->d_counts + E + COMET_BL_ARG_ERROR, b->h_flag, sizeof(int32_t),
                            cudaMemcpyHostToDevice, stream));
  }
  /* The host needs the counts for the collectives' sizes and cuBLAS's group
   * sizes (the sync every such user pays). */
  BL_NCCL(ncclAllGather(b->d_counts, b->d_all_counts, E4, ncclInt32, b->comm, stream));
  BL_CUDA(cudaMemcpyAsync(b->h_all_counts, b->d_all_counts, sizeof(int32_t) * E4 * b->W,
                          cudaMemcpyDeviceToHost, stream));
  BL_CUDA(cudaStreamSynchronize(stream));
  b->have_counts = 1;
  COMET_CHECK(check_exchange(b, local, op));
  b->nb = plan_call(b, &b->total);
  if (b->nb < 0) return comet_set_error(COMET_ERR_INTERNAL, "%s: block tables disagree", op);
  return COMET_OK;
}

/* The block tables and the first njobs GEMMs' pointer arrays to the device. */
static comet_status_t upload(comet_baseline_t b, int njobs, cudaStream_t stream) {
  BL_CUDA(cudaMemcpyAsync(b->d_upload, b->h_upload, upload_bytes(b, njobs), cudaMemcpyHostToDevice,
                          stream));
  return COMET_OK;
}

/* The rows in send (by expert) to the experts: EP all-to-all into rbuf, TP
 * all-gather, then sorted by local expert into sorted (with one local
 * expert rbuf is in that order already, and sorted is not used). */
static comet_status_t dispatch_rows(comet_baseline_t b, char *rbuf, char *sorted,
                                    cudaStream_t stream) {
  COMET_CHECK(ep_all_to_all(b, 0, rbuf, stream));
  if (b->tp > 1) COMET_CHECK(tp_all_gather(b, rbuf, stream));
  if (b->El > 1)
    BL_CUDA(comet_bl_copy_blocks(sorted, rbuf, up_tab(b, b->d_upload, 0), b->nb, b->total, b->H,
                                 stream));
  return COMET_OK;
}

/* The inverse: the experts' rows in sorted (with one local expert: rbuf
 * itself) unsorted into rbuf, TP partials summed, back into send. */
static comet_status_t combine_rows(comet_baseline_t b, const char *sorted, char *rbuf,
                                   cudaStream_t stream) {
  if (b->El > 1)
    BL_CUDA(comet_bl_copy_blocks(rbuf, sorted, up_tab(b, b->d_upload, 1), b->nb, b->total, b->H,
                                 stream));
  if (b->tp > 1) COMET_CHECK(tp_reduce_scatter(b, rbuf, stream));
  return ep_all_to_all(b, 1, rbuf, stream);
}

/* fc1 (z into g1) and the activation (into h; none: h is g1). */
static comet_status_t fc1_act(comet_baseline_t b, const gemm_job_t *j1, int ng,
                              cudaStream_t stream) {
  COMET_CHECK(gemm_run(b, j1, ng, stream));
  if (b->cfg.activation != COMET_ACT_NONE)
    BL_CUDA(comet_bl_activation(b->d_g1, b->d_h, b->total, b->Fl, b->cfg.activation,
                                b->cfg.dtype == COMET_DTYPE_FP16, stream));
  return COMET_OK;
}

/* ---- the forward ---- */

static comet_status_t ensure_backward_buffers(comet_baseline_t b) {
  const size_t cap = (size_t)b->cap;
  if (!b->d_y) COMET_CHECK(dev_alloc(&b->d_y, cap * b->H * b->esz, "backward rows"));
  if (!b->d_dh) COMET_CHECK(dev_alloc(&b->d_dh, cap * b->Fl * b->esz, "backward dh"));
  return COMET_OK;
}

comet_status_t comet_baseline_forward(comet_baseline_t b, const comet_moe_args_t *a,
                                      cudaStream_t stream) {
  COMET_ARG(b != NULL, "comet_baseline_forward: baseline is NULL");
  b->have_times = 0;
  b->saved = 0;
  const int save = b->save;
  BL_BLAS(cublasSetStream(b->cublas, stream));
  BL_CUDA(cudaEventRecord(b->ev[0], stream));
  comet_arg_fault_t fault;
  comet_status_t local = comet_moe_args_check(&b->cfg, a, &fault);
  if (local == COMET_OK && a->saved_z)
    local = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                            "comet_baseline_forward: saved_z is comet's; the baseline saves in "
                            "its own buffers (comet_baseline_set_save)");
  if (local == COMET_OK && save) local = ensure_backward_buffers(b);
  const int ok = local == COMET_OK;
  COMET_CHECK(exchange(b, "baseline forward", local, 0, ok ? a->num_tokens : 0,
                       ok ? a->topk_ids : NULL, ok ? a->x : NULL, stream));
  char *A = b->El > 1 ? b->d_sorted : b->d_r2; /* fc1's input */
  char *y = save ? b->d_y : A;                 /* fc2's output: over A (dead), unless kept */
  char *rb = b->El > 1 ? b->d_r2 : y;          /* y's comm rows (r2 is dead once sorted) */
  char *hbuf = b->cfg.activation == COMET_ACT_NONE ? b->d_g1 : b->d_h;
  const gemm_job_t j1 = {BL_FC1, BL_ROWS_WT, A, a->w1, b->d_g1, b->w1_rows, b->H};
  const gemm_job_t j2 = {BL_FC2, BL_ROWS_WT, hbuf, a->w2, y, b->H, b->Fl};
  fill_ptrs(b, &j1);
  const int ng = fill_ptrs(b, &j2);
  COMET_CHECK(upload(b, BL_FC2 + 1, stream));

  COMET_CHECK(dispatch_rows(b, b->d_r2, b->d_sorted, stream));
  BL_CUDA(cudaEventRecord(b->ev[1], stream));
  COMET_CHECK(fc1_act(b, &j1, ng, stream));
  BL_CUDA(cudaEventRecord(b->ev[4], stream));
  COMET_CHECK(gemm_run(b, &j2, ng, stream));
  BL_CUDA(cudaEventRecord(b->ev[2], stream));
  COMET_CHECK(combine_rows(b, y, rb, stream));
  BL_CUDA(comet_bl_combine(b->d_send, b->d_pos, a->topk_weights, a->num_tokens, b->K, b->H, a->out,
                           b->cfg.dtype == COMET_DTYPE_FP16, stream));
  BL_CUDA(cudaEventRecord(b->ev[3], stream));
  b->have_times = 1;
  b->saved = save; /* A, z, h, y home in send, d_pos, the plan */
  b->saved_T = a->num_tokens;
  return COMET_OK;
}

/* ---- the backward (the steps at the top of the file) ---- */

/* A save-mode backward's own refusals: no saved forward, or another one. */
static comet_status_t saved_check(comet_baseline_t b, int saved, const comet_moe_backward_args_t *a) {
  if (!saved)
    return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "comet_baseline_backward: save mode, but no saved forward (the last "
                           "call was not a save-mode forward that succeeded; a backward "
                           "consumes it)");
  if (a->num_tokens != b->saved_T)
    return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "comet_baseline_backward: num_tokens = %d, the saved forward's was %d",
                           a->num_tokens, b->saved_T);
  return COMET_OK;
}

comet_status_t comet_baseline_backward(comet_baseline_t b, const comet_moe_backward_args_t *a,
                                       cudaStream_t stream) {
  COMET_ARG(b != NULL, "comet_baseline_backward: baseline is NULL");
  const int save = b->save, saved = b->saved;
  b->saved = 0; /* consumed, or overwritten by the recompute */
  BL_BLAS(cublasSetStream(b->cublas, stream));
  comet_arg_fault_t fault;
  comet_status_t local = comet_moe_backward_args_check(&b->cfg, a, &fault);
  if (local == COMET_OK && a->saved_z)
    local = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                            "comet_baseline_backward: saved_z is comet's; the baseline uses its "
                            "own saved forward (comet_baseline_set_save)");
  if (local == COMET_OK && save) local = saved_check(b, saved, a);
  if (local == COMET_OK) local = ensure_backward_buffers(b);
  const int ok = local == COMET_OK;
  COMET_CHECK(exchange(b, "baseline backward", local, save, ok ? a->num_tokens : 0,
                       ok ? a->topk_ids : NULL, ok ? a->x : NULL, stream));
  const int act = b->cfg.activation, fp16 = b->cfg.dtype == COMET_DTYPE_FP16;
  const int T = a->num_tokens, K = b->K, H = b->H;
  char *A = b->El > 1 ? b->d_sorted : b->d_r2; /* x's rows at the experts, kept for dw1 */
  char *rb = b->El > 1 ? b->d_r2 : b->d_y;     /* the comm rows of y, dy and dA */
  char *hbuf = act == COMET_ACT_NONE ? b->d_g1 : b->d_h;
  char *da = act == COMET_ACT_NONE ? b->d_dh : b->d_g1; /* da = dh, or in place of z */
  const gemm_job_t jobs[BL_JOBS] = {
      {BL_FC1, BL_ROWS_WT, A, a->w1, b->d_g1, b->w1_rows, H},
      {BL_FC2, BL_ROWS_WT, hbuf, a->w2, b->d_y, H, b->Fl},
      {BL_DH, BL_ROWS_W, b->d_y, a->w2, b->d_dh, b->Fl, H},
      {BL_DW2, BL_WGRAD, b->d_y, hbuf, a->dw2, H, b->Fl},
      {BL_DW1, BL_WGRAD, da, A, a->dw1, b->w1_rows, H},
      {BL_DA, BL_ROWS_W, da, a->w1, b->d_y, H, b->w1_rows}};
  int ng = 0;
  for (int j = 0; j < BL_JOBS; ++j)
    if (jobs[j].c) ng = fill_ptrs(b, &jobs[j]); /* dw1, dw2 where asked */
  COMET_CHECK(upload(b, BL_JOBS, stream));

  /* 1. the forward again (save mode: the saved forward's); y home into send */
  if (!save) {
    COMET_CHECK(dispatch_rows(b, b->d_r2, b->d_sorted, stream));
    COMET_CHECK(fc1_act(b, &jobs[BL_FC1], ng, stream));
    COMET_CHECK(gemm_run(b, &jobs[BL_FC2], ng, stream));
    COMET_CHECK(combine_rows(b, b->d_y, rb, stream));
  }
  /* 2. at home: the dots with y, then dy over y in send */
  if (a->dtopk_weights)
    BL_CUDA(comet_bl_row_dots(a->dout, b->d_send, b->d_pos, T, K, H, a->dtopk_weights, fp16,
                              stream));
  BL_CUDA(comet_bl_permute_scaled(a->dout, b->d_pos, a->topk_weights, T, K, H, b->d_send, fp16,
                                  stream));
  /* 3. dy to the experts, sorted into y */
  COMET_CHECK(dispatch_rows(b, rb, b->d_y, stream));
  /* 4. dh and dw2 read dy; da over z; dw1; dA over dy */
  COMET_CHECK(gemm_run(b, &jobs[BL_DH], ng, stream));
  if (a->dw2) COMET_CHECK(gemm_run(b, &jobs[BL_DW2], ng, stream));
  if (act != COMET_ACT_NONE)
    BL_CUDA(comet_bl_act_backward(b->d_g1, b->d_dh, b->total, b->Fl, act, fp16, stream));
  if (a->dw1) COMET_CHECK(gemm_run(b, &jobs[BL_DW1], ng, stream));
  COMET_CHECK(gemm_run(b, &jobs[BL_DA], ng, stream));
  /* 5. dA home into send; dx */
  COMET_CHECK(combine_rows(b, b->d_y, rb, stream));
  if (a->dx)
    BL_CUDA(comet_bl_combine(b->d_send, b->d_pos, NULL, T, K, H, a->dx, fp16, stream));
  return COMET_OK;
}
