#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_pairs_bytes.sh — on a GPU machine with .gpubin/ carried: the 2-CTA
# pairs (TMA multicast of B, COMET_GEMM_PAIRS=1) against single CTAs on
# the W = 1 layer GEMMs of one preset (`bench --op gemm --only layer`), by
# ncu: each launch's time, DRAM bytes read, L2 bytes, SM clock, tensor
# pipe activity and warp stall reasons. Why: cuBLAS's per-expert kernels
# on Mixtral 2048 read B once at 1.5-1.6 GHz where comet's grouped kernel
# reads it ~1.5x at 1.45 GHz (session 17 run 1), and cuBLAS picks clusters
# with multicast there; comet's pairs ran 0.65-0.81x single CTAs (sessions
# 4-6) for reasons never measured.
#   usage: scripts/gpu_pairs_bytes.sh   (MODEL overrides mixtral-8x7b)
#   output: $OUT/ncu_pairs_{on,off}.csv
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
for pairs in on off; do
  v=0; [ $pairs = on ] && v=1
  COMET_GEMM_PAIRS=$v timeout ${NCU_LIMIT:-150} ncu --csv --cache-control none --clock-control none \
    -k regex:gemm_kernel --section WarpStateStats \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,lts__t_bytes.sum,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
    $B/comet bench --op gemm --only layer --model ${MODEL:-mixtral-8x7b} --iters 1 \
    > "$OUT/ncu_pairs_$pairs.csv" 2> "$OUT/ncu_pairs_$pairs.err"
  note "ncu of the layer GEMMs, pairs $pairs: exit $?"
done
finish
