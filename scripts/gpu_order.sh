#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_order.sh — on a GPU machine with .gpubin/ carried: does the side that
# `comet bench` times second run on a slower GPU? Under ncu (session 9 run
# 1) comet's backward kernels of Mixtral at 2048 tokens add up to 6.5 ms and
# the baseline's to 7.0 ms, while the bench (baseline first, comet after it)
# measured 7.63 against 6.88 ms. The same rows with each order, the SM clock,
# power and temperature sampled every 50 ms beside them (smi.csv), then the
# whole backward matrix with --order MATRIX_ORDER (default abba; issue 11's
# check), and with FWD_SKEW set the forward matrix at skew:0.05. The bench
# preheats each timed phase (--preheat, 1000 ms) since session 9's run 3.
#   usage: scripts/gpu_order.sh   (MODELS, TOKENS override the order rows,
#   ORDERS their orders; PRE_TESTS: GPU tests to run first)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODELS=${MODELS:-mixtral-8x7b,phi3.5-moe}
TOKENS=${TOKENS:-2048,8192}
for t in ${PRE_TESTS:-}; do # e.g. test_gemm after a GEMM change
  timeout 150 $B/$t > "$OUT/$t.log" 2>&1
  note "$t: exit $?"
done
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 50 > "$OUT/smi.csv" 2>&1 &
smi=$!
for order in ${ORDERS-baseline-first comet-first}; do
  echo "$(date +%T.%N) start $order" >> "$OUT/marks.txt"
  timeout 150 $B/comet bench --gpus 1 --json "$OUT/order.jsonl" --backward --order $order \
    --model $MODELS --tokens $TOKENS --iters 10 > "$OUT/order_$order.log" 2>&1
  note "bench --backward --order $order ($MODELS x $TOKENS): exit $?"
done
MATRIX_ORDER=${MATRIX_ORDER:-abba}
echo "$(date +%T.%N) start $MATRIX_ORDER matrix" >> "$OUT/marks.txt"
timeout ${BWD_LIMIT:-300} $B/comet bench --gpus 1 --json "$OUT/bwd_$MATRIX_ORDER.jsonl" --backward --check \
  --check-tokens 2 --order $MATRIX_ORDER --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
  --tokens 2048,8192 --iters 10 > "$OUT/bwd_$MATRIX_ORDER.log" 2>&1
note "bench --backward --order $MATRIX_ORDER (issue 11's matrix, uniform): exit $?"
if [ -n "${FWD_SKEW:-}" ]; then # the forward matrix's other routing (issue 8 / 9)
  echo "$(date +%T.%N) start skew forward matrix" >> "$OUT/marks.txt"
  timeout ${FWD_LIMIT:-150} $B/comet bench --gpus 1 --json "$OUT/fwd_skew.jsonl" --check --check-tokens 2 \
    --order $MATRIX_ORDER --routing skew:0.05 \
    --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
    --tokens 2048,8192 --iters 10 > "$OUT/fwd_skew.log" 2>&1
  note "bench --order $MATRIX_ORDER, skew:0.05 (the forward matrix): exit $?"
fi
kill $smi 2>/dev/null
finish
