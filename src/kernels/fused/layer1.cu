/* SPDX-License-Identifier: Apache-2.0 */
/* layer1.cu — the fused layer1: grouped GEMM with w2 + the top-k combine in
 * one persistent launch (DESIGN §2, §2.1: the shared tensor y is cut along
 * N, hidden).
 *
 * Before it, in stream order: the combine's guard (a second combine of one
 * plan is refused) and the natural M-tile list (tiles.cu). Then one grid
 * within the SM budget, one CTA per SM:
 *
 *   GEMM CTAs [0, grid - n_comm)  y = h . w2^T into this rank's window, by
 *                   groups of column blocks (COMET_GEMM_ORDER_LAYER1, wide
 *                   tiles: blocks of COMET_L1_BLOCK columns on every rank);
 *                   after a tile's stores are visible its flag
 *                   l1flags[M-tile][block] = the call's epoch (release).
 *   movers  [grid - n_comm, grid)  this rank's tokens home, block by block: a warp
 *                   takes (block n, a few tokens), waits (wait.cuh: bounded,
 *                   abort-aware) for the flags of the M-tiles holding the
 *                   tokens' rows on the experts' ranks, reads the rows'
 *                   segments of block n from those windows and writes
 *                   out[t, block n] = sum over k, then tp, of w[t,k] * y in
 *                   fp32, one rounding: the composed combine's order, so the
 *                   same bits.
 *
 * Nothing deadlocks: GEMM CTAs never wait; movers wait only on GEMM tiles:
 * on other ranks, grids no larger than their SM budgets; on this rank, CTAs
 * of lower index (resident before any mover is). Every rank's
 * reads of call n's y end before any rank's dispatch of call n + 1 (which
 * passes that call's plan barrier) writes the rows that share its memory.
 *
 * Reference timings run the same kernel: GEMM_ONLY (movers off),
 * COMM_ONLY (movers alone, not waiting: y as an earlier call left it). */
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/vec8.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/fused/fused.h"
#include "kernels/gemm/gemm_engine.cuh"
#include "kernels/gemm/gemm_launch.cuh"
#include "kernels/launch_check.cuh"
#include "plan_core.h"

using namespace comet_gemm;

#define L1_TOKENS 8 /* tokens per warp item, at most */
#define L1_BATCH 8  /* slot rows a lane has in flight before it sums them */

/* Where slot (t, k, i)'s row lives: rank q's window, row r, in natural
 * M-tile `tile` there. False for a dropped slot. */
static __device__ __forceinline__ bool slot_row(const comet_comm_view_t &v, int t, int sl, int *q,
                                                int32_t *r, int *tile) {
  const int K = v.topk, tp = v.tp, k = sl / tp, i = sl % tp;
  const int e = v.slot_expert[(size_t)t * K + k];
  if (e < 0) return false;
  *q = (e / (v.num_experts / v.ep)) * tp + i;
  *r = v.dest_row[((size_t)t * K + k) * tp + i];
  *tile = v.recv_tile0[e] + (*r - v.recv_row0[e]) / COMET_MTILE_ROWS;
  return true;
}

/* A mover CTA: items (block n, tokens t0 .. t0 + tpw) block-major, a warp
 * each; lane j owns 16 bytes (8 values) of the block. The item's (token,
 * slot) pairs, token-major, are resolved 32 at a time, one per lane (where
 * the row is, its weight, its flag waited for); then every lane reads
 * L1_BATCH pairs' segments at once (the rows' addresses shuffled from the
 * lanes that resolved them) before it sums them: the reads' latency is
 * paid once per batch, not once per slot. Each token's slots are summed in
 * (k, tp) order from zero, the composed combine's order. */
template <typename T>
static __device__ __forceinline__ void combine_blocks(const comet_comm_view_t &v, int num_tokens,
                                                      const float *__restrict__ w,
                                                      char *__restrict__ out, int cta, int ncta,
                                                      bool wait) {
  const int K = v.topk, nslots = K * v.tp, nb = v.l1_blocks;
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int vecs_per_block = COMET_L1_BLOCK * v.elem_bytes / 16; /* 32: one per lane */
  const int n16 = (int)(row_bytes / 16);
  const int tpw = max(1, min(L1_TOKENS, 32 / nslots));
  const int chunks = (num_tokens + tpw - 1) / tpw;
  const uint64_t epoch = comet_epoch(v);
  const int lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  bool dead = false;
  for (int item = cta * nwarps + threadIdx.x / 32; item < nb * chunks; item += ncta * nwarps) {
    const int n = item / chunks, t0 = (item % chunks) * tpw;
    const int tn = min(tpw, num_tokens - t0), npairs = tn * nslots;
    const int jv = n * vecs_per_block + lane;
    const bool mine = lane < vecs_per_block && jv < n16;
    float acc[L1_TOKENS][8];
#pragma unroll
    for (int j = 0; j < L1_TOKENS; ++j)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
    for (int base = 0; base < npairs; base += 32) {
      /* 1. lane l resolves pair base + l and waits for its M-tile's flag */
      const char *src = NULL;
      float wt = 0.0f;
      const int p = base + lane;
      if (p < npairs) {
        const int t = t0 + p / nslots, sl = p % nslots;
        int q, tile;
        int32_t r;
        if (slot_row(v, t, sl, &q, &r, &tile)) {
          src = v.peer[q] + v.off_y + (size_t)r * row_bytes + (size_t)n * COMET_L1_BLOCK * v.elem_bytes;
          wt = w[(size_t)t * K + sl / v.tp];
          if (wait && !dead) {
            const uint64_t *f = (const uint64_t *)(v.peer[q] + v.off_l1flags) + (size_t)tile * nb + n;
            if (!comet_wait_geq(v, f, epoch, COMET_WAIT_COMBINE, q, tile, n)) dead = true;
          }
        }
      }
      if (wait) dead = __any_sync(0xffffffffu, dead);
      __syncwarp(); /* the lanes' acquires before every lane's reads */
      /* 2. batches of L1_BATCH pairs: all reads, then the sums in order */
      const int pend = min(npairs - base, 32);
      for (int b0 = 0; b0 < pend; b0 += L1_BATCH) {
        uint4 x[L1_BATCH];
        float wk[L1_BATCH];
        bool has[L1_BATCH];
#pragma unroll
        for (int u = 0; u < L1_BATCH; ++u) {
          const int pl = min(b0 + u, 31);
          const char *s_u = (const char *)__shfl_sync(0xffffffffu, (uintptr_t)src, pl);
          wk[u] = __shfl_sync(0xffffffffu, wt, pl);
          has[u] = b0 + u < pend && s_u != NULL;
          if (has[u] && mine) x[u] = ld_cg_v4(s_u + (size_t)lane * 16);
        }
#pragma unroll
        for (int u = 0; u < L1_BATCH; ++u) {
          if (!has[u] || !mine) continue;
          const int tok = (base + b0 + u) / nslots;
          float f[8];
          vec8<T>::load(x[u], f);
#pragma unroll
          for (int j = 0; j < L1_TOKENS; ++j)
            if (j == tok)
#pragma unroll
              for (int e = 0; e < 8; ++e) acc[j][e] = __fmaf_rn(wk[u], f[e], acc[j][e]);
        }
      }
    }
    if (mine)
#pragma unroll
      for (int j = 0; j < L1_TOKENS; ++j)
        if (j < tn)
          *(uint4 *)(out + (size_t)(t0 + j) * row_bytes + (size_t)jv * 16) = vec8<T>::store(acc[j]);
  }
}

template <class C, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    layer1_kernel(const __grid_constant__ comet_comm_view_t v, const __grid_constant__ Args a,
                  const __grid_constant__ CUtensorMap tm_a, const __grid_constant__ CUtensorMap tm_b,
                  const __grid_constant__ CUtensorMap tm_c, int num_tokens,
                  const float *__restrict__ w, char *__restrict__ out, int gemm_ctas, int mode) {
  extern __shared__ uint8_t smem[];
  if (v.status->code != COMET_ROUTE_OK) return; /* refused, repeated or faulted */
  if ((int)blockIdx.x >= gemm_ctas) {
    if (mode != COMET_L1_GEMM_ONLY)
      combine_blocks<T>(v, num_tokens, w, out, blockIdx.x - gemm_ctas, gridDim.x - gemm_ctas,
                        mode == COMET_L1_FUSED);
    return;
  }
  gemm_engine_run<C>(a, &tm_a, &tm_b, &tm_c, smem, blockIdx.x, gemm_ctas);
}

template <class C, typename T>
static comet_status_t launch_cfg(const comet_fused_layer1_t *f, const Prepared &pr, int gemm_ctas,
                                 cudaStream_t stream) {
  COMET_CHECK(comet_allow_smem((const void *)layer1_kernel<C, T>, (size_t)pr.smem, "fused layer1"));
  layer1_kernel<C, T><<<gemm_ctas + f->n_comm, kThreads, pr.smem, stream>>>(
      *f->view, pr.args, pr.tm_a, pr.tm_b, pr.tm_c, f->num_tokens, f->topk_weights,
      (char *)f->out, gemm_ctas, (int)f->mode);
  return comet_launched("fused layer1 kernel");
}

extern "C" comet_status_t comet_fused_layer1_launch(const comet_fused_layer1_t *f,
                                                    cudaStream_t stream) {
  const comet_comm_view_t *v = f->view;
  COMET_ARG(v->combine_mode == COMET_COMBINE_PULL,
            "fused layer1: needs the pull combine (COMET_COMBINE_MODE=pull at layer creation)");
  COMET_ARG(f->n_comm >= 1 && f->n_comm < v->sm_budget,
            "fused layer1: n_comm = %d must be in 1..%d (the SM budget less one GEMM CTA)",
            f->n_comm, v->sm_budget - 1);
  COMET_ARG(f->mode >= COMET_L1_FUSED && f->mode <= COMET_L1_COMM_ONLY,
            "fused layer1: mode %d unknown", (int)f->mode);
  COMET_ARG(v->elem_bytes * COMET_L1_BLOCK / 16 <= 32,
            "fused layer1: a column block is more than a warp's 32 x 16 bytes");
  COMET_CHECK(comet_combine_guard_launch(v, stream));
  if (v->row_capacity == 0 && f->num_tokens == 0) return COMET_OK;
  COMET_CHECK(comet_mtiles_launch(v, 1, 1, stream));
  comet_gemm_params_t g;
  memset(&g, 0, sizeof g);
  g.dtype = (comet_dtype_t)v->dtype;
  g.groups = v->num_experts / v->ep;
  g.n = v->hidden;
  g.k = f->k;
  g.max_rows = v->row_capacity > 0 ? v->row_capacity : 1;
  g.a = f->h;
  g.b = f->w2;
  g.c = v->win_local + v->off_y;
  g.group_offset = v->expert_offset;
  g.epilogue = COMET_GEMM_EPI_STORE;
  g.tile = COMET_GEMM_TILE_WIDE; /* COMET_L1_BLOCK columns per block, on every rank */
  g.mtiles = v->l1_tiles;
  g.mtile_count = v->l1_count;
  g.order = COMET_GEMM_ORDER_LAYER1;
  g.publish_flags = (uint64_t *)(v->win_local + v->off_l1flags);
  g.deterministic = 1;
  const int gemm_ctas = v->sm_budget - f->n_comm;
  g.num_ctas = gemm_ctas;
  Prepared pr;
  COMET_CHECK(prepare(&g, &pr));
  pr.args.publish_epoch = v->epoch;
  COMET_ARG(pr.wide && pr.args.n_tiles == v->l1_blocks,
            "fused layer1: the GEMM's column blocks (%d) are not the layer's (%d)", pr.args.n_tiles,
            v->l1_blocks);
  const int64_t tiles = (int64_t)v->max_mtiles * pr.args.n_tiles;
  const int grid_gemm = tiles < gemm_ctas ? (int)tiles : gemm_ctas;
  const int grid_g = f->mode == COMET_L1_COMM_ONLY ? 0 : grid_gemm;
  typedef Cfg<256, false, true, false> Bf16;
  typedef Cfg<256, false, true, true> Fp16;
  if (v->dtype == COMET_DTYPE_FP16) return launch_cfg<Fp16, __half>(f, pr, grid_g, stream);
  return launch_cfg<Bf16, __nv_bfloat16>(f, pr, grid_g, stream);
}
