#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_fused0_final.sh — on a GPU machine with .gpubin/ carried: the fused
# layer0's checks and numbers in one call: the multi-rank tests it touches
# (W = 1 and loopback 2/4/8), memcheck on the ipc W = 4 forward, the W = 1
# matrix (gpu_carried.sh bench0), and an n_comm sweep of the copied-A
# presets. Everything under $OUT (summary.txt, *.jsonl, logs.tgz).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
MULTI_TESTS="test_forward test_dispatch_combine test_graph_replay" SINGLE_TESTS=" " \
  OUT=$OUT scripts/gpu_carried.sh tests,bench0 > "$OUT/carried.out" 2>&1
B=.gpubin
NCCL_LIB=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))')
export LD_LIBRARY_PATH=$NCCL_LIB:${LD_LIBRARY_PATH:-} NCCL_NVLS_ENABLE=0
export COMET_COMMIT=$(cat $B/COMMIT 2>/dev/null || echo unknown)
mkdir -p /tmp/san
BUILD=$B LIMIT=60 OUT=/tmp/san scripts/gpu_sanitize.sh memcheck ipc > /tmp/san/out.txt 2>&1
cat /tmp/san/tests.jsonl >> "$OUT/tests.jsonl"
for n in 2 8; do
  timeout 60 $B/comet bench --gpus 1 --model mixtral-8x7b,phi3.5-moe --tokens 8192 --iters 10 \
    --n-comm $n --json "$OUT/sweep.jsonl" > /tmp/san/sweep_$n.log 2>&1
  echo "sweep n_comm $n: exit $?" >> "$OUT/summary.txt"
done
tail -2 /tmp/san/out.txt >> "$OUT/summary.txt"
(cd /tmp/san && tar czf "$OUT/logs2.tgz" .)
cat "$OUT/summary.txt"
