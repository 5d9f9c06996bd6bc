#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_trace.sh — on a GPU machine with .gpubin/ carried: the per-tile trace
# of the W = 1 layer GEMMs of one preset (`bench --op gemm --only layer
# --trace`), summed up by scripts/trace_sharers.py into the summary: do the
# CTAs that share a B tile start it together, and how long do ragged tiles
# take? Session 17 found Mixtral T=2048's routed layer1 reading w2 ~1.5 times
# where equal group sizes read it once. trace.jsonl.gz, gemm_layer.jsonl.
#   usage: scripts/gpu_trace.sh   (MODEL overrides mixtral-8x7b)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
timeout ${LIMIT:-240} $B/comet bench --op gemm --only layer --model ${MODEL:-mixtral-8x7b} --iters 5 \
  --json "$OUT/gemm_layer.jsonl" --trace "$OUT/trace.jsonl" > "$OUT/trace.log" 2>&1
note "bench --op gemm --only layer --trace: exit $?"
python3 scripts/trace_sharers.py "$OUT/trace.jsonl" > "$OUT/sharers.txt" 2>&1
note "$(cat "$OUT/sharers.txt")"
gzip "$OUT/trace.jsonl"
finish trace.jsonl.gz
