#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_l0_ncu.sh — on a GPU machine with .gpubin/ carried: why the fused
# layer0's GEMM alone (layer0_gemm_only_ms) runs ~20% slower than the
# composed layer0's GEMM on Mixtral at 2048 tokens, ~3% at 8192 (session 6
# run 6, session 7 run 2). First the W = 1 layer0 variants side by side
# (default, composed; scripts/gpu_l0_experiment.sh), then one ncu run per
# path of the same bench: the fused kernel's launches (layer0_kernel) with
# dynamic tiles (the default) and with static shares (COMET_L0_DYNAMIC=0:
# is the extra DRAM traffic of session 7 run 4 the work ring's?), and the
# composed path's GEMM launches (gemm_kernel*: fc1 and fc2 alternate),
# with SOL, memory, occupancy and launch sections and the DRAM / L2 / tensor
# counters, into $OUT/ncu_l0_{fused,static,composed}.txt.
#   usage: scripts/gpu_l0_ncu.sh   (MODEL, TOKENS override mixtral-8x7b, 2048)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODEL=${MODEL:-mixtral-8x7b}
TOKENS=${TOKENS:-2048}
VARIANTS="default composed" scripts/gpu_l0_experiment.sh mixtral-8x7b,phi3.5-moe 2048,8192 \
  > "$OUT/l0_experiment.log" 2>&1
note "layer0 variants (default, composed): $(tr '\n' ' ' < "$OUT/l0_experiment.log")"
METRICS=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_read.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__cycles_active.avg,gpu__time_duration.sum
for path in fused static composed; do
  case $path in
    fused) envs="COMET_L0_DYNAMIC=1"; kern="regex:layer0_kernel"; skip=2; count=2 ;;
    static) envs="COMET_L0_DYNAMIC=0"; kern="regex:layer0_kernel"; skip=2; count=2 ;;
    composed) envs="COMET_LAYER0=composed"; kern="regex:^gemm_kernel"; skip=4; count=4 ;;
  esac
  env $envs timeout 200 ncu -k "$kern" --launch-skip $skip --launch-count $count \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section WarpStateStats --metrics $METRICS \
    $B/comet bench --gpus 1 --model $MODEL --tokens $TOKENS --iters 2 > "$OUT/ncu_l0_$path.txt" 2>&1
  note "ncu of the $path layer0 ($MODEL, $TOKENS tokens): exit $?"
done
finish
