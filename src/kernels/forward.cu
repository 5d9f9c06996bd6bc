/* SPDX-License-Identifier: Apache-2.0 */
/* forward.cu — kernels that join the forward's steps: waiting for the
 * dispatched rows and poisoning the output of a call whose routing was
 * refused (GELU is the GEMM's epilogue, gemm.h COMET_GEMM_EPI_GELU). */
#include <stdint.h>

#include "error.h"
#include "kernels/forward.h"
#include "kernels/launch_check.cuh"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/pdl.cuh"
#include "plan_core.h"

__global__ void wait_dispatch_kernel(comet_comm_view_t v) {
  const int El = v.num_experts / v.ep, W = v.world;
  bool ok = v.status->code == COMET_ROUTE_OK;
  if (ok) {
    const uint64_t epoch = comet_epoch(v);
    const uint64_t *flags = (const uint64_t *)(v.win_local + v.off_dflags);
    for (int i = threadIdx.x; i < El * W && ok; i += blockDim.x)
      ok = comet_wait_geq(v, flags + i, epoch, COMET_WAIT_DISPATCH,
                          comet_plan_source(v.rank, i % W, W), i / W, i % W);
  }
  /* A refused plan's offsets may exceed the buffers, and rows of a wait that
   * gave up are incomplete: make every expert empty so that the GEMMs after
   * this do nothing. */
  if (!__syncthreads_and(ok))
    for (int i = threadIdx.x; i <= El; i += blockDim.x) v.expert_offset[i] = 0;
}

extern "C" comet_status_t comet_wait_dispatch_launch(const comet_comm_view_t *v,
                                                     cudaStream_t stream) {
  wait_dispatch_kernel<<<1, 256, 0, stream>>>(*v);
  return comet_launched("wait_dispatch_kernel");
}

__global__ void poison_kernel(const comet_route_status_t *status, uint4 *out, int64_t vecs,
                              uint32_t nan2) {
  comet_pdl_begin(); /* launched by comet_launch_pdl: nothing before this */
  if (status->code == COMET_ROUTE_OK) return;
  const uint4 nan = make_uint4(nan2, nan2, nan2, nan2);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vecs;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = nan;
}

extern "C" comet_status_t comet_poison_on_error_launch(const comet_comm_view_t *v, void *out,
                                                       int num_tokens, cudaStream_t stream) {
  return comet_poison_elems_on_error_launch(v, out, (int64_t)num_tokens * v->hidden, stream);
}

extern "C" comet_status_t comet_poison_elems_on_error_launch(const comet_comm_view_t *v, void *out,
                                                             int64_t elems, cudaStream_t stream) {
  if (elems <= 0) return COMET_OK;
  const int64_t vecs = elems * v->elem_bytes / 16;
  /* two quiet NaNs per 32-bit word, in the layer's dtype */
  const uint32_t nan2 = v->dtype == COMET_DTYPE_FP16 ? 0x7e007e00u : 0x7fc07fc0u;
  return comet_launch_pdl("poison_kernel", poison_kernel, 64, 256, 0, stream,
                          (const comet_route_status_t *)v->status, (uint4 *)out, vecs, nan2);
}
