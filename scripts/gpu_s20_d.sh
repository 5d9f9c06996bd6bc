#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_d.sh — one device call, .gpubin/ carried: memcheck and racecheck
# on the slim tiles' cases of test_gemm --quick into $OUT/s; `bench --op
# gemm --only layer --layer 1 --sizes routed --ab --trace` on the five
# presets (comet_noslim_tflops: the wide / narrow choice of before the slim
# tiles, in turns; the trace names the rows AUTO picked) and `--only dense
# --ab`, `--only grouped --quick --ab` into $OUT/g. Packed into
# $OUT/s20d.tgz but the summaries and the JSON rows.
#   usage: scripts/gpu_s20_d.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 330 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 40 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 10 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl --trace $OUT/trace.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  python3 scripts/trace_sharers.py $OUT/trace.jsonl layer1 > $OUT/trace_summary.txt 2>&1
  for o in "dense" "grouped --quick"; do
    [ $SECONDS -lt 400 ] || { note "gemm --only $o --ab: skipped (the call's time)"; continue; }
    timeout 50 $B/comet bench --op gemm --only $o --ab --iters 10 --json $OUT/gemm_grouped.jsonl >> $OUT/gemm_grouped.log 2>&1
    note "gemm --only $o --ab: exit $?"
  done
  finish gemm_layer.log gemm_grouped.log trace_summary.txt ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/s; mkdir -p $OUT
  for tool in memcheck racecheck; do
    lim=$((575 - SECONDS)); [ $lim -gt 150 ] && lim=150
    [ $lim -gt 30 ] || { note "$tool: skipped (the call's time)"; continue; }
    timeout $lim compute-sanitizer --tool $tool --error-exitcode 9 $B/test_gemm --quick --only slim > $OUT/test_gemm_$tool.log 2>&1
    note "$tool test_gemm --quick --only slim: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/test_gemm_$tool.log | tail -1))"
  done
  finish ) > /dev/null 2>&1
for d in s g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_grouped.jsonl > $OUT/gemm.jsonl 2>/dev/null
cp $OUT/g/trace_summary.txt $OUT/ 2>/dev/null
tar czf $OUT/s20d.tgz -C $OUT s g && rm -rf $OUT/s $OUT/g
cat $OUT/summary_*.txt $OUT/trace_summary.txt
