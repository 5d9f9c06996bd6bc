#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_widths.sh — one device call, .gpubin/ carried (branch s20-widths):
# the fitted slim tile (a token width a group). test_gemm (its fit cases)
# and test_forward (W = 1, loopback 2/4/8) into $OUT/t; `bench --op gemm
# --only layer --layer 1 --sizes routed --ab --trace` on the five presets
# (comet = the fitted tile, beside comet_swap136/176/184 and
# comet_noslim, in turns; the trace's rows) into $OUT/g. Then the forward
# matrix with scripts/gpu_s20_c.sh's second half (a call of its own).
#   usage: scripts/gpu_widths.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=230 \
  OUT=$OUT/t timeout 290 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 500 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 30 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 10 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl --trace $OUT/trace.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  python3 scripts/trace_sharers.py $OUT/trace.jsonl layer1 > $OUT/trace_summary.txt 2>&1
  finish gemm_layer.log trace_summary.txt ) > /dev/null 2>&1
for d in t g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/gemm_layer.jsonl $OUT/ 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
cp $OUT/g/trace_summary.txt $OUT/ 2>/dev/null
tar czf $OUT/widths.tgz -C $OUT t g && rm -rf $OUT/t $OUT/g
cat $OUT/summary_*.txt
