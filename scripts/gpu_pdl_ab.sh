#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_pdl_ab.sh — on a GPU machine with .gpubin/ carried: the A/B that
# session 16 did not have for programmatic dependent launch
# (kernels/pdl.cuh): the W = 1 forward at 2048 tokens (where a call's
# short kernels weigh most) with PDL (default) and with COMET_PDL=0, in
# turns A B A B (REPS pairs) in one call, each pass's rows into its own
# file (pdl_on.jsonl, pdl_off.jsonl; the baseline in each pass is the
# same-run reference for that pass's ratios).
#   usage: scripts/gpu_pdl_ab.sh   (MODELS, TOKENS, REPS override)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-qwen2-moe-2.7b,deepseek-v2-lite,qwen2-57b-a14b,phi3.5-moe,mixtral-8x7b}
for i in $(seq 1 ${REPS:-2}); do
  for mode in on off; do
    pdl=1; [ $mode = off ] && pdl=0
    COMET_PDL=$pdl timeout 200 $B/comet bench --gpus 1 --json "$OUT/pdl_$mode.jsonl" --model "$MODELS" \
      --tokens ${TOKENS:-2048} --routing uniform > "$OUT/pdl_${mode}_$i.log" 2>&1
    note "bench, PDL $mode, pass $i: exit $?"
  done
done
finish
