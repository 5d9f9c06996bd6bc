#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_session17_b.sh — session 17's second device call, with .gpubin/
# carried: the sanitizers on the ipc W = 4 forward (none has run since
# programmatic dependent launch; $OUT/s), then the pairs against single
# CTAs by ncu (gpu_pairs_bytes.sh, $OUT/p).
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
OUT=$OUT/p timeout 300 scripts/gpu_pairs_bytes.sh > /dev/null 2>&1
SAN_LIMIT=90 OUT=$OUT/s timeout 290 scripts/gpu_carried.sh sanitize > /dev/null 2>&1
cat $OUT/*/summary.txt
