/* SPDX-License-Identifier: Apache-2.0 */
/* vec8.cuh — 16 bytes of bf16 or fp16 to 8 floats and back (round to
 * nearest even): the combine's and the fused layer1's fp32 sums. */
#ifndef COMET_VEC8_CUH
#define COMET_VEC8_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

template <typename T> struct vec8;
template <> struct vec8<__nv_bfloat16> {
  static __device__ __forceinline__ void load(const uint4 &u, float *f) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
    for (int i = 0; i < 4; ++i) {
      float2 p = __bfloat1622float2(h[i]);
      f[2 * i] = p.x;
      f[2 * i + 1] = p.y;
    }
  }
  static __device__ __forceinline__ uint4 store(const float *f) {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return u;
  }
};
template <> struct vec8<__half> {
  static __device__ __forceinline__ void load(const uint4 &u, float *f) {
    const __half2 *h = (const __half2 *)&u;
    for (int i = 0; i < 4; ++i) {
      float2 p = __half22float2(h[i]);
      f[2 * i] = p.x;
      f[2 * i + 1] = p.y;
    }
  }
  static __device__ __forceinline__ uint4 store(const float *f) {
    uint4 u;
    __half2 *h = (__half2 *)&u;
    for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    return u;
  }
};

#endif /* COMET_VEC8_CUH */
