#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0_rows.sh — on a GPU machine with .gpubin/ carried: the fused
# layer0's gathered A with its rows loaded by TMA (COMET_L0_ROWS=tma, one
# box a row and stage) against the cp.async rows, in one call.
#   1. test_forward with COMET_L0_ROWS=tma at W = 1 and loopback 2, 4, 8:
#      the fused layer0 (A gathered and copied, every n_comm) gives the
#      composed layer0's bits, out and h against the CPU reference.
#   2. The W = 1 forward matrix (bench0's 5 presets x 2048/8192, ROUTING,
#      default uniform), three processes: comet's own choice (the table),
#      A gathered with cp.async rows, A gathered with TMA rows
#      (COMET_L0_GATHER=1 forces gathered, the cost model's n_comm: 0 at
#      W = 1). Each has its own baseline in the same process; compare
#      layer0_speedup and layer0_overlap_eff row by row (gather_rows in
#      each row's file name: bench_table / bench_cpasync / bench_tma).
#   usage: scripts/gpu_l0_rows.sh   (ROUTING, TOKENS, LIMIT s per bench)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
ROUTING=${ROUTING:-uniform}
TOKENS=${TOKENS:-2048,8192}
MODELS=mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite

s=$(date +%s)
COMET_L0_ROWS=tma timeout 300 $B/test_forward --nccl 1 --loopback 2,4,8 > "$OUT/test_forward_tma.log" 2>&1
note "test_forward with COMET_L0_ROWS=tma (nccl 1, loopback 2,4,8): exit $? in $(( $(date +%s) - s )) s"

bench() { # name, then env assignments
  local name=$1; shift
  env "$@" timeout ${LIMIT:-170} $B/comet bench --gpus 1 --json "$OUT/bench_$name.jsonl" --model $MODELS \
    --tokens $TOKENS --routing $ROUTING --check --check-tokens 2 > "$OUT/bench_$name.log" 2>&1
  note "bench W = 1 $ROUTING, $name: exit $?"
}
bench table COMET_L0_ROWS=cpasync
bench cpasync COMET_L0_GATHER=1 COMET_L0_ROWS=cpasync
bench tma COMET_L0_GATHER=1 COMET_L0_ROWS=tma
python3 - "$OUT" > "$OUT/rows_ab.txt" <<'PY'
import json, sys, os
runs = {}
for name in ("table", "cpasync", "tma"):
    p = os.path.join(sys.argv[1], f"bench_{name}.jsonl")
    if os.path.exists(p):
        runs[name] = {(r["model"], r["tokens_per_rank"]): r for r in map(json.loads, open(p))}
keys = sorted(set().union(*[set(v) for v in runs.values()])) if runs else []
print(f'{"model":18s} {"T":>5s}  ' + "  ".join(f"{n:>22s}" for n in runs))
for k in keys:
    cells = []
    for n, rows in runs.items():
        r = rows.get(k)
        cells.append(f'{r["layer0_speedup"]:6.3f} eff {r["layer0_overlap_eff"]:5.3f} {r["check"]:4s}'
                     if r else f'{"-":>22s}')
    print(f"{k[0]:18s} {k[1]:5d}  " + "  ".join(cells))
PY
note "layer0_speedup / overlap_eff per row: rows_ab.txt"
finish rows_ab.txt
