#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_b.sh — one device call, .gpubin/ carried: the device's pick among
# the wide, narrow and slim swapped tiles (AUTO plain stores). test_gemm
# (the slim tiles' bits against every other tile's, the pick's shapes) and
# test_forward, test_graph_replay, test_backward at W = 1 and loopback
# 2/4/8 into $OUT/t; memcheck on test_gemm --quick into $OUT/s; `bench --op
# gemm --only layer --ab --sizes routed` (comet_noslim_tflops: the default
# before the pick, in turns) on the five presets into $OUT/g. Packed into
# $OUT/s20b.tgz but the summaries and the layer rows.
#   usage: scripts/gpu_s20_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward test_graph_replay test_backward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=150 \
  OUT=$OUT/t timeout 330 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/s; mkdir -p $OUT
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_gemm --quick > $OUT/test_gemm_memcheck.log 2>&1
  note "memcheck test_gemm --quick: exit $? ($(grep -E 'ERROR SUMMARY' $OUT/test_gemm_memcheck.log | tail -1))"
  finish ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 510 ] || { note "gemm --only layer --ab $m routed: skipped (the call's time)"; continue; }
    timeout 80 $B/comet bench --op gemm --only layer --ab --iters 10 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --ab $m routed: exit $?"
  done
  finish gemm_layer.log ) > /dev/null 2>&1
for d in t s g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/gemm_layer.jsonl $OUT/ 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s20b.tgz -C $OUT t s g && rm -rf $OUT/t $OUT/s $OUT/g
cat $OUT/summary_*.txt
