#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_session17_a.sh — session 17's first device call, with .gpubin/
# carried: the PDL A/B (gpu_pdl_ab.sh, into $OUT/ab), the tests that PDL
# touches at W = 1 and loopback 2/4/8 ($OUT/t), and the DRAM bytes of
# Mixtral 2048's kernels, comet's and the baseline's, with the fused and
# the composed layer0 (gpu_ncu_bytes.sh, $OUT/n), and the composed layer0
# against the fused one on Mixtral and Phi-3.5 2048 ($OUT/c).
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
OUT=$OUT/ab timeout 260 scripts/gpu_pdl_ab.sh > /dev/null 2>&1
MULTI_TESTS="test_forward test_faults test_graph_replay test_plan_device" SINGLE_TESTS=" " \
  OUT=$OUT/t timeout 200 scripts/gpu_carried.sh tests > /dev/null 2>&1
NCU_LAYER0="fused composed" OUT=$OUT/n timeout 150 scripts/gpu_ncu_bytes.sh > /dev/null 2>&1
# the composed layer0 (dispatch + the plain GEMM launch) against the fused
# one where the fused kernel's GEMM runs below the standalone engine
. scripts/gpu_env.sh
mkdir -p $OUT/c
for l0 in composed fused; do
  COMET_LAYER0=$l0 timeout 100 $B/comet bench --gpus 1 --json "$OUT/c/l0_$l0.jsonl" \
    --model mixtral-8x7b,phi3.5-moe --tokens 2048 --routing uniform > "$OUT/c/l0_$l0.log" 2>&1
  echo "bench, COMET_LAYER0=$l0: exit $?"
done
tar czf $OUT/c/logs.tgz -C $OUT/c --remove-files l0_composed.log l0_fused.log
cat $OUT/*/summary.txt
