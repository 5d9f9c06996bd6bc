#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_ncu_bytes.sh — on a GPU machine with .gpubin/ carried: ncu of one
# W = 1 forward bench pass (comet's kernels and the baseline's, warm
# caches, the card's own clock) with each kernel's time, DRAM bytes read,
# L2 hit rate and SM clock: where a GEMM reads its operands more than once
# (session 7 had the fused layer0 reading 2.88 GB on Mixtral 2048 against
# the composed GEMM's 2.07, w1 being 1.88 GB).
#   usage: scripts/gpu_ncu_bytes.sh   (NCU_MODELS, NCU_TOKENS, NCU_LAYER0 override)
#   output: $OUT/ncu_bytes_<model>_<layer0>.csv
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
for m in ${NCU_MODELS:-mixtral-8x7b}; do
 for l0 in ${NCU_LAYER0:-fused}; do # COMET_LAYER0: fused (default) or composed
  COMET_LAYER0=$l0 timeout ${NCU_LIMIT:-200} ncu --csv --cache-control none --clock-control none \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,sm__cycles_elapsed.avg.per_second \
    $B/comet bench --gpus 1 --model $m --tokens ${NCU_TOKENS:-2048} --routing uniform --iters 1 \
    --warmup 1 --preheat 0 > "$OUT/ncu_bytes_${m}_$l0.csv" 2> "$OUT/ncu_bytes_${m}_$l0.err"
  note "ncu bytes of bench ($m, ${NCU_TOKENS:-2048} tokens, layer0 $l0): exit $?"
 done
done
finish
