#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s19_c.sh — one device call, .gpubin/ carried (branch s19-swap): the
# swapped tile (COMET_GEMM_TILE_SWAP): test_gemm into $OUT/t, memcheck and
# racecheck on test_gemm --quick into $OUT/s, and `bench --op gemm --only
# layer --ab` (comet_swap_tflops beside the default, in turns) on the
# big-expert presets' routed sizes and Mixtral's equal ones into $OUT/g;
# packed into $OUT/s19c.tgz but the summaries.
#   usage: scripts/gpu_s19_c.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS=" " SINGLE_TESTS="test_gemm" SINGLE_LIMIT=150 OUT=$OUT/t timeout 170 \
  scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b:routed mixtral-8x7b:uniform phi3.5-moe:routed qwen2-57b-a14b:routed; do
    timeout 80 $B/comet bench --op gemm --only layer --ab --iters 10 --sizes ${m##*:} \
      --model ${m%%:*} --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --ab ${m%%:*} ${m##*:}: exit $?"
  done
  finish gemm_layer.log ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/s; mkdir -p $OUT
  for tool in memcheck racecheck; do
    timeout 100 compute-sanitizer --tool $tool --error-exitcode 9 $B/test_gemm --quick > $OUT/test_gemm_$tool.log 2>&1
    note "$tool test_gemm --quick: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/test_gemm_$tool.log | tail -1))"
  done
  finish ) > /dev/null 2>&1
for d in t g s; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s19c.tgz -C $OUT t g s && rm -rf $OUT/t $OUT/g $OUT/s
cat $OUT/summary_*.txt
