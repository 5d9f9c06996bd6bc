#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_e.sh — one device call, .gpubin/ carried: test_gemm to its end
# (run 3 cut it at 120 s) into $OUT/t; `bench --op gemm --only layer
# --layer 1 --sizes routed --ab --trace` on the five presets
# (comet_noslim_tflops: the wide / narrow choice of before the slim tiles,
# in turns; the trace names the rows AUTO picked) and `--only dense --ab`
# into $OUT/g; memcheck on test_gemm --quick --only slim into $OUT/s, while
# the call's time lasts. Packed into $OUT/s20e.tgz but the summaries and
# the JSON rows.
#   usage: scripts/gpu_s20_e.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS=" " SINGLE_TESTS="test_gemm" SINGLE_LIMIT=230 OUT=$OUT/t timeout 240 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 330 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 30 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 10 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl --trace $OUT/trace.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  python3 scripts/trace_sharers.py $OUT/trace.jsonl layer1 > $OUT/trace_summary.txt 2>&1
  if [ $SECONDS -lt 360 ]; then
    timeout 25 $B/comet bench --op gemm --only dense --ab --iters 10 --json $OUT/gemm_dense.jsonl >> $OUT/gemm_dense.log 2>&1
    note "gemm --only dense --ab: exit $?"
  else note "gemm --only dense --ab: skipped (the call's time)"; fi
  finish gemm_layer.log gemm_dense.log trace_summary.txt ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/s; mkdir -p $OUT
  lim=$((400 - SECONDS))
  if [ $lim -gt 30 ]; then
    timeout $lim compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_gemm --quick --only slim > $OUT/test_gemm_memcheck.log 2>&1
    note "memcheck test_gemm --quick --only slim: exit $? in <= $lim s ($(grep -E 'ERROR SUMMARY' $OUT/test_gemm_memcheck.log | tail -1))"
  else note "memcheck: skipped (the call's time)"; fi
  finish ) > /dev/null 2>&1
for d in t g s; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_dense.jsonl > $OUT/gemm.jsonl 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
cp $OUT/g/trace_summary.txt $OUT/ 2>/dev/null
tar czf $OUT/s20e.tgz -C $OUT t g s && rm -rf $OUT/t $OUT/g $OUT/s
cat $OUT/summary_*.txt
