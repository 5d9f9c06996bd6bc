/* SPDX-License-Identifier: Apache-2.0 */
/* baseline.c — the unfused MoE layer (see baseline.h for the layout).
 *
 * Buffers (rows of H elements unless noted; cap = comet_config_row_capacity):
 *   send    [T_max*K]      own rows permuted by expert; later the rows back
 *   r2      [cap]          received rows: TP segment i (rows of TP peer i's
 *                          EP all-to-all), inside it EP source g, then local
 *                          expert; later the expert outputs in that order
 *   sorted  [cap]          the same rows by local expert (i, g inside); later
 *                          fc2's output (only when E/ep > 1: with one local
 *                          expert r2 is already sorted)
 *   g1      [cap, w1_rows] fc1's output;  h [cap, F/tp] the activation's
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
  signed char choice[2][BL_BUCKETS]; /* -1 unknown, else GROUPED or LOOP */
  int last_gemm[2];
  int have_counts;
};

/* Layout of the per-call upload: pointer arrays of both GEMMs, then the
 * sort and unsort block tables. */
static void **up_ptrs(comet_baseline_t b, char *base) { (void)b; return (void **)base; }
static int32_t *up_tab(comet_baseline_t b, char *base, int which) {
  return (int32_t *)(base + sizeof(void *) * 6 * (size_t)b->El) +
         (size_t)which * 3 * (size_t)b->W * (size_t)b->El;
}

static comet_status_t dev_alloc(void **p, size_t bytes, const char *what) {
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
  if (e != cudaSuccess)
    return comet_set_error(e == cudaErrorMemoryAllocation ? COMET_ERR_OUT_OF_MEMORY : COMET_ERR_CUDA,
                           "baseline: cudaMalloc of %s (%zu bytes) failed: %s", what, bytes,
                           cudaGetErrorString(e));
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
  b->upload_bytes = sizeof(void *) * 6 * (size_t)b->El + sizeof(int32_t) * 6 * (size_t)W * b->El;
  COMET_CHECK(dev_alloc((void **)&b->d_upload, b->upload_bytes, "call tables"));
  BL_CUDA(cudaMallocHost((void **)&b->h_upload, b->upload_bytes));
  BL_CUDA(cudaMallocHost((void **)&b->h_all_counts, sizeof(int32_t) * E4 * W));
  BL_CUDA(cudaMallocHost((void **)&b->h_flag, sizeof(int32_t)));
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

/* Fails every rank alike when any rank refused its arguments or routing. */
static comet_status_t check_exchange(comet_baseline_t b, comet_status_t local) {
  const int E = b->E;
  for (int s = 0; s < b->W; ++s) {
    if (cnt(b, s, E + COMET_BL_ARG_ERROR)) {
      if (s == b->rank && local != COMET_OK) return local; /* keep our own message */
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "baseline forward: rank %d refused its call arguments", s);
    }
  }
  for (int s = 0; s < b->W; ++s) {
    const int64_t bad = cnt(b, s, E + COMET_BL_BAD_TOKENS);
    if (bad)
      return comet_set_error(COMET_ERR_ROUTING,
                             "baseline forward: rank %d has %lld token(s) whose topk_ids are out of "
                             "range [0, %d) or repeat an expert (first: token %lld)",
                             s, (long long)bad, E,
                             (long long)(INT32_MAX - cnt(b, s, E + COMET_BL_FIRST_BAD)));
  }
  for (int g = 0; g < b->ep; ++g) {
    const int64_t rows = rows_of(b, g);
    if (rows > b->cap)
      return comet_set_error(COMET_ERR_ROUTING,
                             "baseline forward: ranks of EP group %d would receive %lld rows, more "
                             "than the row capacity %lld (max_rows_per_rank)",
                             g, (long long)rows, (long long)b->cap);
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

/* ---- GEMMs: C[m, :] = A[m, :] . B_el^T for every local expert's rows ---- */

typedef struct gemm_job {
  int which;           /* 0: fc1, 1: fc2 */
  const char *a;       /* rows [total, kd] */
  const char *bw;      /* weights [El, n, kd] */
  char *c;             /* rows [total, n] */
  int n, kd;
} gemm_job_t;

static comet_status_t gemm_loop(comet_baseline_t b, const gemm_job_t *j) {
  const float one = 1.0f, zero = 0.0f;
  for (int el = 0; el < b->El; ++el) {
    const int64_t m = b->m_el[el];
    if (m == 0) continue;
    BL_BLAS(cublasGemmEx(b->cublas, CUBLAS_OP_T, CUBLAS_OP_N, j->n, (int)m, j->kd, &one,
                         j->bw + (size_t)el * j->n * j->kd * b->esz, b->cu_dt, j->kd,
                         j->a + (size_t)b->off_el[el] * j->kd * b->esz, b->cu_dt, j->kd, &zero,
                         j->c + (size_t)b->off_el[el] * j->n * b->esz, b->cu_dt, j->n,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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
    ta[x] = CUBLAS_OP_T;
    tb[x] = CUBLAS_OP_N;
    m[x] = j->n;
    n[x] = (int)b->m_el[el];
    k[x] = j->kd;
    ld_a[x] = j->kd;
    ld_b[x] = j->kd;
    ld_c[x] = j->n;
    gs[x] = 1;
    alpha[x] = 1.0f;
    beta[x] = 0.0f;
    x++;
  }
  void **dp = up_ptrs(b, b->d_upload) + (size_t)j->which * 3 * b->El;
  BL_BLAS(cublasGemmGroupedBatchedEx(b->cublas, ta, tb, m, n, k, alpha, (const void *const *)(dp + b->El),
                                     b->cu_dt, ld_a, (const void *const *)dp, b->cu_dt, ld_b, beta,
                                     dp + 2 * b->El, b->cu_dt, ld_c, ng, gs, CUBLAS_COMPUTE_32F));
  return COMET_OK;
}

/* Fills the host pointer arrays of job j: [A-operand = weights, B = rows, C]
 * in cuBLAS's column-major terms (C^T = W . rows^T). */
static int fill_ptrs(comet_baseline_t b, const gemm_job_t *j) {
  void **hp = up_ptrs(b, b->h_upload) + (size_t)j->which * 3 * b->El;
  int x = 0;
  for (int el = 0; el < b->El; ++el) {
    if (b->m_el[el] == 0) continue;
    hp[x] = (void *)(j->a + (size_t)b->off_el[el] * j->kd * b->esz);
    hp[b->El + x] = (void *)(j->bw + (size_t)el * j->n * j->kd * b->esz);
    hp[2 * b->El + x] = (void *)(j->c + (size_t)b->off_el[el] * j->n * b->esz);
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

static comet_status_t gemm_run(comet_baseline_t b, const gemm_job_t *j, int ng, int64_t total,
                               cudaStream_t stream) {
  int mode = b->mode;
  if (mode == COMET_BASELINE_GEMM_AUTO) {
    signed char *c = &b->choice[j->which][bucket_of(total)];
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

/* ---- communication ---- */

static size_t rowsz(comet_baseline_t b) { return (size_t)b->H * b->esz; }

/* EP all-to-all-v within the TP slice: dir 0 sends own rows to the experts'
 * groups (send -> r2 segment i0), dir 1 brings the outputs back. */
static comet_status_t ep_all_to_all(comet_baseline_t b, int dir, cudaStream_t stream) {
  char *send = b->d_send, *seg = (char *)b->d_r2 + (size_t)b->seg_off[b->i0] * rowsz(b);
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

/* All-gather-v of the TP segments of r2 (every TP shard needs every row). */
static comet_status_t tp_all_gather(comet_baseline_t b, cudaStream_t stream) {
  const size_t H = (size_t)b->H;
  char *r2 = b->d_r2;
  BL_NCCL(ncclGroupStart());
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < b->tp && r == ncclSuccess; ++i) {
    if (i == b->i0) continue;
    if (b->n1[b->i0])
      r = ncclSend(r2 + (size_t)b->seg_off[b->i0] * rowsz(b), (size_t)b->n1[b->i0] * H, b->nccl_dt,
                   i, b->tp_comm, stream);
    if (r == ncclSuccess && b->n1[i])
      r = ncclRecv(r2 + (size_t)b->seg_off[i] * rowsz(b), (size_t)b->n1[i] * H, b->nccl_dt, i,
                   b->tp_comm, stream);
  }
  ncclResult_t r2e = ncclGroupEnd();
  BL_NCCL(r);
  BL_NCCL(r2e);
  return COMET_OK;
}

/* Reduce-scatter-v: segment i of r2 summed over the TP group lands on TP rank
 * i (in place). */
static comet_status_t tp_reduce_scatter(comet_baseline_t b, cudaStream_t stream) {
  char *r2 = b->d_r2;
  BL_NCCL(ncclGroupStart());
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < b->tp && r == ncclSuccess; ++i) {
    if (!b->n1[i]) continue;
    char *p = r2 + (size_t)b->seg_off[i] * rowsz(b);
    r = ncclReduce(p, p, (size_t)b->n1[i] * b->H, b->nccl_dt, ncclSum, i, b->tp_comm, stream);
  }
  ncclResult_t r2e = ncclGroupEnd();
  BL_NCCL(r);
  BL_NCCL(r2e);
  return COMET_OK;
}

/* ---- the forward ---- */

comet_status_t comet_baseline_forward(comet_baseline_t b, const comet_moe_args_t *a,
                                      cudaStream_t stream) {
  COMET_ARG(b != NULL, "comet_baseline_forward: baseline is NULL");
  const int E = b->E, K = b->K, H = b->H;
  const size_t E4 = (size_t)E + COMET_BL_STATUS_SLOTS;
  b->have_times = 0;
  b->have_counts = 0;
  BL_BLAS(cublasSetStream(b->cublas, stream));
  BL_CUDA(cudaEventRecord(b->ev[0], stream));

  /* 1. Count and permute own rows; a refused call still joins the exchange. */
  comet_arg_fault_t fault;
  comet_status_t local = comet_moe_args_check(&b->cfg, a, &fault);
  if (local == COMET_OK) {
    BL_CUDA(comet_bl_route(a->topk_ids, a->num_tokens, K, E, b->d_counts, b->d_base, b->d_pos,
                           b->d_chunk, b->d_slot_rank, stream));
    BL_CUDA(comet_bl_permute(a->x, b->d_pos, a->num_tokens, K, H, b->d_send, stream));
  } else {
    *b->h_flag = 1;
    BL_CUDA(cudaMemsetAsync(b->d_counts, 0, sizeof(int32_t) * E4, stream));
    BL_CUDA(cudaMemcpyAsync(b->d_counts + E + COMET_BL_ARG_ERROR, b->h_flag, sizeof(int32_t),
                            cudaMemcpyHostToDevice, stream));
  }
  /* 2. Exchange the counts; the host needs them for the collectives' sizes
   *    and cuBLAS's group sizes (the sync every such user pays). */
  BL_NCCL(ncclAllGather(b->d_counts, b->d_all_counts, E4, ncclInt32, b->comm, stream));
  BL_CUDA(cudaMemcpyAsync(b->h_all_counts, b->d_all_counts, sizeof(int32_t) * E4 * b->W,
                          cudaMemcpyDeviceToHost, stream));
  BL_CUDA(cudaStreamSynchronize(stream));
  b->have_counts = 1;
  COMET_CHECK(check_exchange(b, local));

  int64_t total = 0;
  const int nb = plan_call(b, &total);
  if (nb < 0) return comet_set_error(COMET_ERR_INTERNAL, "baseline: block tables disagree");
  const int sorted = b->El > 1;
  char *rows = sorted ? b->d_sorted : b->d_r2; /* fc1's input, then fc2's output */
  const int act = b->cfg.activation;
  char *hbuf = act == COMET_ACT_NONE ? b->d_g1 : b->d_h;
  gemm_job_t j1 = {0, rows, a->w1, b->d_g1, b->w1_rows, H};
  gemm_job_t j2 = {1, hbuf, a->w2, rows, H, b->Fl};
  const int ng1 = fill_ptrs(b, &j1), ng2 = fill_ptrs(b, &j2);
  BL_CUDA(cudaMemcpyAsync(b->d_upload, b->h_upload, b->upload_bytes, cudaMemcpyHostToDevice, stream));
  const int32_t *d_ts = up_tab(b, b->d_upload, 0), *d_tu = up_tab(b, b->d_upload, 1);

  /* 3. Dispatch: EP all-to-all, TP all-gather, sort by expert. */
  COMET_CHECK(ep_all_to_all(b, 0, stream));
  if (b->tp > 1) COMET_CHECK(tp_all_gather(b, stream));
  if (sorted) BL_CUDA(comet_bl_copy_blocks(b->d_sorted, b->d_r2, d_ts, nb, total, H, stream));
  BL_CUDA(cudaEventRecord(b->ev[1], stream));

  /* 4. Experts. */
  COMET_CHECK(gemm_run(b, &j1, ng1, total, stream));
  if (act != COMET_ACT_NONE)
    BL_CUDA(comet_bl_activation(b->d_g1, b->d_h, total, b->Fl, act,
                                b->cfg.dtype == COMET_DTYPE_FP16, stream));
  BL_CUDA(cudaEventRecord(b->ev[4], stream));
  COMET_CHECK(gemm_run(b, &j2, ng2, total, stream));
  BL_CUDA(cudaEventRecord(b->ev[2], stream));

  /* 5. Combine: unsort, TP reduce-scatter, EP all-to-all back, top-k sum. */
  if (sorted) BL_CUDA(comet_bl_copy_blocks(b->d_r2, b->d_sorted, d_tu, nb, total, H, stream));
  if (b->tp > 1) COMET_CHECK(tp_reduce_scatter(b, stream));
  COMET_CHECK(ep_all_to_all(b, 1, stream));
  BL_CUDA(comet_bl_combine(b->d_send, b->d_pos, a->topk_weights, a->num_tokens, K, H, a->out,
                           b->cfg.dtype == COMET_DTYPE_FP16, stream));
  BL_CUDA(cudaEventRecord(b->ev[3], stream));
  b->have_times = 1;
  return COMET_OK;
}
