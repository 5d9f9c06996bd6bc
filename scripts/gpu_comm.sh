#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_comm.sh — one call on the device machine for the communication
# substrate: build against the system NCCL, run the GPU tests on 1, 2 and 4
# GPUs, compute-sanitizer leak check on a small run, the CTA sweep of
# dispatch and combine against NCCL all-to-all. Logs under $OUT; a short
# table last. Usage: scripts/gpu_comm.sh [quick]
set -o pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/comet-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
B=build-gpu
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

{
  date -u; nvidia-smi -L; nvidia-smi topo -m 2>/dev/null | head -8
  nvcc --version | tail -1
  grep -m1 "define NCCL_VERSION_CODE" /usr/include/nccl.h
} 2>&1 | tee "$OUT/env.log"
note "commit ${COMET_COMMIT:-unknown}; $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x $(nvidia-smi -L | wc -l)"

t0=$(date +%s)
# The system NCCL's headers first on nvcc's path, ahead of any nccl.h in the
# CUDA toolkit's include directory (the device API has no ABI promise).
mkdir -p $B/nccl-include && cp -r /usr/include/nccl*.h /usr/include/nccl_device $B/nccl-include/ 2>/dev/null
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DNCCL_HOME=/usr \
  -DCMAKE_CUDA_FLAGS="-I$PWD/$B/nccl-include" -DCMAKE_C_FLAGS="-I$PWD/$B/nccl-include" \
  -DCMAKE_CXX_FLAGS="-I$PWD/$B/nccl-include" >"$OUT/build.log" 2>&1 &&
  cmake --build $B -j16 --target comet test_plan_device test_dispatch_combine >>"$OUT/build.log" 2>&1
rc=$?
note "build: rc $rc ($(( $(date +%s) - t0 )) s)"
if [ $rc -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi
BENCH=$B/comet
if ! cmake --build $B -j16 --target comet_cli >>"$OUT/build.log" 2>&1; then
  note "comet command did not link; building the comm bench standalone"
  nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -DCOMET_BENCH_COMM_MAIN \
    -DCOMET_NCCL_BUILD_VERSION=$(grep -m1 "define NCCL_VERSION_CODE" /usr/include/nccl.h | awk '{print $3}') \
    -I$B/nccl-include -Iinclude -Isrc -Itools tools/bench_comm.cu $B/libcomet.a -lnccl -lcublas -o $B/bench_comm \
    >>"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; }
  BENCH="$B/bench_comm"
fi

run_test() { # name, env...
  local t=$1 tag=$2; shift 2
  local t1=$(date +%s)
  env "$@" timeout 60 $B/$t 2>&1 | tee "$OUT/$t$tag.log" | tail -45
  note "$t $*: rc $? ($(( $(date +%s) - t1 )) s): $(grep -E 'PASS|FAIL' "$OUT/$t$tag.log" | tail -1)"
}
run_test test_plan_device ""
run_test test_dispatch_combine ""
run_test test_dispatch_combine _other COMET_DISPATCH_MODE=pull COMET_COMBINE_MODE=push

if [ "$1" != "quick" ]; then
  t1=$(date +%s)
  timeout 100 compute-sanitizer --leak-check full --report-api-errors no --target-processes all --error-exitcode 9 \
    $B/test_dispatch_combine --nccl 1 --loopback none >"$OUT/sanitizer.log" 2>&1
  note "compute-sanitizer (memcheck, leak-check full, world 1): rc $? ($(( $(date +%s) - t1 )) s): $(grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$OUT/sanitizer.log" | sort | uniq -c | tr '\n' ';')"
fi

G=$(nvidia-smi -L | wc -l); [ "$G" -gt 4 ] && G=4
J=$OUT/comm.jsonl
: >"$J"
M="--gpus $G --model mixtral-8x7b --tokens 8192 --json $J"
D="--gpus $G --model deepseek-v2-lite --tokens 8192 --json $J"
{
  timeout 60 $BENCH bench --op dispatch $M --ctas 8,12,16,20,24,32,64,132 --unroll 8,16
  COMET_DISPATCH_MODE=pull timeout 60 $BENCH bench --op dispatch $M --ctas 8,16,24,32,64,132
  timeout 60 $BENCH bench --op combine $M --ctas 8,12,16,20,24,32,64,132
  COMET_COMBINE_MODE=push timeout 60 $BENCH bench --op combine $M --ctas 16,24,32
  timeout 60 $BENCH bench --op dispatch $D --ctas 8,16,24,32
  timeout 60 $BENCH bench --op combine $D --ctas 8,16,24,32
  timeout 60 $BENCH bench --op dispatch $M --tp 2 --ctas 16,24,32
  timeout 60 $BENCH bench --op combine $M --tp 2 --ctas 16,24,32
} 2>&1 | tee "$OUT/bench.log" | grep -E "^comet bench|^mode" 

echo; echo "==== summary ===="; cat "$SUMMARY"
echo "op       mode ctas unroll   GB/s   NCCL  ratio  (model, world, tp)"
python3 - "$J" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(f"{r['op']:8s} {r['mode']:4s} {r['ctas']:4d} {r['unroll']:6d} {r['gbps']:6.0f} {r['nccl_gbps']:6.0f} {r['gbps']/r['nccl_gbps']:5.2f}x  ({r['model']}, {r['world']}, {r['tp']})")
PY
