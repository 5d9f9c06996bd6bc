#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_swiglu_probe.sh — on a GPU machine with .gpubin/ carried: why the
# SwiGLU epilogue runs 7-13% under the plain store on the T=16384 layer0
# rows only (issue 10; 0-4% at T=4096). Two probes in one call:
#  1. clocks: `comet bench --op gemm --model mixtral-8x7b --quick` with
#     nvidia-smi sampling SM clock and power every 100 ms (a power-limit
#     throttle would show as a lower clock during the SwiGLU launches);
#  2. ncu (clocks locked, so the rate itself): the first 15 GEMM launches
#     of the same case with --ab and the pairs on (COMET_GEMM_PAIRS=1): the
#     warm-up runs each variant 3 times in turn, so launches 0-2 are the
#     pairs' store, 3-5 the single CTAs', 6-8 without split, 9-11 the atomic
#     split, 12-14 the SwiGLU; SpeedOfLight, warp state, scheduler and
#     memory sections (the pairs ran 0.75x single CTAs: why).
#   usage: scripts/gpu_swiglu_probe.sh   (MODEL overrides the preset)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODEL=${MODEL:-mixtral-8x7b}
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu \
  --format=csv -lms 100 > "$OUT/clocks.csv" 2>&1 &
smi=$!
timeout 120 $B/comet bench --op gemm --only grouped --model $MODEL --quick --iters 50 --json "$OUT/gemm_quick.jsonl" \
  > "$OUT/gemm_quick.log" 2>&1
note "bench --op gemm --model $MODEL --quick (clocks sampled): exit $?"
kill $smi 2>/dev/null
COMET_GEMM_PAIRS=1 timeout 300 ncu -k regex:^gemm_kernel --launch-count 15 --section SpeedOfLight \
  --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats \
  $B/comet bench --op gemm --only grouped --ab --model $MODEL --quick --iters 1 > "$OUT/ncu.txt" 2>&1
note "ncu of the first 15 GEMM launches (pairs on, --ab): exit $?"
finish
