#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_swap_ncu.sh — on a GPU machine with .gpubin/ carried: why the swapped
# tile (COMET_GEMM_TILE_SWAP) gains only 2% on Mixtral's routed T=2048
# layer1 where 4 token tiles an expert instead of 4 M-tiles and a ragged
# one (3.88 waves against 4.36) predicted 12% (session 19 run 2). First
# the per-tile trace of both launches (`--ab --trace`: the default and
# "... swap" shapes; scripts/trace_sharers.py), then one ncu pass over the
# default launch (gemm_kernel_auto) and the swapped one (the Cfg whose last
# template argument is 136): tensor pipe, stall reasons, L2 and DRAM bytes,
# into $OUT/ncu_swap.txt.
#   usage: scripts/gpu_swap_ncu.sh   (MODEL, TOKENS, LAYER override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODEL=${MODEL:-mixtral-8x7b}
run=(--op gemm --only layer --ab --model $MODEL --sizes routed --tokens ${TOKENS:-2048})
timeout 120 $B/comet bench "${run[@]}" --iters 3 --trace "$OUT/trace_swap.jsonl" > "$OUT/trace_swap.log" 2>&1
note "trace of the default and swapped launches ($MODEL): exit $?"
python3 scripts/trace_sharers.py "$OUT/trace_swap.jsonl" "${LAYER:-layer1}" > "$OUT/trace_swap_summary.txt" 2>&1
timeout 300 ncu --kernel-name-base demangled -k 'regex:gemm_kernel_auto|136>' --launch-skip 2 --launch-count 4 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
  --metrics dram__bytes_read.sum,lts__t_sector_hit_rate.pct,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second \
  $B/comet bench "${run[@]}" --iters 1 > "$OUT/ncu_swap.txt" 2>&1
note "ncu of the default and swapped launches ($MODEL): exit $?"
finish trace_swap_summary.txt ncu_swap.txt
