#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_bench.sh — on a GPU machine, in one call: build comet against the
# system NCCL, run the baseline's GPU test, then `comet bench` (the unfused
# baseline, with --check on Mixtral) on a few presets and layouts. Logs and
# JSON Lines go to $OUT (default ./gpu-out); a short table is printed last.
#   usage: scripts/gpu_bench.sh [GPUS]     (default: all GPUs, at most 4)
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0            # never NVLink multicast on shared machines
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export COMET_COMMIT=${COMET_COMMIT:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
BUILD=${BUILD:-build-gpu}
JSON=$OUT/baseline.jsonl
status=0
step() { echo; echo "=== $* ==="; }

step "machine"
nvidia-smi -L 2>&1 | tee "$OUT/machine.log"
nvidia-smi topo -m 2>&1 | head -8 | tee -a "$OUT/machine.log"
GPUS=${1:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
[ "$GPUS" -gt 4 ] && GPUS=4
echo "gpus used: $GPUS, commit $COMET_COMMIT" | tee -a "$OUT/machine.log"

step "build ($BUILD, -j16)"
{ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$BUILD" -j16 --target test_baseline comet_cli; } > "$OUT/build.log" 2>&1
rc=$?; tail -5 "$OUT/build.log"; grep -m3 NCCL "$OUT/build.log"
if [ $rc -ne 0 ]; then
  grep -m20 -E "error|undefined" "$OUT/build.log"
  echo "BUILD FAILED"; status=1
fi

if [ -x "$BUILD/test_baseline" ]; then
  step "test_baseline"
  timeout 200 "$BUILD/test_baseline" 2>&1 | tee "$OUT/test_baseline.log" | grep -vE '^\s+\[rank 0\]' | tail -25
  rc=$?; echo "test_baseline exit $rc"; [ $rc -ne 0 ] && status=1
  grep -cE '^\s+\[rank' "$OUT/test_baseline.log" | sed 's/^/result lines: /'
fi

if [ -x "$BUILD/comet" ]; then
  B="$BUILD/comet bench --gpus $GPUS --json $JSON --iters 20 --warmup 5"
  step "bench mixtral --check"
  timeout 150 $B --model mixtral-8x7b --tokens 4096 --check --check-tokens 2 2>&1 | tee "$OUT/bench_mixtral.log"
  rc=$?; [ $rc -ne 0 ] && { echo "bench mixtral exit $rc"; status=1; }
  step "bench presets, EP=$GPUS"
  timeout 90 $B --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b --tokens 1024,4096 2>&1 | tee "$OUT/bench_presets.log"
  rc=$?; [ $rc -ne 0 ] && { echo "bench presets exit $rc"; status=1; }
  if [ "$GPUS" -ge 2 ]; then
    if [ "$GPUS" -ge 4 ]; then LAY="--ep 2 --tp 2"; else LAY="--ep 1 --tp $GPUS"; fi
    step "bench TP layouts ($LAY) and skew"
    timeout 60 $B --model qwen2-moe-2.7b $LAY --tokens 4096 --check --check-tokens 4 2>&1 | tee "$OUT/bench_eptp.log"
    rc=$?; [ $rc -ne 0 ] && { echo "bench eptp exit $rc"; status=1; }
    timeout 40 $B --model mixtral-8x7b $LAY --tokens 4096 2>&1 | tee -a "$OUT/bench_eptp.log"
    rc=$?; [ $rc -ne 0 ] && { echo "bench eptp mixtral exit $rc"; status=1; }
    timeout 40 $B --model qwen2-moe-2.7b --routing skew:0.02 --tokens 4096 2>&1 | tee "$OUT/bench_skew.log"
    rc=$?; [ $rc -ne 0 ] && { echo "bench skew exit $rc"; status=1; }
  fi
fi

step "summary (median of the slowest rank, ms; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
python3 - "$JSON" <<'PY' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])] if len(sys.argv) > 1 else []
print(f"{'model':16} {'ep':>2}x{'tp':<2} {'T/rank':>6} {'routing':9} {'disp':>7} {'experts':>8} {'comb':>7} {'layer':>7} {'TF/s':>5} {'floor':>6} {'check':>12}")
for r in rows:
    chk = f"{r['check']} {r['rel_err']:.1e}" if r.get('check') else '-'
    print(f"{r['model']:16} {r['ep']:>2}x{r['tp']:<2} {r['tokens_per_rank']:>6} {r['routing']:9} "
          f"{r['baseline_dispatch_ms']:7.3f} {r['baseline_experts_ms']:8.3f} {r['baseline_combine_ms']:7.3f} "
          f"{r['baseline_ms']:7.3f} {r['baseline_experts_tflops']:5.0f} {r['floor_ms'] or 0:6.3f} {chk:>12}")
PY
echo "gpu_bench.sh: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
