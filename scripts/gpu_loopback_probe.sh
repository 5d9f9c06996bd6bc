#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_loopback_probe.sh — on a GPU machine with .gpubin/ carried: what the
# loopback first-call timeouts (docs/status.md, Known gaps 11) depend on.
# test_backward fails at W = 8 in most runs, after W = 2 and 4 ran in the
# same process; W = 2 and 4 alone pass. So: W = 8 alone (a fresh process,
# no earlier worlds' contexts and streams) REPS times, then 2,4,8 REPS
# times as before, each run's failure count in the summary.
#   usage: scripts/gpu_loopback_probe.sh   (REPS, default 3; TEST, default test_backward; LIMIT s a run, default 90;
#   NCCL_WORLDS, default 1: the NCCL worlds run first in each process, "none" for none)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
TEST=${TEST:-test_backward}
for worlds in 8 2,4,8; do
  for i in $(seq 1 ${REPS:-3}); do
    log="$OUT/${TEST}_w${worlds//,/_}_$i.log"
    s=$(date +%s)
    timeout ${LIMIT:-90} $B/$TEST --nccl ${NCCL_WORLDS:-1} --loopback $worlds > "$log" 2>&1
    note "$TEST --loopback $worlds #$i: exit $? in $(( $(date +%s) - s )) s," \
      "$(grep -c '^FAIL' "$log") failed checks, $(grep -c 'gave up after' "$log") give-ups," \
      "$(grep -om1 '[a-z]* work queues' "$log")"
  done
done
finish
