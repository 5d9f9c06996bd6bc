/* SPDX-License-Identifier: Apache-2.0 */
/* combine.cu — token combine. Which slots count and where their rows are
 * come from the plan (slot_expert, dest_row, row tables), never from ids
 * passed again. A start kernel refuses a second combine of one plan and, for
 * the pull way, meets every rank (all y in place). Two ways (agreed at layer
 * creation): pull (default, below) and push, two kernels in stream order:
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
#include "kernels/comm/comm.h"
#include "kernels/comm/vec8.cuh"
#include "kernels/launch_check.cuh"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/pdl.cuh"
#include "plan_core.h"

#define ROWS_PER_TASK 4
#define COMBINE_THREADS 512

template <int U>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_push_kernel(comet_comm_view_t v,
                                                                       const char *__restrict__ y) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  extern __shared__ int32_t task_prefix[]; /* [W*El + 1], blocks in (j, el) order */
  __shared__ char *peer[COMET_MAX_WORLD];
  __shared__ int32_t home_rows[COMET_MAX_WORLD]; /* rows to the home of arrival j */
  const int E = v.num_experts, K = v.topk, W = v.world, q = v.rank;
  const int El = E / v.ep, tp = v.tp, tp_i = q % tp;
  const int nb = W * El;
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16);
  const int32_t *bo = v.block_offset;
  for (int p = threadIdx.x; p < W; p += blockDim.x) peer[p] = v.peer[p];
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
      copy_row<U>(y + (size_t)r * row_bytes, peer[s] + v.off_ret + slot * row_bytes, n16, lane);
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

/* A warp per token; each lane owns CH 16-byte chunks of the row at a time. */
#define CH 2
template <typename T>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_reduce_kernel(
    comet_comm_view_t v, int num_tokens, const float *__restrict__ w, char *__restrict__ out) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  const int K = v.topk, W = v.world, tp = v.tp;
  const int32_t *ids = v.slot_expert;
  bool ok = true;
  if (threadIdx.x < W)
    ok = comet_wait_geq(v, (const uint64_t *)(v.win_local + v.off_cflags) + threadIdx.x, epoch,
                        COMET_WAIT_COMBINE, threadIdx.x, v.rank, threadIdx.x);
  if (!__syncthreads_and(ok)) return; /* gave up: out is poisoned after */
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
 * the same fixed order. Needs y in every rank's window before it starts
 * (combine_start_kernel's barrier, after the copy of y when there is one). A
 * warp per token; per lane up to SL slots x CH chunks of 16 bytes in flight
 * before the FMAs. */
#define PULL_SL 4
template <typename T, int NCH>
__global__ void __launch_bounds__(COMBINE_THREADS) combine_pull_kernel(
    comet_comm_view_t v, size_t y_off, int num_tokens, const float *__restrict__ w,
    char *__restrict__ out) {
  comet_pdl_begin(); /* launched by comet_launch_pdl: nothing before this */
  if (v.status->code != COMET_ROUTE_OK) return;
  __shared__ char *peer[COMET_MAX_WORLD];
  const int K = v.topk, W = v.world, tp = v.tp, El = v.num_experts / v.ep;
  const int32_t *ids = v.slot_expert;
  for (int p = threadIdx.x; p < W; p += blockDim.x) peer[p] = v.peer[p] + y_off;
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

/* Refuses a second combine of one plan (guard: its rows would overwrite what
 * peers may still read), then, when meet is set, meets every rank: all y are
 * in place for the pull. The status is the same on every rank, so all skip
 * the barrier together. */
__global__ void __launch_bounds__(128) combine_start_kernel(comet_comm_view_t v, int guard, int meet) {
  comet_pdl_begin(); /* launched by comet_launch_pdl in the pull combine: nothing before this */
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  __shared__ int repeated;
  if (threadIdx.x == 0) {
    repeated = guard && *v.combined_epoch == epoch;
    if (repeated) v.status->code = COMET_ROUTE_REPEATED;
    else if (guard) *v.combined_epoch = epoch;
  }
  __syncthreads();
  if (!repeated && meet && v.world > 1) comet_barrier_cta(v, epoch, COMET_BAR_COMBINE);
}

/* Every rank's combine arguments (and whether this is a second
 * comet_gemm_combine of the plan) into every rank's window, a barrier, then
 * the first bad one (by rank) becomes everyone's status. */
static __device__ void combine_begin(const comet_comm_view_t &v, comet_arg_fault_t arg) {
  const uint64_t epoch = comet_epoch(v);
  if (threadIdx.x == 0 && arg.kind == COMET_ARG_NONE && *v.began_epoch == epoch)
    arg.kind = COMET_ARG_REPEATED;
  if (threadIdx.x == 0) *v.began_epoch = epoch;
  __shared__ comet_arg_fault_t a_s;
  if (threadIdx.x == 0) a_s = arg;
  __syncthreads();
  for (int p = threadIdx.x; p < v.world; p += blockDim.x)
    ((comet_arg_fault_t *)(v.peer[p] + v.off_argerr))[v.rank] = a_s;
  if (!comet_barrier_cta(v, epoch, COMET_BAR_COMBINE_BEGIN)) return;
  if (threadIdx.x == 0) {
    const comet_arg_fault_t *all = (const comet_arg_fault_t *)(v.win_local + v.off_argerr);
    for (int r = 0; r < v.world; ++r) {
      const comet_arg_fault_t a = all[r];
      if (a.kind != COMET_ARG_NONE) {
        comet_route_status_t st = *v.status;
        st.code = COMET_ROUTE_BAD_ARGS;
        st.rank = r;
        st.token = a.kind;
        st.slot = a.field;
        st.value = a.value;
        *v.status = st;
        break;
      }
    }
  }
}

__global__ void __launch_bounds__(128) combine_begin_kernel(comet_comm_view_t v, comet_arg_fault_t arg) {
  if (v.status->code == COMET_ROUTE_OK) combine_begin(v, arg);
  __syncthreads();
  /* refused: the layer1 GEMM that follows must touch no rows (peers may
   * still read this rank's y of the previous combine) */
  if (v.status->code != COMET_ROUTE_OK)
    for (int i = threadIdx.x; i <= v.num_experts / v.ep; i += blockDim.x) v.expert_offset[i] = 0;
  comet_status_mirror(v);
}

extern "C" comet_status_t comet_combine_guard_launch(const comet_comm_view_t *v, cudaStream_t stream) {
  combine_start_kernel<<<1, 128, 0, stream>>>(*v, 1, 0);
  return comet_launched("combine_start_kernel");
}

size_t comet_combine_smem(int mode, int El, int W) {
  return mode == COMET_COMBINE_PUSH ? sizeof(int32_t) * ((size_t)W * El + 1) : 0;
}

extern "C" comet_status_t comet_combine_begin_launch(const comet_comm_view_t *v,
                                                     const comet_arg_fault_t *arg, cudaStream_t stream) {
  const comet_arg_fault_t none = {COMET_ARG_NONE, 0, 0, 0};
  combine_begin_kernel<<<1, 128, 0, stream>>>(*v, arg ? *arg : none);
  return comet_launched("combine_begin_kernel");
}

template <typename T>
static comet_status_t launch_reduce(const comet_comm_view_t *v, const char *y, int num_tokens,
                                    const float *w, void *out, int ctas, cudaStream_t stream) {
  if (v->combine_mode == COMET_COMBINE_PULL) {
    size_t y_off = v->off_rows; /* NULL: the dispatched rows (a round trip) */
    const int copy = y && y != v->win_local + v->off_y;
    if (y) y_off = v->off_y;
    COMET_CHECK(comet_launch_pdl("combine_start_kernel", combine_start_kernel,
                                 1, 128, 0, stream, *v, 1, !copy));
    if (copy) { /* after the guard: a refused combine must not touch y */
      copy_y_kernel<<<ctas, COMBINE_THREADS, 0, stream>>>(*v, y);
      COMET_CHECK(comet_launched("copy_y_kernel"));
      combine_start_kernel<<<1, 128, 0, stream>>>(*v, 0, 1);
      COMET_CHECK(comet_launched("combine_start_kernel"));
    }
    return comet_launch_pdl("combine_pull_kernel", combine_pull_kernel<T, 4>, ctas, COMBINE_THREADS,
                            0, stream, *v, y_off, num_tokens, w, (char *)out);
  }
  combine_start_kernel<<<1, 128, 0, stream>>>(*v, 1, 0);
  COMET_CHECK(comet_launched("combine_start_kernel"));
  const char *src = y ? y : v->win_local + v->off_rows;
  const size_t smem = comet_combine_smem(v->combine_mode, v->num_experts / v->ep, v->world);
  if (smem > 48 * 1024)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "combine (push): %zu bytes of shared memory", smem);
  switch (comet_comm_unroll()) {
    case 4: combine_push_kernel<4><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, src); break;
    case 16: combine_push_kernel<16><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, src); break;
    default: combine_push_kernel<8><<<ctas, COMBINE_THREADS, smem, stream>>>(*v, src); break;
  }
  COMET_CHECK(comet_launched("combine_push_kernel"));
  combine_reduce_kernel<T><<<ctas, COMBINE_THREADS, 0, stream>>>(*v, num_tokens, w, (char *)out);
  return comet_launched("combine_reduce_kernel");
}

extern "C" comet_status_t comet_combine_launch(const comet_comm_view_t *v, const void *y,
                                               int num_tokens, const float *w, void *out, int ctas,
                                               cudaStream_t stream) {
  COMET_ARG(ctas >= 1 && ctas <= v->sm_budget, "combine: ctas = %d must be in 1..%d (the SM budget)",
            ctas, v->sm_budget);
  if (v->dtype == COMET_DTYPE_FP16)
    return launch_reduce<__half>(v, (const char *)y, num_tokens, w, out, ctas, stream);
  return launch_reduce<__nv_bfloat16>(v, (const char *)y, num_tokens, w, out, ctas, stream);
}
