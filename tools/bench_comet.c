/* SPDX-License-Identifier: Apache-2.0 */
/* bench_comet.c — comet's forward (and with --backward its backward; with
 * --save both in save mode) in `comet bench`: one layer per config on the
 * caller's context, CUDA events around the forward and around each half,
 * the slowest rank's time per iteration (a max over the ranks' times on the
 * host, through the context's transport, so the same code runs over NCCL
 * and in the loopback world), the median over iterations. */
#include "bench_comet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../baselines/moe_data.h"
#include "comet.h"
#include "context.h"
#include "layer.h"

#define HCUDA(call)                                                                        \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", info->rank, __FILE__, __LINE__, #call,  \
              cudaGetErrorString(e_));                                                     \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

/* comet's own failure: recorded, the config goes on without comet's numbers. */
#define HCOMET(call)                                                                       \
  do {                                                                                     \
    if ((call) != COMET_OK) {                                                              \
      snprintf(out->err, sizeof out->err, "%s: %s", #call, comet_last_error());            \
      goto done;                                                                           \
    }                                                                                      \
  } while (0)

int bench_slowest(const comet_rank_info_t *info, comet_context_t ctx, float *v, int n) {
  const int W = comet_context_world_size(ctx);
  float *all = malloc(sizeof(float) * (size_t)n * W);
  if (!all) {
    fprintf(stderr, "[rank %d] bench: host allocation failed\n", info->rank);
    return 1;
  }
  if (ctx->tp->ops->allgather(ctx->tp, v, all, sizeof(float) * (size_t)n) != COMET_OK) {
    fprintf(stderr, "[rank %d] bench: gathering the ranks' times failed: %s\n", info->rank,
            comet_last_error());
    free(all);
    return 1;
  }
  for (int s = 0; s < W; ++s)
    for (int i = 0; i < n; ++i)
      if (all[(size_t)s * n + i] > v[i]) v[i] = all[(size_t)s * n + i];
  free(all);
  return 0;
}

int bench_preheat(const comet_rank_info_t *info, comet_context_t ctx, cudaStream_t st,
                  float preheat_ms, bench_step_fn step, void *arg) {
  if (preheat_ms <= 0) return 0;
  cudaEvent_t ev[2];
  if (cudaEventCreate(&ev[0]) != cudaSuccess) return 1;
  if (cudaEventCreate(&ev[1]) != cudaSuccess) {
    cudaEventDestroy(ev[0]);
    return 1;
  }
  float ms = 0;
  int rc = 1;
  if (cudaEventRecord(ev[0], st) == cudaSuccess) {
    const int failed = step(arg, st);
    if (cudaEventRecord(ev[1], st) == cudaSuccess && cudaEventSynchronize(ev[1]) == cudaSuccess &&
        cudaEventElapsedTime(&ms, ev[0], ev[1]) == cudaSuccess) {
      if (failed) ms = 0; /* no more steps; the phase reports the failure */
      rc = bench_slowest(info, ctx, &ms, 1);
    }
  }
  cudaEventDestroy(ev[0]);
  cudaEventDestroy(ev[1]);
  if (rc != 0) return 1;
  const int n = ms > 0 ? (int)fminf(preheat_ms / ms, 100000.0f) : 0;
  for (int i = 0; i < n; ++i)
    if (step(arg, st) != 0) break;
  return cudaStreamSynchronize(st) == cudaSuccess ? 0 : 1;
}

/* The preheat steps of comet's phases. */
typedef struct comet_step {
  comet_layer_t L;
  const comet_moe_args_t *fwd;
  const comet_moe_backward_args_t *bwd; /* with fwd->saved_z: each after its forward */
} comet_step_t;

static int comet_forward_step(void *arg, cudaStream_t st) {
  const comet_step_t *s = (const comet_step_t *)arg;
  return comet_moe_forward(s->L, s->fwd, st) != COMET_OK;
}

static int comet_backward_step(void *arg, cudaStream_t st) {
  const comet_step_t *s = (const comet_step_t *)arg;
  if (s->fwd->saved_z && comet_moe_forward(s->L, s->fwd, st) != COMET_OK) return 1;
  return comet_moe_backward(s->L, s->bwd, st) != COMET_OK;
}

/* times[cols * it + c] -> the slowest rank's per iteration, then each
 * column c's median into *m[c]. */
static int slowest_median_cols(const comet_rank_info_t *info, comet_context_t ctx, float *times,
                               int iters, int cols, float *const *m) {
  if (bench_slowest(info, ctx, times, cols * iters) != 0) return 1;
  float *col = malloc(sizeof(float) * (size_t)iters);
  if (!col) return 1;
  for (int c = 0; c < cols; ++c) {
    for (int it = 0; it < iters; ++it) col[it] = times[cols * it + c];
    *m[c] = bench_median(col, iters);
  }
  free(col);
  return 0;
}

/* The same for times [iters][2], into *m0 and *m1. */
static int slowest_medians(const comet_rank_info_t *info, comet_context_t ctx, float *times,
                           int iters, float *m0, float *m1) {
  float *const m[2] = {m0, m1};
  return slowest_median_cols(info, ctx, times, iters, 2, m);
}

/* layer0_overlap_eff's references: per iteration a fused call (the rows in
 * place), then the same call with the movers off, then the movers alone. */
static int bench_layer0_refs(const comet_rank_info_t *info, comet_context_t ctx, comet_layer_t L,
                             const comet_dispatch_gemm_args_t *l0, cudaStream_t st, int iters,
                             float *times, cudaEvent_t *ev, bench_comet_t *out) {
  for (int it = 0; it < iters; ++it) {
    HCOMET(comet_layer_set_layer0_path(L, COMET_LAYER0_FUSED));
    HCOMET(comet_dispatch_gemm(L, l0, st));
    HCUDA(cudaEventRecord(ev[0], st));
    HCOMET(comet_layer_set_layer0_path(L, COMET_LAYER0_GEMM_ONLY));
    HCOMET(comet_dispatch_gemm(L, l0, st));
    HCUDA(cudaEventRecord(ev[1], st));
    HCOMET(comet_layer_set_layer0_path(L, COMET_LAYER0_COMM_ONLY));
    HCOMET(comet_dispatch_gemm(L, l0, st));
    HCUDA(cudaEventRecord(ev[2], st));
    HCUDA(cudaEventSynchronize(ev[2]));
    for (int p = 0; p < 2; ++p) HCUDA(cudaEventElapsedTime(&times[2 * it + p], ev[p], ev[p + 1]));
  }
  HCOMET(comet_layer_set_layer0_path(L, COMET_LAYER0_FUSED));
  return slowest_medians(info, ctx, times, iters, &out->layer0_gemm_only_ms,
                         &out->layer0_comm_only_ms);
done:
  return 0; /* comet's error is in out->err */
}

/* layer1_overlap_eff's references: per iteration a dispatch_gemm (a plan
 * to combine), the fused layer1 call with its movers off; again, with the
 * movers alone (they read y as the layer0 left the shared memory: the
 * timing's traffic, not its values). */
static int bench_layer1_refs(const comet_rank_info_t *info, comet_context_t ctx, comet_layer_t L,
                             const comet_dispatch_gemm_args_t *l0,
                             const comet_gemm_combine_args_t *l1, cudaStream_t st, int iters,
                             float *times, cudaEvent_t *ev, bench_comet_t *out) {
  for (int it = 0; it < iters; ++it) {
    for (int p = 0; p < 2; ++p) {
      HCOMET(comet_dispatch_gemm(L, l0, st));
      HCOMET(comet_layer_set_layer1_path(L, p == 0 ? COMET_LAYER1_GEMM_ONLY : COMET_LAYER1_COMM_ONLY));
      HCUDA(cudaEventRecord(ev[0], st));
      HCOMET(comet_gemm_combine(L, l1, st));
      HCUDA(cudaEventRecord(ev[1], st));
      HCUDA(cudaEventSynchronize(ev[1]));
      HCUDA(cudaEventElapsedTime(&times[2 * it + p], ev[0], ev[1]));
    }
  }
  HCOMET(comet_layer_set_layer1_path(L, COMET_LAYER1_FUSED));
  return slowest_medians(info, ctx, times, iters, &out->layer1_gemm_only_ms,
                         &out->layer1_comm_only_ms);
done:
  return 0; /* comet's error is in out->err */
}

/* The composed layer1's GEMM alone, at W = 1: per iteration a
 * dispatch_gemm (h and the plan as the timed layer1 finds them, the GPU
 * as warm), then the GEMM into the window's y exactly as
 * comet_gemm_combine runs it (dynamic tiles); again with static tiles;
 * and right after the first, the same GEMM on an h of uniform [-1, 1)
 * values (rand_h: the GEMM bench's kind of data, the layer's sizes and
 * weights). Tells the layer's GEMM from the standalone one (`bench --op
 * gemm --only layer`, 8-15% faster on Mixtral 2048 in session 21; not
 * layer0's power draw: the GEMM timed right after itself ran no faster;
 * not the window's y: into a y of cudaMalloc's, within 1%) and from the
 * rest of comet_layer1_ms. */
static int bench_layer1_gemm(const comet_rank_info_t *info, comet_context_t ctx, comet_layer_t L,
                             const comet_dispatch_gemm_args_t *l0,
                             const comet_gemm_combine_args_t *l1, cudaStream_t st, int iters,
                             float *times, cudaEvent_t *ev, bench_comet_t *out) {
  comet_gemm_params_t g[3]; /* h_last: the layer's h, where every dispatch_gemm here writes */
  void *rand_h = NULL;
  comet_layer1_gemm_params(L, L->h_last, l1->w2, L->view.win_local + L->view.off_y, &g[0]);
  g[1] = g[0];
  g[1].dynamic_tiles = 0;
  g[2] = g[0];
  HCUDA(cudaMalloc(&rand_h, (size_t)g[0].max_rows * g[0].k * 2));
  HCUDA(comet_md_fill_x(rand_h, (int)g[0].max_rows, g[0].k, g[0].dtype, 0, 0x5EED, st));
  g[2].a = rand_h;
  for (int it = 0; it < iters; ++it) {
    for (int p = 0; p < 2; ++p) {
      HCOMET(comet_dispatch_gemm(L, l0, st));
      HCUDA(cudaEventRecord(ev[0], st));
      HCOMET(comet_gemm_grouped(&g[p], st));
      HCUDA(cudaEventRecord(ev[1], st));
      if (p == 0) {
        HCOMET(comet_gemm_grouped(&g[2], st));
        HCUDA(cudaEventRecord(ev[2], st));
      }
      HCUDA(cudaEventSynchronize(ev[1 + (p == 0)]));
      HCUDA(cudaEventElapsedTime(&times[3 * it + p], ev[0], ev[1]));
      if (p == 0) HCUDA(cudaEventElapsedTime(&times[3 * it + 2], ev[1], ev[2]));
    }
  }
  HCUDA(cudaFree(rand_h));
  rand_h = NULL;
  {
    float *const m[3] = {&out->layer1_gemm_ms, &out->layer1_gemm_static_ms, &out->layer1_gemm_rand_h_ms};
    return slowest_median_cols(info, ctx, times, iters, 3, m);
  }
done:
  cudaFree(rand_h); /* NULL: no-op */
  return 0; /* comet's error is in out->err */
}

/* comet_moe_backward with every gradient, from g's dout into g's buffers
 * (what the last call leaves there can be checked): one untimed call (the
 * workspace), the preheat, 2 more untimed calls, then the slowest rank's
 * median over iters. Save mode (a->saved_z): each
 * backward after its own forward, untimed and finished first, so the
 * events hold the backward alone, as in recompute mode. */
static int bench_backward(const comet_rank_info_t *info, comet_context_t ctx, comet_layer_t L,
                          const comet_moe_args_t *a, const bench_grads_t *g, cudaStream_t st,
                          int iters, float preheat_ms, float *times, cudaEvent_t *ev,
                          bench_comet_t *out) {
  const comet_moe_backward_args_t bw = bench_grads_args(a, g);
  comet_step_t step = {L, a, &bw};
  /* the first backward (its workspace, outside the preheat's timing) */
  if (a->saved_z) HCOMET(comet_moe_forward(L, a, st));
  HCOMET(comet_moe_backward(L, &bw, st));
  if (bench_preheat(info, ctx, st, preheat_ms, comet_backward_step, &step) != 0) return 1;
  for (int it = -2; it < iters; ++it) {
    if (bw.saved_z) {
      HCOMET(comet_moe_forward(L, a, st));
      HCUDA(cudaStreamSynchronize(st));
    }
    HCUDA(cudaEventRecord(ev[0], st));
    HCOMET(comet_moe_backward(L, &bw, st));
    HCUDA(cudaEventRecord(ev[1], st));
    HCUDA(cudaEventSynchronize(ev[1]));
    if (it >= 0) HCUDA(cudaEventElapsedTime(&times[it], ev[0], ev[1]));
  }
  if (bench_slowest(info, ctx, times, iters) != 0) return 1;
  out->backward_ms = bench_median(times, iters);
done:
  return 0; /* comet's error is in out->err */
}

int bench_comet_run(const comet_rank_info_t *info, const comet_layer_config_t *cfg,
                    comet_context_t ctx, cudaStream_t st, const comet_moe_args_t *a,
                    const bench_comet_opts_t *o, bench_comet_t *out) {
  const int warmup = o->warmup, iters = o->iters;
  memset(out, 0, sizeof *out);
  comet_layer_t L = NULL;
  float *times = calloc((size_t)3 * iters, sizeof(float));
  cudaEvent_t ev[4] = {0};
  if (!times) return 1;
  for (int i = 0; i < 4; ++i) HCUDA(cudaEventCreate(&ev[i]));
  HCOMET(comet_layer_create(&L, ctx, cfg));
  HCOMET(comet_layer_set_n_comm(L, o->n_comm));
  HCOMET(comet_layer_set_layer0_gather(L, o->gather));
  HCOMET(comet_layer_set_layer0_tile(L, o->tile));
  comet_dispatch_gemm_args_t l0 = COMET_DISPATCH_GEMM_ARGS_INITIALIZER;
  l0.num_tokens = a->num_tokens;
  l0.x = a->x;
  l0.topk_ids = a->topk_ids;
  l0.w1 = a->w1;
  comet_gemm_combine_args_t l1 = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
  l1.num_tokens = a->num_tokens;
  l1.topk_weights = a->topk_weights;
  l1.w2 = a->w2;
  l1.out = a->out;
  for (int it = 0; it < warmup; ++it) HCOMET(comet_moe_forward(L, a, st));
  comet_step_t step = {L, a, NULL};
  if (bench_preheat(info, ctx, st, o->preheat_ms, comet_forward_step, &step) != 0) return 1;
  for (int it = 0; it < iters; ++it) {
    HCUDA(cudaEventRecord(ev[0], st));
    HCOMET(comet_moe_forward(L, a, st));
    HCUDA(cudaEventRecord(ev[1], st));
    HCOMET(comet_dispatch_gemm(L, &l0, st));
    HCUDA(cudaEventRecord(ev[2], st));
    HCOMET(comet_gemm_combine(L, &l1, st));
    HCUDA(cudaEventRecord(ev[3], st));
    HCUDA(cudaEventSynchronize(ev[3]));
    for (int p = 0; p < 3; ++p) HCUDA(cudaEventElapsedTime(&times[3 * it + p], ev[p], ev[p + 1]));
  }
  /* slowest rank per iteration and phase */
  if (bench_slowest(info, ctx, times, 3 * iters) != 0) return 1;
  float *col = malloc(sizeof(float) * (size_t)iters);
  if (!col) return 1;
  float med[3];
  for (int p = 0; p < 3; ++p) {
    for (int it = 0; it < iters; ++it) col[it] = times[3 * it + p];
    med[p] = bench_median(col, iters);
  }
  free(col);
  if (o->backward &&
      bench_backward(info, ctx, L, a, o->backward, st, iters, o->preheat_ms, times, ev, out) != 0)
    return 1;
  out->forward_ms = med[0];
  out->layer0_ms = med[1];
  out->layer1_ms = med[2];
  out->n_comm0 = comet_layer_layer0_n_comm(L);
  out->fused0 = comet_layer_layer0_fused(L);
  out->gather0 = comet_layer_layer0_gather(L);
  out->from0 = comet_layer_layer0_from(L);
  out->tile0 = L->c0.tile;
  out->dynamic0 = L->dynamic0;
  out->fused1 = comet_layer_layer1_fused(L);
  out->n_comm1 = comet_layer_layer1_n_comm(L);
  out->from1 = comet_layer_layer1_from(L);
  if (o->refs && (out->fused0 || out->fused1) &&
      bench_preheat(info, ctx, st, o->preheat_ms, comet_forward_step, &step) != 0)
    return 1;
  if (o->refs && out->fused0 && bench_layer0_refs(info, ctx, L, &l0, st, iters, times, ev, out) != 0)
    return 1;
  if (o->refs && out->fused1 &&
      bench_layer1_refs(info, ctx, L, &l0, &l1, st, iters, times, ev, out) != 0)
    return 1;
  if (o->refs && !out->fused1 && comet_context_world_size(ctx) == 1 &&
      bench_layer1_gemm(info, ctx, L, &l0, &l1, st, iters, times, ev, out) != 0)
    return 1;
  out->ran = 1;
  if (o->check) {
    HCUDA(cudaMemsetAsync(a->out, 0xFF, (size_t)a->num_tokens * cfg->hidden * 2, st));
    HCOMET(comet_moe_forward(L, a, st));
    if (bench_check_run(info, cfg, o->seed, o->routing, a->num_tokens, o->check_tokens, a->out, ctx, st,
                        &out->chk) != 0)
      return 1;
  }
done:
  if (out->err[0]) {
    out->ran = 0;
    fprintf(stderr, "[rank %d] comet: %s\n", info->rank, out->err);
  }
  if (L && comet_layer_destroy(L) != COMET_OK)
    fprintf(stderr, "[rank %d] comet: comet_layer_destroy: %s\n", info->rank, comet_last_error());
  for (int i = 0; i < 4; ++i)
    if (ev[i]) cudaEventDestroy(ev[i]);
  free(times);
  return 0;
}
