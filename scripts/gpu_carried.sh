#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_carried.sh — on a GPU machine, with .gpubin/ from scripts/carry_build.sh
# carried: every multi-rank GPU test at W = 1 (and over NCCL on as many GPUs
# as there are) and in the loopback world, the GEMM and baseline tests, the
# sanitizers on the ipc W = 4 forward, the Python package's tests and
# example, comet's module vs a plain PyTorch MoE (torchbench), the W = 1
# bench, the fused layer0's W = 1 matrix (bench0: 5 presets x 2048/8192
# tokens x uniform/skew:0.05) and the same with the fused layer1 (bench1). tests.jsonl, bench.jsonl and summary.txt
# under $OUT, every log in $OUT/logs.tgz (a device call brings back at most
# 8 files).
#   usage: scripts/gpu_carried.sh [STEPS]   STEPS: tests,repeat,sanitize,python,torchbench,bench,bench0,commsweep,bench1,bwdbench,bwdsave,bwdncu,gemm,gemmab,gemmlayer
#   (default tests,sanitize,python,bench); MULTI_TESTS / SINGLE_TESTS name a
#   subset of the multi-rank / single-GPU tests; repeat runs REPEAT_TESTS
#   (the ones that failed at random in loopback, Known gaps 11) REPS more
#   times in loopback 2,4,8.
set -u -o pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-tests,sanitize,python,bench}
has() { [[ ",$STEPS," == *",$1,"* ]]; }
. scripts/gpu_env.sh
nccl_worlds=1; for w in 2 4 8; do [ "$w" -le "$GPUS" ] && nccl_worlds="$nccl_worlds,$w"; done

if has tests; then
  for t in ${MULTI_TESTS:-test_plan_device test_dispatch_combine test_forward test_graph_replay test_faults test_context test_backward}; do
    s=$(date +%s)
    timeout 300 $B/$t --nccl "$nccl_worlds" --loopback 2,4,8 > "$OUT/$t.log" 2>&1
    note "$t (nccl $nccl_worlds, loopback 2,4,8): exit $? in $(( $(date +%s) - s )) s," \
      "$(grep -c 'on the host' "$OUT/$t.log") slow host calls"
  done
  for t in ${SINGLE_TESTS:-test_gemm test_baseline test_sched_device}; do
    d=$(date -u +%FT%TZ)
    timeout ${SINGLE_LIMIT:-300} $B/$t > "$OUT/$t.log" 2>&1
    rc=$?
    note "$t: exit $rc"
    # the single-GPU tests write no row of their own (comm_test.h's
    # test_record is the multi-rank harness's): one here, of the same form
    r=fail; [ $rc = 0 ] && r=pass; [ $rc = 77 ] && r=skip
    printf '{"op":"gpu_test","test":"%s","world":1,"transport":"none","result":"%s","device":"%s","commit":"%s","date":"%s","command":"%s"}\n' \
      "$t" "$r" "$COMET_TEST_DEVICE" "$COMET_COMMIT" "$d" "$B/$t" >> "$COMET_TEST_JSONL"
  done
fi
if has repeat; then
  for i in $(seq 1 ${REPS:-2}); do
    for t in ${REPEAT_TESTS:-test_backward test_plan_device test_forward}; do
      s=$(date +%s)
      timeout 300 $B/$t --loopback 2,4,8 > "$OUT/${t}_rep$i.log" 2>&1
      note "$t (loopback 2,4,8) repeat $i: exit $? in $(( $(date +%s) - s )) s," \
        "$(grep -c 'on the host' "$OUT/${t}_rep$i.log") slow host calls"
    done
  done
fi
if has bwdbench; then # forward + backward, comet against the baseline (issue 11's matrix)
  timeout ${BWD_LIMIT:-240} $B/comet bench --gpus 1 --json "$OUT/bwd.jsonl" --backward --check --check-tokens 2 \
    --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
    --tokens 2048,8192 --iters 10 > "$OUT/bwdbench.log" 2>&1
  note "bench --backward W = 1 (uniform): exit $?"
fi
if has bwdsave; then # the same in save mode on both sides (saved_z; the baseline's save mode)
  timeout ${BWD_LIMIT:-240} $B/comet bench --gpus 1 --json "$OUT/bwd_save.jsonl" --backward --save --check \
    --check-tokens 2 --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
    --tokens 2048,8192 --iters 10 > "$OUT/bwdsave.log" 2>&1
  note "bench --backward --save W = 1 (uniform): exit $?"
fi
if has bwdncu; then # per-kernel times of one fwd + bwd, comet's and the baseline's (NCU_MODELS x 2048)
  for m in ${NCU_MODELS:-mixtral-8x7b phi3.5-moe}; do
    timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      $B/comet bench --gpus 1 --backward --model $m --tokens 2048 --iters 1 --warmup 1 \
      > "$OUT/ncu_bwd_$m.csv" 2> "$OUT/ncu_bwd_$m.err"
    note "ncu kernel times of bench --backward ($m, 2048 tokens): exit $?"
  done
fi
if has sanitize; then # SAN_TESTS: the multi-rank tests to run under the tools (default test_forward)
  for t in ${SAN_TESTS:-test_forward}; do
    TEST=$t BUILD=$B LIMIT=${SAN_LIMIT:-100} scripts/gpu_sanitize.sh "memcheck racecheck synccheck" ipc \
      > "$OUT/sanitize_$t.log" 2>&1
    note "sanitizers on $t (ipc W = 4): $(grep -E '^(memcheck|racecheck|synccheck):' "$OUT/sanitize_$t.log" | tr '\n' ' ')"
  done
fi
if has python || has torchbench; then
  python3 -m pip install -q --no-deps --target /tmp/comet_py $B/comet_moe-*.whl
  note "the wheel installed: exit $?"
fi
if has python; then
  (cd python/tests && PYTHONPATH=/tmp/comet_py timeout 300 python3 -m pytest -q -rs . > "$OUT/pytest.log" 2>&1)
  note "python tests: exit $? ($(tail -1 "$OUT/pytest.log"))"
  PYTHONPATH=/tmp/comet_py timeout 120 python3 examples/torch_moe.py > "$OUT/torch_example.log" 2>&1
  note "examples/torch_moe.py: exit $?"
fi
if has torchbench; then # comet's module against a plain PyTorch MoE, fwd + bwd
  for save in "" --save; do # recompute, then save mode
    PYTHONPATH=/tmp/comet_py timeout 300 python3 bench/torch_moe.py $save --json "$OUT/torch_moe.jsonl" \
      > "$OUT/torch_moe$save.log" 2>&1
    note "bench/torch_moe.py $save: exit $? ($(tail -1 "$OUT/torch_moe$save.log"))"
  done
fi
if has bench0; then # ROUTINGS, BENCH_LIMIT (s each) narrow it; SEED fixes the data (default: the clock)
  for routing in ${ROUTINGS:-uniform skew:0.05}; do
    timeout ${BENCH_LIMIT:-300} $B/comet bench --gpus 1 --json "$OUT/bench.jsonl" ${SEED:+--seed $SEED} \
      --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
      --tokens 2048,8192 --routing $routing --check --check-tokens 2 > "$OUT/bench0_${routing%%:*}.log" 2>&1
    note "bench0 W = 1 ($routing): exit $?"
  done
fi
if has commsweep; then # W = 1 dispatch / combine by CTA count (the composed steps' default)
  for m in mixtral-8x7b:2048 phi3.5-moe:8192 qwen2-moe-2.7b:8192; do
    for op in dispatch combine; do
      timeout 120 $B/comet bench --op $op --gpus 1 --model ${m%%:*} --tokens ${m##*:} \
        --ctas 24,48,66,132 --json "$OUT/comm.jsonl" >> "$OUT/commsweep.log" 2>&1
      note "bench --op $op W = 1 ${m%%:*} ${m##*:}: exit $?"
    done
  done
fi
if has bench1; then # bench0's matrix with the fused layer1 (opt-in)
  for routing in uniform skew:0.05; do
    COMET_LAYER1=fused timeout 300 $B/comet bench --gpus 1 --json "$OUT/bench1.jsonl" \
      --model mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite \
      --tokens 2048,8192 --routing $routing --check --check-tokens 2 > "$OUT/bench1_${routing%%:*}.log" 2>&1
    note "bench1 W = 1, fused layer1 ($routing): exit $?"
  done
fi
if has gemm; then # the backward's GEMM modes against cuBLAS
  timeout 200 $B/comet bench --op gemm --only backward --iters 10 --json "$OUT/gemm.jsonl" > "$OUT/gemm.log" 2>&1
  note "bench --op gemm --only backward: exit $?"
fi
if has gemmab; then # issue 10's matrix: dense, TE anchor, 56 grouped rows; pairs on/off, split
  timeout ${GEMM_LIMIT:-240} $B/comet bench --op gemm --ab --iters 10 --json "$OUT/gemm_ab.jsonl" \
    > "$OUT/gemm_ab.log" 2>&1
  note "bench --op gemm --ab: exit $? ($(grep geomean "$OUT/gemm_ab.log"))"
fi
if has gemmlayer; then # the W = 1 layer bench's GEMMs (EP 1, T 2048 / 8192) against cuBLAS, --ab
  timeout ${GEMM_LIMIT:-240} $B/comet bench --op gemm --only layer --ab --iters 10 --json "$OUT/gemm_layer.jsonl" \
    > "$OUT/gemm_layer.log" 2>&1
  note "bench --op gemm --only layer --ab: exit $? ($(grep geomean "$OUT/gemm_layer.log"))"
fi
if has bench; then
  timeout 200 $B/comet bench --gpus 1 --json "$OUT/bench.jsonl" --model mixtral-8x7b,qwen2-moe-2.7b \
    --tokens 4096 --check --check-tokens 2 --backward > "$OUT/bench_w1.log" 2>&1
  note "bench W = 1: exit $?"
fi
finish
