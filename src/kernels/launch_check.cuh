/* SPDX-License-Identifier: Apache-2.0 */
/* launch_check.cuh — the two checks around every kernel launch of the
 * communication and forward kernels: the launch's own error, and raising a
 * kernel's dynamic shared-memory limit past the default 48 KiB. */
#ifndef COMET_LAUNCH_CHECK_CUH
#define COMET_LAUNCH_CHECK_CUH

#include <cuda_runtime.h>

#include "error.h"

/* COMET_ERR_CUDA naming the kernel if its launch failed. */
static inline comet_status_t comet_launched(const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "launch of %s failed: %s", what, cudaGetErrorString(e));
  return COMET_OK;
}

/* The same for a launch that returned its error (comet_launch_pdl). */
static inline comet_status_t comet_launched_ex(cudaError_t e, const char *what) {
  const cudaError_t last = cudaGetLastError(); /* cleared either way */
  if (e == cudaSuccess) e = last;
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "launch of %s failed: %s", what, cudaGetErrorString(e));
  return COMET_OK;
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
