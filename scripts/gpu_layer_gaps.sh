#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_layer_gaps.sh — on a GPU machine with .gpubin/ carried: why Mixtral's
# GEMMs run slower inside comet's W = 1 layer than in `bench --op gemm
# --only layer` (session 13: layer1 ~517 TFLOP/s by difference against
# ~570 standalone on routed sizes; the fused layer0's gemm_only ~544
# against ~590). One call:
#   1. the layer bench (Mixtral, Phi-3.5; 2048, 8192 tokens; uniform) with
#      the composed layer1's GEMM timed alone (layer1_gemm_ms; with
#      static tiles layer1_gemm_static_ms; session 14 run 1 timed a plain
#      buffer instead, the same within 0.5%), while
#      nvidia-smi samples the SM clock and power every 50 ms (smi.csv);
#   2. the standalone GEMMs of the same shapes (gemm_layer.jsonl);
#   3. ncu without clock control (the clock the power cap leaves) of the
#      layer's first launches of the fused layer0 and the layer1 GEMM
#      (Mixtral 2048: one forward, one dispatch_gemm, one gemm_combine,
#      then the references), and of the standalone run's first 24 GEMM
#      launches (per layer0 row: 3 warm-up + 1 timed store and SwiGLU; per
#      layer1 row 3 + 1; rows: uniform layer0, layer1, routed layer0,
#      layer1): duration, DRAM bytes, L2 hit rate, SM clock, tensor activity.
#   usage: scripts/gpu_layer_gaps.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
METRICS=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active

nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 50 \
  > "$OUT/smi.csv" 2>&1 &
smi=$!
timeout 240 $B/comet bench --gpus 1 --model mixtral-8x7b,phi3.5-moe --tokens 2048,8192 \
  --routing uniform --check --check-tokens 2 --json "$OUT/bench.jsonl" > "$OUT/bench.log" 2>&1
note "bench W = 1 (layer1 GEMM alone, window and plain): exit $?"
kill $smi 2> /dev/null
for m in mixtral-8x7b phi3.5-moe; do
  timeout 100 $B/comet bench --op gemm --only layer --model $m --json "$OUT/gemm_layer.jsonl" \
    >> "$OUT/gemm_layer.log" 2>&1
  note "bench --op gemm --only layer --model $m: exit $?"
done
timeout 200 ncu --clock-control none -k regex:"layer0_kernel|gemm_kernel" --launch-count 10 \
  --metrics $METRICS $B/comet bench --gpus 1 --model mixtral-8x7b --tokens 2048 --routing uniform \
  --iters 1 --warmup 0 --preheat 0 > "$OUT/ncu_layer.txt" 2>&1
note "ncu of the layer's GEMM launches (Mixtral 2048): exit $?"
timeout 200 ncu --clock-control none -k regex:gemm_kernel --launch-count 24 --metrics $METRICS \
  $B/comet bench --op gemm --only layer --model mixtral-8x7b --iters 1 > "$OUT/ncu_gemm.txt" 2>&1
note "ncu of the standalone GEMM launches (Mixtral): exit $?"
finish smi.csv ncu_layer.txt ncu_gemm.txt
