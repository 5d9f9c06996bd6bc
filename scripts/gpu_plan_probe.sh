#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_plan_probe.sh — on a GPU machine with .gpubin/ carried: why the
# device plan's exchange and rows kernels take ~50 us each under ncu
# (session 15, gpu_kernel_probe.sh) at W = 1, Qwen2-MoE 2048:
#   1. ncu with warm caches and the clock the card runs at (no cache
#      flush, no clock lock): every comet kernel of one forward pass
#      (warm.csv), durations as the bench sees them;
#   2. ncu SourceCounters + WarpStateStats + SpeedOfLight of the plan's
#      kernels and the M-tile list of one call (plan.txt): where they stall.
#   usage: scripts/gpu_plan_probe.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
RUN="$B/comet bench --gpus 1 --model qwen2-moe-2.7b --tokens 2048 --routing uniform --iters 2 --warmup 1 --preheat 0"
timeout 200 ncu --csv --cache-control none --clock-control none \
  -k regex:"plan_|mtiles|layer0_kernel|gemm_kernel|combine|poison" \
  --metrics gpu__time_duration.sum $RUN > "$OUT/warm.csv" 2> "$OUT/warm.err"
note "ncu warm, comet's kernels (Qwen2-MoE 2048): exit $?"
timeout 200 ncu --section SpeedOfLight --section WarpStateStats --section SourceCounters \
  -k regex:"plan_exchange|plan_rows|mtiles" --launch-count 3 $RUN > "$OUT/plan.txt" 2>&1
note "ncu sections of plan_exchange, plan_rows, mtiles: exit $?"
finish warm.csv plan.txt
