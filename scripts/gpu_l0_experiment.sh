#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0_experiment.sh — on a GPU machine with .gpubin/ carried: the fused
# layer0's W = 1 variants side by side (VARIANTS, default "default static
# composed"; also wide, narrow, gathered, copied; default = dynamic tiles), one bench JSON line per
# config into $OUT/bench_<variant>.jsonl.
#   usage: [VARIANTS="..."] [BENCH_ARGS="--check ..."] scripts/gpu_l0_experiment.sh [MODELS] [TOKENS]
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${1:-mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b,qwen2-moe-2.7b}
TOKENS=${2:-8192}
for v in ${VARIANTS:-default static composed}; do
  case $v in
    wide|narrow) envs="COMET_L0_TILE=$v" ;;
    composed) envs="COMET_LAYER0=composed" ;;
    static) envs="COMET_L0_DYNAMIC=0" ;;
    gathered|copied) envs="COMET_L0_GATHER=$([ $v = gathered ] && echo 1 || echo 0)" ;;
    *) envs="" ;;
  esac
  env $envs timeout 200 $B/comet bench --gpus 1 --model "$MODELS" --tokens "$TOKENS" --iters 10 ${BENCH_ARGS:-} \
    --json "$OUT/bench_$v.jsonl" > "$OUT/l0_$v.log" 2>&1
  echo "$v: exit $?"
done
