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
 *                     derives offsets, send offsets and bases (prefix sums
 *                     across the CTA), and the status (the same on every
 *                     rank, since every rank sees all)
 *   rows     (ceil(T/256) x ceil(E/8) CTAs) rank of each (t, k) within its (source,
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
#include "kernels/comm/cta_scan.cuh"
#include "kernels/launch_check.cuh"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/pdl.cuh"
#include "plan_core.h"

#define TPC COMET_PLAN_TOKENS_PER_CTA

/* One thread per token: validate, count into a shared histogram. */
__global__ void __launch_bounds__(TPC) plan_count_kernel(comet_comm_view_t v, int T,
                                                         const int32_t *__restrict__ ids) {
  comet_pdl_begin(); /* launched by comet_launch_pdl: nothing before this */
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
  comet_pdl_begin();
  /* before[E + 1] (int64), lc[E], all[W*E], tot[E], tiles0[E + 1] */
  extern __shared__ int64_t sm64[];
  const int E = v.num_experts, K = v.topk, W = v.world, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  int64_t *before = sm64;
  int32_t *lc = (int32_t *)(sm64 + E + 1), *all = lc + E, *tot = all + W * E, *tiles0 = tot + E;
  __shared__ int64_t warp_sums64[32];
  __shared__ int32_t warp_sums[32];
  __shared__ int32_t err[4];
  __shared__ uint64_t epoch_s;
  __shared__ int dead;
  const int nct = (T + TPC - 1) / TPC;

  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int32_t c = 0;
#pragma unroll 8
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
    comet_status_mirror(v);
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
  if (!comet_barrier_cta(v, epoch, COMET_BAR_PLAN)) { /* status is FAULT */
    comet_status_mirror(v);
    return;
  }

  const int32_t *mc = (const int32_t *)(v.win_local + v.off_counts) + (size_t)parity * W * E;
  for (int i = threadIdx.x; i < W * E; i += blockDim.x) {
    all[i] = mc[i];
    v.all_counts[i] = mc[i];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int32_t n = 0;
    for (int p = 0; p < W; ++p) n += all[p * E + e];
    tot[e] = n;
  }
  __syncthreads();
  /* Every offset below is a prefix sum over experts, taken across the CTA
   * (serial walks by single threads made this kernel ~40 us at E = 64,
   * session 15); they equal plan_core.h's comet_plan_offsets and
   * comet_plan_block_start, which the host plan uses. before[e]: rows of
   * all experts before e (every source), tiles0[e]: their M-tiles. */
  cta_scan_array<int64_t>(E, [=](int e) { return (int64_t)tot[e]; }, before, true, warp_sums64);
  cta_scan_array<int32_t>(
      E, [=](int e) { return (tot[e] + COMET_MTILE_ROWS - 1) / COMET_MTILE_ROWS; }, tiles0, true,
      warp_sums);
  cta_scan_array<int32_t>(E, [=](int e) { return lc[e]; }, v.send_offset, true, warp_sums);
  __syncthreads();
  /* within each expert group (its experts' rows on any of its receivers) */
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    const int e0 = e / El * El;
    v.recv_row0[e] = (int32_t)(before[e] - before[e0]);
    v.recv_tile0[e] = tiles0[e] - tiles0[e0];
  }
  /* this rank's received rows: expert el's block of arrival j */
  const int gs = s / tp * El;
  for (int i = threadIdx.x; i < El * W; i += blockDim.x) {
    const int el = i / W, j = i % W, e = gs + el;
    int64_t r = before[e] - before[gs];
    for (int j2 = 0; j2 < j; ++j2) r += all[comet_plan_source(s, j2, W) * E + e];
    v.block_offset[el * (W + 1) + j] = (int32_t)r;
    if (j == 0) v.expert_offset[el] = (int32_t)r;
    if (j == W - 1) v.block_offset[el * (W + 1) + W] = (int32_t)(r + all[comet_plan_source(s, j, W) * E + e]);
  }
  if (threadIdx.x == 0) v.expert_offset[El] = (int32_t)(before[gs + El] - before[gs]);
  /* where this rank's rows for expert e start on its receiver q */
  for (int i = threadIdx.x; i < E * tp; i += blockDim.x) {
    const int e = i / tp, q = (e / El) * tp + i % tp;
    int64_t r = before[e] - before[e / El * El];
    for (int j = 0; j < comet_plan_arrival(q, s, W); ++j) r += all[comet_plan_source(q, j, W) * E + e];
    v.send_base[i] = (int32_t)r;
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
    int64_t rows_s = 0;
    for (int q = 0; q < W; ++q) { /* every receiver's rows: its group's */
      const int g0 = q / tp * El;
      const int64_t r = before[g0 + El] - before[g0];
      if (q == s) rows_s = r;
      if (st.code == 0 && r > v.row_capacity) {
        st.code = COMET_ROUTE_CAPACITY;
        st.rank = q;
        st.token = st.slot = -1;
        st.value = r > INT32_MAX ? INT32_MAX : (int32_t)r;
      }
    }
    st.rows = rows_s > INT32_MAX ? INT32_MAX : (int32_t)rows_s;
    *v.status = st;
  }
  comet_status_mirror(v);
}

/* A warp per expert (blockIdx.y picks the CTA's experts: one each, for
 * parallelism; 8 CTAs walking 8 experts a warp took ~30 us at 2048 tokens
 * and E = 64, session 15): walks the CTA's tokens in order, 32 at a time,
 * and ranks each (t, k) routed to that expert with a ballot. */
__global__ void __launch_bounds__(TPC) plan_rows_kernel(comet_comm_view_t v, int T,
                                                        const int32_t *__restrict__ ids) {
  comet_pdl_begin();
  if (v.status->code != COMET_ROUTE_OK) return;
  extern __shared__ int32_t sids[]; /* [TPC][K] */
  const int E = v.num_experts, K = v.topk, s = v.rank;
  const int El = E / v.ep, tp = v.tp;
  const int t0 = blockIdx.x * TPC;
  for (int i = threadIdx.x; i < TPC * K; i += blockDim.x) {
    const int t = t0 + i / K;
    sids[i] = t < T ? ids[(size_t)t0 * K + i] : -1;
  }
  if (blockIdx.y == 0) {
    const int t = t0 + threadIdx.x;
    if (t < T)
      for (int k = 0; k < K; ++k)
        if (ids[(size_t)t * K + k] < 0)
          for (int i = 0; i < tp; ++i) v.dest_row[((size_t)t * K + k) * tp + i] = -1;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  const uint32_t lt = (1u << lane) - 1u;
  const int e = blockIdx.y * nwarps + warp;
  if (e < E) {
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
}

/* Every rank's row-table stores (the previous kernel) are visible after
 * this. Skipped on every rank when the plan was refused (the status is the
 * same everywhere then, and no row tables were written). */
__global__ void __launch_bounds__(128) plan_done_kernel(comet_comm_view_t v) {
  comet_pdl_begin();
  if (v.status->code != COMET_ROUTE_OK) return;
  comet_barrier_cta(v, comet_epoch(v), COMET_BAR_PLAN_DONE);
}

size_t comet_plan_count_smem(int E) { return sizeof(int32_t) * (size_t)E; }
size_t comet_plan_exchange_smem(int E, int W) {
  return sizeof(int64_t) * ((size_t)E + 1) + sizeof(int32_t) * ((size_t)3 * E + (size_t)W * E + 1);
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
    COMET_CHECK(comet_launch_pdl("plan_count_kernel", plan_count_kernel,
                                 nct, TPC, smem, stream, *v, T, ids));
  }
  const size_t smem = comet_plan_exchange_smem(E, W);
  COMET_CHECK(comet_allow_smem((const void *)plan_exchange_kernel, smem, "plan_exchange_kernel"));
  COMET_CHECK(comet_launch_pdl("plan_exchange_kernel", plan_exchange_kernel,
                               1, 512, smem, stream, *v, T, ids, *arg));
  if (nct > 0) {
    const size_t rs = comet_plan_rows_smem(K);
    COMET_CHECK(comet_allow_smem((const void *)plan_rows_kernel, rs, "plan_rows_kernel"));
    const dim3 grid(nct, (E + TPC / 32 - 1) / (TPC / 32));
    COMET_CHECK(comet_launch_pdl("plan_rows_kernel", plan_rows_kernel,
                                 grid, TPC, rs, stream, *v, T, ids));
  }
  if (W > 1) {
    COMET_CHECK(comet_launch_pdl("plan_done_kernel", plan_done_kernel, 1, 128, 0, stream, *v));
  }
  return COMET_OK;
}
