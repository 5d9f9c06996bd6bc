# SPDX-License-Identifier: Apache-2.0
# gpu_env.sh — sourced by the device-machine scripts that run the binaries
# carried in $B (default .gpubin/, unpacked here): NCCL without NVLink multicast, the
# commit and device for the JSON rows, torch's NCCL (2.28.9, what the
# binaries were built against; the system NCCL there is older), the GPU
# count, $OUT (made), note(): a line for the summary, printed as it happens,
# and finish [KEEP...]: the summary into $OUT/summary.txt, then every other
# plain file there but the JSON Lines and the KEEP names packed into
# $OUT/logs.tgz (a device call brings back at most 8 files).
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
B=${B:-.gpubin}
[ -f $B/bin.tgz ] && tar xzf $B/bin.tgz -C $B && rm $B/bin.tgz # carry_build.sh packs them
export NCCL_NVLS_ENABLE=0
export COMET_COMMIT=$(cat $B/COMMIT 2>/dev/null || echo unknown)
export COMET_TEST_COMMIT=$COMET_COMMIT COMET_TEST_JSONL=$OUT/tests.jsonl
export COMET_TEST_DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
NCCL_LIB=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))')
export LD_LIBRARY_PATH=$NCCL_LIB:${LD_LIBRARY_PATH:-}
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
summary=()
note() { summary+=("$*"); echo "$*"; }
finish() {
  { echo "=== summary (commit $COMET_COMMIT, $COMET_TEST_DEVICE x$GPUS, $(date -u +%F)) ==="
    printf '%s\n' "${summary[@]}"; } > "$OUT/summary.txt"
  echo; cat "$OUT/summary.txt"
  local keep=(-name '*.jsonl' -o -name summary.txt -o -name logs.tgz) k
  for k in "$@"; do keep+=(-o -name "$k"); done
  (cd "$OUT" && find . -maxdepth 1 -type f ! \( "${keep[@]}" \) -printf '%P\n' > /tmp/comet_pack.txt &&
    tar czf /tmp/comet_logs.tgz -T /tmp/comet_pack.txt && xargs -a /tmp/comet_pack.txt rm -f &&
    mv /tmp/comet_logs.tgz logs.tgz)
}
