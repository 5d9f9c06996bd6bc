#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_loopback.sh — on one GPU, in one call: build comet and its GPU tests
# against the system NCCL, run the multi-rank tests at W = 1 (real) and
# W = 2, 4, 8 in the loopback world, the graph-replay and fault tests, the
# sanitizers on the loopback W = 4 forward, and the W = 1 bench. Logs and
# JSON Lines (tests.jsonl) go to $OUT; a summary is printed last.
#   usage: COMET_COMMIT=<sha> scripts/gpu_loopback.sh [STEPS]
#   STEPS: comma list of build,tests,sanitize,bench (default: all)
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0            # never NVLink multicast on shared machines
export COMET_COMMIT=${COMET_COMMIT:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
export COMET_TEST_COMMIT=$COMET_COMMIT
export COMET_TEST_DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export COMET_TEST_JSONL=$OUT/tests.jsonl
STEPS=${1:-build,tests,sanitize,bench}
BUILD=${BUILD:-build-gpu}
summary=()
note() { summary+=("$*"); echo "$*"; }
step() { echo; echo "=== $* ==="; }
has() { [[ ",$STEPS," == *",$1,"* ]]; }

step "machine"
nvidia-smi -L 2>&1 | tee "$OUT/machine.log"
echo "commit $COMET_COMMIT device $COMET_TEST_DEVICE" | tee -a "$OUT/machine.log"

if has build; then
  step "build ($BUILD, -j$(nproc))"
  { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release && cmake --build "$BUILD" -j"$(nproc)"; } > "$OUT/build.log" 2>&1
  rc=$?; tail -3 "$OUT/build.log"
  if [ $rc -ne 0 ]; then grep -m20 -E "error|undefined" "$OUT/build.log"; note "BUILD FAILED"; fi
fi

run_test() { # name, timeout, args...
  local name=$1 to=$2; shift 2
  [ -x "$BUILD/$name" ] || { note "$name: not built"; return; }
  timeout "$to" "$BUILD/$name" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "world [0-9]+ \(.*\): |PASS|FAIL|SKIPPED" "$OUT/$name.log" | tail -12
  note "$name $*: exit $rc"
}

if has tests; then
  for t in test_plan_device test_dispatch_combine test_forward test_graph_replay test_faults; do
    step "$t"
    run_test "$t" 400
  done
  for t in test_gemm test_baseline test_sched_device; do
    step "$t"
    run_test "$t" 300
  done
fi

if has sanitize && command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck synccheck; do
    step "$tool: test_forward --quick, loopback W = 4"
    extra=""; [ $tool = memcheck ] && extra="--leak-check full"
    timeout 300 compute-sanitizer --tool $tool $extra --report-api-errors no --error-exitcode 9 \
      "$BUILD/test_forward" --nccl none --loopback 4 --quick > "$OUT/$tool.log" 2>&1
    rc=$?
    errs=$(grep -m1 -oE "ERROR SUMMARY: [0-9]+" "$OUT/$tool.log" | grep -oE "[0-9]+$")
    tail -3 "$OUT/$tool.log"
    echo "{\"op\":\"sanitizer\",\"tool\":\"$tool\",\"test\":\"test_forward\",\"world\":4,\"transport\":\"loopback\",\"errors\":${errs:-null},\"exit\":$rc,\"device\":\"$COMET_TEST_DEVICE\",\"commit\":\"$COMET_COMMIT\"}" >> "$COMET_TEST_JSONL"
    note "$tool (loopback W=4 forward): exit $rc, errors ${errs:-unknown}"
  done
fi

if has bench && [ -x "$BUILD/comet" ]; then
  step "bench W = 1 (real) mixtral, qwen2-moe"
  timeout 200 "$BUILD/comet" bench --gpus 1 --json "$OUT/bench.jsonl" --iters 20 --warmup 5 \
    --model mixtral-8x7b,qwen2-moe-2.7b --tokens 4096 --check --check-tokens 2 > "$OUT/bench_w1.log" 2>&1
  note "bench W=1: exit $?"; tail -12 "$OUT/bench_w1.log"
  step "bench loopback W = 4 (not NVLink timings)"
  timeout 200 "$BUILD/comet" bench --loopback 4 --json "$OUT/bench.jsonl" --iters 10 --warmup 3 \
    --model qwen2-moe-2.7b --tokens 1024 --check --check-tokens 2 > "$OUT/bench_loopback.log" 2>&1
  note "bench loopback W=4: exit $?"; tail -12 "$OUT/bench_loopback.log"
fi

echo; echo "=== summary (commit $COMET_COMMIT) ==="
printf '%s\n' "${summary[@]}"
