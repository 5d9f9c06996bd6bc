# SPDX-License-Identifier: Apache-2.0
# gpu_env.sh — sourced by the device-machine scripts that run the binaries
# carried in $B (default .gpubin/, unpacked here): NCCL without NVLink multicast, the
# commit and device for the JSON rows, torch's NCCL (2.28.9, what the
# binaries were built against; the system NCCL there is older), the GPU
# count, and note(): a line for the summary, printed as it happens.
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
