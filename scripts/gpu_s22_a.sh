#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s22_a.sh — one device call, .gpubin/ carried (branch s22-fit: the
# fitted tile's two bodies, <= 208 rows in 4 stages and <= 136 in 5, and
# swap_rows' caps): test_gemm and test_forward (W = 1, loopback 2/4/8) into
# $OUT/t; `bench --op gemm --only layer --layer 1 --sizes routed --ab` on
# the five presets (comet = the 208 body, beside comet_fit136/184/208 and
# the fixed widths), Mixtral's with run 2's draw of session 21 (--seed
# 1796316463), and `--only dense --ab` into $OUT/g; the W = 1 forward on
# Mixtral 2048 uniform with that seed (layer1_gemm_rand_h_ms) into $OUT/b,
# while the call's time lasts.
#   usage: scripts/gpu_s22_a.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward" SINGLE_TESTS="test_gemm" SINGLE_LIMIT=210 \
  OUT=$OUT/t timeout 250 scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b phi3.5-moe qwen2-57b-a14b qwen2-moe-2.7b deepseek-v2-lite; do
    [ $SECONDS -lt 430 ] || { note "gemm --only layer --layer 1 --ab $m routed: skipped (the call's time)"; continue; }
    timeout 45 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
      --model $m --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab $m routed: exit $?"
  done
  if [ $SECONDS -lt 450 ]; then
    timeout 30 $B/comet bench --op gemm --only layer --layer 1 --ab --iters 20 --sizes routed \
      --seed 1796316463 --model mixtral-8x7b --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --layer 1 --ab mixtral-8x7b routed --seed 1796316463: exit $?"
  else note "gemm mixtral --seed: skipped (the call's time)"; fi
  if [ $SECONDS -lt 470 ]; then
    timeout 30 $B/comet bench --op gemm --only dense --ab --iters 20 --json $OUT/gemm_dense.jsonl >> $OUT/gemm_dense.log 2>&1
    note "gemm --only dense --ab: exit $?"
  else note "gemm --only dense --ab: skipped (the call's time)"; fi
  finish gemm_layer.log gemm_dense.log ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/b; mkdir -p $OUT
  lim=$((550 - SECONDS))
  if [ $lim -gt 30 ]; then
    timeout $lim $B/comet bench --gpus 1 --json $OUT/bench.jsonl --model mixtral-8x7b --seed 1796316463 \
      --tokens 2048 --routing uniform --check --check-tokens 2 > $OUT/bench_mixtral.log 2>&1
    note "bench W = 1 mixtral-8x7b 2048 uniform --seed 1796316463: exit $? in <= $lim s"
  else note "bench mixtral: skipped (the call's time)"; fi
  finish bench_mixtral.log ) > /dev/null 2>&1
for d in t g b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cat $OUT/g/gemm_layer.jsonl $OUT/g/gemm_dense.jsonl > $OUT/gemm.jsonl 2>/dev/null
cp $OUT/b/bench.jsonl $OUT/t/tests.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s22a.tgz -C $OUT t g b && rm -rf $OUT/t $OUT/g $OUT/b
cat $OUT/summary_*.txt
