/* SPDX-License-Identifier: Apache-2.0 */
/* act.cuh — the activations' element math in fp32, shared by the forward's
 * GELU kernel and the backward's activation and activation-gradient kernels
 * (GELU in its tanh form, as the CPU reference src/ref/ref_internal.h). */
#pragma once

#define COMET_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define COMET_GELU_C 0.044715f

/* the fast division, as the GEMM epilogue's SiLU (gemm_engine.cuh) */
static __device__ __forceinline__ float act_sigmoid(float g) { return __fdividef(1.0f, 1.0f + __expf(-g)); }

static __device__ __forceinline__ float act_gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(COMET_GELU_K * (x + COMET_GELU_C * x * x * x)));
}

static __device__ __forceinline__ float act_gelu_grad(float x) {
  const float th = tanhf(COMET_GELU_K * (x + COMET_GELU_C * x * x * x));
  return 0.5f * (1.0f + th) +
         0.5f * x * (1.0f - th * th) * COMET_GELU_K * (1.0f + 3.0f * COMET_GELU_C * x * x);
}
