#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_session17_a.sh — session 17's first device call, with .gpubin/
# carried: the PDL A/B (gpu_pdl_ab.sh, into $OUT/ab), the tests that PDL
# touches at W = 1 and loopback 2/4/8 ($OUT/t), and the DRAM bytes of
# Mixtral 2048's kernels, comet's and the baseline's (gpu_ncu_bytes.sh,
# $OUT/n).
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
OUT=$OUT/ab timeout 260 scripts/gpu_pdl_ab.sh > /dev/null 2>&1
MULTI_TESTS="test_forward test_faults test_graph_replay test_plan_device" SINGLE_TESTS=" " \
  OUT=$OUT/t timeout 200 scripts/gpu_carried.sh tests > /dev/null 2>&1
OUT=$OUT/n timeout 110 scripts/gpu_ncu_bytes.sh > /dev/null 2>&1
cat $OUT/*/summary.txt
