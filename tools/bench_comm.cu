/* SPDX-License-Identifier: Apache-2.0 */
/* bench_comm.cu — `comet bench --op dispatch|combine`: GB/s per GPU of
 * comet's token dispatch / combine against NCCL all-to-all (grouped
 * ncclSend/ncclRecv) of the same bytes per peer, in the same run, sweeping
 * the number of CTAs.
 *
 * Bytes: what crosses NVLink (rows to or from other ranks; both sides also
 * move the rank's own rows locally). GB/s per GPU = mean bytes per rank /
 * the slowest rank's median time. Each timed iteration starts right after
 * the routing plan's closing barrier (dispatch/combine) or an
 * all-reduce (NCCL), so the ranks start together. The combine's time
 * includes its local top-k reduction; NCCL's does not. The options, and the
 * config for the world when they decide it (--gpus, --ep x --tp, the
 * launcher's WORLD_SIZE), are checked (exit 2) before the GPUs are counted;
 * without one it says why in one line (exit 1). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comet.h"
#include "context.h"
#include "launch.h"
#include "run_record.h"
#include "layer.h"
#include "tools.h"

#define MAX_LIST 32

typedef struct opts {
  int combine;
  int gpus, ep, tp, tokens, iters, warmup;
  int ctas[MAX_LIST], nctas;
  int unroll[MAX_LIST], nunroll;
  const char *model, *json, *rendezvous;
  char commit[64];
} opts_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: comet bench --op dispatch|combine [options]\n"
          "  --model NAME        shapes (comet presets; default mixtral-8x7b)\n"
          "  --gpus N            ranks (forked, one per GPU; default: all GPUs)\n"
          "  --rendezvous PATH   join an external launcher's ranks instead (RANK, WORLD_SIZE)\n"
          "  --tokens T          tokens per rank (default 8192)\n"
          "  --ep E --tp T       layout (default ep = ranks, tp = 1)\n"
          "  --ctas LIST         CTA counts to sweep (default 8,16,24,32,64,132)\n"
          "  --unroll LIST       16-byte vectors in flight per lane: 4, 8, 16 (default 8)\n"
          "  --iters N           timed iterations (default 20), --warmup N (default 3)\n"
          "  --json FILE         append one JSON line per row\n");
}

static void read_commit(char *buf, size_t n) {
  const char *env = getenv("COMET_COMMIT");
  snprintf(buf, n, "unknown");
  if (env && *env) {
    snprintf(buf, n, "%s", env);
    return;
  }
  FILE *f = popen("git rev-parse --short HEAD 2>/dev/null", "r");
  if (!f) return;
  if (fgets(buf, (int)n, f)) buf[strcspn(buf, "\n")] = 0;
  if (!buf[0]) snprintf(buf, n, "unknown");
  pclose(f);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

#define BCUDA(call)                                                                   \
  do {                                                                                \
    cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "[rank %d] %s:%d %s: %s\n", me, __FILE__, __LINE__, #call,      \
              cudaGetErrorString(e_));                                                \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)
#define BNCCL(call)                                                                   \
  do {                                                                                \
    ncclResult_t r_ = (call);                                                         \
    if (r_ != ncclSuccess) {                                                          \
      fprintf(stderr, "[rank %d] %s:%d %s: %s\n", me, __FILE__, __LINE__, #call,      \
              ncclGetErrorString(r_));                                                \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)
#define BCOMET(call)                                                                  \
  do {                                                                                \
    if ((call) != COMET_OK) {                                                         \
      fprintf(stderr, "[rank %d] %s: %s\n", me, #call, comet_last_error());           \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Slowest rank's value (max) and the mean, over all ranks. */
static int gather_max_mean(ncclComm_t comm, cudaStream_t st, int W, double mine, double *mx,
                           double *mean, double *dbuf) {
  int me = 0;
  BCUDA(cudaMemcpy(dbuf + W, &mine, sizeof mine, cudaMemcpyHostToDevice));
  BNCCL(ncclAllGather(dbuf + W, dbuf, 1, ncclFloat64, comm, st));
  double h[64];
  BCUDA(cudaStreamSynchronize(st));
  BCUDA(cudaMemcpy(h, dbuf, sizeof(double) * W, cudaMemcpyDeviceToHost));
  *mx = 0;
  *mean = 0;
  for (int i = 0; i < W; ++i) {
    if (h[i] > *mx) *mx = h[i];
    *mean += h[i] / W;
  }
  return 0;
}

static int bench_rank(const comet_rank_info_t *info, void *arg) {
  const opts_t *o = (const opts_t *)arg;
  const int me = info->rank, W = info->world;
  comet_context_t ctx;
  BCOMET(comet_context_create(&ctx, me, W, &info->id, info->device));
  ncclComm_t comm = comet_context_comm(ctx);
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  BCOMET(comet_config_from_preset(&cfg, o->model));
  cfg.ep = o->ep; /* for W, set and checked in comet_bench_comm_main */
  cfg.tp = o->tp;
  cfg.max_tokens_per_rank = o->tokens;
  comet_layer_t L;
  BCOMET(comet_layer_create(&L, ctx, &cfg));
  const comet_comm_view_t *v = comet_layer_view(L);
  const int E = cfg.num_experts, K = cfg.topk, T = o->tokens, El = E / cfg.ep, tp = cfg.tp;
  const size_t row_bytes = (size_t)cfg.hidden * 2;
  cudaStream_t st;
  BCUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

  /* uniform routing, random rows */
  int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)T * K);
  float *w = (float *)malloc(sizeof(float) * (size_t)T * K);
  uint64_t s = 0x1234567ull + (uint64_t)me * 7919;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) {
      int e, dup;
      do {
        e = (int)(rng(&s) % (uint64_t)E);
        dup = 0;
        for (int k2 = 0; k2 < k; ++k2) dup |= ids[(size_t)t * K + k2] == e;
      } while (dup);
      ids[(size_t)t * K + k] = e;
      w[(size_t)t * K + k] = (float)(rng(&s) % 1000) / 1000.0f;
    }
  int32_t *d_ids;
  float *d_w;
  char *d_x, *d_out, *d_y;
  BCUDA(cudaMalloc(&d_ids, sizeof(int32_t) * (size_t)T * K));
  BCUDA(cudaMalloc(&d_w, sizeof(float) * (size_t)T * K));
  BCUDA(cudaMalloc(&d_x, row_bytes * T));
  BCUDA(cudaMalloc(&d_out, row_bytes * T));
  BCUDA(cudaMemcpy(d_ids, ids, sizeof(int32_t) * (size_t)T * K, cudaMemcpyHostToDevice));
  BCUDA(cudaMemcpy(d_w, w, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice));
  {
    uint16_t *hx = (uint16_t *)malloc(row_bytes * T);
    for (size_t i = 0; i < (size_t)T * cfg.hidden; ++i) hx[i] = (uint16_t)(0x3c00u + (rng(&s) & 0x3ffu));
    BCUDA(cudaMemcpy(d_x, hx, row_bytes * T, cudaMemcpyHostToDevice));
    /* and where a producer would leave it for the pull dispatch */
    if (v->dispatch_mode == COMET_DISPATCH_PULL)
      BCUDA(cudaMemcpy(v->win_local + v->off_x, hx, row_bytes * T, cudaMemcpyHostToDevice));
    free(hx);
  }
  BCOMET(comet_layer_plan(L, T, d_ids, NULL, st));
  comet_route_status_t rs;
  BCOMET(comet_layer_route_status(L, st, &rs));
  const int64_t rows = rs.rows;
  /* y where a fused GEMM leaves it: the window's y region (pull reads it
   * from the peers in place; push reads it locally) */
  d_y = v->win_local + v->off_y;
  BCUDA(cudaMemset(d_y, 0x3c, row_bytes * (size_t)(rows < v->row_capacity ? rows + 1 : rows)));
  int32_t *counts = (int32_t *)malloc(sizeof(int32_t) * W * E);
  BCUDA(cudaMemcpy(counts, v->all_counts, sizeof(int32_t) * W * E, cudaMemcpyDeviceToHost));

  /* Bytes between this rank and each peer: dispatch sends rows of s to
   * every rank of its experts' groups; the combine sends them back. */
  size_t *to = (size_t *)calloc(W, sizeof(size_t)), *from = (size_t *)calloc(W, sizeof(size_t));
  for (int q = 0; q < W; ++q) {
    const int g = q / tp;
    for (int el = 0; el < El; ++el) {
      to[q] += (size_t)counts[me * E + g * El + el] * row_bytes;   /* me -> q (dispatch) */
      from[q] += (size_t)counts[q * E + (me / tp) * El + el] * row_bytes; /* q -> me */
    }
  }
  size_t *sendb = o->combine ? from : to, *recvb = o->combine ? to : from; /* combine: reverse */
  size_t send_total = 0, recv_total = 0, remote = 0;
  for (int q = 0; q < W; ++q) {
    send_total += sendb[q];
    recv_total += recvb[q];
    if (q != me) remote += sendb[q];
  }
  char *nsend, *nrecv;
  double *dbuf;
  BCUDA(cudaMalloc(&nsend, send_total + 16));
  BCUDA(cudaMalloc(&nrecv, recv_total + 16));
  BCUDA(cudaMalloc(&dbuf, sizeof(double) * (W + 1)));
  BCUDA(cudaMemset(nsend, 0x3c, send_total + 16));
  cudaEvent_t e0, e1;
  BCUDA(cudaEventCreate(&e0));
  BCUDA(cudaEventCreate(&e1));
  const int n_it = o->warmup + o->iters;
  float *ms = (float *)malloc(sizeof(float) * n_it);

  /* NCCL all-to-all of the same bytes */
  for (int it = 0; it < n_it; ++it) {
    BNCCL(ncclAllReduce(dbuf, dbuf, 1, ncclFloat64, ncclSum, comm, st));
    BCUDA(cudaEventRecord(e0, st));
    BNCCL(ncclGroupStart());
    size_t so = 0, ro = 0;
    for (int q = 0; q < W; ++q) {
      if (sendb[q]) BNCCL(ncclSend(nsend + so, sendb[q], ncclChar, q, comm, st));
      if (recvb[q]) BNCCL(ncclRecv(nrecv + ro, recvb[q], ncclChar, q, comm, st));
      so += sendb[q];
      ro += recvb[q];
    }
    BNCCL(ncclGroupEnd());
    BCUDA(cudaEventRecord(e1, st));
    BCUDA(cudaEventSynchronize(e1));
    BCUDA(cudaEventElapsedTime(&ms[it], e0, e1));
  }
  qsort(ms + o->warmup, o->iters, sizeof(float), cmp_float);
  double nccl_t, dummy, bytes_mean, bytes_max;
  if (gather_max_mean(comm, st, W, ms[o->warmup + o->iters / 2] * 1e-3, &nccl_t, &dummy, dbuf)) return 1;
  if (gather_max_mean(comm, st, W, (double)remote, &bytes_max, &bytes_mean, dbuf)) return 1;
  const double nccl_gbps = bytes_mean / nccl_t / 1e9;

  cudaDeviceProp prop;
  BCUDA(cudaGetDeviceProperties(&prop, info->device));
  const char *op = o->combine ? "combine" : "dispatch";
  const char *mode = o->combine ? (getenv("COMET_COMBINE_MODE") ? getenv("COMET_COMBINE_MODE") : "pull")
                                : (getenv("COMET_DISPATCH_MODE") ? getenv("COMET_DISPATCH_MODE") : "push");
  const int pull_x = v->dispatch_mode == COMET_DISPATCH_PULL;
  if (me == 0) {
    printf("comet bench --op %s: %s, %d ranks (ep %d x tp %d), %d tokens/rank, rows of %zu B, %s, "
           "commit %s\n", op, o->model, W, cfg.ep, tp, T, row_bytes, prop.name, o->commit);
    printf("mode: %s\n", mode);
    printf("%-8s %6s %6s %14s %8s %8s %8s %9s\n", "op", "ctas", "unroll", "bytes/rank", "ms", "GB/s",
           "NCCL", "vs NCCL");
  }
  FILE *jf = (me == 0 && o->json) ? fopen(o->json, "a") : NULL;
  for (int ui = 0; ui < o->nunroll; ++ui) {
    char ub[16];
    snprintf(ub, sizeof ub, "%d", o->unroll[ui]);
    setenv("COMET_COMM_UNROLL", ub, 1);
    for (int ci = 0; ci < o->nctas; ++ci) {
      const int ctas = o->ctas[ci];
      for (int it = 0; it < n_it; ++it) {
        BCOMET(comet_layer_plan(L, T, d_ids, NULL, st)); /* ends in a barrier: a common start */
        BCUDA(cudaEventRecord(e0, st));
        if (o->combine) BCOMET(comet_layer_combine(L, d_y, d_w, d_out, ctas, st));
        else BCOMET(comet_layer_dispatch(L, pull_x ? v->win_local + v->off_x : d_x, ctas, st));
        BCUDA(cudaEventRecord(e1, st));
        BCUDA(cudaEventSynchronize(e1));
        BCUDA(cudaEventElapsedTime(&ms[it], e0, e1));
      }
      BCOMET(comet_layer_route_status(L, st, NULL));
      qsort(ms + o->warmup, o->iters, sizeof(float), cmp_float);
      double t_max, t_mean;
      if (gather_max_mean(comm, st, W, ms[o->warmup + o->iters / 2] * 1e-3, &t_max, &t_mean, dbuf)) return 1;
      const double gbps = bytes_mean / t_max / 1e9;
      if (me == 0) {
        printf("%-8s %6d %6d %14.0f %8.3f %8.1f %8.1f %8.2fx\n", op, ctas, o->unroll[ui], bytes_mean,
               t_max * 1e3, gbps, nccl_gbps, gbps / nccl_gbps);
        if (jf)
          fprintf(jf,
                  "{\"op\": \"%s\", \"model\": \"%s\", \"world\": %d, \"ep\": %d, \"tp\": %d, "
                  "\"tokens_per_rank\": %d, \"ctas\": %d, \"mode\": \"%s\", \"unroll\": %d, \"bytes\": %.0f, "
                  "\"gbps\": %.1f, \"nccl_gbps\": %.1f, \"ms\": %.4f, \"nccl_ms\": %.4f, "
                  "\"device\": \"%s\", \"commit\": \"%s\", \"date\": \"%s\", \"command\": \"%s\"}\n",
                  op, o->model, W, cfg.ep, tp, T, ctas, mode, o->unroll[ui], bytes_mean, gbps, nccl_gbps,
                  t_max * 1e3, nccl_t * 1e3, prop.name, o->commit, comet_run_date(), comet_run_command());
      }
    }
  }
  if (jf) fclose(jf);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(nsend); cudaFree(nrecv); cudaFree(dbuf);
  cudaFree(d_ids); cudaFree(d_w); cudaFree(d_x); cudaFree(d_out);
  free(ids); free(w); free(counts); free(to); free(from); free(ms);
  cudaStreamDestroy(st);
  BCOMET(comet_layer_destroy(L));
  BCOMET(comet_context_destroy(ctx));
  return 0;
}

/* The preset's config for world W (ep, tp: 0 = not given; W = 0: not known yet). */
static int check_config(opts_t *o, int W, const char *what) {
  if (W && cli_layout("comet bench", W, what, &o->ep, &o->tp)) return -1;
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  if (comet_config_from_preset(&cfg, o->model) != COMET_OK) return -1;
  cfg.ep = o->ep;
  cfg.tp = o->tp;
  cfg.max_tokens_per_rank = o->tokens;
  return cli_config_ok("comet bench", o->model, cfg, W);
}

/* The options into o: 0, 1 (--help shown) or -1 (an error, printed). */
static int parse(int argc, char **argv, opts_t *o) {
  memset(o, 0, sizeof *o);
  o->model = "mixtral-8x7b";
  o->tokens = 8192;
  o->iters = 20;
  o->warmup = 3;
  o->nctas = cli_int_list("8,16,24,32,64,132", 1, CLI_MAX_COUNT, o->ctas, MAX_LIST);
  o->nunroll = cli_int_list("8", 1, CLI_MAX_COUNT, o->unroll, MAX_LIST);
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 1;
    } else if (!strcmp(a, "--op")) {
      CLI_NEED();
      if (strcmp(v, "dispatch") && strcmp(v, "combine")) CLI_BAD();
      o->combine = !strcmp(v, "combine");
    } else if (!strcmp(a, "--model")) { CLI_NEED(); o->model = v;
    } else if (!strcmp(a, "--gpus")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->gpus)) CLI_BAD();
    } else if (!strcmp(a, "--ep")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->ep)) CLI_BAD();
    } else if (!strcmp(a, "--tp")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->tp)) CLI_BAD();
    } else if (!strcmp(a, "--tokens")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->tokens)) CLI_BAD();
    } else if (!strcmp(a, "--iters")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->iters)) CLI_BAD();
    } else if (!strcmp(a, "--warmup")) { CLI_NEED(); if (cli_int(v, 0, CLI_MAX_COUNT, &o->warmup)) CLI_BAD();
    } else if (!strcmp(a, "--json")) { CLI_NEED(); o->json = v;
    } else if (!strcmp(a, "--rendezvous")) { CLI_NEED(); o->rendezvous = v;
    } else if (!strcmp(a, "--ctas")) {
      CLI_NEED();
      if ((o->nctas = cli_int_list(v, 1, CLI_MAX_COUNT, o->ctas, MAX_LIST)) < 0) CLI_BAD();
    } else if (!strcmp(a, "--unroll")) {
      CLI_NEED();
      if ((o->nunroll = cli_int_list(v, 1, CLI_MAX_COUNT, o->unroll, MAX_LIST)) < 0) CLI_BAD();
      for (int u = 0; u < o->nunroll; ++u)
        if (o->unroll[u] != 4 && o->unroll[u] != 8 && o->unroll[u] != 16) CLI_BAD();
    } else {
      fprintf(stderr, "comet bench: unknown option '%s' (comet bench --op dispatch --help lists them)\n",
              a);
      return -1;
    }
  }
  if (!comet_preset_find(o->model)) {
    fprintf(stderr, "comet bench: %s\n", comet_last_error());
    return -1;
  }
  if (o->json && cli_json_ok("comet bench", o->json)) return -1;
  /* The world where the options decide it; else all the GPUs (checked again
   * once they are counted). */
  int W = 0;
  const char *what = NULL;
  if (cli_option_world(&o->gpus, o->rendezvous, o->ep, o->tp, &W, &what)) return -1;
  return check_config(o, W, what);
}

int comet_bench_comm_main(int argc, char **argv) {
  opts_t o;
  const int pr = parse(argc, argv, &o);
  if (pr) return pr > 0 ? 0 : 2;
  /* Counted in a child: the ranks forked below must find CUDA uninitialized. */
  const int n = cli_fork_gpu_count("comet bench");
  if (n < 1) return 1;
  if (!o.rendezvous && !o.gpus) { /* all of them: now the world is known */
    o.gpus = n;
    if (check_config(&o, o.gpus, "the GPU count")) return 2;
  }
  if (o.gpus > n) {
    fprintf(stderr, "comet bench: --gpus %d but only %d GPU(s) present\n", o.gpus, n);
    return 1;
  }
  read_commit(o.commit, sizeof o.commit);
  setenv("NCCL_NVLS_ENABLE", "0", 0); /* no NVLink multicast (see the device notes) */
  if (o.rendezvous) return comet_launch_external(o.rendezvous, 600.0, bench_rank, &o);
  return comet_launch_local(o.gpus, 600.0, bench_rank, &o) == 0 ? 0 : 1;
}

#ifdef COMET_BENCH_COMM_MAIN
/* Standalone build (scripts/gpu_comm.sh, when the `comet` command does not link). */
int main(int argc, char **argv) {
  int skip = argc > 1 && !strcmp(argv[1], "bench") ? 2 : 1; /* `bench_comm bench --op ...` too */
  return comet_bench_comm_main(argc - skip, argv + skip);
}
#endif
