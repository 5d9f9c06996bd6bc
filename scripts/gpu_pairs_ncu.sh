#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_pairs_ncu.sh — on a GPU machine with .gpubin/ carried: why the 2-CTA
# pairs run 0.70-0.81x single CTAs with ~1.9x their L2 traffic (session 6
# runs 2-3). One ncu run of Mixtral T=16384 with --ab and the pairs on: the
# warm-up runs each variant 3 times in turn, so launch 2 is the pairs' store
# and launch 5 the single CTAs' (--launch-skip 2 --launch-count 4: pairs,
# then single x3). Sections: SOL, memory workload with its tables (L2
# sectors by source and operation, the L1/TEX - L2 crossbar), warp state
# and source counters (where the consumers stall: the full barrier's
# try_wait, wgmma waits or the epilogue), into $OUT/ncu_pairs.txt.
#   usage: scripts/gpu_pairs_ncu.sh   (MODEL overrides the preset)
set -u -o pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
MODEL=${MODEL:-mixtral-8x7b}
COMET_GEMM_PAIRS=1 timeout 400 ncu -k regex:^gemm_kernel --launch-skip 2 --launch-count 4 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
  --section WarpStateStats --section SourceCounters --section SchedulerStats \
  --metrics lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_op_read.sum,lts__t_sectors_op_write.sum,lts__t_requests_srcunit_tex_op_read.sum,l1tex__m_xbar2l1tex_read_bytes.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
  $B/comet bench --op gemm --only grouped --ab --model $MODEL --quick --iters 1 > "$OUT/ncu_pairs.txt" 2>&1
note "ncu of the pairs' and single CTAs' store launches: exit $?"
finish
