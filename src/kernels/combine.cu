/* combine.cu — token combine, in two kernels in stream order:
 *
 *   push    each rank sends its expert output rows y[r] home: row r came
 *           from (source s, token t, slot k) (the plan's row tables) and goes
 *           to s's window at ((t*K + k)*tp + tp_rank). Tasks of up to
 *           ROWS_PER_TASK rows of one (local expert, arrival j) block, grid-
 *           stride over warps, blocks visited by arrival j first so the
 *           ranks send to different homes at a time. A per-home counter
 *           (acq_rel, sys) finds the last task; it publishes cflag[q] =
 *           epoch on the home rank (release). Homes with no rows from us are
 *           published at the start by CTA 0.
 *   reduce  each rank waits until every rank's cflag reaches the epoch, then
 *           out[t] = sum over k ascending, then tp ascending, of
 *           w[t,k] * y, fp32 fma, one rounding at the end: the same bits on
 *           every run and every layout order. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/comm.h"
#include "kernels/nccl_dev.cuh"
#include "kernels/sync.cuh"
#include "plan_core.h"

#define ROWS_PER_TASK 4
#define COMBINE_THREADS 512
#define MAX_WORLD 64

template <int U>
static __device__ __forceinline__ void copy_row1(const char *__restrict__ src, char *dst, int n16,
                                                 int lane) {
  for (int base = 0; base < n16; base += 32 * U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * 32 + lane;
      if (j < n16) v[u] = ld_nc_na_v4(src + (size_t)j * 16);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * 32 + lane;
      if (j < n16) st_na_v4(dst + (size_t)j * 16, v[u]);
    }
  }
}

template <int U>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_push_kernel(comet_comm_view_t v,
                                                                       uint64_t epoch,
                                                                       const char *__restrict__ y) {
  if (v.status->code != COMET_ROUTE_OK) return;
  extern __shared__ int32_t task_prefix[]; /* [W*El + 1], blocks in (j, el) order */
  __shared__ char *peer[MAX_WORLD];
  __shared__ int32_t home_rows[MAX_WORLD]; /* rows to the home of arrival j */
  const int E = v.num_experts, K = v.topk, W = v.world, q = v.rank;
  const int El = E / v.ep, tp = v.tp, tp_i = q % tp;
  const int nb = W * El;
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16);
  const int32_t *bo = v.block_offset;
  for (int p = threadIdx.x; p < W; p += blockDim.x) peer[p] = comet_peer_base(v.win, v.win_local, p);
  if (threadIdx.x == 0) {
    int32_t acc = 0;
    for (int b = 0; b < nb; ++b) {
      const int j = b / El, el = b % El;
      task_prefix[b] = acc;
      const int32_t n = bo[el * (W + 1) + j + 1] - bo[el * (W + 1) + j];
      acc += (n + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    }
    task_prefix[nb] = acc;
  }
  for (int j = threadIdx.x; j < W; j += blockDim.x) {
    int32_t n = 0;
    for (int el = 0; el < El; ++el) n += bo[el * (W + 1) + j + 1] - bo[el * (W + 1) + j];
    home_rows[j] = n;
  }
  __syncthreads();
  if (blockIdx.x == 0)
    for (int j = threadIdx.x; j < W; j += blockDim.x)
      if (home_rows[j] == 0) {
        const int s = comet_plan_source(q, j, W);
        st_release_sys_u64((uint64_t *)(peer[s] + v.off_cflags) + q, epoch);
      }

  const int32_t *row_token = (const int32_t *)(v.win_local + v.off_row_token);
  const int32_t *row_slot = (const int32_t *)(v.win_local + v.off_row_slot);
  const int lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  const int ntasks = task_prefix[nb];
  for (int task = blockIdx.x * nwarps + threadIdx.x / 32; task < ntasks; task += gridDim.x * nwarps) {
    int lo = 0, hi = nb - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (task_prefix[mid] <= task) lo = mid;
      else hi = mid - 1;
    }
    const int j = lo / El, el = lo % El;
    const int s = comet_plan_source(q, j, W);
    const int32_t r0 = bo[el * (W + 1) + j] + (task - task_prefix[lo]) * ROWS_PER_TASK;
    const int nr = min(ROWS_PER_TASK, bo[el * (W + 1) + j + 1] - r0);
    for (int rr = 0; rr < nr; ++rr) {
      const int32_t r = r0 + rr;
      const size_t slot = ((size_t)row_token[r] * K + row_slot[r]) * tp + tp_i;
      copy_row1<U>(y + (size_t)r * row_bytes, peer[s] + v.off_ret + slot * row_bytes, n16, lane);
    }
    __syncwarp();
    if (lane == 0) {
      const uint32_t old = atom_add_acq_rel_sys_u32(&v.combine_done[j], (uint32_t)nr);
      if (old + (uint32_t)nr == (uint32_t)home_rows[j]) {
        v.combine_done[j] = 0;
        st_release_sys_u64((uint64_t *)(peer[s] + v.off_cflags) + q, epoch);
      }
    }
  }
}

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

/* A warp per token; each lane owns CH 16-byte chunks of the row at a time. */
#define CH 2
template <typename T>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_reduce_kernel(
    comet_comm_view_t v, uint64_t epoch, int num_tokens, const int32_t *__restrict__ ids,
    const float *__restrict__ w, char *__restrict__ out) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const int K = v.topk, W = v.world, tp = v.tp;
  if (threadIdx.x < W)
    wait_geq_acquire_sys((const uint64_t *)(v.win_local + v.off_cflags) + threadIdx.x, epoch,
                         "combine flag (home rank, sender)", v.rank, threadIdx.x);
  __syncthreads();
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16);
  const char *ret = v.win_local + v.off_ret;
  const int lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  for (int t = blockIdx.x * nwarps + threadIdx.x / 32; t < num_tokens; t += gridDim.x * nwarps) {
    for (int base = 0; base < n16; base += 32 * CH) {
      float acc[CH][8];
#pragma unroll
      for (int c = 0; c < CH; ++c)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[c][i] = 0.0f;
      for (int k = 0; k < K; ++k) {
        if (ids[(size_t)t * K + k] < 0) continue; /* dropped */
        const float wk = w[(size_t)t * K + k];
        for (int i = 0; i < tp; ++i) {
          const char *src = ret + (((size_t)t * K + k) * tp + i) * row_bytes;
          uint4 u[CH];
#pragma unroll
          for (int c = 0; c < CH; ++c) {
            const int jv = base + c * 32 + lane;
            if (jv < n16) u[c] = ld_v4(src + (size_t)jv * 16);
          }
#pragma unroll
          for (int c = 0; c < CH; ++c) {
            float f[8];
            vec8<T>::load(u[c], f);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[c][e] = __fmaf_rn(wk, f[e], acc[c][e]);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        const int jv = base + c * 32 + lane;
        if (jv < n16) *(uint4 *)(out + (size_t)t * row_bytes + (size_t)jv * 16) = vec8<T>::store(acc[c]);
      }
    }
  }
}


/* ---- pull combine: one kernel, no intermediate buffer ----
 * Each home rank reads its (t, k, tp) rows straight from the expert ranks'
 * windows (row dest_row of its own plan) and reduces them in registers in
 * the same fixed order. Needs y in every rank's window before it starts (the
 * plan's barrier, or the barrier after copying y in). A warp per token; per
 * lane up to SL slots x CH chunks of 16 bytes in flight before the FMAs. */
#define PULL_SL 4
template <typename T, int NCH>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_pull_kernel(
    comet_comm_view_t v, size_t y_off, int num_tokens, const int32_t *__restrict__ ids,
    const float *__restrict__ w, char *__restrict__ out) {
  if (v.status->code != COMET_ROUTE_OK) return;
  __shared__ char *peer[MAX_WORLD];
  const int K = v.topk, W = v.world, tp = v.tp, El = v.num_experts / v.ep;
  for (int p = threadIdx.x; p < W; p += blockDim.x) peer[p] = comet_peer_base(v.win, v.win_local, p) + y_off;
  __syncthreads();
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16);
  const int lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  const int nslots = K * tp;
  for (int t = blockIdx.x * nwarps + threadIdx.x / 32; t < num_tokens; t += gridDim.x * nwarps) {
    for (int base = 0; base < n16; base += 32 * NCH) {
      float acc[NCH][8];
#pragma unroll
      for (int c = 0; c < NCH; ++c)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[c][i] = 0.0f;
      for (int s0 = 0; s0 < nslots; s0 += PULL_SL) {
        const char *src[PULL_SL];
        float wk[PULL_SL];
#pragma unroll
        for (int u = 0; u < PULL_SL; ++u) {
          src[u] = NULL;
          const int sl = s0 + u;
          if (sl < nslots) {
            const int k = sl / tp, i = sl % tp;
            const int e = ids[(size_t)t * K + k];
            if (e >= 0) {
              const int q = (e / El) * tp + i;
              src[u] = peer[q] + (size_t)v.dest_row[((size_t)t * K + k) * tp + i] * row_bytes;
              wk[u] = w[(size_t)t * K + k];
            }
          }
        }
        uint4 x[PULL_SL][NCH];
#pragma unroll
        for (int u = 0; u < PULL_SL; ++u)
#pragma unroll
          for (int c = 0; c < NCH; ++c) {
            const int jv = base + c * 32 + lane;
            if (src[u] && jv < n16) x[u][c] = ld_nc_na_v4(src[u] + (size_t)jv * 16);
          }
#pragma unroll
        for (int u = 0; u < PULL_SL; ++u) {
          if (!src[u]) continue; /* dropped slot or past the end */
#pragma unroll
          for (int c = 0; c < NCH; ++c) {
            float f[8];
            vec8<T>::load(x[u][c], f);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[c][e] = __fmaf_rn(wk[u], f[e], acc[c][e]);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < NCH; ++c) {
        const int jv = base + c * 32 + lane;
        if (jv < n16) *(uint4 *)(out + (size_t)t * row_bytes + (size_t)jv * 16) = vec8<T>::store(acc[c]);
      }
    }
  }
}

/* Copies this rank's status->rows rows of y into the window's y region. */
__global__ void copy_y_kernel(comet_comm_view_t v, const char *__restrict__ y) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const size_t n = (size_t)v.status->rows * v.hidden * v.elem_bytes / 16;
  uint4 *dst = (uint4 *)(v.win_local + v.off_y);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = ld_nc_na_v4(y + i * 16);
}

/* pull (default) or push: env COMET_COMBINE_MODE. */
static int combine_pull_mode(void) {
  const char *m = getenv("COMET_COMBINE_MODE");
  return !(m && !strcmp(m, "push"));
}

static comet_status_t launch_check(const char *what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "launch of %s failed: %s", what, cudaGetErrorString(e));
  return COMET_OK;
}

extern "C" comet_status_t comet_combine_launch(const comet_comm_view_t *v, uint64_t epoch,
                                               const void *y, int num_tokens,
                                               const int32_t *ids, const float *w, void *out,
                                               int ctas, cudaStream_t stream) {
  COMET_ARG(ctas >= 1 && ctas <= 1024, "combine: ctas = %d must be in 1..1024", ctas);
  if (v->world > MAX_WORLD || v->world > COMBINE_THREADS)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "combine: world %d > %d", v->world, MAX_WORLD);
  const int fp16 = v->dtype == COMET_DTYPE_FP16;
  if (combine_pull_mode()) {
    size_t y_off = v->off_rows; /* NULL: the dispatched rows (a round trip) */
    if (y) {
      y_off = v->off_y;
      if ((const char *)y != v->win_local + v->off_y) {
        copy_y_kernel<<<ctas, COMBINE_THREADS, 0, stream>>>(*v, (const char *)y);
        COMET_CHECK(launch_check("copy_y_kernel"));
      }
    }
    /* Always (ranks may pass y differently): every rank's y is in place. */
    COMET_CHECK(comet_lsa_barrier_launch(v, stream));
    const int grid = ctas;
    if (fp16)
      combine_pull_kernel<__half, 4><<<grid, COMBINE_THREADS, 0, stream>>>(*v, y_off, num_tokens, ids, w, (char *)out);
    else
      combine_pull_kernel<__nv_bfloat16, 4><<<grid, COMBINE_THREADS, 0, stream>>>(*v, y_off, num_tokens, ids, w, (char *)out);
    COMET_CHECK(launch_check("combine_pull_kernel"));
    return COMET_OK;
  }
  const char *src = !y ? v->win_local + v->off_rows : (const char *)y;
  const int nb = v->world * (v->num_experts / v->ep);
  const size_t smem = sizeof(int32_t) * (size_t)(nb + 1);
  switch (comet_comm_unroll()) {
    case 4: combine_push_kernel<4><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, epoch, src); break;
    case 16: combine_push_kernel<16><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, epoch, src); break;
    default: combine_push_kernel<8><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, epoch, src); break;
  }
  COMET_CHECK(launch_check("combine_push_kernel"));
  if (fp16)
    combine_reduce_kernel<__half><<<ctas, COMBINE_THREADS, 0, stream>>>(*v, epoch, num_tokens, ids, w, (char *)out);
  else
    combine_reduce_kernel<__nv_bfloat16><<<ctas, COMBINE_THREADS, 0, stream>>>(*v, epoch, num_tokens, ids, w, (char *)out);
  COMET_CHECK(launch_check("combine_reduce_kernel"));
  return COMET_OK;
}
