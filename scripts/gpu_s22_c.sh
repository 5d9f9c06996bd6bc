#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s22_c.sh — one device call (runs 3 and 4), .gpubin/ carried (s22-fit with the
# fitted tile's cap picked on the device by waves, fit_pick): test_gemm
# into $OUT/t; issue 10's matrix (`comet bench --op gemm --iters 10`, no
# --ab) and `--only layer --layer 1 --sizes routed --ab` on Mixtral,
# Phi-3.5 and DeepSeek-V2-Lite (comet = the pick, beside comet_fit208 =
# no pick) and `--only dense --ab` into $OUT/g, while the call's time lasts.
#   usage: scripts/gpu_s22_c.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS=" " SINGLE_TESTS="test_gemm" SINGLE_LIMIT=210 \
  OUT=$OUT/t timeout 220 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  timeout 150 $B/comet bench --op gemm --iters 10 --json $OUT/gemm.jsonl > $OUT/gemm.log 2>&1
  note "bench --op gemm --iters 10: exit $? ($(grep geomean $OUT/gemm.log))"
  for m in mixtral-8x7b phi3.5-moe deepseek-v2-lite; do
    [ $SECONDS -lt 480 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 45 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  if [ $SECONDS -lt 520 ]; then
    timeout 30 $B/comet bench --op gemm --only dense --ab --iters 20 --json $OUT/gemm_dense.jsonl >> $OUT/gemm_dense.log 2>&1
    note "gemm --only dense --ab: exit $?"
  else note "gemm --only dense --ab: skipped (the call's time)"; fi
  finish gemm.log gemm_layer.log gemm_dense.log ) > /dev/null 2>&1
for d in t g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/gemm.jsonl $OUT/gemm_matrix.jsonl 2>/dev/null
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_dense.jsonl > $OUT/gemm_ab.jsonl 2>/dev/null
cp $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s22c.tgz -C $OUT t g && rm -rf $OUT/t $OUT/g
cat $OUT/summary_*.txt
