#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_kernel_probe.sh — on a GPU machine with .gpubin/ carried: where the
# W = 1 forward's time goes beyond its GEMMs, and how evenly the SMs are
# loaded in Mixtral's routed layer1 GEMM (session 15's first questions).
#   1. ncu (locked base clocks), every kernel of one bench pass of
#      Qwen2-MoE and DeepSeek-V2-Lite at 2048 tokens (baseline, comet, the
#      references): duration of each (kern_<model>.csv);
#   2. ncu of `bench --op gemm --only layer --ab --model mixtral-8x7b
#      --iters 1`, the 2048-token routed layer0 and layer1 rows' launches
#      (85-168: per row 3 warm-ups a variant, then one timed launch each;
#      layer1's variants in bench_gemm.cu's order: default (dynamic),
#      tall, single, nosplit, split, band16, stage3, other, half, static):
#      duration, SM active cycles (min / avg / max against elapsed), tensor
#      pipe activity, L2 and DRAM bytes (ab_mixtral.csv).
#   usage: scripts/gpu_kernel_probe.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
for m in qwen2-moe-2.7b deepseek-v2-lite; do
  timeout 150 ncu --csv --metrics gpu__time_duration.sum,launch__grid_size \
    $B/comet bench --gpus 1 --model $m --tokens 2048 --routing uniform \
    --iters 1 --warmup 0 --preheat 0 > "$OUT/kern_$m.csv" 2> "$OUT/kern_$m.err"
  note "ncu every kernel, $m 2048: exit $?"
done
METRICS=gpu__time_duration.sum,sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,dram__bytes_read.sum,launch__grid_size
timeout 300 ncu --csv -k regex:gemm_kernel --launch-skip 84 --launch-count 84 --metrics $METRICS \
  $B/comet bench --op gemm --only layer --ab --model mixtral-8x7b --iters 1 \
  --json "$OUT/gemm_layer_ab.jsonl" > "$OUT/ab_mixtral.csv" 2> "$OUT/ab_mixtral.err"
note "ncu of Mixtral's routed 2048 layer rows, every --ab variant: exit $?"
finish kern_qwen2-moe-2.7b.csv kern_deepseek-v2-lite.csv ab_mixtral.csv
