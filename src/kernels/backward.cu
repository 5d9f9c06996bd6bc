/* SPDX-License-Identifier: Apache-2.0 */
/* backward.cu — the small kernels of the composed backward (src/backward.c)
 * around its dispatches, grouped GEMMs and combine:
 *
 *   row weights  each rank writes w[t,k] of its slots into the receivers'
 *                row_weight[dest_row] (window), then comet's barrier
 *   activation   h = act(z) (the save mode's forward)
 *   scale rows   D[r] *= row_weight[r] in place: dy
 *   act backward one pass over z and dh_u = D . w2 (D: dout's dispatched
 *                rows, unscaled): h = act(z); row_dot[r] = <dh_u[r], h[r]>
 *                (= <D[r], y[r]> with y = h . w2^T: no recomputed y); and
 *                d(fc1) = act'(z) . dh, dh = row_weight * dh_u (SwiGLU:
 *                [dh*u*silu'(g), dh*silu(g)])
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
#include "kernels/comm/vec8.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/launch_check.cuh"

#define BW_THREADS 256

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

/* The row kernels below: a CTA per row at a time, a thread per 8 values
 * (every width is a multiple of 8: config.c), no index division. */
static __device__ __forceinline__ uint4 ld8(const void *p, size_t row, int ld, int j8) {
  return ((const uint4 *)((const char *)p + (row * (size_t)ld + (size_t)j8 * 8) * 2))[0];
}
static __device__ __forceinline__ void st8(void *p, size_t row, int ld, int j8, uint4 u) {
  ((uint4 *)((char *)p + (row * (size_t)ld + (size_t)j8 * 8) * 2))[0] = u;
}

/* h = act(z) of one value: gate g, up u (SwiGLU). */
static __device__ __forceinline__ float act_fwd(int act, float g, float u) {
  return act == COMET_ACT_SWIGLU ? g * act_sigmoid(g) * u : act == COMET_ACT_GELU ? act_gelu(g) : g;
}

/* h [rows, F] = act(z), z [rows, N1] (the save mode's forward). */
template <typename T>
__global__ void activation_kernel(comet_comm_view_t v, const void *z, void *h, int F, int act) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int rows = rows_of(v), N1 = act == COMET_ACT_SWIGLU ? 2 * F : F;
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    for (int j8 = threadIdx.x; j8 < F / 8; j8 += blockDim.x) {
      float g[8], u[8] = {0}, o[8];
      vec8<T>::load(ld8(z, r, N1, j8), g);
      if (act == COMET_ACT_SWIGLU) vec8<T>::load(ld8(z, r, N1, F / 8 + j8), u);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = act_fwd(act, g[e], u[e]);
      st8(h, r, F, j8, vec8<T>::store(o));
    }
}

/* D[r] *= row_weight[r] in place, D [rows, H]. */
template <typename T>
__global__ void scale_rows_kernel(comet_comm_view_t v, void *D) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int H = v.hidden, rows = rows_of(v);
  const float *wr = (const float *)(v.win_local + v.off_row_weight);
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const float w = wr[r];
    for (int j8 = threadIdx.x; j8 < H / 8; j8 += blockDim.x) {
      float x[8];
      vec8<T>::load(ld8(D, r, H, j8), x);
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] *= w;
      st8(D, r, H, j8, vec8<T>::store(x));
    }
  }
}

/* One pass over a row of z and dh_u [rows, F] (the GEMM of the unscaled
 * dout rows; dh = row_weight * dh_u), a CTA per row: h = act(z) (stored:
 * dw2 reads it), row_dot[r] = <dh_u[r], h[r]> with h as stored (= <D[r],
 * y[r]>: d topk_weights' part from this rank), and da [rows, N1] =
 * act'(z) . dh. */
template <typename T>
__global__ void __launch_bounds__(BW_THREADS) act_backward_kernel(comet_comm_view_t v, const void *z,
                                                                   const void *dh, void *da, void *h,
                                                                   int F, int act) {
  if (v.status->code != COMET_ROUTE_OK) return;
  __shared__ float part[BW_THREADS / 32];
  const int rows = rows_of(v), N1 = act == COMET_ACT_SWIGLU ? 2 * F : F;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float *wr = (const float *)(v.win_local + v.off_row_weight);
  float *dot = (float *)(v.win_local + v.off_row_dot);
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const float w = wr[r];
    float acc = 0.0f;
    for (int j8 = threadIdx.x; j8 < F / 8; j8 += blockDim.x) {
      float d[8], g[8], u[8] = {0}, hf[8], o[8];
      vec8<T>::load(ld8(dh, r, F, j8), d);
      vec8<T>::load(ld8(z, r, N1, j8), g);
      if (act == COMET_ACT_SWIGLU) vec8<T>::load(ld8(z, r, N1, F / 8 + j8), u);
#pragma unroll
      for (int e = 0; e < 8; ++e) hf[e] = act_fwd(act, g[e], u[e]);
      const uint4 hv = vec8<T>::store(hf);
      st8(h, r, F, j8, hv);
      vec8<T>::load(hv, hf); /* the dot sees h as dw2 will */
#pragma unroll
      for (int e = 0; e < 8; ++e) acc = __fmaf_rn(d[e], hf[e], acc);
      if (act == COMET_ACT_SWIGLU) {
        float o2[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float s = act_sigmoid(g[e]), de = w * d[e];
          o[e] = de * u[e] * s * (1.0f + g[e] * (1.0f - s));
          o2[e] = de * g[e] * s;
        }
        st8(da, r, N1, F / 8 + j8, vec8<T>::store(o2));
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e)
          o[e] = act == COMET_ACT_GELU ? w * d[e] * act_gelu_grad(g[e]) : w * d[e];
      }
      st8(da, r, N1, j8, vec8<T>::store(o));
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float t = 0.0f;
      for (int q = 0; q < BW_THREADS / 32; ++q) t += part[q];
      dot[r] = t;
    }
    __syncthreads(); /* part is rewritten for the next row */
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

/* Grid-stride grids of `ctas` CTAs, at most 8 per SM of the rank's budget
 * (none of these kernels waits). */
static int grid_of(const comet_comm_view_t *v, int64_t ctas) {
  const int64_t cap = (int64_t)v->sm_budget * 8;
  return ctas < 1 ? 1 : ctas > cap ? (int)cap : (int)ctas;
}
static int blocks_for(const comet_comm_view_t *v, int64_t n) { /* a thread per element */
  return grid_of(v, (n + BW_THREADS - 1) / BW_THREADS);
}
static int rows_grid(const comet_comm_view_t *v) { return grid_of(v, v->row_capacity); } /* a CTA a row */

extern "C" comet_status_t comet_bw_row_weights_launch(const comet_comm_view_t *v, int T,
                                                      const float *w, cudaStream_t s) {
  if (T > 0) {
    row_weights_kernel<<<blocks_for(v, (int64_t)T * v->topk), BW_THREADS, 0, s>>>(*v, T, w);
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
  const int grid = rows_grid(v);
  BW_DISPATCH(activation_kernel, *v, z, h, F, act);
}

extern "C" comet_status_t comet_bw_scale_rows_launch(const comet_comm_view_t *v, void *D,
                                                     cudaStream_t s) {
  const int grid = rows_grid(v);
  BW_DISPATCH(scale_rows_kernel, *v, D);
}

extern "C" comet_status_t comet_bw_act_backward_launch(const comet_comm_view_t *v, const void *z,
                                                       const void *dh, void *da, void *h, int F,
                                                       int act, cudaStream_t s) {
  const int grid = rows_grid(v);
  BW_DISPATCH(act_backward_kernel, *v, z, dh, da, h, F, act);
}

extern "C" comet_status_t comet_bw_topk_grad_launch(const comet_comm_view_t *v, int T, float *dtw,
                                                    cudaStream_t s) {
  if (T <= 0) return COMET_OK;
  topk_grad_kernel<<<blocks_for(v, (int64_t)T * v->topk), BW_THREADS, 0, s>>>(*v, T, dtw);
  return comet_launched("topk_grad_kernel");
}

extern "C" comet_status_t comet_bw_fill_launch(const comet_comm_view_t *v, float *p, int64_t n,
                                               float x, cudaStream_t s) {
  if (n <= 0) return COMET_OK;
  fill_kernel<<<blocks_for(v, n), BW_THREADS, 0, s>>>(p, n, x);
  return comet_launched("fill_kernel");
}
