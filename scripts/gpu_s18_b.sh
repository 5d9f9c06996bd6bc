#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s18_b.sh — one device call, .gpubin/ carried: the W = 1 forward
# matrix (bench0: the 5 presets x 2048/8192 x uniform/skew:0.05, --check)
# into $OUT/b, then the fused layer0's split tail against whole tiles in
# turns at 8192 tokens (gpu_l0path_ab.sh, Mixtral and Phi-3.5) into $OUT/a;
# packed into $OUT/s18b.tgz but the summaries (a call brings back 8 files).
#   usage: scripts/gpu_s18_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
BENCH_LIMIT=215 OUT=$OUT/b timeout 440 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
MODES="fused nosplit" MODELS=mixtral-8x7b,phi3.5-moe TOKENS=8192 LIMIT=35 OUT=$OUT/a timeout 140 \
  scripts/gpu_l0path_ab.sh > /dev/null 2>&1
for d in b a; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s18b.tgz -C $OUT b a && rm -rf $OUT/b $OUT/a
cat $OUT/summary_*.txt
