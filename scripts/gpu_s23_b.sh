#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_b.sh — session 23, run 2: the pairs with the remote release at
# CTA scope (no MEMBAR.ALL.GPU a stage; run 1 found it). The SASS's
# MEMBARs in the pairs kernel; the whole GEMM matrix with --ab and the
# pairs on (COMET_GEMM_PAIRS=1: comet_tflops the pairs', comet_single_tflops
# the single CTAs'); Mixtral's rows with the pairs in lockstep without
# multicast (=2).
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
cuobjdump -sass $B/comet 2>/dev/null | awk '/Function :/{keep = /Li256ELb0ELb0ELb0ELb0ELb0ELb0ELb1E/} keep' > "$OUT/pairs.sass"
note "pairs kernels' SASS: $(grep -c 'Function' "$OUT/pairs.sass") functions, MEMBAR.ALL.GPU $(grep -c 'MEMBAR.ALL.GPU' "$OUT/pairs.sass"), MEMBAR $(grep -c MEMBAR "$OUT/pairs.sass")"
summ() { python3 - "$1" <<'PY' | while read -r l; do note "$l"; done
import json, sys, math
rs = [json.loads(l) for l in open(sys.argv[1])]
g = []
for r in rs:
    if r.get("op") not in ("gemm_grouped", "gemm_dense"): continue
    s = r.get("comet_single_tflops") or 0
    if s <= 0: continue
    g.append(r["comet_tflops"] / s)
    print("  %-42s pairs %6.1f single %6.1f (%.3f) cublas %6.1f" % (r["shape"][:42], r["comet_tflops"], s, r["comet_tflops"] / s, r["cublas_tflops"]))
if g: print("  pairs / single geomean %.3f over %d rows" % (math.exp(sum(map(math.log, g)) / len(g)), len(g)))
PY
}
COMET_GEMM_PAIRS=1 timeout 300 $B/comet bench --op gemm --ab --iters 5 --json "$OUT/pairs1.jsonl" > "$OUT/pairs1.log" 2>&1
note "bench --op gemm --ab, COMET_GEMM_PAIRS=1: exit $?"
summ "$OUT/pairs1.jsonl"
COMET_GEMM_PAIRS=2 timeout 200 $B/comet bench --op gemm --only grouped --ab --model mixtral-8x7b --iters 5 \
  --json "$OUT/pairs2.jsonl" > "$OUT/pairs2.log" 2>&1
note "bench --ab Mixtral, COMET_GEMM_PAIRS=2: exit $?"
summ "$OUT/pairs2.jsonl"
timeout 200 $B/test_gemm --only pair > "$OUT/test_gemm_pair.log" 2>&1
note "test_gemm --only pair: exit $? ($(tail -1 "$OUT/test_gemm_pair.log"))"
gzip -f "$OUT/pairs.sass"
finish
