/* SPDX-License-Identifier: Apache-2.0 */
/* plan_device.cu — the routing plan computed on the GPUs, with the same
 * arithmetic (plan_core.h) and the same row order as the host plan (plan.c).
 * Four kernels in stream order, no host synchronization:
 *
 *   count    (ceil(T/256) CTAs) per-CTA expert histograms; the first bad id;
 *                     the plan's copy of the ids (slot_expert)
 *   exchange (1 CTA)  bumps the device epoch, sums the histograms, writes
 *                     counts and the first error (or this rank's bad
 *                     arguments) into every peer's window, barrier, then
 *                     derives offsets, send offsets and bases, and the status
 *                     (the same on every rank, since every rank sees all)
 *   rows     (ceil(T/256) CTAs) rank of each (t, k) within its (source,
 *                     expert) block -> send_list, dest_row, and the
 *                     receivers' row tables (written into their windows)
 *   done     (1 CTA)  barrier: the row tables are complete everywhere
 *
 * Counts are double-buffered by epoch parity: a fast rank writing call n+1's
 * counts cannot clobber call n's that a slow rank still reads in its
 * exchange (it cannot pass call n+1's barrier before the slow rank arrives). */
#include <stdint.h>

#include "error.h"
#include "kernels/comm/comm.h"
#include "kernels/launch_check.cuh"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "plan_core.h"

#define TPC COMET_PLAN_TOKENS_PER_CTA

static __device__ __forceinline__ comet_plan_dims_t dims_of(const comet_comm_view_t &v) {
  comet_plan_dims_t d;
  d.num_experts = v.num_experts;
  d.topk = v.topk;
  d.ep = v.ep;
  d.tp = v.tp;
  return d;
}

/* One thread per token: validate, count into a shared histogram. */
__global__ void __launch_bounds__(TPC) plan_count_kernel(comet_comm_view_t v, int T,
                                                         const int32_t *__restrict__ ids) {
  extern __shared__ int32_t hist[]; /* [E] */
  const int E = v.num_experts, K = v.topk;
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  const int t = blockIdx.x * TPC + threadIdx.x;
  if (t < T) {
    const int32_t *row = ids + (size_t)t * K;
    int bad = 0;
    if (comet_plan_check_token(row, K, E, &bad) != COMET_TOKEN_OK)
      atomicMin(v.err_key, (uint32_t)(t * K + bad));
    for (int k = 0; k < K; ++k) {
      int e = row[k];
      v.slot_expert[(size_t)t * K + k] = e;
      if (e >= 0 && e < E) atomicAdd(&hist[e], 1);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) v.cta_counts[(size_t)blockIdx.x * E + e] = hist[e];
}

__global__ void __launch_bounds__(512) plan_exchange_kernel(comet_comm_view_t v, int T,
                                                            const int32_t *__restrict__ ids,
                                                            comet_arg_fault_t arg) {
  extern __shared__ int32_t sm[]; /* lc[E], all[W*E], rows[W] */
  const int E = v.num_experts, K = v.topk, W = v.world, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  const comet_plan_dims_t d = dims_of(v);
  int32_t *lc = sm, *all = sm + E, *rows = sm + E + W * E;
  __shared__ int32_t err[4];
  __shared__ uint64_t epoch_s;
  __shared__ int dead;
  const int nct = (T + TPC - 1) / TPC;

  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int32_t c = 0;
    for (int b = 0; b < nct; ++b) c += v.cta_counts[(size_t)b * E + e];
    lc[e] = c;
  }
  if (threadIdx.x == 0) {
    epoch_s = *v.epoch + 1;
    *v.epoch = epoch_s;
    dead = comet_faulted(v);
    err[0] = err[1] = err[2] = err[3] = 0;
    uint32_t key = *v.err_key;
    const comet_arg_fault_t pend = *v.pending; /* found on the device since the last plan */
    if (arg.kind == COMET_ARG_NONE && pend.kind != COMET_ARG_NONE) arg = pend;
    v.pending->kind = COMET_ARG_NONE;
    if (arg.kind != COMET_ARG_NONE) {
      err[0] = COMET_ROUTE_BAD_ARGS;
      err[1] = arg.kind;
      err[2] = arg.field;
      err[3] = arg.value;
    } else if (key != 0xffffffffu) {
      const int t = (int)(key / (uint32_t)K);
      int bad = 0;
      err[0] = comet_plan_check_token(ids + (size_t)t * K, K, E, &bad);
      err[1] = t;
      err[2] = bad;
      err[3] = ids[(size_t)t * K + bad];
    }
    *v.err_key = 0xffffffffu; /* ready for the next call */
  }
  __syncthreads();
  if (dead) { /* an earlier wait of this layer gave up: the layer is dead */
    if (threadIdx.x == 0) v.status->code = COMET_ROUTE_FAULT;
    return;
  }
  const uint64_t epoch = epoch_s;
  const int parity = (int)(epoch & 1);
  /* Our counts and first error into every rank's window (ourselves included). */
  for (int p = 0; p < W; ++p) {
    char *base = v.peer[p];
    int32_t *pc = (int32_t *)(base + v.off_counts) + ((size_t)parity * W + s) * E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) pc[e] = lc[e];
    if (threadIdx.x == 0) {
      int4 *pe = (int4 *)(base + v.off_errors) + (size_t)parity * W + s;
      *pe = make_int4(err[0], err[1], err[2], err[3]);
    }
  }
  /* This call's layer0 arrival counters start at zero; the barrier orders
   * that before any source's first add (sources add after it). */
  uint64_t *tcount = (uint64_t *)(v.win_local + v.off_tcount);
  for (int i = threadIdx.x; i < v.max_mtiles; i += blockDim.x) tcount[i] = 0;
  if (!comet_barrier_cta(v, epoch, COMET_BAR_PLAN)) return; /* status is FAULT */

  const int32_t *mc = (const int32_t *)(v.win_local + v.off_counts) + (size_t)parity * W * E;
  for (int i = threadIdx.x; i < W * E; i += blockDim.x) {
    all[i] = mc[i];
    v.all_counts[i] = mc[i];
  }
  __syncthreads();
  for (int q = threadIdx.x; q < W; q += blockDim.x) {
    int64_t r = comet_plan_offsets(d, all, q, NULL, NULL);
    rows[q] = r > INT32_MAX ? INT32_MAX : (int32_t)r;
  }
  if (threadIdx.x == 0) comet_plan_offsets(d, all, s, v.expert_offset, v.block_offset);
  if (threadIdx.x == 32) {
    int32_t acc = 0;
    for (int e = 0; e < E; ++e) {
      v.send_offset[e] = acc;
      acc += lc[e];
    }
    v.send_offset[E] = acc;
  }
  /* Where each expert's rows and M-tiles start on its receivers (the same on
   * every rank of its group: the order of sources within an expert differs,
   * the expert's extent does not): a sender's rows find their tile counters. */
  for (int g = threadIdx.x; g < v.ep; g += blockDim.x) {
    int32_t row = 0, tile = 0;
    for (int el = 0; el < El; ++el) {
      const int e = g * El + el;
      int32_t n = 0;
      for (int p = 0; p < W; ++p) n += all[p * E + e];
      v.recv_row0[e] = row;
      v.recv_tile0[e] = tile;
      row += n;
      tile += (n + COMET_MTILE_ROWS - 1) / COMET_MTILE_ROWS;
    }
  }
  for (int i = threadIdx.x; i < E * tp; i += blockDim.x) {
    const int e = i / tp, q = (e / El) * tp + i % tp;
    v.send_base[i] = (int32_t)comet_plan_block_start(d, all, q, s, e);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    comet_route_status_t st = {};
    const int4 *pe = (const int4 *)(v.win_local + v.off_errors) + (size_t)parity * W;
    for (int r = 0; r < W; ++r) {
      int4 e4 = pe[r];
      if (e4.x != 0) {
        st.code = e4.x;
        st.rank = r;
        st.token = e4.y;
        st.slot = e4.z;
        st.value = e4.w;
        break;
      }
    }
    if (st.code == 0)
      for (int q = 0; q < W; ++q)
        if ((int64_t)rows[q] > v.row_capacity) {
          st.code = COMET_ROUTE_CAPACITY;
          st.rank = q;
          st.token = st.slot = -1;
          st.value = rows[q];
          break;
        }
    st.rows = rows[s];
    *v.status = st;
  }
}

/* A warp per expert: walks the CTA's tokens in order, 32 at a time, and
 * ranks each (t, k) routed to that expert with a ballot. */
__global__ void __launch_bounds__(TPC) plan_rows_kernel(comet_comm_view_t v, int T,
                                                        const int32_t *__restrict__ ids) {
  if (v.status->code != COMET_ROUTE_OK) return;
  extern __shared__ int32_t sids[]; /* [TPC][K] */
  const int E = v.num_experts, K = v.topk, W = v.world, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  const int t0 = blockIdx.x * TPC;
  for (int i = threadIdx.x; i < TPC * K; i += blockDim.x) {
    const int t = t0 + i / K;
    sids[i] = t < T ? ids[(size_t)t0 * K + i] : -1;
  }
  {
    const int t = t0 + threadIdx.x;
    if (t < T)
      for (int k = 0; k < K; ++k)
        if (ids[(size_t)t * K + k] < 0)
          for (int i = 0; i < tp; ++i) v.dest_row[((size_t)t * K + k) * tp + i] = -1;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  const uint32_t lt = (1u << lane) - 1u;
  for (int e = warp; e < E; e += nwarps) {
    int32_t base = 0;
    for (int b = lane; b < (int)blockIdx.x; b += 32) base += v.cta_counts[(size_t)b * E + e];
    for (int o = 16; o > 0; o >>= 1) base += __shfl_xor_sync(0xffffffffu, base, o);
    const int g = e / El;
    const int32_t soff = v.send_offset[e];
    for (int c = 0; c < TPC / 32; ++c) {
      const int tl = c * 32 + lane;
      int kk = -1;
      for (int k = 0; k < K; ++k)
        if (sids[tl * K + k] == e) kk = k;
      const uint32_t m = __ballot_sync(0xffffffffu, kk >= 0);
      if (kk >= 0) {
        const int32_t idx = base + __popc(m & lt);
        const int t = t0 + tl;
        const int32_t tk = t * K + kk;
        v.send_list[soff + idx] = tk;
        for (int i = 0; i < tp; ++i) {
          const int q = g * tp + i;
          const int32_t r = v.send_base[e * tp + i] + idx;
          v.dest_row[(size_t)tk * tp + i] = r;
          char *pb = v.peer[q];
          ((int32_t *)(pb + v.off_row_src))[r] = s;
          ((int32_t *)(pb + v.off_row_token))[r] = t;
          ((int32_t *)(pb + v.off_row_slot))[r] = kk;
        }
      }
      base += __popc(m);
    }
  }
  (void)W;
}

/* Every rank's row-table stores (the previous kernel) are visible after
 * this. Skipped on every rank when the plan was refused (the status is the
 * same everywhere then, and no row tables were written). */
__global__ void __launch_bounds__(128) plan_done_kernel(comet_comm_view_t v) {
  if (v.status->code != COMET_ROUTE_OK) return;
  comet_barrier_cta(v, comet_epoch(v), COMET_BAR_PLAN_DONE);
}

size_t comet_plan_count_smem(int E) { return sizeof(int32_t) * (size_t)E; }
size_t comet_plan_exchange_smem(int E, int W) {
  return sizeof(int32_t) * ((size_t)E + (size_t)W * E + (size_t)W);
}
size_t comet_plan_rows_smem(int K) { return sizeof(int32_t) * (size_t)TPC * (size_t)K; }

extern "C" comet_status_t comet_plan_device_launch(const comet_comm_view_t *v, int T,
                                                   const int32_t *ids, const comet_arg_fault_t *arg,
                                                   cudaStream_t stream) {
  const int E = v->num_experts, W = v->world, K = v->topk;
  comet_arg_fault_t none = {COMET_ARG_NONE, 0, 0, 0};
  if (arg && arg->kind != COMET_ARG_NONE) T = 0; /* report, plan nothing */
  else arg = &none;
  const int nct = (T + TPC - 1) / TPC;
  if (nct > 0) {
    const size_t smem = comet_plan_count_smem(E);
    COMET_CHECK(comet_allow_smem((const void *)plan_count_kernel, smem, "plan_count_kernel"));
    plan_count_kernel<<<nct, TPC, smem, stream>>>(*v, T, ids);
    COMET_CHECK(comet_launched("plan_count_kernel"));
  }
  const size_t smem = comet_plan_exchange_smem(E, W);
  COMET_CHECK(comet_allow_smem((const void *)plan_exchange_kernel, smem, "plan_exchange_kernel"));
  plan_exchange_kernel<<<1, 512, smem, stream>>>(*v, T, ids, *arg);
  COMET_CHECK(comet_launched("plan_exchange_kernel"));
  if (nct > 0) {
    const size_t rs = comet_plan_rows_smem(K);
    COMET_CHECK(comet_allow_smem((const void *)plan_rows_kernel, rs, "plan_rows_kernel"));
    plan_rows_kernel<<<nct, TPC, rs, stream>>>(*v, T, ids);
    COMET_CHECK(comet_launched("plan_rows_kernel"));
  }
  if (W > 1) {
    plan_done_kernel<<<1, 128, 0, stream>>>(*v);
    COMET_CHECK(comet_launched("plan_done_kernel"));
  }
  return COMET_OK;
}
