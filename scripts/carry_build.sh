#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# carry_build.sh — on the development machine (no GPU), build what a device
# call runs and copy it into .gpubin/ (ignored by git; name it in the device
# call's `carry`): the GPU tests, the comet command, and the Python wheel.
# The binaries link NCCL 2.28.9 (the headers here), the NCCL of torch's
# nvidia-nccl-cu13 wheel on the GPU machines: scripts/gpu_carried.sh points
# LD_LIBRARY_PATH at it. Building here saves the ~5 minutes of device time a
# build there costs.
# First scripts/ptxas_check.sh (spills, serialized wgmma: ~1 minute;
# SKIP_PTXAS=1 skips it).
#   usage: scripts/carry_build.sh [--no-wheel]
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.gpubin/" .git/info/exclude 2>/dev/null || echo "/.gpubin/" >> .git/info/exclude
make > /dev/null
if [ "${SKIP_PTXAS:-0}" != 1 ] && ! scripts/ptxas_check.sh > /tmp/comet_ptxas.txt; then
  cat /tmp/comet_ptxas.txt
  echo "carry_build: ptxas_check failed (above); SKIP_PTXAS=1 to carry anyway" >&2
  exit 1
fi
rm -rf .gpubin && mkdir -p .gpubin
cp build/comet .gpubin/
cp tuning/comet-tuning.txt .gpubin/ # found beside the binaries (tune/load.c)
for src in tests/gpu/test_*.cu tests/gpu/test_*.c; do # the GPU tests only
  [ -e "$src" ] || continue
  n=$(basename "${src%.*}")
  cp "build/$n" .gpubin/
done
if [ "${1:-}" != "--no-wheel" ]; then
  python3 -m pip wheel -q --no-deps . -w .gpubin/
fi
git rev-parse --short=10 HEAD > .gpubin/COMMIT
ls .gpubin
# The statically linked tests outgrow the 64 MiB a call carries: pack them
# (gzip: 4x smaller in 4 s); gpu_carried.sh unpacks bin.tgz where it finds it.
tar czf /tmp/comet_bin.tgz -C .gpubin . && rm -rf .gpubin/* && mv /tmp/comet_bin.tgz .gpubin/bin.tgz
du -sh .gpubin
