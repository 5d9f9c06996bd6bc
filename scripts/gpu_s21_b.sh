#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s21_b.sh — one device call, .gpubin/ carried: test_graph_replay and
# test_backward (W = 1, loopback 2/4/8; last run at d95407b) into $OUT/t;
# the W = 1 forward matrix (bench0: 5 presets x 2048/8192 x
# uniform/skew:0.05, --check; rows with layer1_gemm_again_ms) into $OUT/b.
# Packed into $OUT/s21b.tgz but the summaries and the JSON rows.
#   usage: scripts/gpu_s21_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_graph_replay test_backward" SINGLE_TESTS=" " \
  OUT=$OUT/t timeout 130 scripts/gpu_carried.sh tests > /dev/null 2>&1
ROUTINGS="uniform skew:0.05" BENCH_LIMIT=210 OUT=$OUT/b timeout 430 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
for d in t b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/b/bench.jsonl $OUT/ 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s21b.tgz -C $OUT t b && rm -rf $OUT/t $OUT/b
cat $OUT/summary_*.txt
