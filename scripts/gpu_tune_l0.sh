#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_tune_l0.sh — on a GPU machine with .gpubin/ carried: test_backward
# over the loopback world (the first backward's workspace by cudaMalloc),
# then `comet tune` for the presets whose forward loses at W = 1 (Mixtral,
# Phi-3.5; 2048 and 8192 tokens) into a copy of the shipped table, and
# `comet bench --backward` with that table (forward + backward against the
# baseline). Logs under $OUT (table.txt, tune.jsonl, bwd_tuned.jsonl, logs.tgz).
#   usage: scripts/gpu_tune_l0.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
s=$(date +%s)
timeout 120 $B/test_backward --nccl 1 --loopback 2,4,8 > "$OUT/test_backward.log" 2>&1
note "test_backward (nccl 1, loopback 2,4,8): exit $? in $(( $(date +%s) - s )) s"
cp $B/comet-tuning.txt "$OUT/table.txt"
s=$(date +%s)
timeout 130 $B/comet tune --gpus 1 --model mixtral-8x7b,phi3.5-moe --tokens 2048,8192 \
  --sweep 4,8,16 --table "$OUT/table.txt" --json "$OUT/tune.jsonl" > "$OUT/tune.log" 2>&1
note "comet tune (mixtral, phi3.5; 2048, 8192): exit $? in $(( $(date +%s) - s )) s"
COMET_TUNING_TABLE="$OUT/table.txt" timeout 100 $B/comet bench --gpus 1 --backward --check \
  --check-tokens 2 --model mixtral-8x7b,phi3.5-moe --tokens 2048,8192 --iters 10 \
  --json "$OUT/bwd_tuned.jsonl" > "$OUT/bwd_tuned.log" 2>&1
note "bench --backward with the new table: exit $?"
finish table.txt
