#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_cli.sh — the `comet` command: help (of every bench op), presets,
# version (also --version, -V), bad commands and options, the checks of
# `comet bench` and `comet tune` options that come before any GPU is looked
# for (exit 2 here too), and `comet info`, which must either list GPUs (exit 0) or say
# plainly that there is none (exit non-zero); then, without a GPU, that each
# bench op says so in one plain line (exit 1), not with CUDA's error string.
set -u
comet="$1"
fail=0
expect() { # expect <what> <wanted rc> <regex> [<unwanted regex>] -- command...
  local what="$1" want="$2" re="$3" bad=""
  if [ "$4" != "--" ]; then bad="$4"; shift; fi
  shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || ! grep -Eq -e "$re" <<<"$out" || { [ -n "$bad" ] && grep -Eq -e "$bad" <<<"$out"; }; then
    echo "FAIL $what: rc=$rc (wanted $want), output lacks /$re/${bad:+ or has /$bad/} or differs:"
    echo "$out" | head -20; fail=1
  else
    echo "ok   $what"
  fi
}
expect "help" 0 "usage: comet" -- "$comet" --help
expect "no command" 2 "usage: comet" -- "$comet"
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$comet" frobnicate
expect "presets" 0 "deepseek-v3 +7168 +2048 +256 +8" -- "$comet" presets
expect "presets lists mixtral" 0 "mixtral-8x7b +4096 +14336 +8 +2" -- "$comet" presets
expect "version" 0 "^comet [0-9]+\.[0-9]+\.[0-9]+" -- "$comet" version
version=$("$comet" version)
expect "--version is version" 0 "^$version\$" -- "$comet" --version
expect "-V is version" 0 "^$version\$" -- "$comet" -V
expect "bench unknown op" 2 "unknown --op 'frob'" -- "$comet" bench --op frob
expect "bench --help mentions --loopback" 0 "^ +--loopback W" -- "$comet" bench --help
expect "bench --op gemm --help" 0 "^usage: comet bench --op gemm" -- "$comet" bench --op gemm --help
expect "bench --op dispatch --help" 0 "^usage: comet bench --op dispatch[|]combine" -- "$comet" bench --op dispatch --help
expect "bench --op combine --help" 0 "^usage: comet bench --op dispatch[|]combine" -- "$comet" bench --op combine --help
expect "bench --op gemm refuses --preset" 2 "unknown option '--preset'.*--help" -- "$comet" bench --op gemm --preset mixtral-8x7b
expect "tune --help" 0 "^usage: comet tune" -- "$comet" tune --help
expect "help lists tune" 0 "^  tune " -- "$comet" --help
# Option errors: exit 2 with their message whether or not there is a GPU.
expect "tune refuses --check" 2 "comet tune: --check and --n-comm" -- "$comet" tune --model mixtral-8x7b --check
expect "tune bad --sweep" 2 "^comet tune: bad value '1,x' for --sweep" -- "$comet" tune --sweep 1,x
expect "tune bad --repeat" 2 "bad value '10' for --repeat" -- "$comet" tune --repeat 10
expect "tune bad --refine" 2 "bad value '16' for --refine" -- "$comet" tune --refine 16
expect "tune bad --keep" 2 "bad value '30' for --keep" -- "$comet" tune --keep 30
expect "tune 5 routings" 2 "^comet tune: bad value 'uniform,skew:0.05,skew:0.1,uniform,uniform' for --routing" -- "$comet" tune --routing uniform,skew:0.05,skew:0.1,uniform,uniform
expect "tune bad routing in a list" 2 "bad value 'uniform,bogus' for --routing" -- "$comet" tune --routing uniform,bogus
expect "bench takes one routing" 2 "^comet bench: bad value 'uniform,skew:0.05' for --routing" -- "$comet" bench --routing uniform,skew:0.05
expect "bench unknown model" 2 "unknown model preset 'nope'" "no CUDA GPU" -- "$comet" bench --model nope
expect "bench --save needs --backward" 2 "comet bench: --save .*give it with --backward" "no CUDA GPU" -- "$comet" bench --save
expect "bench --help mentions --save" 0 "^ +--save +with --backward" -- "$comet" bench --help
expect "bench bad --preheat" 2 "bad value '-1' for --preheat" -- "$comet" bench --preheat -1
expect "bench bad --order" 2 "bad value 'bcb' for --order" -- "$comet" bench --order bcb
expect "bench --help mentions --order" 0 "^ +--order baseline-first[|]comet-first[|]abba" -- "$comet" bench --help
expect "bench ep not dividing the experts" 2 "num_experts.*ep" "no CUDA GPU" -- "$comet" bench --model mixtral-8x7b --ep 3 --gpus 3
expect "bench --op gemm bad --only" 2 "bad value 'lay' for --only" -- "$comet" bench --op gemm --only lay
expect "bench --op gemm --help mentions --only layer" 0 "^ +--only dense[|]grouped[|]backward[|]layer" -- "$comet" bench --op gemm --help
expect "bench --op gemm --trace unwritable" 2 "cannot open --trace file '/nonexistent/t.jsonl'" "no CUDA GPU" -- "$comet" bench --op gemm --trace /nonexistent/t.jsonl
expect "bench --op gemm bad --sizes" 2 "bad value 'equal' for --sizes" -- "$comet" bench --op gemm --only layer --sizes equal
expect "bench --op gemm bad --tokens" 2 "bad value '4096' for --tokens" -- "$comet" bench --op gemm --only layer --tokens 4096
expect "bench --op gemm bad --layer" 2 "bad value '2' for --layer" -- "$comet" bench --op gemm --only layer --layer 2
expect "bench --op gemm bad --seed" 2 "bad value 'abc' for --seed" -- "$comet" bench --op gemm --seed abc
expect "bench --op gemm unknown model" 2 "unknown model preset 'nope'" "no CUDA GPU" -- "$comet" bench --op gemm --model nope
expect "bench --op dispatch unknown model" 2 "unknown model preset 'nope'" "no CUDA GPU" -- "$comet" bench --op dispatch --model nope
out=$("$comet" info 2>&1); rc=$?
gpu=1
if grep -q "^no GPU" <<<"$out"; then
  gpu=0
  [ "$rc" != 0 ] && echo "ok   info without a GPU says so and exits $rc" || { echo "FAIL info: no GPU but exit 0"; fail=1; }
elif [ "$rc" = 0 ] && grep -Eq "^[0-9]+ GPU\(s\):" <<<"$out"; then
  echo "ok   info lists GPUs"
else
  echo "FAIL info: rc=$rc"; echo "$out"; fail=1
fi
grep -q "NCCL (loaded)" <<<"$out" || { echo "FAIL info: no NCCL version"; fail=1; }
if [ "$gpu" = 0 ]; then # one plain line, never CUDA's "driver version is insufficient ..."
  expect "bench --op gemm without a GPU" 1 "^comet bench: no CUDA GPU found \(.+\)$" "insufficient" -- "$comet" bench --op gemm
  expect "bench without a GPU" 1 "^comet bench: no CUDA GPU found \(.+\)$" "insufficient" -- "$comet" bench
  expect "bench --op dispatch without a GPU" 1 "^comet bench: no CUDA GPU found \(.+\)$" "insufficient" -- "$comet" bench --op dispatch
  expect "tune without a GPU" 1 "^comet tune: no CUDA GPU found \(.+\)$" "insufficient" -- "$comet" tune
fi
exit $fail
