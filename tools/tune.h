/* SPDX-License-Identifier: Apache-2.0 */
/* tune.h — `comet tune`: bench's inputs, then a sweep of the fused
 * kernels' mover counts per config; the best into a tuning table
 * (src/tune/table.h) and JSON rows. The command's options are bench's
 * (tools/bench.c) plus --sweep, --table. */
#ifndef COMET_TOOLS_TUNE_H
#define COMET_TOOLS_TUNE_H

#include <cuda_runtime.h>

#include "comet.h"
#include "launch.h"
#include "../baselines/moe_data.h"

#define TUNE_MAX_REPEAT 9
#define TUNE_MAX_REFINE 15
#define TUNE_MAX_ROUTINGS 4 /* --routing A,B,..: timed together, one entry for all */

typedef struct tune_opts {
  int sweep[32];
  int nsweep;
  const char *table_out; /* the table file to merge the results into */
  const char *json;      /* rows {"op": "tune", ...}, appended */
  int iters, warmup;
  int repeat; /* timings per point, in interleaved passes; the median counts */
  int refine; /* more passes over the finalists only (see tune.c) */
  float preheat_ms; /* before each pass's first point (bench_preheat; 0: none) */
  double keep;      /* an entry of the same token count stays within this of the best */
  unsigned long long seed;
  const char *routings_str, *commit, *date; /* routings_str: the list as given */
  /* every point is timed under each routing in turn (args[r] holds its
   * topk ids and weights), and the entry is the point whose worst ratio to
   * a routing's own best is least: the table's key has no routing */
  int nrouting;
  const comet_md_routing_t *routing[TUNE_MAX_ROUTINGS];
  const char *routing_str[TUNE_MAX_ROUTINGS];
} tune_opts_t;

/* One config on every rank (collective): times comet_dispatch_gemm and, if
 * the layer runs its layer1 fused, comet_gemm_combine, for each n_comm of
 * the sweep, comet's own choice, and the cost model's pick, under each of
 * the o->nrouting routings (args[r]); rank 0 prints progress lines,
 * appends a row per routing and layer and merges the joint best into the
 * table. index/count: the config's place in the run (the progress line). */
int tune_config(const comet_rank_info_t *info, const tune_opts_t *o, const comet_layer_config_t *cfg,
                comet_context_t ctx, cudaStream_t st, const comet_moe_args_t *args, const char *model,
                const char *device_name, int index, int count);

#endif
