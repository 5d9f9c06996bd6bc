#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_f.sh — session 23, run 7: main's head after the pairs work
# (mended release, no straddles; the fitted pairs reverted). test_gemm and
# test_forward (W = 1, loopback 2/4/8) into $OUT/t; racecheck and memcheck
# of test_gemm --quick --only pair; the pairs against single CTAs in turns
# (--ab, COMET_GEMM_PAIRS=1: the grouped matrix and the W = 1 layer GEMMs)
# into $OUT/g.
#   usage: scripts/gpu_s23_f.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=210 \
  OUT=$OUT/t timeout 250 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for tool in racecheck memcheck; do
    timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_gemm --quick --only pair \
      > $OUT/sanitize_$tool.log 2>&1
    note "compute-sanitizer $tool test_gemm --quick --only pair: exit $? ($(grep -h 'ERROR SUMMARY\|RACECHECK SUMMARY' $OUT/sanitize_$tool.log | tail -1))"
  done
  COMET_GEMM_PAIRS=1 timeout 150 $B/comet bench --op gemm --ab --iters 5 --json $OUT/pairs_grouped.jsonl \
    > $OUT/pairs_grouped.log 2>&1
  note "bench --op gemm --ab, COMET_GEMM_PAIRS=1: exit $?"
  COMET_GEMM_PAIRS=1 timeout 150 $B/comet bench --op gemm --only layer --layer 0 --ab --iters 10 \
    --json $OUT/pairs_layer.jsonl > $OUT/pairs_layer.log 2>&1
  note "bench --op gemm --only layer --layer 0 --ab, COMET_GEMM_PAIRS=1: exit $?"
  finish ) > /dev/null 2>&1
for d in t g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/*.jsonl $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s23f.tgz -C $OUT t g && rm -rf $OUT/t $OUT/g
cat $OUT/summary_*.txt
