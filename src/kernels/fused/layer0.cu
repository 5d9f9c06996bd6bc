/* SPDX-License-Identifier: Apache-2.0 */
/* layer0.cu — the fused layer0: token dispatch + grouped GEMM with w1 (+ the
 * SwiGLU epilogue) in one persistent launch (DESIGN §2, §2.1).
 *
 * Two kernels after the device plan, in stream order:
 *
 *   tiles  (1 CTA)  this rank's M-tiles in layer0 order (tiles.cu).
 *   fused  (the SM budget, one CTA per SM) CTAs [0, n_comm) are movers:
 *                   they push this rank's token rows into the other ranks of
 *                   the experts' groups (dispatch_push.cuh) and, after each
 *                   task, add its rows to the receiving M-tiles' arrival
 *                   counters (release, system scope). The other CTAs run the
 *                   GEMM engine over the tile list with a gathered A: each
 *                   producer thread copies one row of the tile (cp.async),
 *                   this rank's own rows straight from x (no copy at all at
 *                   W = 1, where there are no movers), the others from the
 *                   window once the tile's counter holds their number
 *                   (wait.cuh: bounded, abort-aware).
 *
 * Why nothing deadlocks: movers never wait. A GEMM CTA waits only on rows
 * that movers deliver: this rank's movers have lower CTA indices in a grid
 * no larger than the SM budget (one CTA per SM, so they are resident), and
 * a peer's movers run in its own such grid. The counters are zeroed by this
 * rank's plan before the plan's barrier, which every sender passes before
 * its first add.
 *
 * The measurement modes run the same kernel: GEMM_ONLY with the movers
 * returning at once and no waits (the rows already in place from an earlier
 * call with the same plan), COMM_ONLY with the movers alone (a grid of
 * n_comm CTAs). */
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/comm/dispatch_push.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/fused/fused.h"
#include "kernels/gemm/gemm_engine.cuh"
#include "kernels/gemm/gemm_launch.cuh"
#include "kernels/launch_check.cuh"
#include "kernels/pdl.cuh"
#include "plan_core.h"
#include "schedule.h"

using namespace comet_gemm;

static_assert(COMET_MTILE_ROWS == COMET_GEMM_TILE_M, "arrival counters count the GEMM's M-tiles");

/* ---- the movers ---- */

/* Adds a task's nr rows to the arrival counters of the M-tiles they land in
 * on receiver q (at most two: a task's rows are consecutive there). */
static __device__ __forceinline__ void count_rows(const comet_comm_view_t &v, const push_task_t &t,
                                                  int i) {
  const int q = t.g * v.tp + i;
  const int32_t rel = v.send_base[t.e * v.tp + i] + t.r0 - v.recv_row0[t.e];
  const int tile = v.recv_tile0[t.e] + rel / COMET_MTILE_ROWS;
  const int32_t first = min(t.nr, COMET_MTILE_ROWS - rel % COMET_MTILE_ROWS);
  uint64_t *cnt = (uint64_t *)(v.peer[q] + v.off_tcount);
  if (q == v.rank) { /* our own window: the GEMM that waits is on this GPU */
    red_add_release_gpu_u64(cnt + tile, (uint64_t)first);
    if (t.nr > first) red_add_release_gpu_u64(cnt + tile + 1, (uint64_t)(t.nr - first));
    return;
  }
  red_add_release_sys_u64(cnt + tile, (uint64_t)first);
  if (t.nr > first) red_add_release_sys_u64(cnt + tile + 1, (uint64_t)(t.nr - first));
}

/* A mover CTA (cta of ncta): push_rows per task to every receiver (but this
 * rank when its GEMM gathers its own rows from x: skip = rank), then count
 * the rows in: the warp's barrier orders every lane's row stores before
 * lane 0's release adds (as the standalone dispatch's counter, dispatch.cu). */
template <int U>
static __device__ __forceinline__ void move(const comet_comm_view_t &v, const char *__restrict__ x,
                                            int cta, int ncta, int skip, int32_t *task_prefix) {
  if (threadIdx.x == 0) push_task_prefix(v, task_prefix);
  __syncthreads();
  const int lane = threadIdx.x % 32, nwarps = blockDim.x / 32, E = v.num_experts;
  const int ntasks = task_prefix[E];
  for (int task = cta * nwarps + threadIdx.x / 32; task < ntasks; task += ncta * nwarps) {
    const push_task_t t = push_task(v, task_prefix, task);
    if (skip >= 0 && t.g == v.rank / v.tp && v.tp == 1) continue; /* own rows only */
    push_rows<U>(v, x, t, lane, skip);
    __syncwarp();
    if (lane == 0)
      for (int i = 0; i < v.tp; ++i)
        if (t.g * v.tp + i != skip) count_rows(v, t, i);
  }
}

/* ---- the fused kernel ---- */

template <class C>
__global__ void __launch_bounds__(kThreads, 1)
    layer0_kernel(const __grid_constant__ comet_comm_view_t v, const __grid_constant__ Args a,
                  const __grid_constant__ CUtensorMap tm_a, const __grid_constant__ CUtensorMap tm_b,
                  const __grid_constant__ CUtensorMap tm_c, const char *__restrict__ x, int n_comm,
                  int move_rows) {
  extern __shared__ uint8_t smem[];
  comet_pdl_begin(); /* launched by comet_launch_pdl: nothing before this */
  if (v.status->code != COMET_ROUTE_OK) return; /* refused or faulted: no rows, no tiles */
  if ((int)blockIdx.x < n_comm) {
    if (move_rows) move<16>(v, x, blockIdx.x, n_comm, C::kGather ? v.rank : -1, (int32_t *)smem);
    if (!a.tile_counter || gridDim.x == (unsigned)n_comm) return;
    __syncthreads(); /* done with task_prefix: the GEMM's shared memory now */
    /* with dynamic tiles, a mover that is done takes GEMM tiles too */
  }
  gemm_engine_run<C>(a, &tm_a, &tm_b, &tm_c, smem, (int)blockIdx.x - n_comm, gridDim.x - n_comm,
                     a.wait_count ? &v : nullptr);
}

template <class C>
static comet_status_t launch_cfg(const comet_comm_view_t *v, const Prepared &pr, const char *x,
                                 int n_comm, int move_rows, int grid, cudaStream_t stream) {
  const size_t mover_smem = sizeof(int32_t) * ((size_t)v->num_experts + 1);
  const size_t smem = (size_t)pr.smem > mover_smem ? (size_t)pr.smem : mover_smem;
  Args a = pr.args; /* the gathered A: own rows from x, the others from the window */
  a.gather_x = (const char *)x;
  a.gather_rows = v->win_local + v->off_rows;
  a.row_src = (const int32_t *)(v->win_local + v->off_row_src);
  a.row_token = (const int32_t *)(v->win_local + v->off_row_token);
  a.block_offset = v->block_offset;
  a.gather_self = v->rank;
  a.gather_world = v->world;
  COMET_CHECK(comet_allow_smem((const void *)layer0_kernel<C>, smem, "fused layer0"));
  return comet_launch_pdl("fused layer0 kernel", layer0_kernel<C>, grid, kThreads, smem, stream, *v,
                          a, pr.tm_a, pr.tm_b, pr.tm_c, x, n_comm, move_rows);
}

/* COMET_L0_TILE = wide | narrow overrides the chosen tile (experiments;
 * read once). */
static comet_gemm_tile_t env_tile(void) { /* AUTO: not forced */
  const char *t = getenv("COMET_L0_TILE");
  return t && !strcmp(t, "wide") ? COMET_GEMM_TILE_WIDE
       : t && !strcmp(t, "narrow") ? COMET_GEMM_TILE_NARROW : COMET_GEMM_TILE_AUTO;
}
static comet_gemm_tile_t tile_from_env(int chosen) {
  static const comet_gemm_tile_t forced = env_tile();
  if (forced != COMET_GEMM_TILE_AUTO) return forced;
  return chosen == 1 ? COMET_GEMM_TILE_WIDE : chosen == 2 ? COMET_GEMM_TILE_NARROW : COMET_GEMM_TILE_AUTO;
}

extern "C" comet_status_t comet_fused_layer0_launch(const comet_fused_layer0_t *f,
                                                    cudaStream_t stream) {
  const comet_comm_view_t *v = f->view;
  COMET_ARG(v->dispatch_mode == COMET_DISPATCH_PUSH,
            "fused layer0: needs the push dispatch (COMET_DISPATCH_MODE=push at layer creation)");
  const int min_comm = v->world > 1 || !f->gather ? 1 : 0; /* movers, unless nothing to move */
  COMET_ARG(f->n_comm >= min_comm && f->n_comm < v->sm_budget,
            "fused layer0: n_comm = %d must be in %d..%d (the SM budget less one GEMM CTA)",
            f->n_comm, min_comm, v->sm_budget - 1);
  COMET_ARG(f->mode >= COMET_L0_FUSED && f->mode <= COMET_L0_COMM_ONLY, "fused layer0: mode %d unknown",
            f->mode);
  if (v->row_capacity == 0) return COMET_OK;
  COMET_CHECK(comet_mtiles_launch(v, 0, f->expert_bands, stream));
  comet_gemm_params_t g;
  memset(&g, 0, sizeof g);
  g.dtype = (comet_dtype_t)v->dtype;
  g.groups = v->num_experts / v->ep;
  g.n = f->n;
  g.k = v->hidden;
  g.max_rows = v->row_capacity;
  g.a = v->win_local + v->off_rows;
  g.b = f->w1;
  g.c = f->h;
  g.group_offset = v->expert_offset;
  g.epilogue = f->swiglu ? COMET_GEMM_EPI_SWIGLU : f->gelu ? COMET_GEMM_EPI_GELU : COMET_GEMM_EPI_STORE;
  g.tile = tile_from_env(f->tile);
  g.mtiles = v->l0_tiles;
  g.mtile_count = v->l0_count;
  g.order = COMET_GEMM_ORDER_LAYER0;
  g.wait_count = f->mode == COMET_L0_FUSED ? (const uint64_t *)(v->win_local + v->off_tcount) : NULL;
  /* dynamic (the default): tiles from a counter, and the movers join the
   * GEMM once their rows are out (session 6: layer0 3-4% faster on Mixtral) */
  if (f->dynamic) g.tile_counter = v->tile_next;
  g.deterministic = 1;
  g.stages = f->stages; /* 4 (the default): the 4-stage ring where it applies */
  const int gemm_ctas = v->sm_budget - f->n_comm;
  g.num_ctas = gemm_ctas;
  Prepared pr;
  COMET_CHECK(prepare(&g, &pr));
  /* no more GEMM CTAs than there can be tiles */
  const int64_t tiles = (int64_t)v->max_mtiles * pr.args.n_tiles;
  const int grid_gemm = tiles < gemm_ctas ? (int)tiles : gemm_ctas;
  const int grid = f->mode == COMET_L0_COMM_ONLY ? f->n_comm : f->n_comm + grid_gemm;
  if (grid == 0) return COMET_OK; /* COMM_ONLY with no movers (W = 1) */
  const int move_rows = f->mode != COMET_L0_GEMM_ONLY;
  const char *x = (const char *)f->x;
  const bool sw = f->swiglu, fp16 = v->dtype == COMET_DTYPE_FP16;
#define COMET_L0_LAUNCH(BN, SW, FP16, G, D) \
  launch_cfg<Cfg<BN, SW, true, FP16, G, false, false, false, D>>(v, pr, x, f->n_comm, move_rows, grid, stream)
#define COMET_L0_LAUNCH_G(BN, SW, FP16) \
  (f->gather ? COMET_L0_LAUNCH(BN, SW, FP16, true, false) : COMET_L0_LAUNCH(BN, SW, FP16, false, false))
#define COMET_L0_LAUNCH_DEEP(SW, FP16) \
  (f->gather ? COMET_L0_LAUNCH(256, SW, FP16, true, true) : COMET_L0_LAUNCH(256, SW, FP16, false, true))
  if (pr.deep) {
    if (sw) return fp16 ? COMET_L0_LAUNCH_DEEP(true, true) : COMET_L0_LAUNCH_DEEP(true, false);
    return fp16 ? COMET_L0_LAUNCH_DEEP(false, true) : COMET_L0_LAUNCH_DEEP(false, false);
  }
  if (pr.wide) {
    if (sw) return fp16 ? COMET_L0_LAUNCH_G(256, true, true) : COMET_L0_LAUNCH_G(256, true, false);
    return fp16 ? COMET_L0_LAUNCH_G(256, false, true) : COMET_L0_LAUNCH_G(256, false, false);
  }
  if (sw) return fp16 ? COMET_L0_LAUNCH_G(128, true, true) : COMET_L0_LAUNCH_G(128, true, false);
  return fp16 ? COMET_L0_LAUNCH_G(128, false, true) : COMET_L0_LAUNCH_G(128, false, false);
#undef COMET_L0_LAUNCH_DEEP
#undef COMET_L0_LAUNCH_G
#undef COMET_L0_LAUNCH
}
