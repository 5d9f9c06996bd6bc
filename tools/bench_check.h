/* SPDX-License-Identifier: Apache-2.0 */
/* bench_check.h — `comet bench --check`: a forward's output (the baseline's
 * or comet's) on the actual data against the CPU reference (src/ref/ref.h),
 * on tokens sampled from every rank; with --backward also comet's gradients
 * against the baseline's (all of them, on the GPUs' data). Inputs are rebuilt on rank 0 from the
 * seed (moe_data.h); the sampled output rows come to rank 0 through the comet
 * context's host all-gather, so it runs the same over NCCL and in the
 * loopback world. */
#ifndef COMET_BENCH_CHECK_H
#define COMET_BENCH_CHECK_H

#include <cuda_runtime.h>

#include "../baselines/moe_data.h"
#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_check {
  int ran, pass, tokens, nan_count; /* tokens: sampled over all ranks */
  double rel_err, max_abs;
} bench_check_t;

/* Collective over ctx. dout [T, H] is written by work queued on st (a
 * stream of ctx's rank). T tokens on every rank; tokens_per_rank 0 = as many
 * as about 6 GFLOP of reference work allows (2..64). Result on rank 0
 * (ran = 0 elsewhere). Returns non-zero only if the check could not run. */
int bench_check_run(const comet_rank_info_t *info, const comet_layer_config_t *cfg,
                    unsigned long long seed, const comet_md_routing_t *routing, int T,
                    int tokens_per_rank, const void *dout, comet_context_t ctx, cudaStream_t st,
                    bench_check_t *out);

/* `comet bench --backward`: one backward's input dout and its four
 * gradients on this rank (device memory; [T, H], like w1, like w2, [T, K]). */
typedef struct bench_grads {
  const void *dout;
  void *dx, *dw1, *dw2;
  float *dtw;
} bench_grads_t;

/* The backward's arguments: the forward's inputs a (its saved_z too: save
 * mode when set), g's dout and buffers. */
comet_moe_backward_args_t bench_grads_args(const comet_moe_args_t *a, const bench_grads_t *g);

/* got's gradients against want's (the same dout), over all ranks: relative
 * L2 errors of dx, dw1, dw2, d topk_weights; pass = every one below
 * BENCH_GRADS_TOL and no NaN in got. */
#define BENCH_GRADS_TOL 2e-2
typedef struct bench_grads_check {
  int ran, pass;
  long nan_count;
  double rel_err[4];
} bench_grads_check_t;

/* Collective over ctx, after the work on st that wrote both: the result on
 * every rank. T tokens on this rank. Returns non-zero only if the check
 * could not run. */
int bench_grads_compare(const comet_rank_info_t *info, const comet_layer_config_t *cfg, int T,
                        const bench_grads_t *got, const bench_grads_t *want, comet_context_t ctx,
                        cudaStream_t st, bench_grads_check_t *out);

#ifdef __cplusplus
}
#endif
#endif
