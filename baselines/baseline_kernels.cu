/* SPDX-License-Identifier: Apache-2.0 */
/* baseline_kernels.cu — the baseline's small kernels; see baseline_kernels.h.
 * All row copies move 16-byte vectors (H and F/tp are multiples of 8); the
 * activations' math is src/kernels/act.cuh's (the forward's silu/gelu are
 * the same formulas). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "baseline_kernels.h"
#include "comet.h"
#include "kernels/act.cuh"
#include "plan_core.h"

namespace {

constexpr int kWarps = COMET_BL_CHUNK / 32;

/* One CTA per chunk of COMET_BL_CHUNK slots: the rank of each slot among the
 * slots of its chunk with the same expert (warp match + per-warp counters),
 * and the chunk's per-expert totals. Also flags bad tokens. */
__global__ void route_rank_kernel(const int32_t *ids, int T, int K, int E, int32_t *chunk,
                                  int32_t *slot_rank, int32_t *status) {
  extern __shared__ int32_t s_cnt[]; /* [kWarps][E] */
  const int nslots = T * K;
  const int slot = blockIdx.x * COMET_BL_CHUNK + threadIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < kWarps * E; i += blockDim.x) s_cnt[i] = 0;
  __syncthreads();
  int e = -1;
  if (slot < nslots) {
    e = ids[slot];
    if (e < 0 || e >= E) e = -1;
    if (slot % K == 0) {
      int bad_k = 0;
      if (comet_plan_check_token(ids + slot, K, E, &bad_k) != COMET_TOKEN_OK) {
        atomicAdd(&status[COMET_BL_BAD_TOKENS], 1);
        atomicMax(&status[COMET_BL_FIRST_BAD], INT32_MAX - slot / K);
      }
    }
  }
  const unsigned peers = __match_any_sync(0xffffffffu, e);
  const int rank_in_warp = __popc(peers & ((1u << lane) - 1u));
  if (e >= 0 && lane == __ffs(peers) - 1) s_cnt[warp * E + e] = __popc(peers);
  __syncthreads();
  for (int x = threadIdx.x; x < E; x += blockDim.x) {
    int run = 0;
    for (int w = 0; w < kWarps; ++w) {
      const int c = s_cnt[w * E + x];
      s_cnt[w * E + x] = run;
      run += c;
    }
    chunk[(size_t)blockIdx.x * E + x] = run;
  }
  __syncthreads();
  if (slot < nslots) slot_rank[slot] = e >= 0 ? s_cnt[warp * E + e] + rank_in_warp : -1;
}

/* One CTA: per expert, the exclusive prefix over chunks (in place) and the
 * total; then base[e] = exclusive prefix over experts. */
__global__ void route_scan_kernel(int nchunks, int E, int32_t *chunk, int32_t *counts,
                                  int32_t *base) {
  for (int x = threadIdx.x; x < E; x += blockDim.x) {
    int run = 0;
    for (int c = 0; c < nchunks; ++c) {
      const int v = chunk[(size_t)c * E + x];
      chunk[(size_t)c * E + x] = run;
      run += v;
    }
    counts[x] = run;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int x = 0; x < E; ++x) {
      base[x] = run;
      run += counts[x];
    }
  }
}

/* pos[slot] = base[e] + chunk prefix + rank within the chunk (one thread a slot). */
__global__ void route_pos_kernel(const int32_t *ids, int nslots, int E, const int32_t *chunk,
                                 const int32_t *slot_rank, const int32_t *base, int32_t *pos) {
  const int slot = blockIdx.x * blockDim.x + threadIdx.x;
  if (slot >= nslots) return;
  const int e = ids[slot];
  pos[slot] = (e < 0 || e >= E)
                  ? -1
                  : base[e] + chunk[(size_t)(slot / COMET_BL_CHUNK) * E + e] + slot_rank[slot];
}

/* A warp per slot: copy token row x[t] to send[pos]. */
__global__ void permute_kernel(const int4 *x, const int32_t *pos, int nslots, int K, int vecs,
                               int4 *send) {
  const int64_t gw = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (gw >= nslots) return;
  const int p = pos[gw];
  if (p < 0) return;
  const int4 *src = x + (gw / K) * vecs;
  int4 *dst = send + (int64_t)p * vecs;
  for (int v = lane; v < vecs; v += 32) dst[v] = src[v];
}

/* A warp per destination row; the block is found by binary search. */
__global__ void copy_blocks_kernel(int4 *dst, const int4 *src, const int32_t *tab, int nb,
                                   int64_t total, int vecs) {
  const int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= total) return;
  int lo = 0, hi = nb - 1; /* last block with start <= row */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tab[3 * mid] <= row) lo = mid;
    else hi = mid - 1;
  }
  const int64_t srow = tab[3 * lo + 1] + (row - tab[3 * lo]);
  const int4 *s = src + srow * vecs;
  int4 *d = dst + row * vecs;
  for (int v = lane; v < vecs; v += 32) d[v] = s[v];
}

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f32(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* 8 outputs a thread: h[m, 8j..8j+7] from the gate (and up) vectors. */
template <typename T>
__global__ void activation_kernel(const T *g, T *h, int64_t M, int Fl, int act) {
  const int vpr = Fl / 8;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= M * vpr) return;
  const int64_t m = i / vpr;
  const int j = (int)(i % vpr) * 8;
  const int ld = act == COMET_ACT_SWIGLU ? 2 * Fl : Fl;
  union V { int4 v; T e[8]; } a, b, o;
  a.v = *reinterpret_cast<const int4 *>(g + m * ld + j);
  if (act == COMET_ACT_SWIGLU) b.v = *reinterpret_cast<const int4 *>(g + m * ld + Fl + j);
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    const float x = to_f32(a.e[q]);
    float y = x;
    if (act == COMET_ACT_SWIGLU) y = silu(x) * to_f32(b.e[q]);
    else if (act == COMET_ACT_GELU) y = gelu_tanh(x);
    o.e[q] = from_f32<T>(y);
  }
  *reinterpret_cast<int4 *>(h + m * Fl + j) = o.v;
}

/* A warp per token; 8 columns a lane per step; k in ascending order. */
template <typename T>
__global__ void combine_kernel(const T *y, const int32_t *pos, const float *w, int T_, int K,
                               int H, T *out) {
  const int64_t t = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (t >= T_) return;
  union V { int4 v; T e[8]; };
  for (int c = lane * 8; c < H; c += 32 * 8) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < K; ++k) {
      const int p = pos[t * K + k];
      if (p < 0) continue;
      const float wk = w ? w[t * K + k] : 1.0f;
      V r;
      r.v = *reinterpret_cast<const int4 *>(y + (int64_t)p * H + c);
#pragma unroll
      for (int q = 0; q < 8; ++q) acc[q] += wk * to_f32(r.e[q]);
    }
    V o;
#pragma unroll
    for (int q = 0; q < 8; ++q) o.e[q] = from_f32<T>(acc[q]);
    *reinterpret_cast<int4 *>(out + t * H + c) = o.v;
  }
}

/* A warp per slot: send[pos] = w * d[t], 8 columns a lane per step. */
template <typename T>
__global__ void permute_scaled_kernel(const T *d, const int32_t *pos, const float *w, int nslots,
                                      int K, int H, T *send) {
  const int64_t gw = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (gw >= nslots) return;
  const int p = pos[gw];
  if (p < 0) return;
  const float wk = w[gw];
  const T *src = d + (gw / K) * H;
  T *dst = send + (int64_t)p * H;
  union V { int4 v; T e[8]; };
  for (int c = lane * 8; c < H; c += 32 * 8) {
    V r, o;
    r.v = *reinterpret_cast<const int4 *>(src + c);
#pragma unroll
    for (int q = 0; q < 8; ++q) o.e[q] = from_f32<T>(wk * to_f32(r.e[q]));
    *reinterpret_cast<int4 *>(dst + c) = o.v;
  }
}

/* 8 columns a thread, in place: z's gate (and up) vectors become da's. */
template <typename T>
__global__ void act_backward_kernel(T *z, const T *dh, int64_t M, int Fl, int act) {
  const int vpr = Fl / 8;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= M * vpr) return;
  const int64_t m = i / vpr;
  const int j = (int)(i % vpr) * 8;
  const int swiglu = act == COMET_ACT_SWIGLU;
  T *zg = z + m * (swiglu ? 2 * Fl : Fl) + j;
  union V { int4 v; T e[8]; } g, u, d;
  g.v = *reinterpret_cast<const int4 *>(zg);
  d.v = *reinterpret_cast<const int4 *>(dh + m * Fl + j);
  if (swiglu) u.v = *reinterpret_cast<const int4 *>(zg + Fl);
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    const float x = to_f32(g.e[q]), dd = to_f32(d.e[q]);
    if (swiglu) {
      const float sg = act_sigmoid(x), up = to_f32(u.e[q]);
      g.e[q] = from_f32<T>(dd * up * sg * (1.0f + x * (1.0f - sg)));
      u.e[q] = from_f32<T>(dd * x * sg);
    } else {
      g.e[q] = from_f32<T>(dd * act_gelu_grad(x));
    }
  }
  *reinterpret_cast<int4 *>(zg) = g.v;
  if (swiglu) *reinterpret_cast<int4 *>(zg + Fl) = u.v;
}

/* A warp per slot: <d[t], y[pos]>, each lane's 8-column steps, then a
 * butterfly over the warp (pos is the warp's, so every lane shuffles). */
template <typename T>
__global__ void row_dots_kernel(const T *d, const T *y, const int32_t *pos, int nslots, int K,
                                int H, float *dot) {
  const int64_t gw = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (gw >= nslots) return;
  const int p = pos[gw];
  float acc = 0.0f;
  if (p >= 0) {
    const T *a = d + (gw / K) * H, *b = y + (int64_t)p * H;
    union V { int4 v; T e[8]; };
    for (int c = lane * 8; c < H; c += 32 * 8) {
      V ra, rb;
      ra.v = *reinterpret_cast<const int4 *>(a + c);
      rb.v = *reinterpret_cast<const int4 *>(b + c);
#pragma unroll
      for (int q = 0; q < 8; ++q) acc += to_f32(ra.e[q]) * to_f32(rb.e[q]);
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) dot[gw] = acc;
}

unsigned blocks_for(int64_t threads, int per_block) {
  return (unsigned)((threads + per_block - 1) / per_block);
}

}  // namespace

extern "C" cudaError_t comet_bl_route(const int32_t *ids, int T, int K, int E, int32_t *counts,
                                      int32_t *base, int32_t *pos, int32_t *chunk,
                                      int32_t *slot_rank, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(counts, 0, sizeof(int32_t) * (size_t)(E + COMET_BL_STATUS_SLOTS),
                                    stream);
  if (err != cudaSuccess) return err;
  const int nslots = T * K;
  const int nchunks = (nslots + COMET_BL_CHUNK - 1) / COMET_BL_CHUNK;
  const size_t smem = sizeof(int32_t) * kWarps * (size_t)E;
  if (smem > 48 * 1024) {
    err = cudaFuncSetAttribute(route_rank_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               (int)smem);
    if (err != cudaSuccess) return err;
  }
  if (nchunks > 0)
    route_rank_kernel<<<nchunks, COMET_BL_CHUNK, smem, stream>>>(ids, T, K, E, chunk, slot_rank,
                                                                  counts + E);
  route_scan_kernel<<<1, 1024, 0, stream>>>(nchunks, E, chunk, counts, base);
  if (nslots > 0)
    route_pos_kernel<<<blocks_for(nslots, 256), 256, 0, stream>>>(ids, nslots, E, chunk,
                                                                   slot_rank, base, pos);
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_permute(const void *x, const int32_t *pos, int T, int K, int H,
                                        void *send, cudaStream_t stream) {
  const int64_t nslots = (int64_t)T * K;
  if (nslots > 0)
    permute_kernel<<<blocks_for(nslots * 32, 256), 256, 0, stream>>>(
        (const int4 *)x, pos, (int)nslots, K, H / 8, (int4 *)send);
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_copy_blocks(void *dst, const void *src, const int32_t *tab, int nb,
                                            int64_t total_rows, int H, cudaStream_t stream) {
  if (total_rows > 0 && nb > 0)
    copy_blocks_kernel<<<blocks_for(total_rows * 32, 256), 256, 0, stream>>>(
        (int4 *)dst, (const int4 *)src, tab, nb, total_rows, H / 8);
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_activation(const void *g, void *h, int64_t M, int Fl, int act,
                                           int is_fp16, cudaStream_t stream) {
  const int64_t n = M * (Fl / 8);
  if (n > 0) {
    if (is_fp16)
      activation_kernel<__half><<<blocks_for(n, 256), 256, 0, stream>>>((const __half *)g,
                                                                        (__half *)h, M, Fl, act);
    else
      activation_kernel<__nv_bfloat16><<<blocks_for(n, 256), 256, 0, stream>>>(
          (const __nv_bfloat16 *)g, (__nv_bfloat16 *)h, M, Fl, act);
  }
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_combine(const void *y, const int32_t *pos, const float *w, int T,
                                        int K, int H, void *out, int is_fp16,
                                        cudaStream_t stream) {
  if (T > 0) {
    const unsigned nb = blocks_for((int64_t)T * 32, 256);
    if (is_fp16)
      combine_kernel<__half><<<nb, 256, 0, stream>>>((const __half *)y, pos, w, T, K, H,
                                                     (__half *)out);
    else
      combine_kernel<__nv_bfloat16><<<nb, 256, 0, stream>>>((const __nv_bfloat16 *)y, pos, w, T,
                                                            K, H, (__nv_bfloat16 *)out);
  }
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_permute_scaled(const void *d, const int32_t *pos, const float *w,
                                               int T, int K, int H, void *send, int is_fp16,
                                               cudaStream_t stream) {
  const int64_t nslots = (int64_t)T * K;
  if (nslots > 0) {
    const unsigned nb = blocks_for(nslots * 32, 256);
    if (is_fp16)
      permute_scaled_kernel<__half><<<nb, 256, 0, stream>>>((const __half *)d, pos, w, (int)nslots,
                                                            K, H, (__half *)send);
    else
      permute_scaled_kernel<__nv_bfloat16><<<nb, 256, 0, stream>>>(
          (const __nv_bfloat16 *)d, pos, w, (int)nslots, K, H, (__nv_bfloat16 *)send);
  }
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_act_backward(void *z, const void *dh, int64_t M, int Fl, int act,
                                             int is_fp16, cudaStream_t stream) {
  if (act != COMET_ACT_SWIGLU && act != COMET_ACT_GELU) return cudaErrorInvalidValue;
  const int64_t n = M * (Fl / 8);
  if (n > 0) {
    if (is_fp16)
      act_backward_kernel<__half><<<blocks_for(n, 256), 256, 0, stream>>>(
          (__half *)z, (const __half *)dh, M, Fl, act);
    else
      act_backward_kernel<__nv_bfloat16><<<blocks_for(n, 256), 256, 0, stream>>>(
          (__nv_bfloat16 *)z, (const __nv_bfloat16 *)dh, M, Fl, act);
  }
  return cudaGetLastError();
}

extern "C" cudaError_t comet_bl_row_dots(const void *d, const void *y, const int32_t *pos, int T,
                                         int K, int H, float *dot, int is_fp16,
                                         cudaStream_t stream) {
  const int64_t nslots = (int64_t)T * K;
  if (nslots > 0) {
    const unsigned nb = blocks_for(nslots * 32, 256);
    if (is_fp16)
      row_dots_kernel<__half><<<nb, 256, 0, stream>>>((const __half *)d, (const __half *)y, pos,
                                                      (int)nslots, K, H, dot);
    else
      row_dots_kernel<__nv_bfloat16><<<nb, 256, 0, stream>>>(
          (const __nv_bfloat16 *)d, (const __nv_bfloat16 *)y, pos, (int)nslots, K, H, dot);
  }
  return cudaGetLastError();
}
