/* SPDX-License-Identifier: Apache-2.0 */
/* bench_check.c — see bench_check.h. Every token's output depends only on
 * its own row, its routing and the experts' weights, so the sampled tokens of
 * all ranks form one small single-rank problem (ep = tp = 1) over just the
 * experts they use; the reference solves that, the GPU rows must match. The
 * rows travel on the host (a few rows per rank), through the context's
 * transport: no device buffer, no NCCL call, nothing that would synchronize
 * the device under a loopback world's peers. */
#include "bench_check.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "ref/convert.h"
#include "ref/ref.h"

static int sample_count(const comet_layer_config_t *c, int W, int T, int want) {
  if (T <= 0) return 0;
  int n = want;
  if (n <= 0) {
    const double R = c->activation == COMET_ACT_SWIGLU ? 2.0 * c->ffn : c->ffn;
    const double per_token = 2.0 * c->topk * c->hidden * (R + c->ffn);
    n = (int)(6e9 / (per_token * W));
    if (n < 2) n = 2;
    if (n > 64) n = 64;
  }
  return n < T ? n : T;
}

static int sample_token(int j, int n, int T) {
  return n > 1 ? (int)((long long)j * (T - 1) / (n - 1)) : 0;
}

typedef struct fill_job {
  const comet_layer_config_t *cfg; /* the full model: ep = tp = 1 */
  const int *experts;              /* original ids of the compact experts */
  int n, stride, first;
  uint16_t *w1, *w2;
  unsigned long long seed;
} fill_job_t;

static void *fill_thread(void *arg) {
  const fill_job_t *j = arg;
  const size_t w1e = (size_t)comet_config_w1_rows(j->cfg) * j->cfg->hidden;
  const size_t w2e = (size_t)j->cfg->hidden * j->cfg->ffn;
  for (int x = j->first; x < j->n; x += j->stride) {
    comet_md_fill_w1_expert_host(j->w1 + x * w1e, j->cfg, 0, 0, j->experts[x], j->seed);
    comet_md_fill_w2_expert_host(j->w2 + x * w2e, j->cfg, 0, 0, j->experts[x], j->seed);
  }
  return NULL;
}

/* Rank 0: the reference of the sampled tokens, compared with got[W*n*H]. */
static int check_on_rank0(const comet_layer_config_t *cfg, int W, unsigned long long seed,
                          const comet_md_routing_t *routing, int T, int n, const uint16_t *got,
                          bench_check_t *out) {
  const int E = cfg->num_experts, K = cfg->topk, H = cfg->hidden, N = W * n;
  comet_layer_config_t full = *cfg;
  full.ep = full.tp = 1;
  full.max_tokens_per_rank = 0;
  full.max_rows_per_rank = 0;
  double *p = malloc(sizeof(double) * (size_t)E);
  int32_t *ids_r = malloc(sizeof(int32_t) * (size_t)T * K), *ids = malloc(sizeof(int32_t) * (size_t)N * K);
  float *wt_r = malloc(sizeof(float) * (size_t)T * K), *wt = malloc(sizeof(float) * (size_t)N * K);
  uint16_t *x = malloc(sizeof(uint16_t) * (size_t)N * H), *ref = malloc(sizeof(uint16_t) * (size_t)N * H);
  int *compact = malloc(sizeof(int) * (size_t)E), *experts = malloc(sizeof(int) * (size_t)E);
  if (!p || !ids_r || !ids || !wt_r || !wt || !x || !ref || !compact || !experts) {
    fprintf(stderr, "[rank 0] check: host allocation failed\n");
    return 1;
  }
  comet_md_expert_probs(p, E, routing, seed);
  for (int s = 0; s < W; ++s) {
    comet_md_routing_host(ids_r, wt_r, T, K, E, p, routing, s, seed);
    for (int j = 0; j < n; ++j) {
      const int t = sample_token(j, n, T), row = s * n + j;
      memcpy(ids + (size_t)row * K, ids_r + (size_t)t * K, sizeof(int32_t) * K);
      memcpy(wt + (size_t)row * K, wt_r + (size_t)t * K, sizeof(float) * K);
      comet_md_x_row_host(x + (size_t)row * H, t, H, cfg->dtype, s, seed);
    }
  }
  /* Keep only the experts the samples use (at least K of them). */
  int ne = 0;
  for (int e = 0; e < E; ++e) compact[e] = -1;
  for (size_t i = 0; i < (size_t)N * K; ++i)
    if (ids[i] >= 0 && compact[ids[i]] < 0) {
      compact[ids[i]] = ne;
      experts[ne++] = ids[i];
    }
  for (int e = 0; e < E && ne < K; ++e)
    if (compact[e] < 0) {
      compact[e] = ne;
      experts[ne++] = e;
    }
  for (size_t i = 0; i < (size_t)N * K; ++i)
    if (ids[i] >= 0) ids[i] = compact[ids[i]];
  comet_layer_config_t small = full;
  small.num_experts = ne;
  const size_t w1e = (size_t)comet_config_w1_rows(&full) * H, w2e = (size_t)H * full.ffn;
  uint16_t *w1 = malloc(sizeof(uint16_t) * w1e * ne), *w2 = malloc(sizeof(uint16_t) * w2e * ne);
  if (!w1 || !w2) {
    fprintf(stderr, "[rank 0] check: cannot allocate %d experts' weights\n", ne);
    return 1;
  }
  long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
  if (nthreads < 1) nthreads = 1;
  if (nthreads > 32) nthreads = 32;
  if (nthreads > ne) nthreads = ne;
  pthread_t th[32];
  fill_job_t jobs[32];
  for (int k = 0; k < nthreads; ++k) {
    jobs[k] = (fill_job_t){&full, experts, ne, (int)nthreads, k, w1, w2, seed};
    if (pthread_create(&th[k], NULL, fill_thread, &jobs[k]) != 0) {
      fill_thread(&jobs[k]);
      th[k] = 0;
    }
  }
  for (int k = 0; k < nthreads; ++k)
    if (th[k]) pthread_join(th[k], NULL);

  comet_ref_rank_t rk = {N, x, ids, wt, w1, w2};
  uint16_t *outs[1] = {ref};
  if (comet_ref_forward(&small, &rk, outs, NULL, NULL) != COMET_OK) {
    fprintf(stderr, "[rank 0] check: reference failed: %s\n", comet_last_error());
    return 1;
  }
  double num = 0, den = 0, maxerr = 0;
  int nan_count = 0;
  for (size_t i = 0; i < (size_t)N * H; ++i) {
    const float o = comet_load_f32(got, i, cfg->dtype), f = comet_load_f32(ref, i, cfg->dtype);
    if (isnan(o) || isinf(o)) {
      nan_count++;
      continue;
    }
    num += (double)(o - f) * (o - f);
    den += (double)f * f;
    if (fabs(o - f) > maxerr) maxerr = fabs(o - f);
  }
  out->ran = 1;
  out->tokens = N;
  out->nan_count = nan_count;
  out->rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
  out->max_abs = maxerr;
  out->pass = nan_count == 0 && out->rel_err < 1e-2 && den > 0;
  free(w1);
  free(w2);
  free(p);
  free(ids_r);
  free(ids);
  free(wt_r);
  free(wt);
  free(x);
  free(ref);
  free(compact);
  free(experts);
  return 0;
}

int bench_check_run(const comet_rank_info_t *info, const comet_layer_config_t *cfg,
                    unsigned long long seed, const comet_md_routing_t *routing, int T,
                    int tokens_per_rank, const void *dout, comet_context_t ctx, cudaStream_t st,
                    bench_check_t *out) {
  memset(out, 0, sizeof *out);
  const int W = info->world, r = info->rank, H = cfg->hidden;
  const int n = sample_count(cfg, W, T, tokens_per_rank);
  if (n == 0) return 0;
  const size_t row = (size_t)H * 2, mine_bytes = row * (size_t)n;
  char *mine = malloc(mine_bytes);
  uint16_t *got = malloc(mine_bytes * W); /* every rank's rows, in rank order */
  if (!mine || !got) {
    fprintf(stderr, "[rank %d] check: host allocation failed\n", r);
    free(mine);
    free(got);
    return 1;
  }
  cudaError_t e = cudaSuccess;
  for (int j = 0; j < n && e == cudaSuccess; ++j)
    e = cudaMemcpyAsync(mine + row * j, (const char *)dout + row * sample_token(j, n, T), row,
                        cudaMemcpyDeviceToHost, st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st);
  int rc = 0;
  if (e != cudaSuccess) {
    fprintf(stderr, "[rank %d] check: %s\n", r, cudaGetErrorString(e));
    rc = 1;
  } else if (ctx->tp->ops->allgather(ctx->tp, mine, got, mine_bytes) != COMET_OK) {
    fprintf(stderr, "[rank %d] check: gathering rows failed: %s\n", r, comet_last_error());
    rc = 1;
  } else if (r == 0) {
    rc = check_on_rank0(cfg, W, seed, routing, T, n, got, out);
  }
  free(mine);
  free(got);
  return rc;
}

comet_moe_backward_args_t bench_grads_args(const comet_moe_args_t *a, const bench_grads_t *g) {
  comet_moe_backward_args_t bw = COMET_MOE_BACKWARD_ARGS_INITIALIZER;
  bw.num_tokens = a->num_tokens;
  bw.x = a->x;
  bw.topk_ids = a->topk_ids;
  bw.topk_weights = a->topk_weights;
  bw.w1 = a->w1;
  bw.w2 = a->w2;
  bw.dout = g->dout;
  bw.dx = g->dx;
  bw.dw1 = g->dw1;
  bw.dw2 = g->dw2;
  bw.dtopk_weights = g->dtw;
  bw.saved_z = a->saved_z;
  return bw;
}

/* acc[0..2] += sum (got - want)^2, sum want^2, NaN count in got, over n
 * values (dtype bits, or fp32), copied to the host in chunks. */
static int grad_sums(const comet_rank_info_t *info, const void *got, const void *want, size_t n,
                     size_t esz, comet_dtype_t dt, cudaStream_t st, double *acc) {
  enum { CHUNK = 1 << 22 };
  char *hg = malloc((size_t)CHUNK * esz), *hw = malloc((size_t)CHUNK * esz);
  int rc = !hg || !hw;
  for (size_t at = 0; at < n && !rc; at += CHUNK) {
    const size_t c = n - at < CHUNK ? n - at : CHUNK;
    cudaError_t e = cudaMemcpyAsync(hg, (const char *)got + at * esz, c * esz,
                                    cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess)
      e = cudaMemcpyAsync(hw, (const char *)want + at * esz, c * esz, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) {
      fprintf(stderr, "[rank %d] backward check: %s\n", info->rank, cudaGetErrorString(e));
      rc = 1;
      break;
    }
    for (size_t i = 0; i < c; ++i) {
      const double g = esz == 4 ? ((const float *)hg)[i] : comet_load_f32(hg, i, dt);
      const double w = esz == 4 ? ((const float *)hw)[i] : comet_load_f32(hw, i, dt);
      if (isnan(g) || isinf(g)) {
        acc[2] += 1;
        continue;
      }
      acc[0] += (g - w) * (g - w);
      acc[1] += w * w;
    }
  }
  if (!hg || !hw) fprintf(stderr, "[rank %d] backward check: host allocation failed\n", info->rank);
  free(hg);
  free(hw);
  return rc;
}

int bench_grads_compare(const comet_rank_info_t *info, const comet_layer_config_t *cfg, int T,
                        const bench_grads_t *got, const bench_grads_t *want, comet_context_t ctx,
                        cudaStream_t st, bench_grads_check_t *out) {
  memset(out, 0, sizeof *out);
  const int W = info->world;
  const size_t El = (size_t)(cfg->num_experts / cfg->ep), H = (size_t)cfg->hidden;
  const size_t n[4] = {(size_t)T * H, El * comet_config_w1_rows(cfg) * H,
                       El * H * (cfg->ffn / cfg->tp), (size_t)T * cfg->topk};
  const void *g[4] = {got->dx, got->dw1, got->dw2, got->dtw};
  const void *w[4] = {want->dx, want->dw1, want->dw2, want->dtw};
  double mine[12] = {0}, *all = malloc(sizeof mine * (size_t)W);
  if (!all) {
    fprintf(stderr, "[rank %d] backward check: host allocation failed\n", info->rank);
    return 1;
  }
  for (int k = 0; k < 4; ++k)
    if (grad_sums(info, g[k], w[k], n[k], k == 3 ? 4 : 2, cfg->dtype, st, mine + 3 * k) != 0) {
      free(all);
      return 1;
    }
  if (ctx->tp->ops->allgather(ctx->tp, mine, all, sizeof mine) != COMET_OK) {
    fprintf(stderr, "[rank %d] backward check: gathering the sums failed: %s\n", info->rank,
            comet_last_error());
    free(all);
    return 1;
  }
  double sum[12] = {0};
  for (int s = 0; s < W; ++s)
    for (int i = 0; i < 12; ++i) sum[i] += all[12 * s + i];
  free(all);
  out->ran = 1;
  out->pass = 1;
  for (int k = 0; k < 4; ++k) {
    const double num = sum[3 * k], den = sum[3 * k + 1];
    out->rel_err[k] = den > 0 ? sqrt(num / den) : sqrt(num);
    out->nan_count += (long)sum[3 * k + 2];
    if (!(out->rel_err[k] < BENCH_GRADS_TOL)) out->pass = 0;
  }
  if (out->nan_count) out->pass = 0;
  return 0;
}
