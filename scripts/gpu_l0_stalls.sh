#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0_stalls.sh — on a GPU machine with .gpubin/ carried: why the fused
# layer0's GEMM (layer0_gemm_only_ms: its movers off, rows in place) runs
# ~4-6% slower than the plain launch of the same shape on Mixtral 2048
# (session 14 runs 1-2). ncu at locked base clocks (cycles compare) of
#   1. the layer's 4th layer0_kernel launch (forward, dispatch_gemm, the
#      refs' fused call, then the gemm_only one) and
#   2. the standalone routed layer0 row's first plain store and SwiGLU
#      launches (`bench --op gemm --only layer`, launches 13 and 14),
# with SpeedOfLight, LaunchStats, Occupancy, WarpStateStats and
# SchedulerStats: stalls per issued instruction, registers, shared memory.
#   usage: scripts/gpu_l0_stalls.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
SECTIONS="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats"
timeout 150 ncu $SECTIONS -k regex:layer0_kernel --launch-skip 3 --launch-count 1 \
  $B/comet bench --gpus 1 --model mixtral-8x7b --tokens 2048 --routing uniform \
  --iters 1 --warmup 0 --preheat 0 > "$OUT/ncu_l0_fused.txt" 2>&1
note "ncu of the fused layer0's gemm_only launch (Mixtral 2048): exit $?"
timeout 150 ncu $SECTIONS -k regex:gemm_kernel --launch-skip 12 --launch-count 2 \
  $B/comet bench --op gemm --only layer --model mixtral-8x7b --iters 1 > "$OUT/ncu_l0_plain.txt" 2>&1
note "ncu of the standalone routed layer0 launches (Mixtral 2048): exit $?"
finish ncu_l0_fused.txt ncu_l0_plain.txt
