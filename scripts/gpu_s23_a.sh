#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s23_a.sh — session 23, run 1: why the 2-CTA pairs lose (0.70-0.81x
# single CTAs on shapes of many waves, ~parity at <= 2 waves, session 6).
# 1. The SASS of the pairs' and the single wide kernels (cuobjdump), for the
#    producer's loop and the kernel's end.
# 2. Mixtral's 8 grouped rows with --ab, pairs with multicast
#    (COMET_GEMM_PAIRS=1) and pairs in lockstep without it (=2): each row's
#    comet_tflops is the pairs', comet_single_tflops the single CTAs'.
# 3. The per-tile trace of the pairs and of single CTAs (Mixtral T=16384).
# 4. ncu (scripts/gpu_pairs_ncu.sh's sections) of the pairs and single CTAs.
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
M=mixtral-8x7b
{ cuobjdump -sass $B/comet 2>&1 | python3 -c '
import sys, re
keep, out = False, []
for l in sys.stdin:
    if "Function :" in l:
        keep = ("Li256ELb0ELb0ELb0ELb0ELb0ELb0ELb1E" in l or "Li256ELb0ELb0ELb0ELb0ELb0ELb0ELb0ELb1E" in l) and "auto" not in l
        if keep: out.append(l)
    elif keep: out.append(l)
sys.stdout.write("".join(out))' > "$OUT/pairs.sass"; } ; note "sass of the pairs kernels: $(grep -c 'Function' "$OUT/pairs.sass") functions, $(wc -l < "$OUT/pairs.sass") lines"
for P in 1 2; do
  COMET_GEMM_PAIRS=$P timeout 200 $B/comet bench --op gemm --only grouped --ab --model $M --iters 5 \
    --json "$OUT/pairs$P.jsonl" > "$OUT/pairs$P.log" 2>&1
  note "bench --ab, COMET_GEMM_PAIRS=$P: exit $?"
  python3 - "$OUT/pairs$P.jsonl" <<'PY' | while read -r l; do note "$l"; done
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("op") != "gemm_grouped": continue
    print("  %-40s pairs %6.1f single %6.1f (%.3f) cublas %6.1f" % (r["shape"], r["comet_tflops"], r["comet_single_tflops"], r["comet_tflops"] / max(r["comet_single_tflops"], 1e-9), r["cublas_tflops"]))
PY
done
for P in 1 0; do
  COMET_GEMM_PAIRS=$P timeout 120 $B/comet bench --op gemm --only grouped --model $M --quick --iters 3 \
    --trace "$OUT/trace$P.jsonl" > "$OUT/trace$P.log" 2>&1
  note "trace COMET_GEMM_PAIRS=$P: exit $?"
  python3 - "$OUT/trace$P.jsonl" <<'PY' | while read -r l; do note "$l"; done
import json, sys, collections
rows = collections.defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("op") == "gemm_trace": rows[r["shape"]].append(r)
for shape, rs in rows.items():
    t0 = min(r["start_ns"] for r in rs)
    per_cta = collections.defaultdict(list)
    for r in rs: per_cta[r["cta"]].append(r)
    # tile durations by the CTA's tile index
    by_idx = collections.defaultdict(list)
    for c, lst in per_cta.items():
        lst.sort(key=lambda r: r["start_ns"])
        for i, r in enumerate(lst): by_idx[i].append((r["end_ns"] - r["start_ns"]) / 1e3)
    end = max(r["end_ns"] for r in rs)
    print("  %s: %d items, %d CTAs, span %.1f us" % (shape, len(rs), len(per_cta), (end - t0) / 1e3))
    print("   tile us by CTA index: " + " ".join("%d:%.1f" % (i, sum(v) / len(v)) for i, v in sorted(by_idx.items())))
PY
done
COMET_GEMM_PAIRS=1 timeout 300 ncu -k regex:^gemm_kernel --launch-skip 2 --launch-count 4 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
  --section WarpStateStats --section SourceCounters --section SchedulerStats \
  --metrics lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_op_read.sum,lts__t_sectors_op_write.sum,lts__t_requests_srcunit_tex_op_read.sum,l1tex__m_xbar2l1tex_read_bytes.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum \
  $B/comet bench --op gemm --only grouped --ab --model $M --quick --iters 1 > "$OUT/ncu_pairs.txt" 2>&1
note "ncu of the pairs' and single CTAs' store launches: exit $?"
gzip -f "$OUT"/trace*.jsonl "$OUT/pairs.sass"
finish trace1.jsonl.gz trace0.jsonl.gz
