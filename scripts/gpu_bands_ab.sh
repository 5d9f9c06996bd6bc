#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_bands_ab.sh — on a GPU machine with .gpubin/ carried: the fused
# layer0's tile bands of one expert (default) against the old bands of 8
# entries across experts (COMET_L0_BANDS=8), W = 1 forward, in turns A B A B
# (REPS pairs) in one call: MODELS at 2048 tokens and Mixtral at 8192, each
# pass's rows into bands_expert.jsonl / bands_8.jsonl; then one pass with the
# composed layer0 (COMET_LAYER0=composed: dispatch + the plain GEMM, dynamic
# tiles) into l0_composed.jsonl.
#   usage: scripts/gpu_bands_ab.sh   (MODELS, REPS override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b}
pass() { # $1: output name, then env assignments for the bench
  local name=$1; shift
  env "$@" timeout 120 $B/comet bench --gpus 1 --json "$OUT/$name.jsonl" --model "$MODELS" \
    --tokens 2048 --routing uniform >> "$OUT/$name.log" 2>&1
  env "$@" timeout 60 $B/comet bench --gpus 1 --json "$OUT/$name.jsonl" --model mixtral-8x7b \
    --tokens 8192 --routing uniform >> "$OUT/$name.log" 2>&1
  note "bench $name ($*): exit $?"
}
for i in $(seq 1 ${REPS:-2}); do
  pass bands_expert COMET_L0_BANDS=expert
  pass bands_8 COMET_L0_BANDS=8
done
pass l0_composed COMET_LAYER0=composed
finish
