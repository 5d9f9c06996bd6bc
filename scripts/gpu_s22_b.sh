#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s22_b.sh — one device call, .gpubin/ carried (s22-fit with the
# 5-stage body's pick by the groups' average rows): the forward matrix at
# W = 1 (gpu_carried.sh bench0: 5 presets x 2048/8192 x uniform/skew:0.05,
# --check, the data seed fixed at session 21 run 2's, 1796316463) into
# $OUT/b, then issue 10's matrix (`comet bench --op gemm --iters 10`: dense,
# the TE anchor, the 56 grouped rows, the backward's modes; no --ab) into
# $OUT/g, while the call's time lasts.
#   usage: scripts/gpu_s22_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
SEED=1796316463 BENCH_LIMIT=200 OUT=$OUT/b timeout 420 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  lim=$((560 - SECONDS))
  if [ $lim -gt 40 ]; then
    timeout $lim $B/comet bench --op gemm --iters 10 --json $OUT/gemm.jsonl > $OUT/gemm.log 2>&1
    note "bench --op gemm --iters 10: exit $? in <= $lim s ($(grep geomean $OUT/gemm.log))"
  else note "bench --op gemm: skipped (the call's time)"; fi
  finish gemm.log ) > /dev/null 2>&1
for d in b g; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/b/bench.jsonl $OUT/g/gemm.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s22b.tgz -C $OUT b g && rm -rf $OUT/b $OUT/g
cat $OUT/summary_*.txt
