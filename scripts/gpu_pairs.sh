#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_pairs.sh — on a GPU machine with .gpubin/ carried (scripts/carry_build.sh):
# the GEMM's 2-CTA cluster pairs against single CTAs, and the loopback W = 8
# first-plan timeouts. Steps, logs under $OUT (gemm_*.jsonl, logs.tgz):
#   1. test_gemm (pairs cases: bits = single CTAs);
#   2. test_plan_device at loopback 8 with a 60 s wait timeout: a case that
#      then passes slowly was a late rank, one that fails after 60 s a
#      dependency that only the timeout breaks;
#   3. comet bench --op gemm --ab on Mixtral's rows and the dense shapes,
#      with AUTO pairs off (the default) and on (COMET_GEMM_PAIRS=1); the
#      log's header has the occupancy query.
#   usage: scripts/gpu_pairs.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
timeout 120 $B/test_gemm > "$OUT/test_gemm.log" 2>&1
note "test_gemm: exit $?"
s=$(date +%s)
COMET_TIMEOUT_S=60 timeout 240 $B/test_plan_device --loopback 8 > "$OUT/plan_lb8.log" 2>&1
note "test_plan_device --loopback 8 (60 s waits): exit $? in $(( $(date +%s) - s )) s"
for grid in 0 1; do
  COMET_GEMM_PAIRS=$grid timeout 150 $B/comet bench --op gemm --ab --model mixtral-8x7b --iters 10 \
    --json "$OUT/gemm_$grid.jsonl" > "$OUT/gemm_$grid.log" 2>&1
  note "bench --op gemm --ab mixtral (pairs $grid): exit $? ($(grep -h 'pairs (2-CTA' "$OUT/gemm_$grid.log"))"
done
finish
