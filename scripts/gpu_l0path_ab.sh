#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0path_ab.sh — on a GPU machine with .gpubin/ carried: the W = 1
# forward with layer0 run three ways, in turns (REPS rounds, each mode once
# a round) in one call, each mode's rows into l0_<mode>.jsonl:
#   fused     the default (the fused kernel, its GEMM on the 3-stage ring);
#   stages4   the fused kernel with the 4-stage ring (COMET_L0_STAGES=4);
#   composed  the dispatch on every SM, then the plain GEMM launch (4
#             stages, dynamic tiles; COMET_LAYER0=composed).
# Why: at W = 1 the fused kernel has nothing to hide, and in session 17's
# run 4 (one composed pass, after four fused ones) the composed layer0 ran
# 1.116x its pass's baseline on Phi-3.5 2048 against 0.993-1.047 fused.
#   usage: scripts/gpu_l0path_ab.sh   (MODES, MODELS, TOKENS, ROUTING, REPS override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b,qwen2-moe-2.7b,deepseek-v2-lite}
for i in $(seq 1 ${REPS:-2}); do
  for mode in ${MODES:-fused stages4 composed}; do
    case $mode in
      fused) envs=(COMET_L0_STAGES=0) ;;
      stages4) envs=(COMET_L0_STAGES=4) ;;
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
