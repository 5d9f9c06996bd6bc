/* SPDX-License-Identifier: Apache-2.0 */
/* bench_check.h — `comet bench --check`: a forward's output (the baseline's
 * or comet's) on the actual data against the CPU reference (src/ref/ref.h),
 * on tokens sampled from every rank. Inputs are rebuilt on rank 0 from the
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

#ifdef __cplusplus
}
#endif
#endif
