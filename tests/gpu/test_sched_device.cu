/* SPDX-License-Identifier: Apache-2.0 */
// test_sched_device.cu — the plan arithmetic (plan_core.h) and the tile
// schedules (schedule.h) compiled for the device give the same tables as on
// the host, on random and skewed routings; so do the fused kernels'
// parallel tile-list kernel (kernels/fused/tiles.cu), 128-row tiles.
#include <cuda_runtime.h>
#include <stdlib.h>

#include "kernels/fused/fused.h"
#include "plan.h"
#include "schedule.h"
#include "test_util.h"

#define CUDA_OK(call)                                                                 \
  do {                                                                                \
    cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
              cudaGetErrorString(e_));                                                \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

enum { MAXW = 8, MAXE = 64, MAXT = 4096 };

// One thread per receiving rank q: offsets, then both M-tile lists.
__global__ void sched_kernel(comet_plan_dims_t d, const int32_t *all_counts, int tile_m,
                             int32_t *expert_offset, int32_t *block_offset, comet_mtile_t *l0,
                             comet_mtile_t *l1, int *counts) {
  const int q = threadIdx.x, W = comet_plan_world(d), El = comet_plan_local_experts(d);
  if (q >= W) return;
  int32_t *eo = expert_offset + q * (El + 1), *bo = block_offset + q * El * (W + 1);
  comet_plan_offsets(d, all_counts, q, eo, bo);
  counts[3 * q] = comet_sched_mtile_count(eo, El, tile_m);
  counts[3 * q + 1] = comet_sched_mtiles_layer0(bo, El, W, tile_m, l0 + q * MAXT);
  counts[3 * q + 2] = comet_sched_mtiles_natural(bo, El, W, tile_m, l1 + q * MAXT);
}

static int same_tiles(const comet_mtile_t *a, const comet_mtile_t *b, int n) {
  for (int i = 0; i < n; ++i)
    if (a[i].expert != b[i].expert || a[i].row_begin != b[i].row_begin || a[i].rows != b[i].rows ||
        a[i].src_first != b[i].src_first || a[i].src_last != b[i].src_last || a[i].index != b[i].index ||
        a[i].band_first != b[i].band_first || a[i].band_size != b[i].band_size)
      return 0;
  return 1;
}

int main() {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
    return test_skip("test_sched_device", "no GPU");
  uint64_t rng = test_seed("test_sched_device");
  int32_t *d_counts, *d_eo, *d_bo, *d_n;
  comet_mtile_t *d_l0, *d_l1;
  CUDA_OK(cudaMalloc(&d_counts, sizeof(int32_t) * MAXW * MAXE));
  CUDA_OK(cudaMalloc(&d_eo, sizeof(int32_t) * MAXW * (MAXE + 1)));
  CUDA_OK(cudaMalloc(&d_bo, sizeof(int32_t) * MAXW * MAXE * (MAXW + 1)));
  CUDA_OK(cudaMalloc(&d_l0, sizeof(comet_mtile_t) * MAXW * MAXT));
  CUDA_OK(cudaMalloc(&d_l1, sizeof(comet_mtile_t) * MAXW * MAXT));
  CUDA_OK(cudaMalloc(&d_n, sizeof(int) * 3 * MAXW));
  /* the tile-list kernel's view: only what it reads (status, the offsets) */
  comet_route_status_t *d_st;
  comet_mtile_t *d_list;
  int32_t *d_list_n;
  CUDA_OK(cudaMalloc(&d_st, sizeof *d_st));
  CUDA_OK(cudaMemset(d_st, 0, sizeof *d_st));
  CUDA_OK(cudaMalloc(&d_list, sizeof(comet_mtile_t) * MAXT));
  CUDA_OK(cudaMalloc(&d_list_n, sizeof(int32_t)));
  uint32_t *d_next; /* the fused kernels' dynamic tile counters, which the kernel resets */
  CUDA_OK(cudaMalloc(&d_next, 2 * sizeof(uint32_t)));
  static const int layouts[][4] = {{8, 2, 4, 1}, {8, 2, 1, 4}, {8, 2, 2, 2}, {64, 6, 4, 1},
                                   {1, 1, 1, 1}, {16, 4, 8, 1}, {32, 8, 2, 4}};
  for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; ++li)
    for (int skew = 0; skew < 3; ++skew) {
      comet_plan_dims_t d = {layouts[li][0], layouts[li][1], layouts[li][2], layouts[li][3]};
      const int W = comet_plan_world(d), E = d.num_experts, El = comet_plan_local_experts(d);
      const int tile_m = skew == 2 ? 64 : 128;
      int32_t counts[MAXW * MAXE];
      for (int i = 0; i < W * E; ++i) {
        int c = test_rand_int(&rng, 0, 700 / E + 1);
        if (skew == 1) c = (i % E == 0) ? test_rand_int(&rng, 0, 900) : 0; /* all to expert 0 */
        counts[i] = c;
      }
      CUDA_OK(cudaMemcpy(d_counts, counts, sizeof(int32_t) * W * E, cudaMemcpyHostToDevice));
      sched_kernel<<<1, 32>>>(d, d_counts, tile_m, d_eo, d_bo, d_l0, d_l1, d_n);
      CUDA_OK(cudaGetLastError());
      CUDA_OK(cudaDeviceSynchronize());
      static int32_t g_eo[MAXW * (MAXE + 1)], g_bo[MAXW * MAXE * (MAXW + 1)];
      static comet_mtile_t g_l0[MAXW * MAXT], g_l1[MAXW * MAXT], h_l[MAXT];
      int g_n[3 * MAXW];
      CUDA_OK(cudaMemcpy(g_eo, d_eo, sizeof(int32_t) * W * (El + 1), cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(g_bo, d_bo, sizeof(int32_t) * W * El * (W + 1), cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(g_l0, d_l0, sizeof(comet_mtile_t) * W * MAXT, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(g_l1, d_l1, sizeof(comet_mtile_t) * W * MAXT, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(g_n, d_n, sizeof(int) * 3 * W, cudaMemcpyDeviceToHost));
      for (int q = 0; q < W; ++q) {
        int32_t eo[MAXE + 1], bo[MAXE * (MAXW + 1)];
        comet_plan_offsets(d, counts, q, eo, bo);
        CHECK(memcmp(eo, g_eo + q * (El + 1), sizeof(int32_t) * (El + 1)) == 0);
        CHECK(memcmp(bo, g_bo + q * El * (W + 1), sizeof(int32_t) * El * (W + 1)) == 0);
        const int n = comet_sched_mtile_count(eo, El, tile_m);
        CHECK(n <= MAXT && g_n[3 * q] == n && g_n[3 * q + 1] == n && g_n[3 * q + 2] == n);
        if (n > MAXT) continue;
        comet_sched_mtiles_layer0(bo, El, W, tile_m, h_l);
        CHECK_MSG(same_tiles(h_l, g_l0 + q * MAXT, n), "layout %zu skew %d rank %d: layer0 list", li, skew, q);
        comet_sched_mtiles_natural(bo, El, W, tile_m, h_l);
        CHECK_MSG(same_tiles(h_l, g_l1 + q * MAXT, n), "layout %zu skew %d rank %d: natural list", li, skew, q);
        if (tile_m != COMET_MTILE_ROWS) continue;
        comet_comm_view_t v;
        memset(&v, 0, sizeof v);
        v.rank = q;
        v.world = W;
        v.num_experts = E;
        v.ep = d.ep;
        v.tp = d.tp;
        v.status = d_st;
        v.expert_offset = d_eo + q * (El + 1);
        v.block_offset = d_bo + q * El * (W + 1);
        v.l0_tiles = v.l1_tiles = d_list;
        v.l0_count = v.l1_count = d_list_n;
        v.tile_next = d_next;
        for (int natural = 0; natural < 2; ++natural) {
          CUDA_OK(cudaMemset(d_list, 0xff, sizeof(comet_mtile_t) * MAXT));
          CHECK_OK(comet_mtiles_launch(&v, natural, 1, 0));
          static comet_mtile_t g_list[MAXT];
          int32_t g_list_n = -1;
          CUDA_OK(cudaMemcpy(&g_list_n, d_list_n, sizeof g_list_n, cudaMemcpyDeviceToHost));
          CUDA_OK(cudaMemcpy(g_list, d_list, sizeof(comet_mtile_t) * MAXT, cudaMemcpyDeviceToHost));
          if (natural) comet_sched_mtiles_natural(bo, El, W, tile_m, h_l);
          else comet_sched_mtiles_layer0(bo, El, W, tile_m, h_l);
          CHECK_MSG(g_list_n == n && same_tiles(h_l, g_list, n),
                    "layout %zu skew %d rank %d: the %s tile-list kernel (%d tiles, want %d)", li,
                    skew, q, natural ? "natural" : "layer0", g_list_n, n);
        }
      }
    }
  cudaFree(d_st); cudaFree(d_list); cudaFree(d_list_n); cudaFree(d_next);
  cudaFree(d_counts); cudaFree(d_eo); cudaFree(d_bo); cudaFree(d_l0); cudaFree(d_l1); cudaFree(d_n);
  return test_finish("test_sched_device");
}
