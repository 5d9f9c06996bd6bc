#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s18_b.sh — one device call, .gpubin/ carried, after the split tail's
# revert: test_forward (W = 1, loopback 2/4/8) and test_gemm into $OUT/t,
# the sanitizers on the ipc W = 4 forward into $OUT/s (run 2's racecheck
# timed out with the split cases), the
# W = 1 forward matrix (bench0: 5 presets x 2048/8192 x uniform/skew:0.05,
# --check) into $OUT/b; packed into $OUT/s18b.tgz but the summaries.
#   usage: scripts/gpu_s18_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=50 OUT=$OUT/t timeout 80 \
  scripts/gpu_carried.sh tests > /dev/null 2>&1
SAN_LIMIT=100 OUT=$OUT/s timeout 150 scripts/gpu_carried.sh sanitize > /dev/null 2>&1
BENCH_LIMIT=180 OUT=$OUT/b timeout 362 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
for d in t s b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s18b.tgz -C $OUT t s b && rm -rf $OUT/t $OUT/s $OUT/b
cat $OUT/summary_*.txt
