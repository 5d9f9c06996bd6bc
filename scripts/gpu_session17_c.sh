#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_session17_c.sh — session 17's third device call, with .gpubin/
# carried, for layer0's bands of one expert (schedule.h comet_sched_band):
# the tests on the tile lists and everything built on them at W = 1 and
# loopback 2/4/8 ($OUT/t), the DRAM bytes of Mixtral's and Phi-3.5's 2048
# forward (gpu_ncu_bytes.sh, $OUT/n; Mixtral with the composed layer0 too),
# then the W = 1 forward matrix, both routings ($OUT/b).
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward test_graph_replay test_faults test_backward" \
  SINGLE_TESTS="test_sched_device test_gemm" SINGLE_LIMIT=150 \
  OUT=$OUT/t timeout 240 scripts/gpu_carried.sh tests > /dev/null 2>&1
NCU_MODELS="mixtral-8x7b phi3.5-moe" OUT=$OUT/n timeout 80 scripts/gpu_ncu_bytes.sh > /dev/null 2>&1
NCU_MODELS=mixtral-8x7b NCU_LAYER0=composed OUT=$OUT/n2 timeout 45 scripts/gpu_ncu_bytes.sh > /dev/null 2>&1
BENCH_LIMIT=150 OUT=$OUT/b timeout 300 scripts/gpu_carried.sh bench0 > /dev/null 2>&1
cat $OUT/*/summary.txt
