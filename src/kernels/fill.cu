/* SPDX-License-Identifier: Apache-2.0 */
/* fill.cu — fill.h's kernels: grid-stride loops, 16 bytes a thread where
 * both ends are 16-byte aligned, bytes otherwise (and for the tail). */
#include <cuda_runtime.h>
#include <stdint.h>

#include "error.h"
#include "kernels/fill.h"
#include "kernels/launch_check.cuh"

#define FILL_THREADS 256
#define FILL_MAX_CTAS 1024 /* none of these waits: a short grid-stride grid */

static __device__ __forceinline__ int64_t first_thread() {
  return blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ int64_t all_threads() { return (int64_t)gridDim.x * blockDim.x; }

/* vec: how many leading 16-byte units to handle as uint4 (0 if unaligned). */
__global__ void __launch_bounds__(FILL_THREADS) fill_bytes_kernel(uint8_t *p, uint8_t b, size_t n,
                                                                 size_t vec) {
  const uint32_t w = 0x01010101u * b;
  const uint4 q = make_uint4(w, w, w, w);
  for (int64_t i = first_thread(); i < (int64_t)vec; i += all_threads()) ((uint4 *)p)[i] = q;
  for (int64_t i = (int64_t)(vec * 16) + first_thread(); i < (int64_t)n; i += all_threads()) p[i] = b;
}

__global__ void __launch_bounds__(FILL_THREADS) copy_bytes_kernel(uint8_t *__restrict__ d,
                                                                 const uint8_t *__restrict__ s,
                                                                 size_t n, size_t vec) {
  for (int64_t i = first_thread(); i < (int64_t)vec; i += all_threads())
    ((uint4 *)d)[i] = ((const uint4 *)s)[i];
  for (int64_t i = (int64_t)(vec * 16) + first_thread(); i < (int64_t)n; i += all_threads()) d[i] = s[i];
}

static int ctas_for(size_t units) {
  const size_t c = (units + FILL_THREADS - 1) / FILL_THREADS;
  return c < 1 ? 1 : c > FILL_MAX_CTAS ? FILL_MAX_CTAS : (int)c;
}

extern "C" comet_status_t comet_fill_bytes_launch(void *p, int byte, size_t n, cudaStream_t s) {
  if (n == 0) return COMET_OK;
  COMET_ARG(p != NULL, "fill of %zu bytes: pointer is NULL", n);
  const size_t vec = (uintptr_t)p % 16 == 0 ? n / 16 : 0;
  fill_bytes_kernel<<<ctas_for(vec ? vec : n), FILL_THREADS, 0, s>>>((uint8_t *)p, (uint8_t)byte, n, vec);
  return comet_launched("fill_bytes_kernel");
}

extern "C" comet_status_t comet_copy_bytes_launch(void *dst, const void *src, size_t n,
                                                  cudaStream_t s) {
  if (n == 0) return COMET_OK;
  COMET_ARG(dst != NULL && src != NULL, "copy of %zu bytes: a pointer is NULL", n);
  const size_t vec = ((uintptr_t)dst | (uintptr_t)src) % 16 == 0 ? n / 16 : 0;
  copy_bytes_kernel<<<ctas_for(vec ? vec : n), FILL_THREADS, 0, s>>>((uint8_t *)dst,
                                                                     (const uint8_t *)src, n, vec);
  return comet_launched("copy_bytes_kernel");
}
