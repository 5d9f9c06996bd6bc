/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_launch.cuh — what a fused kernel needs from the GEMM's host side
 * (gemm.cu): the tile shape chosen for its params, the three tensor maps
 * and the engine's arguments, so that it can run gemm_engine_run<C> in its
 * own CTAs with the same choices a standalone launch would make. C++ only
 * (the fused kernels' launchers). */
#ifndef COMET_GEMM_LAUNCH_CUH
#define COMET_GEMM_LAUNCH_CUH

#include <cuda.h>

#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_engine.cuh"

namespace comet_gemm {

struct Prepared {
  CUtensorMap tm_a, tm_b, tm_c;
  Args args;
  bool wide; /* Cfg<256, ...> (else Cfg<128, ...>), with hooks */
  bool deep; /* wide with the 4-stage ring (Cfg's kDeep): params.stages = 4, <= 128 groups */
  int smem;  /* the Cfg's dynamic shared memory */
};

/* Checks p (hooks on, num_ctas = the GEMM CTAs of the fused kernel), picks
 * the tile shape for num_ctas CTAs, builds the maps and arguments. */
comet_status_t prepare(const comet_gemm_params_t *p, Prepared *out);

} /* namespace comet_gemm */

#endif
