#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_gemm.sh — one call on a Hopper machine for the grouped GEMM engine:
# correctness test, compute-sanitizer (memcheck + racecheck, small sizes),
# benchmark against cuBLAS; logs under $OUT (or ./gemm-out), a short table last.
#   scripts/gpu_gemm.sh [all|test|bench] [extra bench args...]
# Binaries: build-gemm/{test_gemm,bench_gemm} if present (built on the host:
#   cmake -S . -B build-gemm -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-gemm --target test_gemm -j2
#   nvcc -gencode=arch=compute_90a,code=sm_90a -std=c++17 -O2 -DCOMET_BENCH_GEMM_MAIN \
#        -Iinclude -Isrc -Itools tools/bench_gemm.cu build-gemm/libcomet.a -lcublas \
#        -o build-gemm/bench_gemm
# ), else built here with nvcc from the few sources they need.
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gemm-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
MODE=${1:-all}
shift || true
LOG=$OUT/gemm.log
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain -- src/kernels tools/bench_gemm.cu 2>/dev/null)" ] && COMMIT="$COMMIT+dirty"
export COMET_COMMIT=${COMET_COMMIT:-$COMMIT}
say "# gpu_gemm.sh $MODE on $(hostname), $(date -u +%FT%TZ), commit $COMET_COMMIT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1 | tee -a "$LOG"

BIN=${GEMM_BIN:-build-gemm-bin}  # test_gemm + bench_gemm copied out of build-gemm
if [ ! -x "$BIN/test_gemm" ] || [ ! -x "$BIN/bench_gemm" ]; then
  say "# building with nvcc here"
  BIN=build-gemm-dev
  mkdir -p $BIN
  F="-gencode=arch=compute_90a,code=sm_90a -std=c++17 -O3 --expt-relaxed-constexpr -Iinclude -Isrc -Itools -Itests"
  nvcc $F -x cu tests/gpu/test_gemm.cu tests/test_util.c src/kernels/gemm/gemm.cu src/error.c src/ref/ref_gemm.c \
    -o $BIN/test_gemm 2>&1 | tee -a "$LOG" || exit 1
  nvcc $F -DCOMET_BENCH_GEMM_MAIN tools/bench_gemm.cu src/kernels/gemm/gemm.cu -x cu src/error.c src/presets.c \
    -lcublas -o $BIN/bench_gemm 2>&1 | tee -a "$LOG" || exit 1
fi

rc=0
if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  say "## test_gemm"
  timeout 120 "$BIN/test_gemm" 2>&1 | tee "$OUT/test.log" | tee -a "$LOG"
  trc=$?
  [ $trc = 0 ] || rc=1
  if [ $trc = 124 ]; then say "test_gemm hung: skipping the rest"; MODE=none; fi
fi
if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  say "## compute-sanitizer memcheck (--quick)"
  timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/test_gemm" --quick 2>&1 \
    | tail -n 30 | tee "$OUT/memcheck.log" | tee -a "$LOG" || rc=1
  say "## compute-sanitizer racecheck (--quick)"
  timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 "$BIN/test_gemm" --quick 2>&1 \
    | tail -n 30 | tee "$OUT/racecheck.log" | tee -a "$LOG" || rc=1
fi
if [ "$MODE" = all ] || [ "$MODE" = bench ]; then
  say "## bench_gemm"
  timeout 200 "$BIN/bench_gemm" --json "$OUT/gemm.jsonl" "$@" 2>&1 | tee -a "$LOG" || rc=1
fi

say ""
say "## summary (rc=$rc)"
grep -h "test_gemm: \(PASS\|FAIL\)\|ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/*.log 2>/dev/null | tee -a "$LOG"
if [ -f "$OUT/gemm.jsonl" ]; then
  python3 - "$OUT/gemm.jsonl" <<'EOF' | tee -a "$LOG"
import json, sys, math
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'shape':44s} {'comet':>7s} {'cublas':>7s} {'ratio':>6s} {'swiglu':>7s}")
for r in rows:
    print(f"{r['shape']:44s} {r['comet_tflops']:7.1f} {r['cublas_tflops']:7.1f} {r['ratio']:6.3f} {r.get('comet_swiglu_tflops', 0):7.1f}")
g = [r['ratio'] for r in rows if r['op'] == 'gemm_grouped']
if g: print(f"grouped geomean ratio {math.exp(sum(map(math.log, g)) / len(g)):.3f} over {len(g)}")
EOF
fi
exit $rc
