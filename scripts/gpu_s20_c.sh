#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_c.sh — one device call, .gpubin/ carried: AUTO plain stores on the
# slim swapped tiles (device_pick_slim). test_gemm and test_forward (W = 1,
# loopback 2/4/8) into $OUT/t; the W = 1 forward matrix (bench0: 5 presets
# x 2048/8192 x uniform/skew:0.05, --check) into $OUT/b; then, while the
# call's time lasts, `bench --op gemm --only layer --layer 1 --sizes routed
# --ab --trace` on the five presets (comet_noslim_tflops: the wide / narrow
# choice of before, in turns; the trace names the rows AUTO picked) and
# `--only dense --ab`, `--only grouped --quick --ab` into $OUT/g. Packed
# into $OUT/s20c.tgz but the summaries and the JSON rows.
#   usage: scripts/gpu_s20_c.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=120 \
  OUT=$OUT/t timeout 180 scripts/gpu_carried.sh tests > /dev/null 2>&1
ROUTINGS="uniform skew:0.05" BENCH_LIMIT=160 OUT=$OUT/b timeout 330 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 480 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 40 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 10 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl --trace $OUT/trace.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  python3 scripts/trace_sharers.py $OUT/trace.jsonl layer1 > $OUT/trace_summary.txt 2>&1
  for o in "dense" "grouped --quick"; do
    [ $SECONDS -lt 540 ] || { note "gemm --only $o --ab: skipped (the call's time)"; continue; }
    timeout 50 $B/comet bench --op gemm --only $o --ab --iters 10 --json $OUT/gemm_grouped.jsonl >> $OUT/gemm_grouped.log 2>&1
    note "gemm --only $o --ab: exit $?"
  done
  finish gemm_layer.log gemm_grouped.log trace_summary.txt ) > /dev/null 2>&1
for d in t b g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_grouped.jsonl > $OUT/gemm.jsonl 2>/dev/null
cp $OUT/b/bench.jsonl $OUT/ 2>/dev/null
cp $OUT/g/trace_summary.txt $OUT/ 2>/dev/null
tar czf $OUT/s20c.tgz -C $OUT t b g && rm -rf $OUT/t $OUT/b $OUT/g
cat $OUT/summary_*.txt
