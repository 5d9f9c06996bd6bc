#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0path_ab.sh — on a GPU machine with .gpubin/ carried: the W = 1
# forward with the fused layer0 (default) against the composed one
# (COMET_LAYER0=composed: the dispatch on every SM, then the plain GEMM
# launch with 4 stages and dynamic tiles), in turns A B A B (REPS pairs) in
# one call, each pass's rows into l0_fused.jsonl / l0_composed.jsonl. Why:
# at W = 1 the fused kernel has nothing to hide, and in session 17's run 4
# (one composed pass, after four fused ones) the composed layer0 ran 1.116x
# its pass's baseline on Phi-3.5 2048 against 0.993-1.047 fused.
#   usage: scripts/gpu_l0path_ab.sh   (MODELS, TOKENS, ROUTING, REPS override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b,qwen2-moe-2.7b,deepseek-v2-lite}
for i in $(seq 1 ${REPS:-2}); do
  for path in fused composed; do
    COMET_LAYER0=$path timeout ${LIMIT:-140} $B/comet bench --gpus 1 --json "$OUT/l0_$path.jsonl" \
      --model "$MODELS" --tokens ${TOKENS:-2048,8192} --routing ${ROUTING:-uniform} \
      >> "$OUT/l0_$path.log" 2>&1
    note "bench, layer0 $path, pass $i: exit $?"
  done
done
finish
