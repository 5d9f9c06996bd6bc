#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_all.sh — on a GPU machine, in one call: build comet against the system
# NCCL, run every GPU test (ctest -L gpu), compute-sanitizer memcheck on a
# small forward, then `comet bench` (baseline vs comet, checked against the
# CPU reference) on a few presets. Logs and JSON Lines go to $OUT; a short
# summary is printed last.
#   usage: COMET_COMMIT=<sha> scripts/gpu_all.sh [GPUS]   (default: all, at most 4)
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0            # never NVLink multicast on shared machines
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export COMET_COMMIT=${COMET_COMMIT:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
BUILD=${BUILD:-build-gpu}
JSON=$OUT/bench.jsonl
summary=()
note() { summary+=("$*"); echo "$*"; }
step() { echo; echo "=== $* ==="; }

step "machine"
nvidia-smi -L 2>&1 | tee "$OUT/machine.log"
GPUS=${1:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
[ "$GPUS" -gt 4 ] && GPUS=4
echo "gpus used: $GPUS, commit $COMET_COMMIT" | tee -a "$OUT/machine.log"

step "build ($BUILD, -j$(nproc))"
{ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release && cmake --build "$BUILD" -j"$(nproc)"; } > "$OUT/build.log" 2>&1
rc=$?; tail -3 "$OUT/build.log"
if [ $rc -ne 0 ]; then grep -m20 -E "error|undefined" "$OUT/build.log"; note "BUILD FAILED"; fi

step "GPU tests"
(cd "$BUILD" && timeout 420 ctest -L gpu --output-on-failure --timeout 300) > "$OUT/gpu_tests.log" 2>&1
rc=$?
grep -E "Test +#|tests passed|FAIL|Skipped" "$OUT/gpu_tests.log" | tail -20
note "gpu tests: exit $rc ($(grep -E 'tests passed' "$OUT/gpu_tests.log"))"

step "memcheck: one small forward on 1 GPU"
if command -v compute-sanitizer > /dev/null && [ -x "$BUILD/test_forward" ]; then
  timeout 90 compute-sanitizer --tool memcheck --leak-check full --report-api-errors no --error-exitcode 9 \
    "$BUILD/test_forward" --nccl 1 --loopback none > "$OUT/memcheck_forward.log" 2>&1
  rc=$?; tail -4 "$OUT/memcheck_forward.log"
  note "memcheck test_forward (1 GPU): exit $rc, $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck_forward.log")"
fi

if [ -x "$BUILD/comet" ]; then
  B="$BUILD/comet bench --gpus $GPUS --json $JSON --iters 20 --warmup 5"
  step "bench mixtral --check"
  timeout 200 $B --model mixtral-8x7b --tokens 4096 --check --check-tokens 2 2>&1 | tee "$OUT/bench_mixtral.log"
  note "bench mixtral --check: exit $? $(grep -m1 '^  check:' "$OUT/bench_mixtral.log")"
  step "bench presets, EP=$GPUS"
  timeout 200 $B --model qwen2-moe-2.7b,phi3.5-moe,deepseek-v2-lite --tokens 4096 --check --check-tokens 4 2>&1 | tee "$OUT/bench_presets.log"
  note "bench presets: exit $?"
  if [ "$GPUS" -ge 2 ]; then
    step "bench TP (ep 1 x tp $GPUS)"
    timeout 100 $B --model qwen2-moe-2.7b,mixtral-8x7b --ep 1 --tp $GPUS --tokens 4096 --check --check-tokens 4 2>&1 | tee "$OUT/bench_tp.log"
    note "bench tp: exit $?"
  fi
fi

echo; echo "=== summary (commit $COMET_COMMIT) ==="
printf '%s\n' "${summary[@]}"
if [ -f "$JSON" ]; then
  python3 - "$JSON" <<'PY'
import json, sys
print(f"{'model':16} {'ep':>2}x{'tp':<2} {'T':>5} {'baseline':>9} {'comet':>8} {'speedup':>7} {'check':>6}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    f = lambda v: "-" if v is None else f"{v:.3f}"
    print(f"{r['model']:16} {r['ep']:>2}x{r['tp']:<2} {r['tokens_per_rank']:>5} {f(r['baseline_ms']):>9} {f(r['comet_ms']):>8} {f(r['speedup']):>7} {str(r['check']):>6}")
PY
fi
