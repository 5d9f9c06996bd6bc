#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s19_a.sh — one device call, .gpubin/ carried: session 18's unrun
# tests and the paced ragged tiles (params.pace_ragged / COMET_GEMM_PACE,
# at 469a54d846 only: taken out after this run, session 19 run 1, measured
# no faster; the script stays as that run's record):
#   t  test_forward, test_context (W = 1, loopback 2/4/8), test_gemm,
#      test_sched_device;
#   p  test_forward with COMET_GEMM_PACE=1 (every GEMM paced);
#   g  `bench --op gemm --only layer --ab --sizes routed` on the big-expert
#      presets (comet_pace_tflops beside the default, in turns) and the
#      per-tile trace of Mixtral's routed launches, paced and not;
#   f  the W = 1 forward at 2048 tokens, default and paced in turns.
# Each step's folder packed into $OUT/s19a.tgz but its summary.
#   usage: scripts/gpu_s19_a.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward test_context" SINGLE_TESTS="test_gemm test_sched_device" SINGLE_LIMIT=120 \
  OUT=$OUT/t timeout 200 scripts/gpu_carried.sh tests > /dev/null 2>&1
COMET_GEMM_PACE=1 MULTI_TESTS="test_forward" SINGLE_TESTS=" " OUT=$OUT/p timeout 60 \
  scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  timeout 120 $B/comet bench --op gemm --only layer --ab --iters 10 --sizes routed \
    --model mixtral-8x7b,phi3.5-moe,qwen2-57b-a14b --json $OUT/gemm_layer.jsonl > $OUT/gemm_layer.log 2>&1
  note "gemm --only layer --ab routed (3 presets): exit $?"
  for pace in 0 1; do
    COMET_GEMM_PACE=$pace timeout 40 $B/comet bench --op gemm --only layer --iters 3 --sizes routed \
      --tokens 2048 --model mixtral-8x7b --trace $OUT/trace_pace$pace.jsonl > $OUT/trace_pace$pace.log 2>&1
    note "gemm trace Mixtral routed 2048, COMET_GEMM_PACE=$pace: exit $?"
  done
  finish gemm_layer.log ) > /dev/null 2>&1
MODES="fused pace" REPS=2 LIMIT=60 OUT=$OUT/f timeout 260 scripts/gpu_l0path_ab.sh > /dev/null 2>&1
for d in t p g f; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s19a.tgz -C $OUT t p g f && rm -rf $OUT/t $OUT/p $OUT/g $OUT/f
cat $OUT/summary_*.txt
