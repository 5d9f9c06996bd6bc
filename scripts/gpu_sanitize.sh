#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_sanitize.sh — compute-sanitizer memcheck, racecheck and synccheck on
# a W = 4 multi-rank test at a small size ($TEST --quick, default
# test_forward; test_backward too) on one GPU, one
# JSON line each into $OUT/tests.jsonl. The ranks run as processes (the ipc
# transport): under the tool, the loopback world's threads make no progress
# while a peer waits (seen 2026-12-01). Waits get a longer bound: the tool
# slows every kernel. A run that does not finish in time records null.
#   usage: BUILD=<dir with the tests> [TEST=test_backward] scripts/gpu_sanitize.sh [TOOLS] [TRANSPORT]
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 COMET_TIMEOUT_S=${COMET_TIMEOUT_S:-30} COMET_HOST_TIMEOUT_S=120
TR=${2:-ipc}
LIMIT=${LIMIT:-90}
TEST=${TEST:-test_forward}
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
commit=${COMET_COMMIT:-$(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown)}
for tool in ${1:-memcheck racecheck synccheck}; do
  extra=""; [ "$tool" = memcheck ] && extra="--leak-check full"
  s=$(date +%s)
  worlds="--nccl none --loopback none --ipc 4"
  [ "$TR" = loopback ] && worlds="--nccl none --loopback 4"
  cmd="compute-sanitizer --tool $tool $extra --report-api-errors no --error-exitcode 9 $BUILD/$TEST $worlds --quick"
  timeout "$LIMIT" $cmd > "$OUT/${TEST}_$tool.log" 2>&1
  rc=$?
  # errors over every summary (one per instrumented process): memcheck and
  # synccheck print "ERROR SUMMARY: N errors", racecheck "(N errors, M warnings)"
  errs=$(grep -oE "ERROR SUMMARY: [0-9]+|\([0-9]+ errors" "$OUT/${TEST}_$tool.log" | grep -oE "[0-9]+" |
         awk '{s += $1; n++} END {if (n) print s}')
  pass=$(grep -c "world 4 ($TR): passed" "$OUT/${TEST}_$tool.log")
  echo "{\"op\":\"sanitizer\",\"tool\":\"$tool\",\"test\":\"$TEST\",\"world\":4,\"transport\":\"$TR\",\"errors\":${errs:-null},\"test_passed\":$pass,\"exit\":$rc,\"device\":\"$dev\",\"commit\":\"$commit\",\"date\":\"$(date -u +%FT%TZ)\",\"command\":\"$cmd\"}" >> "$OUT/tests.jsonl"
  echo "$tool: exit $rc, errors ${errs:-unknown}, test passed $pass, $(( $(date +%s) - s )) s"
  tail -2 "$OUT/${TEST}_$tool.log"
done
