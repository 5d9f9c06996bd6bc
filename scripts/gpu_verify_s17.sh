#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_verify_s17.sh — one device call for what session 17 built after its
# device time ran out, with .gpubin/ carried: the GPU tests that run it
# (test_gemm: the GELU epilogue, the trace; test_forward: GELU fused and
# composed, the 4-stage fused layer0; test_backward, test_graph_replay,
# test_sched_device; W = 1 and loopback 2/4/8) into $OUT/t, the layer0 A/B
# (gpu_l0path_ab.sh, 2048 tokens) into $OUT/a, the GEMM trace of Mixtral's
# layer GEMMs (gpu_trace.sh) into $OUT/b; everything packed into
# $OUT/verify.tgz but the summaries (a call brings back 8 files).
#   usage: scripts/gpu_verify_s17.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward test_backward test_graph_replay" SINGLE_TESTS="test_gemm test_sched_device" \
  SINGLE_LIMIT=200 OUT=$OUT/t timeout 280 scripts/gpu_carried.sh tests > /dev/null 2>&1
OUT=$OUT/a timeout 200 scripts/gpu_l0path_ab.sh > /dev/null 2>&1
OUT=$OUT/b LIMIT=90 timeout 110 scripts/gpu_trace.sh > /dev/null 2>&1
for d in t a b; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/verify.tgz -C $OUT t a b && rm -rf $OUT/t $OUT/a $OUT/b
cat $OUT/summary_*.txt
