#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_stages_ncu.sh — on a GPU machine with .gpubin/ carried: why the wide
# tile's 4-stage ring (Cfg::kDeep, the default) runs 8-17% below the
# 3-stage ring on some layer shapes and 5-10% above it on others (session
# 12 runs 1 and 4, three samples a row: DeepSeek-V2-Lite T=2048 layer0 355
# against 412 TFLOP/s; Qwen3-30B T=4096 layer0 593 against 536). One ncu
# run of `comet bench --op gemm --only layer --ab --model MODEL` at one
# iteration: the warm-up runs each variant 3 times in turn, so on the
# first row (T=2048 equal sizes, layer0; since the tall tile's column:
# comet, tall, single, nosplit, split, band16, 3-stage, other tile,
# SwiGLU) launches 3-5 are the tall SwiGLU, 18-20 the 3-stage SwiGLU,
# 21-23 the other tile, 24-26 the default (4-stage) SwiGLU; the report
# names each kernel's Cfg (its last two template arguments: kDeep, kTall).
# Sections: SOL, occupancy and launch (the shared memory carve-out),
# memory workload, warp state and scheduler stats, into $OUT/ncu_stages.txt.
#   usage: scripts/gpu_stages_ncu.sh   (MODEL, SKIP, COUNT override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODEL=${MODEL:-deepseek-v2-lite}
timeout 400 ncu -k regex:gemm_kernel --launch-skip ${SKIP:-3} --launch-count ${COUNT:-24} \
  --section SpeedOfLight --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section SchedulerStats \
  --metrics lts__t_sector_hit_rate.pct,dram__bytes_read.sum,dram__bytes_write.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second,gpc__cycles_elapsed.max \
  $B/comet bench --op gemm --only layer --ab --model $MODEL --iters 1 > "$OUT/ncu_stages.txt" 2>&1
note "ncu of the tall, 3-stage and 4-stage launches ($MODEL): exit $?"
finish ncu_stages.txt
