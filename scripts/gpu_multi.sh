#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_multi.sh — issues 15 / 16 in one device call on a multi-GPU machine,
# with .gpubin/ from scripts/carry_build.sh carried: the multi-rank GPU
# tests over NCCL at W = 2 .. GPUs (and memcheck on the W = 2 forward), the
# forward matrix (5 presets x 2048/8192 tokens x EP W, TP W, EP W/2 x TP 2 x
# uniform/skew:0.05, comet fused vs the baseline, --check on a sample), the
# dispatch/combine bandwidth at 8-32 CTAs, the COMET anchor shape (E 32,
# top-4, H 8192, F 8192, TP = W, 8192 tokens/rank; layer*_tflops_per_gpu),
# `comet tune` for the W-rank layouts, and the PyTorch module under torchrun
# (python/tests/dist_check.py: forward, backward, training against plain
# PyTorch with EP W and EP W/2 x TP 2). Every step is bounded; logs in
# $OUT/logs.tgz, rows in $OUT/*.jsonl, a summary last.
#   usage: scripts/gpu_multi.sh [STEPS]   STEPS: tests,sanitize,bench,backward,comm,anchor,tune,torch
#   (default all). COMET_LAYER1=fused in the environment times the fused layer1.
set -u -o pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-tests,sanitize,bench,backward,comm,anchor,tune,torch}
has() { [[ ",$STEPS," == *",$1,"* ]]; }
. scripts/gpu_env.sh
W=$GPUS
worlds=""; for w in 2 4 8; do [ "$w" -le "$W" ] && worlds="${worlds:+$worlds,}$w"; done
MODELS=mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite

if has tests; then
  for t in test_plan_device test_dispatch_combine test_forward test_graph_replay test_faults test_context test_backward test_baseline; do
    s=$(date +%s)
    timeout 300 $B/$t --nccl "$worlds" --loopback none > "$OUT/$t.log" 2>&1
    note "$t (nccl $worlds): exit $? in $(( $(date +%s) - s )) s"
  done
fi
if has sanitize; then
  timeout 200 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
    $B/test_forward --nccl 2 --loopback none --quick > "$OUT/memcheck_nccl2.log" 2>&1
  note "memcheck test_forward nccl W = 2: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/memcheck_nccl2.log") clean summaries)"
fi
if has bench; then
  for layout in "--ep $W --tp 1" "--ep 1 --tp $W" "--ep $((W / 2)) --tp 2"; do
    for routing in uniform skew:0.05; do
      timeout 400 $B/comet bench --gpus $W $layout --model $MODELS --tokens 2048,8192 --routing $routing \
        --iters 10 --check --check-tokens 2 --json "$OUT/bench.jsonl" \
        > "$OUT/bench_$(echo $layout | tr -d ' -')_${routing%%:*}.log" 2>&1
      note "bench W = $W $layout $routing: exit $?"
    done
  done
fi
if has backward; then # forward + backward against the baseline's, recompute and save mode
  for save in "" --save; do
    timeout 400 $B/comet bench --gpus $W --ep $W --tp 1 --model $MODELS --tokens 2048,8192 --iters 10 \
      --backward $save --check --check-tokens 2 --json "$OUT/bwd.jsonl" > "$OUT/bwd$save.log" 2>&1
    note "bench --backward $save W = $W EP $W: exit $?"
  done
fi
if has comm; then
  for op in dispatch combine; do
    timeout 200 $B/comet bench --op $op --gpus $W --ctas 8,16,24,32 --json "$OUT/comm.jsonl" > "$OUT/comm_$op.log" 2>&1
    note "bench --op $op W = $W: exit $?"
  done
fi
if has anchor; then # COMET's own shape (flux docs/performance.md)
  timeout 300 $B/comet bench --gpus $W --ep 1 --tp $W --hidden 8192 --ffn 8192 --experts 32 --topk 4 \
    --tokens 8192 --iters 10 --json "$OUT/anchor.jsonl" > "$OUT/anchor.log" 2>&1
  note "anchor (E 32, top-4, H 8192, F 8192, TP $W): exit $?"
fi
if has tune; then
  for layout in "--ep $W --tp 1" "--ep 1 --tp $W" "--ep $((W / 2)) --tp 2"; do
    timeout 400 $B/comet tune --gpus $W $layout --model $MODELS --tokens 2048,8192 --iters 5 --warmup 2 \
      --sweep 4,8,12,16,24 --table "$OUT/comet-tuning.txt" --json "$OUT/tune.jsonl" \
      > "$OUT/tune_$(echo $layout | tr -d ' -').log" 2>&1
    note "tune W = $W $layout: exit $?"
  done
fi
if has torch; then # the PyTorch module under torchrun
  python3 -m pip install -q --no-deps --target /tmp/comet_py $B/comet_moe-*.whl &&
    PYTHONPATH=/tmp/comet_py timeout 300 torchrun --nproc-per-node $W python/tests/dist_check.py \
      > "$OUT/torch_dist.log" 2>&1
  note "torchrun dist_check.py W = $W: exit $? ($(grep -c ': pass' "$OUT/torch_dist.log") pass, $(grep -c FAIL "$OUT/torch_dist.log") FAIL)"
fi
finish comet-tuning.txt
