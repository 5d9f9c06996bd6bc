#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_plan_round.sh — on a GPU machine with .gpubin/ carried: one call for
# a change to the device plan (session 15: its exchange, rows and M-tile
# kernels as CTA-wide prefix sums and more CTAs):
#   1. the tests that check the plan and everything built on it
#      (gpu_carried.sh tests, MULTI_TESTS / SINGLE_TESTS below);
#   2. ncu, warm caches and the card's own clock, of comet's kernels in one
#      Qwen2-MoE 2048 bench pass (warm.csv): the plan kernels' durations;
#   3. the W = 1 forward matrix (gpu_carried.sh bench0, ROUTINGS).
#   usage: scripts/gpu_plan_round.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export MULTI_TESTS=${MULTI_TESTS:-"test_plan_device test_dispatch_combine test_forward test_faults test_graph_replay"}
export SINGLE_TESTS=${SINGLE_TESTS:-"test_sched_device"}
export ROUTINGS=${ROUTINGS:-uniform}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT/a"
OUT=$OUT/a scripts/gpu_carried.sh tests,bench0
. scripts/gpu_env.sh
timeout 200 ncu --csv --cache-control none --clock-control none \
  -k regex:"plan_|mtiles|layer0_kernel|gemm_kernel|combine|poison" --metrics gpu__time_duration.sum \
  $B/comet bench --gpus 1 --model qwen2-moe-2.7b --tokens 2048 --routing uniform --iters 2 \
  --warmup 1 --preheat 0 > "$OUT/warm.csv" 2> "$OUT/warm.err"
note "ncu warm, comet's kernels (Qwen2-MoE 2048): exit $?"
finish warm.csv
