#!/usr/bin/env bash
# gpu_sanitize.sh — compute-sanitizer memcheck, racecheck and synccheck on
# the loopback W = 4 forward at a small size (test_forward --quick), one
# JSON line each into $OUT/tests.jsonl. Waits are given long bounds: the
# sanitizers slow every kernel, and a rank must not give up on a slowed peer.
#   usage: BUILD=<dir with test_forward> scripts/gpu_sanitize.sh [TOOLS]
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 COMET_TIMEOUT_S=300 COMET_HOST_TIMEOUT_S=900
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
commit=${COMET_COMMIT:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
for tool in ${1:-memcheck racecheck synccheck}; do
  extra=""; [ "$tool" = memcheck ] && extra="--leak-check full"
  s=$(date +%s)
  timeout 280 compute-sanitizer --tool "$tool" $extra --report-api-errors no --error-exitcode 9 \
    "$BUILD/test_forward" --nccl none --loopback 4 --quick > "$OUT/$tool.log" 2>&1
  rc=$?
  errs=$(grep -m1 -oE "ERROR SUMMARY: [0-9]+" "$OUT/$tool.log" | grep -oE "[0-9]+$")
  pass=$(grep -c "world 4 (loopback): passed" "$OUT/$tool.log")
  echo "{\"op\":\"sanitizer\",\"tool\":\"$tool\",\"test\":\"test_forward\",\"world\":4,\"transport\":\"loopback\",\"errors\":${errs:-null},\"test_passed\":$pass,\"exit\":$rc,\"device\":\"$dev\",\"commit\":\"$commit\"}" >> "$OUT/tests.jsonl"
  echo "$tool: exit $rc, errors ${errs:-unknown}, test passed $pass, $(( $(date +%s) - s )) s"
  tail -2 "$OUT/$tool.log"
done
