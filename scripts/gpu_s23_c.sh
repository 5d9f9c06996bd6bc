#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_c.sh — session 23, run 3 (run 2's binaries): where the mended
# pairs win. The W = 1 layer GEMMs (--only layer --ab, routed and equal
# sizes) with COMET_GEMM_PAIRS=1, and two more passes of the grouped
# matrix with --ab (comet_tflops the pairs', comet_single_tflops the
# single CTAs', timed in turns).
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
summ() { python3 - "$1" <<'PY' | while read -r l; do note "$l"; done
import json, sys, math
g = []
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("op") not in ("gemm_grouped", "gemm_dense", "gemm_layer"): continue
    s = r.get("comet_single_tflops") or 0
    if s <= 0: continue
    g.append(r["comet_tflops"] / s)
    print("  %-44s pairs %6.1f single %6.1f (%.3f) cublas %6.1f" % (r["shape"][:44], r["comet_tflops"], s, r["comet_tflops"] / s, r["cublas_tflops"]))
if g: print("  pairs / single geomean %.3f over %d rows" % (math.exp(sum(map(math.log, g)) / len(g)), len(g)))
PY
}
COMET_GEMM_PAIRS=1 timeout 300 $B/comet bench --op gemm --only layer --ab --iters 10 \
  --json "$OUT/layer.jsonl" > "$OUT/layer.log" 2>&1
note "bench --op gemm --only layer --ab, COMET_GEMM_PAIRS=1: exit $?"
summ "$OUT/layer.jsonl"
for r in 2 3; do
  COMET_GEMM_PAIRS=1 timeout 200 $B/comet bench --op gemm --only grouped --ab --iters 5 \
    --json "$OUT/grouped$r.jsonl" > "$OUT/grouped$r.log" 2>&1
  note "bench --op gemm --only grouped --ab pass $r, COMET_GEMM_PAIRS=1: exit $?"
  summ "$OUT/grouped$r.jsonl"
done
finish
