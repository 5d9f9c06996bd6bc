#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_e.sh — session 23, run 6: the fitted pairs (two N-tiles of a
# token tile in a 2-CTA cluster, the token rows multicast). test_gemm's
# pair cases; the W = 1 layer GEMMs and the grouped matrix with --ab and
# COMET_GEMM_FIT_PAIRS=1 (comet_tflops the pairs', comet_single_tflops the
# single CTAs'); the W = 1 forward of Mixtral / Phi-3.5 (fixed data seed)
# without and with it, each against the baseline in its own run.
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
timeout 200 $B/test_gemm --only pair > "$OUT/test_gemm_pair.log" 2>&1
note "test_gemm --only pair: exit $? ($(tail -1 "$OUT/test_gemm_pair.log"))"
COMET_GEMM_FIT_PAIRS=1 timeout 300 $B/comet bench --op gemm --only layer --ab --iters 10 \
  --json "$OUT/layer.jsonl" > "$OUT/layer.log" 2>&1
note "bench --op gemm --only layer --ab, COMET_GEMM_FIT_PAIRS=1: exit $?"
COMET_GEMM_FIT_PAIRS=1 timeout 300 $B/comet bench --op gemm --ab --iters 5 \
  --json "$OUT/grouped.jsonl" > "$OUT/grouped.log" 2>&1
note "bench --op gemm --ab, COMET_GEMM_FIT_PAIRS=1: exit $?"
for P in 0 1; do
  COMET_GEMM_FIT_PAIRS=$P timeout 200 $B/comet bench --gpus 1 --json "$OUT/fwd$P.jsonl" --seed 1796316463 \
    --model mixtral-8x7b,phi3.5-moe --tokens 2048,8192 --check --check-tokens 2 > "$OUT/fwd$P.log" 2>&1
  note "forward W = 1, COMET_GEMM_FIT_PAIRS=$P: exit $?"
done
finish
