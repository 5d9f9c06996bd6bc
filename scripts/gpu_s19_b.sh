#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s19_b.sh — one device call, .gpubin/ carried: the sanitizers on the
# ipc W = 4 forward into $OUT/s (racecheck needs ~200 s: session 18 ran it
# out of 90 and 100), then the W = 1 forward matrix (bench0: 5 presets x
# 2048/8192, --check) for each of ROUTINGS (default uniform) into $OUT/b;
# packed into $OUT/s19b.tgz but the summaries. SAN=0 skips the sanitizers.
#   usage: [ROUTINGS="uniform skew:0.05"] [SAN=0] scripts/gpu_s19_b.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
dirs=b
if [ "${SAN:-1}" = 1 ]; then
  SAN_LIMIT=210 OUT=$OUT/s timeout 270 scripts/gpu_carried.sh sanitize > /dev/null 2>&1
  dirs="s b"
fi
n=$(echo ${ROUTINGS:=uniform} | wc -w)
ROUTINGS="$ROUTINGS" BENCH_LIMIT=205 OUT=$OUT/b timeout $((205 * n + 15)) scripts/gpu_carried.sh bench0 > /dev/null 2>&1
for d in $dirs; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
tar czf $OUT/s19b.tgz -C $OUT $dirs && rm -rf $OUT/s $OUT/b
cat $OUT/summary_*.txt
