#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s21_d.sh — one short device call, .gpubin/ carried: main with the
# fitted tile (run 3's box loads reverted) and the launches through one
# start(): test_gemm and test_forward (W = 1, loopback 2/4/8) into $OUT/t;
# `bench --op gemm --only layer --layer 1 --sizes routed --ab` on Mixtral,
# Phi-3.5 and Qwen2-57B into $OUT/g (the fitted tile's rates back where
# run 1 had them).
#   usage: scripts/gpu_s21_d.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=200 \
  OUT=$OUT/t timeout 225 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b; do
    [ $SECONDS -lt 240 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 20 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  finish gemm_layer.log ) > /dev/null 2>&1
for d in t g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/gemm_layer.jsonl $OUT/gemm.jsonl 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s21d.tgz -C $OUT t g && rm -rf $OUT/t $OUT/g
cat $OUT/summary_*.txt
