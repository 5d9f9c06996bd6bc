#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s21_c.sh — one device call, .gpubin/ carried: the fitted tile loading
# only the A rows it computes. test_gemm and test_forward (W = 1, loopback
# 2/4/8) into $OUT/t; `bench --op gemm --only layer --layer 1 --sizes
# routed --ab` on the five presets and `--only dense --ab` into $OUT/g; the
# W = 1 forward matrix (bench0, --check; rows with layer1_gemm_plain_y_ms)
# into $OUT/b. Packed into $OUT/s21c.tgz but the summaries and the rows.
#   usage: scripts/gpu_s21_c.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=200 \
  OUT=$OUT/t timeout 240 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 300 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 40 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  if [ $SECONDS -lt 320 ]; then
    timeout 30 $B/comet bench --op gemm --only dense --ab --iters 20 --json $OUT/gemm_dense.jsonl >> $OUT/gemm_dense.log 2>&1
    note "gemm --only dense --ab: exit $?"
  else note "gemm --only dense --ab: skipped (the call's time)"; fi
  finish gemm_layer.log gemm_dense.log ) > /dev/null 2>&1
lim=$(( (585 - SECONDS) / 2 ))
ROUTINGS="uniform skew:0.05" BENCH_LIMIT=$lim OUT=$OUT/b timeout $((2 * lim + 5)) scripts/gpu_carried.sh bench0 > /dev/null 2>&1
for d in t g b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_dense.jsonl > $OUT/gemm.jsonl 2>/dev/null
cp $OUT/b/bench.jsonl $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s21c.tgz -C $OUT t g b && rm -rf $OUT/t $OUT/g $OUT/b
cat $OUT/summary_*.txt
