#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0path_ab.sh — on a GPU machine with .gpubin/ carried: the W = 1
# forward with layer0 run in several ways, in turns (REPS rounds, each mode
# once a round) in one call, each mode's rows into l0_<mode>.jsonl:
#   fused     the default (the fused kernel, the 4-stage ring where it
#             applies);
#   stages3   the fused kernel with the 3-stage ring (COMET_L0_STAGES=3);
#   composed  the dispatch on every SM, then the plain GEMM launch (4
#             stages, dynamic tiles, split tail; COMET_LAYER0=composed).
# Session 18 run 1: 4 stages 1.6% faster forwards than 3 (geomean of the 5
# presets at 2048), the composed layer0 ahead on Mixtral and Qwen2-57B.
#   usage: scripts/gpu_l0path_ab.sh   (MODES, MODELS, TOKENS, ROUTING, REPS override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b,qwen2-moe-2.7b,deepseek-v2-lite}
for i in $(seq 1 ${REPS:-2}); do
  for mode in ${MODES:-fused stages3 composed}; do
    case $mode in
      fused) envs=(COMET_L0_STAGES=4) ;;
      stages3) envs=(COMET_L0_STAGES=3) ;;
      composed) envs=(COMET_LAYER0=composed) ;;
      *) echo "gpu_l0path_ab: unknown mode $mode" >&2; exit 2 ;;
    esac
    env "${envs[@]}" timeout ${LIMIT:-140} $B/comet bench --gpus 1 --json "$OUT/l0_$mode.jsonl" \
      --model "$MODELS" --tokens ${TOKENS:-2048} --routing ${ROUTING:-uniform} \
      >> "$OUT/l0_$mode.log" 2>&1
    note "bench, layer0 $mode, round $i: exit $?"
  done
done
finish
