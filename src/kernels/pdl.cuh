/* SPDX-License-Identifier: Apache-2.0 */
/* pdl.cuh — programmatic dependent launch (CUDA programming guide,
 * "Programmatic Dependent Launch and Synchronization") for the chains of
 * short kernels a call runs back to back (the device plan, the M-tile
 * list, the fused layer0; the combine's start, pull and poison): a kernel
 * launched by comet_launch_pdl may start while the kernel before it in the
 * stream still runs, so its launch no longer waits for that one's end.
 *
 * The rule: such a kernel calls comet_pdl_begin() first, before it reads or
 * writes any memory: it waits for everything before it in the stream to be
 * complete and visible (griddepcontrol.wait), then lets the next kernel
 * launch (griddepcontrol.launch_dependents; that one's own wait still
 * waits for all of this kernel). A kernel launched without the attribute
 * passes through both at once. The next kernel's CTAs only start once every
 * CTA of this one has started, so a waiting CTA never holds an SM that
 * this kernel still needs. COMET_PDL=0 in the environment (read once)
 * launches them plainly, for A/B timing: session 16 ran every GPU test with
 * it on but timed it against the plain launch only across runs. */
#ifndef COMET_PDL_CUH
#define COMET_PDL_CUH

#include <cuda_runtime.h>

#include <stdlib.h>
#include <string.h>

#include <utility>

#include "kernels/launch_check.cuh"

__device__ __forceinline__ void comet_pdl_begin() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

static inline bool comet_pdl_on(void) {
  static const bool on = [] {
    const char *e = getenv("COMET_PDL");
    return !(e && !strcmp(e, "0"));
  }();
  return on;
}

/* kernel<<<grid, block, smem, stream>>>(args...), allowed to overlap the
 * end of the stream's previous kernel (the kernel calls comet_pdl_begin()
 * first); a failed launch is COMET_ERR_CUDA naming `what`. */
template <typename... K, typename... A>
static comet_status_t comet_launch_pdl(const char *what, void (*kernel)(K...), dim3 grid,
                                       dim3 block, size_t smem, cudaStream_t stream,
                                       A &&...args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = comet_pdl_on() ? 1 : 0;
  return comet_launched_ex(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...), what);
}

#endif /* COMET_PDL_CUH */
