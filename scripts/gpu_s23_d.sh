#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_d.sh — session 23, runs 4-5: the pairs without straddles (a
# group's M-tiles two by two sharing B; leftover M-tiles across two N-tiles
# sharing A; run 5: the leftovers inside the last band, and last M-tiles of
# <= 64 rows among them). test_gemm's pair cases (bits = single CTAs, against
# the reference), then as run 3: the W = 1 layer GEMMs and the grouped
# matrix with --ab and COMET_GEMM_PAIRS=1.
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
timeout 200 $B/test_gemm --only pair > "$OUT/test_gemm_pair.log" 2>&1
note "test_gemm --only pair: exit $? ($(tail -1 "$OUT/test_gemm_pair.log"))"
summ() { while read -r l; do note "$l"; done < <(python3 - "$1" <<'PY'
import json, sys, math
g = []
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("op") not in ("gemm_grouped", "gemm_dense", "gemm_layer"): continue
    s = r.get("comet_single_tflops") or 0
    if s <= 0: continue
    g.append(r["comet_tflops"] / s)
    print("%-44s pairs %6.1f single %6.1f (%.3f) cublas %6.1f" % (r["shape"][:44], r["comet_tflops"], s, r["comet_tflops"] / s, r["cublas_tflops"]))
if g: print("pairs / single geomean %.3f over %d rows" % (math.exp(sum(map(math.log, g)) / len(g)), len(g)))
PY
)
}
COMET_GEMM_PAIRS=1 timeout 300 $B/comet bench --op gemm --only layer --ab --iters 10 \
  --json "$OUT/layer.jsonl" > "$OUT/layer.log" 2>&1
note "bench --op gemm --only layer --ab, COMET_GEMM_PAIRS=1: exit $?"
summ "$OUT/layer.jsonl"
COMET_GEMM_PAIRS=1 timeout 300 $B/comet bench --op gemm --ab --iters 5 \
  --json "$OUT/grouped.jsonl" > "$OUT/grouped.log" 2>&1
note "bench --op gemm --ab, COMET_GEMM_PAIRS=1: exit $?"
summ "$OUT/grouped.jsonl"
finish
