#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s22_d.sh — one short device call, .gpubin/ carried: main after the
# review (fit_tile and consume on one ring loop, ring_stages; the bench's
# variants through add_rows): test_gemm and test_forward (W = 1, loopback
# 2/4/8) into $OUT/t, and `bench --op gemm --only layer --layer 1 --sizes
# routed --ab` on Mixtral into $OUT/g (the A/B columns still filled).
#   usage: scripts/gpu_s22_d.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=200 \
  OUT=$OUT/t timeout 230 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  timeout 30 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
    --model mixtral-8x7b --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
  note "gemm --only layer --layer 1 --ab mixtral-8x7b routed: exit $?"
  finish gemm_layer.log ) > /dev/null 2>&1
for d in t g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/gemm_layer.jsonl $OUT/gemm.jsonl 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s22d.tgz -C $OUT t g && rm -rf $OUT/t $OUT/g
cat $OUT/summary_*.txt
