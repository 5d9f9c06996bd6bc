/* SPDX-License-Identifier: Apache-2.0 */
/* comm_test.h — shared by the multi-rank GPU tests: which worlds a test runs
 * in (W = 1 on a real GPU, W = 2, 4, 8 in the loopback world on one GPU,
 * NCCL on as many GPUs as there are) and the JSON line each world records;
 * the rank's context for either transport; routings every rank can
 * regenerate for every other rank (seeded by run seed, case and rank);
 * small CUDA checks. */
#ifndef COMET_COMM_TEST_H
#define COMET_COMM_TEST_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comet.h"
#include "context.h"
#include "kernels/fill.h"
#include "launch.h"
#include "layer.h"
#include "plan.h"
#include "run_record.h"
#include "test_util.h"

#define CUDA_OK(call)                                                                  \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
              cudaGetErrorString(e_));                                                 \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* Routing kinds. */
enum { ROUTE_UNIFORM, ROUTE_SKEW, ROUTE_EMPTY_EXPERTS, ROUTE_DROPPED, ROUTE_ALL_TO_ONE, ROUTE_KINDS };
static const char *const route_names[ROUTE_KINDS] = {"uniform", "skewed", "empty-experts",
                                                     "dropped", "all-to-one"};

static inline uint64_t mix_seed(uint64_t seed, int a, int b, int c) {
  uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(a + 1)) ^
               (0xbf58476d1ce4e5b9ull * (uint64_t)(b + 7)) ^ (0x94d049bb133111ebull * (uint64_t)(c + 13));
  test_rand_u64(&s);
  return s;
}

/* Fills ids [T, K] of one rank: distinct experts per token (or -1). */
static inline void gen_ids(int kind, uint64_t seed, int E, int K, int T, int32_t *ids) {
  uint64_t s = seed;
  /* empty-experts: only experts i*(E/P), P = max(K, E/4): whole ranks may get nothing */
  const int P = K > E / 4 ? K : E / 4;
  for (int t = 0; t < T; ++t) {
    int32_t *row = ids + (size_t)t * K;
    if (kind == ROUTE_ALL_TO_ONE) { /* every token to the last expert only (the last rank's) */
      for (int k = 0; k < K; ++k) row[k] = k == 0 ? E - 1 : -1;
      continue;
    }
    const int drop_all = kind == ROUTE_DROPPED && test_rand_int(&s, 0, 9) == 0;
    for (int k = 0; k < K; ++k) {
      int e, dup;
      do {
        switch (kind) {
          case ROUTE_SKEW: /* experts 0 and 1 take most of the load */
            e = test_rand_int(&s, 0, 9) < 6 ? test_rand_int(&s, 0, 1) : test_rand_int(&s, 0, E - 1);
            break;
          case ROUTE_EMPTY_EXPERTS: e = test_rand_int(&s, 0, P - 1) * (E / P); break;
          default: e = test_rand_int(&s, 0, E - 1);
        }
        dup = 0;
        for (int k2 = 0; k2 < k; ++k2) dup |= row[k2] == e;
      } while (dup);
      row[k] = e;
    }
    if (kind == ROUTE_DROPPED)
      for (int k = 0; k < K; ++k)
        if (drop_all || test_rand_int(&s, 0, 3) == 0) row[k] = -1;
  }
}

static inline void gen_bits16(uint64_t seed, size_t n, uint16_t *out, int fp16) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    float f = test_rand_uniform(&s, -2.0f, 2.0f);
    uint32_t u;
    memcpy(&u, &f, 4);
    /* bf16: top 16 bits; fp16: a value in range, built from a small float */
    out[i] = fp16 ? (uint16_t)(((u >> 16) & 0x8000u) | (0x3800u + (uint16_t)(test_rand_u64(&s) & 0x7ffu)))
                  : (uint16_t)(u >> 16);
  }
}

/* ---- device memory of a rank's thread ----
 * Stream-ordered (cudaMallocAsync / cudaFreeAsync on the rank's stream):
 * cudaFree synchronizes the whole device, which in the loopback world also
 * waits for peers' kernels that may wait for this rank. */
static TEST_TLS cudaStream_t test_alloc_stream;

static inline cudaError_t test_malloc(void *pp, size_t bytes) {
  cudaError_t e = cudaMallocAsync((void **)pp, bytes ? bytes : 16, test_alloc_stream);
  return e == cudaSuccess ? cudaStreamSynchronize(test_alloc_stream) : e;
}
static inline void test_free(void *p) {
  if (p) cudaFreeAsync(p, test_alloc_stream);
}

/* ---- worlds ---- */

/* This rank's context, on the loopback world or over NCCL. */
static inline comet_status_t test_context_create(const comet_rank_info_t *info, comet_context_t *ctx) {
  comet_status_t st =
      info->loopback ? comet_context_create_loopback(ctx, info->loopback, info->rank)
      : info->ipc    ? comet_context_create_ipc(ctx, info->ipc, info->rank)
                     : comet_context_create(ctx, info->rank, info->world, &info->id, info->device);
  test_alloc_stream = st == COMET_OK ? comet_context_stream(*ctx) : NULL;
  if (st == COMET_OK) { /* the pool keeps what it has: no unmapping at every sync, and fewer
                         * mappings later, which may wait for the device (peers included) */
    cudaMemPool_t pool;
    uint64_t keep = UINT64_MAX;
    if (cudaDeviceGetDefaultMemPool(&pool, info->device) != cudaSuccess ||
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess)
      cudaGetLastError(); /* an optimisation for the tests only */
  }
  return st;
}

/* A rank body's start: its own check counts, its context (NULL after
 * printing why, if it could not be made). */
static inline comet_context_t test_rank_begin(const comet_rank_info_t *info) {
  test_failures = test_checks = 0;
  comet_context_t ctx = NULL;
  if (test_context_create(info, &ctx) != COMET_OK) {
    fprintf(stderr, "[rank %d] context: %s\n", info->rank, comet_last_error());
    return NULL;
  }
  return ctx;
}

/* A rank body's end: the context destroyed, the rank's exit code. */
static inline int test_rank_end(const comet_rank_info_t *info, comet_context_t ctx) {
  CHECK_OK(comet_context_destroy(ctx));
  if (test_failures)
    fprintf(stderr, "[rank %d] %d of %d checks failed\n", info->rank, test_failures, test_checks);
  return test_failures ? 1 : 0;
}

/* Seconds on a monotonic clock. */
static inline double test_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A diagnosis of the loopback world's first-call timeouts (docs/status.md,
 * Known gaps 11): a collective call whose host side took long (its launches
 * blocked, e.g. loading a kernel while a peer's kernel spins) is printed
 * with the rank; a call that returned at once but whose kernels started
 * late points at the device instead. */
static inline void test_note_slow(int rank, const char *call, double t0) {
  const double dt = test_now_s() - t0;
  if (dt > 1.0) fprintf(stderr, "[rank %d] %s took %.2f s on the host\n", rank, call, dt);
}

/* Every rank's work on stream is done, on every rank (host barrier): what a
 * test needs before it poisons memory that peers may still read. */
static inline void test_barrier(comet_context_t ctx, cudaStream_t stream) {
  CUDA_OK(cudaStreamSynchronize(stream));
  if (ctx->tp->ops->barrier(ctx->tp) != COMET_OK) {
    fprintf(stderr, "FAIL: test barrier: %s\n", comet_last_error());
    exit(1);
  }
}

/* Poison or zero device memory on the rank's stream by a kernel: ordered
 * with the rank's calls (a cudaMemset on the legacy stream is not, with a
 * non-blocking stream), and no copy-engine work in the loopback world
 * (kernels/fill.h). */
static inline void test_fill(void *p, int byte, size_t bytes, cudaStream_t stream) {
  if (comet_fill_bytes_launch(p, byte, bytes, stream) != COMET_OK) {
    fprintf(stderr, "FAIL: test fill: %s\n", comet_last_error());
    exit(1);
  }
}

static inline const char *test_transport(const comet_rank_info_t *info) {
  return info->loopback ? "loopback" : info->ipc ? "ipc" : "nccl";
}

typedef struct test_worlds {
  int nccl[8], n_nccl; /* worlds over NCCL, one GPU per rank (skipped past the GPU count) */
  int loop[8], n_loop; /* loopback worlds on GPU 0 */
  int ipc[8], n_ipc;   /* ipc worlds on GPU 0 (processes; for the sanitizers) */
  int quick;           /* --quick: the test's small variant (for the sanitizers) */
} test_worlds_t;

static inline int test_parse_list(const char *s, int *out) {
  int n = 0;
  while (s && *s && n < 8) {
    out[n++] = atoi(s);
    s = strchr(s, ',');
    if (s) s++;
  }
  return n;
}

/* Options: --nccl LIST, --loopback LIST, --ipc LIST (comma-separated world
 * sizes; "none" for none), --quick. Defaults: nccl 1,2,4,8, loopback 2,4,8,
 * ipc none. */
static inline test_worlds_t test_parse_worlds(int argc, char **argv) {
  comet_run_record_init(argc, argv); /* the command and date of test_record's rows */
  test_worlds_t w = {{1, 2, 4, 8}, 4, {2, 4, 8}, 3, {0}, 0, 0};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--nccl") && i + 1 < argc) w.n_nccl = test_parse_list(argv[++i], w.nccl);
    else if (!strcmp(argv[i], "--loopback") && i + 1 < argc) w.n_loop = test_parse_list(argv[++i], w.loop);
    else if (!strcmp(argv[i], "--ipc") && i + 1 < argc) w.n_ipc = test_parse_list(argv[++i], w.ipc);
    else if (!strcmp(argv[i], "--quick")) w.quick = 1;
    else fprintf(stderr, "ignoring argument %s (use --nccl LIST --loopback LIST --ipc LIST --quick)\n", argv[i]);
  }
  return w;
}

/* One JSON line per (test, world, transport) into $COMET_TEST_JSONL, if set;
 * device and commit from $COMET_TEST_DEVICE and $COMET_TEST_COMMIT, date
 * and command from test_parse_worlds. */
static inline void test_record(const char *test, int W, const char *transport, const char *result) {
  const char *path = getenv("COMET_TEST_JSONL");
  if (!path || !*path) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  const char *dev = getenv("COMET_TEST_DEVICE"), *commit = getenv("COMET_TEST_COMMIT");
  fprintf(f,
          "{\"op\":\"gpu_test\",\"test\":\"%s\",\"world\":%d,\"transport\":\"%s\","
          "\"result\":\"%s\",\"device\":\"%s\",\"commit\":\"%s\",\"date\":\"%s\","
          "\"command\":\"%s\"}\n",
          test, W, transport, result, dev ? dev : "unknown", commit ? commit : "unknown",
          comet_run_date(), comet_run_command());
  fclose(f);
}

/* Runs fn in every world of w; returns test_finish's exit code (77 without
 * a GPU). */
static inline int test_run_worlds(const char *test, const test_worlds_t *w, comet_rank_fn fn,
                                  void *arg, double timeout_s) {
  setenv("NCCL_NVLS_ENABLE", "0", 0); /* never NVLink multicast */
  const int n = comet_launch_gpu_count();
  if (n == 0) return test_skip(test, "no CUDA GPU is visible");
  int failed = 0, ran = 0;
  for (int i = 0; i < w->n_nccl + w->n_loop + w->n_ipc; ++i) {
    const int kind = i < w->n_nccl ? 0 : i < w->n_nccl + w->n_loop ? 1 : 2; /* nccl, loopback, ipc */
    const int W = kind == 0 ? w->nccl[i] : kind == 1 ? w->loop[i - w->n_nccl]
                                                      : w->ipc[i - w->n_nccl - w->n_loop];
    const char *tr = kind == 0 ? "nccl" : kind == 1 ? "loopback" : "ipc";
    if (W < 1) continue;
    if (kind == 0 && W > n) {
      printf("%s: SKIPPED world %d over NCCL: only %d GPU(s)\n", test, W, n);
      continue;
    }
    printf("%s: world %d (%s%s)\n", test, W, tr, kind ? ", one GPU" : "");
    fflush(stdout);
    const int rc = kind == 1 ? comet_launch_loopback(W, 0, timeout_s, fn, arg)
                 : kind == 2 ? comet_launch_ipc(W, 0, timeout_s, fn, arg)
                             : comet_launch_local(W, timeout_s, fn, arg);
    test_record(test, W, tr, rc ? "fail" : "pass");
    if (kind == 1) /* whether the ranks had work queues of their own (Known gaps 11) */
      printf("%s: world %d (%s, %s work queues): %s\n", test, W, tr,
             comet_loopback_last_workqueues() == 1 ? "balanced" : "shared", rc ? "FAILED" : "passed");
    else
      printf("%s: world %d (%s): %s\n", test, W, tr, rc ? "FAILED" : "passed");
    fflush(stdout);
    if (rc) failed++;
    ran++;
  }
  test_checks += ran;
  test_failures += failed;
  return test_finish(test);
}

#endif /* COMET_COMM_TEST_H */
