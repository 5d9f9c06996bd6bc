#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s18_a.sh — one device call, .gpubin/ carried: the GPU tests of the
# fused layer0's split tail and 4-stage default (test_forward with its
# H = 2048 split cases, test_graph_replay, test_backward at W = 1 and
# loopback 2/4/8; test_gemm) into $OUT/t, then the layer0 A/B in turns
# (gpu_l0path_ab.sh: fused, nosplit, composed at 2048) into $OUT/a, then
# memcheck / racecheck / synccheck on the ipc W = 4 forward into $OUT/s;
# packed into $OUT/s18a.tgz but the summaries (a call brings back 8 files).
#   usage: scripts/gpu_s18_a.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS="test_forward test_graph_replay test_backward" SINGLE_TESTS="test_gemm" \
  SINGLE_LIMIT=100 OUT=$OUT/t timeout 180 scripts/gpu_carried.sh tests > /dev/null 2>&1
OUT=$OUT/a LIMIT=40 timeout 130 scripts/gpu_l0path_ab.sh > /dev/null 2>&1
SAN_LIMIT=90 OUT=$OUT/s timeout 275 scripts/gpu_carried.sh sanitize > /dev/null 2>&1
for d in t a s; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s18a.tgz -C $OUT t a s && rm -rf $OUT/t $OUT/a $OUT/s
cat $OUT/summary_*.txt
