/* bench_check.h — `comet bench --check`: the baseline's output on the actual
 * data against the CPU reference (src/ref/ref.h), on tokens sampled from
 * every rank. Inputs are rebuilt on rank 0 from the seed (moe_data.h), the
 * sampled output rows come to rank 0 over NCCL. */
#ifndef COMET_BENCH_CHECK_H
#define COMET_BENCH_CHECK_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "../baselines/moe_data.h"
#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_check {
  int ran, pass, tokens, nan_count; /* tokens: sampled over all ranks */
  double rel_err, max_abs;
} bench_check_t;

/* Collective over comm. T tokens on every rank; tokens_per_rank 0 = as many
 * as about 6 GFLOP of reference work allows (2..64). Result on rank 0
 * (ran = 0 elsewhere). Returns non-zero only if the check could not run. */
int bench_check_run(const comet_rank_info_t *info, const comet_layer_config_t *cfg,
                    unsigned long long seed, const comet_md_routing_t *routing, int T,
                    int tokens_per_rank, const void *dout, ncclComm_t comm, cudaStream_t st,
                    bench_check_t *out);

#ifdef __cplusplus
}
#endif
#endif
