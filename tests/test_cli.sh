#!/usr/bin/env bash
# test_cli.sh — the `comet` command: help, presets, version, bad commands, and
# `comet info`, which must either list GPUs (exit 0) or say plainly that there
# is none (exit non-zero).
set -u
comet="$1"
fail=0
expect() { # expect <what> <wanted rc> <regex> -- command...
  local what="$1" want="$2" re="$3"; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || ! grep -Eq "$re" <<<"$out"; then
    echo "FAIL $what: rc=$rc (wanted $want), output lacks /$re/ or differs:"; echo "$out" | head -20; fail=1
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
expect "bench unknown op" 2 "unknown --op 'frob'" -- "$comet" bench --op frob
out=$("$comet" info 2>&1); rc=$?
if grep -q "^no GPU" <<<"$out"; then
  [ "$rc" != 0 ] && echo "ok   info without a GPU says so and exits $rc" || { echo "FAIL info: no GPU but exit 0"; fail=1; }
elif [ "$rc" = 0 ] && grep -Eq "^[0-9]+ GPU\(s\):" <<<"$out"; then
  echo "ok   info lists GPUs"
else
  echo "FAIL info: rc=$rc"; echo "$out"; fail=1
fi
grep -q "NCCL (loaded)" <<<"$out" || { echo "FAIL info: no NCCL version"; fail=1; }
exit $fail
