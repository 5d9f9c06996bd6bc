#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_pairs.sh — on a GPU machine with .gpubin/ carried (scripts/carry_build.sh):
# the GEMM's 2-CTA cluster pairs against single CTAs, every shape of issue 10.
# Steps, logs under $OUT (gemm_ab.jsonl, logs.tgz):
#   1. test_gemm (pairs cases: bits = single CTAs);
#   2. comet bench --op gemm --ab with AUTO pairs on (COMET_GEMM_PAIRS=1):
#      comet_tflops is then the pairs', comet_single_tflops the single CTAs',
#      timed in turns in one process with both cuBLAS paths; the log's
#      header has the occupancy query.
#   usage: scripts/gpu_pairs.sh   (GEMM_LIMIT, default 300 s)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
timeout 120 $B/test_gemm > "$OUT/test_gemm.log" 2>&1
note "test_gemm: exit $? ($(grep -c '^FAIL' "$OUT/test_gemm.log") FAIL lines)"
COMET_GEMM_PAIRS=1 timeout ${GEMM_LIMIT:-300} $B/comet bench --op gemm --ab --iters 10 \
  --json "$OUT/gemm_ab.jsonl" > "$OUT/gemm_ab.log" 2>&1
note "bench --op gemm --ab, pairs on: exit $? ($(grep -h 'pairs (2-CTA' "$OUT/gemm_ab.log"); $(grep geomean "$OUT/gemm_ab.log" | tr '\n' ' '))"
finish
