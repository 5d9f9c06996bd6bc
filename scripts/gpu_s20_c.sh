#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_c.sh — one device call, .gpubin/ carried: AUTO plain stores on the
# slim swapped tiles (device_pick_slim). test_gemm and test_forward (W = 1,
# loopback 2/4/8) into $OUT/t; the W = 1 forward matrix (bench0: 5 presets
# x 2048/8192 x uniform/skew:0.05, --check) into $OUT/b. Packed into
# $OUT/s20c.tgz but the summaries and the JSON rows.
#   usage: scripts/gpu_s20_c.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=120 \
  OUT=$OUT/t timeout 180 scripts/gpu_carried.sh tests > /dev/null 2>&1
ROUTINGS="uniform skew:0.05" BENCH_LIMIT=210 OUT=$OUT/b timeout 430 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
for d in t b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/b/bench.jsonl $OUT/ 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s20c.tgz -C $OUT t b && rm -rf $OUT/t $OUT/b
cat $OUT/summary_*.txt
