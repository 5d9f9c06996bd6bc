/* SPDX-License-Identifier: Apache-2.0 */
/* launch_check.cuh — the two checks around every kernel launch of the
 * communication and forward kernels: the launch's own error, and raising a
 * kernel's dynamic shared-memory limit past the default 48 KiB. */
#ifndef COMET_LAUNCH_CHECK_CUH
#define COMET_LAUNCH_CHECK_CUH

#include <cuda_runtime.h>

#include "error.h"

/* COMET_ERR_CUDA naming the kernel if its launch failed: e, the error a
 * launch returned (comet_launch_pdl), or else the runtime's last error
 * (cleared either way). */
static inline comet_status_t comet_launched_ex(cudaError_t e, const char *what) {
  const cudaError_t last = cudaGetLastError();
  if (e == cudaSuccess) e = last;
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "launch of %s failed: %s", what, cudaGetErrorString(e));
  return COMET_OK;
}

/* The same after a <<<...>>> launch. */
static inline comet_status_t comet_launched(const char *what) {
  return comet_launched_ex(cudaSuccess, what);
}

/* Lets fn take `bytes` of dynamic shared memory (no-op up to 48 KiB). */
static inline comet_status_t comet_allow_smem(const void *fn, size_t bytes, const char *what) {
  if (bytes <= 48 * 1024) return COMET_OK;
  cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "%s needs %zu bytes of shared memory: %s", what,
                           bytes, cudaGetErrorString(e));
  return COMET_OK;
}

#endif /* COMET_LAUNCH_CHECK_CUH */
