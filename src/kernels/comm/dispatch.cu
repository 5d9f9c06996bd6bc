/* SPDX-License-Identifier: Apache-2.0 */
/* dispatch.cu — token dispatch: every (t, k) of this rank sends row x[t] to
 * each rank of expert ids[t,k]'s group (row dest_row of the plan), pushing
 * 16-byte vectors through LSA pointers into the receivers' windows.
 *
 * Work: tasks of a few rows of one expert, taken grid-stride by warps
 * (dispatch_push.cuh, shared with the fused layer0's movers).
 *
 * Flags: after its rows, a warp adds them to dispatch_done[e] (acq_rel, sys);
 * the warp whose add completes the expert's rows resets the counter and
 * publishes flag (el, j) = epoch on every receiving rank with a release
 * store. The release sequence through the counter carries every earlier
 * warp's row stores, so a consumer that acquires the flag sees all rows.
 * Blocks with no rows are published at the start by CTA 0. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/comm/comm.h"
#include "kernels/comm/dispatch_push.cuh"
#include "kernels/launch_check.cuh"
#include "kernels/ptx.cuh"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "plan_core.h"

#define DISPATCH_THREADS 512

/* Blocks with no rows from this rank are complete at once: CTA 0 publishes
 * their flags on the receivers. */
static __device__ __forceinline__ void publish_empty_blocks(const comet_comm_view_t &v, uint64_t epoch) {
  const int E = v.num_experts, El = E / v.ep, tp = v.tp, W = v.world, s = v.rank;
  for (int i = threadIdx.x; i < E * tp; i += blockDim.x) {
    const int e = i / tp;
    if (v.send_offset[e + 1] != v.send_offset[e]) continue;
    const int q = (e / El) * tp + i % tp;
    uint64_t *f = (uint64_t *)(v.peer[q] + v.off_dflags) + (size_t)(e % El) * W + comet_plan_arrival(q, s, W);
    st_release_sys_u64(f, epoch);
  }
}

template <int U>
__global__ void __launch_bounds__(DISPATCH_THREADS) dispatch_kernel(comet_comm_view_t v,
                                                                    const char *__restrict__ x) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  extern __shared__ int32_t task_prefix[]; /* [E+1], in visiting order */
  const int E = v.num_experts, W = v.world, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  if (threadIdx.x == 0) push_task_prefix(v, task_prefix);
  __syncthreads();
  if (blockIdx.x == 0) publish_empty_blocks(v, epoch);

  const int lane = threadIdx.x % 32;
  const int nwarps = blockDim.x / 32;
  const int ntasks = task_prefix[E];
  for (int task = blockIdx.x * nwarps + threadIdx.x / 32; task < ntasks; task += gridDim.x * nwarps) {
    const push_task_t t = push_task(v, task_prefix, task);
    push_rows<U>(v, x, t, lane, -1);
    __syncwarp();
    if (lane == 0) {
      const int32_t n_e = v.send_offset[t.e + 1] - v.send_offset[t.e];
      const uint32_t old = atom_add_acq_rel_sys_u32(&v.dispatch_done[t.e], (uint32_t)t.nr);
      if (old + (uint32_t)t.nr == (uint32_t)n_e) {
        v.dispatch_done[t.e] = 0; /* last adder: nobody else touches it this call */
        for (int i = 0; i < tp; ++i) {
          const int q = t.g * tp + i;
          uint64_t *f = (uint64_t *)(v.peer[q] + v.off_dflags) + (size_t)(t.e % El) * W +
                        comet_plan_arrival(q, s, W);
          st_release_sys_u64(f, epoch);
        }
      }
    }
  }
}


/* ---- pull variant (COMET_DISPATCH_MODE=pull at layer creation): each receiver copies its rows in from the
 * sources' windows (x region), a block (el, j) at a time in (j, el) order
 * (own rows first, then each rank reading from a different source, ring
 * style), and publishes its own block flags: the GEMM that waits on them
 * runs on the same GPU. Remote loads are latency-bound, so each lane keeps
 * PULL_U 16-byte loads in flight before its local stores. */
#define PULL_U 16

__global__ void __launch_bounds__(DISPATCH_THREADS) dispatch_pull_kernel(comet_comm_view_t v) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  extern __shared__ int32_t task_prefix[]; /* [El*W + 1], blocks in (j, el) order */
  __shared__ const char *xsrc[COMET_MAX_WORLD];
  const int W = v.world, El = v.num_experts / v.ep, nb = El * W;
  const int32_t *bo = v.block_offset;
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16);
  for (int p = threadIdx.x; p < W; p += blockDim.x)
    xsrc[p] = v.peer[p] + v.off_x;
  if (threadIdx.x == 0) {
    int32_t acc = 0;
    for (int b = 0; b < nb; ++b) {
      const int j = b / El, el = b % El;
      task_prefix[b] = acc;
      acc += (bo[el * (W + 1) + j + 1] - bo[el * (W + 1) + j] + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    }
    task_prefix[nb] = acc;
  }
  __syncthreads();
  uint64_t *flags = (uint64_t *)(v.win_local + v.off_dflags); /* [el*W + j] */
  if (blockIdx.x == 0)
    for (int b = threadIdx.x; b < nb; b += blockDim.x) {
      const int j = b / El, el = b % El;
      if (bo[el * (W + 1) + j + 1] == bo[el * (W + 1) + j]) st_release_sys_u64(&flags[el * W + j], epoch);
    }
  const int32_t *row_src = (const int32_t *)(v.win_local + v.off_row_src);
  const int32_t *row_token = (const int32_t *)(v.win_local + v.off_row_token);
  char *rows = v.win_local + v.off_rows;
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
    const int32_t end = bo[el * (W + 1) + j + 1];
    const int32_t r0 = bo[el * (W + 1) + j] + (task - task_prefix[lo]) * ROWS_PER_TASK;
    const int nr = min(ROWS_PER_TASK, end - r0);
    for (int rr = 0; rr < nr; ++rr) {
      const int32_t r = r0 + rr;
      copy_row<PULL_U>(xsrc[row_src[r]] + (size_t)row_token[r] * row_bytes, rows + (size_t)r * row_bytes,
                       n16, lane);
    }
    __syncwarp();
    if (lane == 0) {
      uint32_t *cnt = &v.pulled_done[el * W + j];
      const uint32_t old = atom_add_acq_rel_sys_u32(cnt, (uint32_t)nr);
      if (old + (uint32_t)nr == (uint32_t)(end - bo[el * (W + 1) + j])) {
        *cnt = 0;
        st_release_sys_u64(&flags[el * W + j], epoch);
      }
    }
  }
}

/* Every rank's x is in its window before any rank pulls (skipped on every
 * rank when the plan was refused). */
__global__ void __launch_bounds__(128) dispatch_barrier_kernel(comet_comm_view_t v) {
  if (v.status->code != COMET_ROUTE_OK) return;
  comet_barrier_cta(v, comet_epoch(v), COMET_BAR_DISPATCH);
}

/* This rank's num_tokens rows of x into the window's x region. */
__global__ void copy_x_kernel(comet_comm_view_t v, const char *__restrict__ x, int num_tokens) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const size_t n = (size_t)num_tokens * v.hidden * v.elem_bytes / 16;
  uint4 *dst = (uint4 *)(v.win_local + v.off_x);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = ld_nc_na_v4(x + i * 16);
}

/* ---- bulk-copy (TMA) variant: lane 0 of each warp runs a pipeline of
 * TMA_STAGES row chunks of up to TMA_CHUNK bytes through shared memory, two
 * loads ahead of its stores. An experiment (COMET_DISPATCH_MODE=tma at layer creation). */
#define TMA_THREADS 256
#define TMA_STAGES 4
#define TMA_AHEAD 2 /* = TMA_STAGES - 2: bulk_wait_read<1> frees the stage to refill */
#define TMA_CHUNK 4096

static size_t tma_smem_head(int E) { return ((size_t)(E + 1) * 4 + 127) / 128 * 128; }
static size_t tma_smem_bytes(int E) {
  return tma_smem_head(E) + 128 * 8 /* mbarriers, padded */ +
         (size_t)(TMA_THREADS / 32) * TMA_STAGES * TMA_CHUNK;
}

__global__ void __launch_bounds__(TMA_THREADS) dispatch_tma_kernel(comet_comm_view_t v,
                                                                   const char *__restrict__ x) {
  if (v.status->code != COMET_ROUTE_OK) return;
  const uint64_t epoch = comet_epoch(v);
  extern __shared__ __align__(128) char smem[];
  __shared__ char *peer[COMET_MAX_WORLD];
  const int E = v.num_experts, K = v.topk, W = v.world, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  const size_t head = ((size_t)(E + 1) * 4 + 127) / 128 * 128;
  int32_t *task_prefix = (int32_t *)smem;
  uint64_t *bars = (uint64_t *)(smem + head);
  char *bufs = smem + head + 128 * 8;
  const uint32_t row_bytes = (uint32_t)v.hidden * v.elem_bytes;
  const int nc = (int)((row_bytes + TMA_CHUNK - 1) / TMA_CHUNK);
  for (int p = threadIdx.x; p < W; p += blockDim.x) peer[p] = v.peer[p];
  if (threadIdx.x == 0) push_task_prefix(v, task_prefix);
  __syncthreads();
  if (blockIdx.x == 0) publish_empty_blocks(v, epoch);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  if (lane != 0) return;
  uint64_t *bar = bars + warp * TMA_STAGES;
  char *buf = bufs + (size_t)warp * TMA_STAGES * TMA_CHUNK;
  for (int st = 0; st < TMA_STAGES; ++st) mbar_init(&bar[st], 1);
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  uint32_t phase = 0;
  const int ntasks = task_prefix[E];
  for (int task = blockIdx.x * nwarps + warp; task < ntasks; task += gridDim.x * nwarps) {
    const push_task_t pt = push_task(v, task_prefix, task);
    const int e = pt.e, g = pt.g, nr = pt.nr;
    const int32_t soff = v.send_offset[e], n_e = v.send_offset[e + 1] - soff, r0 = pt.r0;
    const int N = nr * nc;
    auto chunk_bytes = [&](int c) { return min((uint32_t)TMA_CHUNK, row_bytes - (uint32_t)c * TMA_CHUNK); };
    auto load = [&](int it) {
      const int rr = it / nc, c = it % nc, st = it % TMA_STAGES;
      const int32_t t = v.send_list[soff + r0 + rr] / K;
      const uint32_t b = chunk_bytes(c);
      mbar_arrive_expect_tx(&bar[st], b);
      bulk_load_g2s(buf + (size_t)st * TMA_CHUNK, x + (size_t)t * row_bytes + (size_t)c * TMA_CHUNK, b, &bar[st]);
    };
    for (int it = 0; it < TMA_AHEAD && it < N; ++it) load(it);
    for (int it = 0; it < N; ++it) {
      if (it + TMA_AHEAD < N) {
        bulk_wait_read<1>(); /* the stores of item it-2 no longer read its stage */
        load(it + TMA_AHEAD);
      }
      const int st = it % TMA_STAGES, rr = it / nc, c = it % nc;
      mbar_wait(&bar[st], (phase >> st) & 1u);
      phase ^= 1u << st;
      const uint32_t b = chunk_bytes(c);
      for (int i = 0; i < tp; ++i) {
        char *dst = peer[g * tp + i] + v.off_rows +
                    (size_t)(v.send_base[e * tp + i] + r0 + rr) * row_bytes + (size_t)c * TMA_CHUNK;
        bulk_store_s2g(dst, buf + (size_t)st * TMA_CHUNK, b);
      }
      bulk_commit();
    }
    bulk_wait_all();
    fence_proxy_async_all();
    const uint32_t old = atom_add_acq_rel_sys_u32(&v.dispatch_done[e], (uint32_t)nr);
    if (old + (uint32_t)nr == (uint32_t)n_e) {
      v.dispatch_done[e] = 0;
      for (int i = 0; i < tp; ++i) {
        const int q = g * tp + i;
        uint64_t *f = (uint64_t *)(peer[q] + v.off_dflags) + (size_t)(e % El) * W + comet_plan_arrival(q, s, W);
        st_release_sys_u64(f, epoch);
      }
    }
  }
}

/* Unroll (16-byte vectors per lane in flight): COMET_COMM_UNROLL = 4, 8
 * or 16 for experiments; 8 by default. */
int comet_comm_unroll(void) {
  const char *u = getenv("COMET_COMM_UNROLL");
  int x = u ? atoi(u) : 8;
  return (x == 4 || x == 16) ? x : 8;
}

size_t comet_dispatch_smem(int mode, int E, int El, int W) {
  if (mode == COMET_DISPATCH_PULL) return sizeof(int32_t) * ((size_t)W * El + 1);
  if (mode == COMET_DISPATCH_TMA) return tma_smem_bytes(E);
  return sizeof(int32_t) * ((size_t)E + 1);
}

extern "C" comet_status_t comet_dispatch_launch(const comet_comm_view_t *v, const void *x,
                                                int num_tokens, int ctas, cudaStream_t stream) {
  COMET_ARG(ctas >= 1 && ctas <= v->sm_budget, "dispatch: ctas = %d must be in 1..%d (the SM budget)",
            ctas, v->sm_budget);
  const size_t smem = comet_dispatch_smem(v->dispatch_mode, v->num_experts, v->num_experts / v->ep, v->world);
  if (v->dispatch_mode == COMET_DISPATCH_PULL) {
    if (x && num_tokens > 0 && (const char *)x != v->win_local + v->off_x) {
      copy_x_kernel<<<ctas, DISPATCH_THREADS, 0, stream>>>(*v, (const char *)x, num_tokens);
      COMET_CHECK(comet_launched("copy_x_kernel"));
    }
    /* Always (so that ranks passing x differently still meet): peers read
     * x only once every rank's copy is in. */
    if (v->world > 1) {
      dispatch_barrier_kernel<<<1, 128, 0, stream>>>(*v);
      COMET_CHECK(comet_launched("dispatch_barrier_kernel"));
    }
    COMET_CHECK(comet_allow_smem((const void *)dispatch_pull_kernel, smem, "dispatch (pull)"));
    dispatch_pull_kernel<<<ctas, DISPATCH_THREADS, smem, stream>>>(*v);
    return comet_launched("dispatch_pull_kernel");
  }
  if (v->dispatch_mode == COMET_DISPATCH_TMA) {
    COMET_CHECK(comet_allow_smem((const void *)dispatch_tma_kernel, smem, "dispatch (tma)"));
    dispatch_tma_kernel<<<ctas, TMA_THREADS, smem, stream>>>(*v, (const char *)x);
    return comet_launched("dispatch_tma_kernel");
  }
  switch (comet_comm_unroll()) {
    case 4:
      COMET_CHECK(comet_allow_smem((const void *)dispatch_kernel<4>, smem, "dispatch"));
      dispatch_kernel<4><<<ctas, DISPATCH_THREADS, smem, stream>>>(*v, (const char *)x);
      break;
    case 16:
      COMET_CHECK(comet_allow_smem((const void *)dispatch_kernel<16>, smem, "dispatch"));
      dispatch_kernel<16><<<ctas, DISPATCH_THREADS, smem, stream>>>(*v, (const char *)x);
      break;
    default:
      COMET_CHECK(comet_allow_smem((const void *)dispatch_kernel<8>, smem, "dispatch"));
      dispatch_kernel<8><<<ctas, DISPATCH_THREADS, smem, stream>>>(*v, (const char *)x);
      break;
  }
  return comet_launched("dispatch_kernel");
}
