/* SPDX-License-Identifier: Apache-2.0 */
/* backward.cu — the small kernels of the composed backward (src/backward.c)
 * around its dispatches, grouped GEMMs and combine:
 *
 *   row weights  each rank writes w[t,k] of its slots into the receivers'
 *                row_weight[dest_row] (window), then comet's barrier
 *   activation   h = act(z) from the recomputed fc1 output z
 *   row dot      row_dot[r] = <D[r], y[r]> (D: dout's dispatched rows)
 *   scale rows   D[r] *= row_weight[r] in place: dy
 *   act backward d(fc1) = act'(z) . dh (SwiGLU: [dh*u*silu'(g), dh*silu(g)])
 *   topk grad    d topk_weights[t,k] = sum over tp of row_dot at (k, i) on
 *                the experts' ranks (0 for a dropped slot)
 *   ones         the unit weights of dx's combine
 *
 * Element math in fp32, one rounding to the dtype per stored value, as the
 * CPU reference (src/ref/ref_backward.c) rounds its stored values. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "error.h"
#include "kernels/act.cuh"
#include "kernels/backward.h"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/launch_check.cuh"

#define BW_THREADS 256

template <typename T> struct el;
template <> struct el<__nv_bfloat16> {
  static __device__ __forceinline__ float ld(const void *p, size_t i) {
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  }
  static __device__ __forceinline__ void st(void *p, size_t i, float v) {
    ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
  }
};
template <> struct el<__half> {
  static __device__ __forceinline__ float ld(const void *p, size_t i) {
    return __half2float(((const __half *)p)[i]);
  }
  static __device__ __forceinline__ void st(void *p, size_t i, float v) {
    ((__half *)p)[i] = __float2half_rn(v);
  }
};

static __device__ __forceinline__ int rows_of(const comet_comm_view_t &v) {
  return v.expert_offset[v.num_experts / v.ep];
}


/* One thread per own slot (t, k): its weight into each receiver's row. */
__global__ void row_weights_kernel(comet_comm_view_t v, int T, const float *__restrict__ w) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int K = v.topk, tp = v.tp, El = v.num_experts / v.ep;
  for (int64_t tk = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; tk < (int64_t)T * K;
       tk += (int64_t)gridDim.x * blockDim.x) {
    const int e = v.slot_expert[tk];
    if (e < 0) continue;
    for (int i = 0; i < tp; ++i) {
      const int q = (e / El) * tp + i;
      const int32_t r = v.dest_row[tk * tp + i];
      ((float *)(v.peer[q] + v.off_row_weight))[r] = w[tk];
    }
  }
}

__global__ void __launch_bounds__(128) backward_barrier_kernel(comet_comm_view_t v, int index) {
  if (v.status->code != COMET_ROUTE_OK) return;
  comet_barrier_cta(v, comet_epoch(v), index);
}

template <typename T>
__global__ void activation_kernel(comet_comm_view_t v, const void *z, void *h, int F, int act) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int64_t n = (int64_t)rows_of(v) * F;
  const int N1 = act == COMET_ACT_SWIGLU ? 2 * F : F;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / F;
    const int j = (int)(i - r * F);
    const float g = el<T>::ld(z, r * N1 + j);
    float o = g;
    if (act == COMET_ACT_SWIGLU) o = g * act_sigmoid(g) * el<T>::ld(z, r * N1 + F + j);
    else if (act == COMET_ACT_GELU) o = act_gelu(g);
    el<T>::st(h, i, o);
  }
}

/* A warp per row: row_dot[r] = <D[r], y[r]> over H. */
template <typename T>
__global__ void row_dot_kernel(comet_comm_view_t v, const void *D, const void *y) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int H = v.hidden, rows = rows_of(v), lane = threadIdx.x % 32;
  float *dot = (float *)(v.win_local + v.off_row_dot);
  for (int r = (blockIdx.x * blockDim.x + threadIdx.x) / 32; r < rows;
       r += gridDim.x * blockDim.x / 32) {
    float acc = 0.0f;
    for (int j = lane; j < H; j += 32)
      acc += el<T>::ld(D, (size_t)r * H + j) * el<T>::ld(y, (size_t)r * H + j);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) dot[r] = acc;
  }
}

template <typename T>
__global__ void scale_rows_kernel(comet_comm_view_t v, void *D) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int H = v.hidden;
  const int64_t n = (int64_t)rows_of(v) * H;
  const float *wr = (const float *)(v.win_local + v.off_row_weight);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    el<T>::st(D, i, el<T>::ld(D, i) * wr[i / H]);
}

template <typename T>
__global__ void act_backward_kernel(comet_comm_view_t v, const void *z, const void *dh, void *da,
                                    int F, int act) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int64_t n = (int64_t)rows_of(v) * F;
  const int N1 = act == COMET_ACT_SWIGLU ? 2 * F : F;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / F;
    const int j = (int)(i - r * F);
    const float d = el<T>::ld(dh, i), g = el<T>::ld(z, r * N1 + j);
    if (act == COMET_ACT_SWIGLU) {
      const float u = el<T>::ld(z, r * N1 + F + j), s = act_sigmoid(g);
      el<T>::st(da, r * N1 + j, d * u * s * (1.0f + g * (1.0f - s)));
      el<T>::st(da, r * N1 + F + j, d * g * s);
    } else if (act == COMET_ACT_GELU) {
      el<T>::st(da, i, d * act_gelu_grad(g));
    } else {
      el<T>::st(da, i, d);
    }
  }
}

/* Home: d topk_weights[t,k] = sum over tp (ascending) of row_dot on the
 * expert's ranks. Runs after a barrier that follows every rank's row dot. */
__global__ void topk_grad_kernel(comet_comm_view_t v, int T, float *__restrict__ dtw) {
  const int K = v.topk, tp = v.tp, El = v.num_experts / v.ep;
  const bool ok = v.status->code == COMET_ROUTE_OK;
  for (int64_t tk = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; tk < (int64_t)T * K;
       tk += (int64_t)gridDim.x * blockDim.x) {
    const int e = v.slot_expert[tk];
    float acc = ok ? 0.0f : __int_as_float(0x7fc00000); /* a refused call: NaN */
    if (ok && e >= 0)
      for (int i = 0; i < tp; ++i) {
        const int q = (e / El) * tp + i;
        acc += ld_cg_f32((const float *)(v.peer[q] + v.off_row_dot) + v.dest_row[tk * tp + i]);
      }
    dtw[tk] = acc;
  }
}

__global__ void fill_kernel(float *p, int64_t n, float x) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    p[i] = x;
}

static int blocks_for(int64_t n) {
  int64_t b = (n + BW_THREADS - 1) / BW_THREADS;
  if (b > 132 * 8) b = 132 * 8;
  return b < 1 ? 1 : (int)b;
}

extern "C" comet_status_t comet_bw_row_weights_launch(const comet_comm_view_t *v, int T,
                                                      const float *w, cudaStream_t s) {
  if (T > 0) {
    row_weights_kernel<<<blocks_for((int64_t)T * v->topk), BW_THREADS, 0, s>>>(*v, T, w);
    COMET_CHECK(comet_launched("row_weights_kernel"));
  }
  return comet_bw_barrier_launch(v, COMET_BAR_BACKWARD, s);
}

extern "C" comet_status_t comet_bw_barrier_launch(const comet_comm_view_t *v, int index,
                                                  cudaStream_t s) {
  if (v->world == 1) return COMET_OK;
  backward_barrier_kernel<<<1, 128, 0, s>>>(*v, index);
  return comet_launched("backward_barrier_kernel");
}

#define BW_DISPATCH(KERNEL, ...)                                                          \
  do {                                                                                    \
    if (v->dtype == COMET_DTYPE_FP16) KERNEL<__half><<<grid, BW_THREADS, 0, s>>>(__VA_ARGS__); \
    else KERNEL<__nv_bfloat16><<<grid, BW_THREADS, 0, s>>>(__VA_ARGS__);                 \
    return comet_launched(#KERNEL);                                                       \
  } while (0)

extern "C" comet_status_t comet_bw_activation_launch(const comet_comm_view_t *v, const void *z,
                                                     void *h, int F, int act, cudaStream_t s) {
  const int grid = blocks_for(v->row_capacity * F);
  BW_DISPATCH(activation_kernel, *v, z, h, F, act);
}

extern "C" comet_status_t comet_bw_row_dot_launch(const comet_comm_view_t *v, const void *D,
                                                  const void *y, cudaStream_t s) {
  const int grid = blocks_for(v->row_capacity * 32);
  BW_DISPATCH(row_dot_kernel, *v, D, y);
}

extern "C" comet_status_t comet_bw_scale_rows_launch(const comet_comm_view_t *v, void *D,
                                                     cudaStream_t s) {
  const int grid = blocks_for(v->row_capacity * v->hidden);
  BW_DISPATCH(scale_rows_kernel, *v, D);
}

extern "C" comet_status_t comet_bw_act_backward_launch(const comet_comm_view_t *v, const void *z,
                                                       const void *dh, void *da, int F, int act,
                                                       cudaStream_t s) {
  const int grid = blocks_for(v->row_capacity * F);
  BW_DISPATCH(act_backward_kernel, *v, z, dh, da, F, act);
}

extern "C" comet_status_t comet_bw_topk_grad_launch(const comet_comm_view_t *v, int T, float *dtw,
                                                    cudaStream_t s) {
  if (T <= 0) return COMET_OK;
  topk_grad_kernel<<<blocks_for((int64_t)T * v->topk), BW_THREADS, 0, s>>>(*v, T, dtw);
  return comet_launched("topk_grad_kernel");
}

extern "C" comet_status_t comet_bw_fill_launch(float *p, int64_t n, float x, cudaStream_t s) {
  if (n <= 0) return COMET_OK;
  fill_kernel<<<blocks_for(n), BW_THREADS, 0, s>>>(p, n, x);
  return comet_launched("fill_kernel");
}
