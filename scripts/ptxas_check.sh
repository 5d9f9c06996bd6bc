#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ptxas_check.sh — on the development machine, after `make`: compiles every
# library kernel source again with ptxas's report (the build's own flags,
# from build/CMakeFiles/comet_objects.dir/flags.make) and fails when a
# kernel spills registers or when ptxas serializes its wgmma ("Potential
# Performance Loss", C7510 / C7520). Both cost device sessions their time
# before they were seen: the first ordered split spilled and lost 10-20%
# (session 5), a branch around one tile's wgmma serialized the whole kernel
# and ran it at 0.64x (session 12). Spills outside the GEMM engine's
# sources (src/kernels/gemm, src/kernels/fused) are reported, not failed:
# dispatch_tma_kernel's 12 bytes (the opt-in TMA dispatch) since before
# this check. scripts/carry_build.sh runs it.
#   usage: scripts/ptxas_check.sh   (prints each offending kernel; exit 1 if any)
set -euo pipefail
cd "$(dirname "$0")/.."
flags=build/CMakeFiles/comet_objects.dir/flags.make
[ -f "$flags" ] || { echo "ptxas_check: no $flags (run make first)" >&2; exit 2; }
get() { sed -n "s/^$1 = //p" "$flags"; }
eval "opts=($(get CUDA_FLAGS) $(get CUDA_DEFINES))"
inc=$(get CUDA_INCLUDES)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
srcs=(src/kernels/*.cu src/kernels/*/*.cu)
i=0
for f in "${srcs[@]}"; do # two at a time (this machine has 2 cores)
  (cd build && nvcc "${opts[@]}" $inc -Xptxas -v -c "../$f" -o "$tmp/$i.o" > "$tmp/$i.log" 2>&1 ||
     echo "ptxas_check: $f does not compile" >> "$tmp/$i.log") &
  i=$((i + 1))
  (( i % 2 == 0 )) && wait
done
wait
bad=0
for j in $(seq 0 $((i - 1))); do
  f=${srcs[$j]}
  kernels=$(grep -c "Compiling entry function" "$tmp/$j.log" || true)
  # "Compiling entry function 'X'" is followed by its "N bytes spill stores" line
  spills=$(awk "/Compiling entry function/ {k=\$0} /bytes spill/ && !/ 0 bytes spill stores, 0 bytes spill loads/ {print \"  spills: \" k; print \"    \" \$0}" "$tmp/$j.log")
  perf=$(grep -E "C75[0-9][0-9]|Potential Performance Loss|does not compile" "$tmp/$j.log" | sed 's/^/  /' || true)
  hot=0; case $f in src/kernels/gemm/* | src/kernels/fused/*) hot=1 ;; esac
  if [ -n "$perf" ] || { [ -n "$spills" ] && [ $hot = 1 ]; }; then
    bad=1
    echo "$f: FAILS"
    [ -n "$spills" ] && echo "$spills"
    [ -n "$perf" ] && echo "$perf"
  elif [ -n "$spills" ]; then
    echo "$f: (spills outside the GEMM engine, reported only)"
    echo "$spills"
  else
    echo "$f: $kernels kernels, no spills, no serialized wgmma"
  fi
done
exit $bad
