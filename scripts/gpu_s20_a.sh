#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_s20_a.sh — one device call, .gpubin/ carried: the slim swapped tiles
# (params.swap_rows 136 / 176 / 184 rows x 128 B rows). test_gemm (its new
# cases and session 19's unrun swapped-shape assertion) into $OUT/t;
# memcheck on test_gemm --quick into $OUT/s; `bench --op gemm --only layer
# --ab` (every swapped variant beside the default, in turns) on Mixtral's
# routed and equal sizes, Phi-3.5's and Qwen2-57B's routed ones into
# $OUT/g; the per-tile trace of Mixtral T=2048 routed layer1 (default,
# swap, swap136/176/184) into $OUT/g; ncu of the same launches and of
# cuBLAS's per-expert kernels (nvjet), one kernel an ncu pass, into
# $OUT/n. Packed into $OUT/s20a.tgz but the summaries.
#   usage: scripts/gpu_s20_a.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export CUDA_MODULE_LOADING=EAGER
OUT=${OUT:-$PWD/gpu-out}
MULTI_TESTS=" " SINGLE_TESTS="test_gemm" SINGLE_LIMIT=150 OUT=$OUT/t timeout 170 \
  scripts/gpu_carried.sh tests > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/s; mkdir -p $OUT
  timeout 50 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_gemm --quick > $OUT/test_gemm_memcheck.log 2>&1
  note "memcheck test_gemm --quick: exit $? ($(grep -E 'ERROR SUMMARY' $OUT/test_gemm_memcheck.log | tail -1))"
  finish ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/g; mkdir -p $OUT
  for m in mixtral-8x7b:routed mixtral-8x7b:uniform phi3.5-moe:routed qwen2-57b-a14b:routed; do
    [ $SECONDS -lt 330 ] || { note "gemm --only layer --ab $m: skipped (the call's time)"; continue; }
    timeout 80 $B/comet bench --op gemm --only layer --ab --iters 10 --sizes ${m##*:} \
      --model ${m%%:*} --json $OUT/gemm_layer.jsonl >> $OUT/gemm_layer.log 2>&1
    note "gemm --only layer --ab ${m%%:*} ${m##*:}: exit $?"
  done
  timeout 60 $B/comet bench --op gemm --only layer --ab --model mixtral-8x7b --sizes routed --tokens 2048 \
    --layer 1 --iters 3 --trace $OUT/trace_swap.jsonl > $OUT/trace_swap.log 2>&1
  note "trace Mixtral routed T=2048 layer1 (default, swap, swap136/176/184): exit $?"
  python3 scripts/trace_sharers.py "$OUT/trace_swap.jsonl" layer1 > $OUT/trace_summary.txt 2>&1
  finish trace_summary.txt ) > /dev/null 2>&1
( . scripts/gpu_env.sh
  OUT=$OUT/n; mkdir -p $OUT
  run=(--op gemm --only layer --ab --model mixtral-8x7b --sizes routed --tokens 2048 --layer 1 --iters 1)
  # demangled names spell the template arguments "(int)128, (bool)0, ...":
  # run 1's "Cfg<128.*184>" matched none of the swapped kernels
  for k in "gemm_kernel_auto" "\(int\)128,.*\(int\)184>" "nvjet" "\(int\)256,.*\(int\)136>" \
           "\(int\)128,.*\(int\)136>" "\(int\)128,.*\(int\)176>"; do
    [ $SECONDS -lt 500 ] || { note "ncu $k: skipped (the call's time)"; continue; }
    timeout 50 ncu --kernel-name-base demangled -k "regex:$k" --launch-count 1 \
      --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
      --section Occupancy \
      --metrics dram__bytes_read.sum,lts__t_sector_hit_rate.pct,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__average_warp_latency_issue_stalled_barrier \
      $B/comet bench "${run[@]}" >> $OUT/ncu_swap.txt 2>&1
    note "ncu $k: exit $?"
  done
  finish ncu_swap.txt ) > /dev/null 2>&1
for d in t s g n; do [ -f $OUT/$d/summary.txt ] && cp $OUT/$d/summary.txt $OUT/summary_$d.txt; done
cp $OUT/g/trace_summary.txt $OUT/ 2>/dev/null
cp $OUT/g/gemm_layer.jsonl $OUT/ 2>/dev/null
tar czf $OUT/s20a.tgz -C $OUT t s g n && rm -rf $OUT/t $OUT/s $OUT/g $OUT/n
cat $OUT/summary_*.txt $OUT/trace_summary.txt
