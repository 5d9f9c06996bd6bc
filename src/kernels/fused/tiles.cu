/* SPDX-License-Identifier: Apache-2.0 */
/* tiles.cu — the fused kernels' M-tile lists, built on the device from the
 * routing plan (expert_offset, block_offset) by one CTA, into the plan's
 * scratch: layer0's order (schedule.h: tiles whose rows come from this rank
 * first, then in the order the peers' rows arrive) and the natural order
 * (layer1). The same lists as schedule.h's host functions
 * (test_sched_device checks). */
#include <cuda_runtime.h>
#include <stdint.h>

#include "error.h"
#include "kernels/comm/comm.h"
#include "kernels/comm/cta_scan.cuh"
#include "kernels/fused/fused.h"
#include "kernels/launch_check.cuh"
#include "kernels/pdl.cuh"
#include "schedule.h"

#define TILES_THREADS 512

/* ---- the layer0 tile list ---- */

/* Natural M-tile i (mstart: M-tiles before each local expert). */
static __device__ __forceinline__ comet_mtile_t natural_tile(const comet_comm_view_t &v,
                                                             const int32_t *mstart, int El, int i) {
  int lo = 0, hi = El; /* largest el with mstart[el] <= i */
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (mstart[mid] <= i) lo = mid;
    else hi = mid;
  }
  const int W = v.world;
  const int32_t end = v.expert_offset[lo + 1];
  comet_mtile_t t;
  t.expert = lo;
  t.row_begin = v.expert_offset[lo] + (i - mstart[lo]) * COMET_MTILE_ROWS;
  t.rows = min(COMET_MTILE_ROWS, end - t.row_begin);
  t.src_first = (int16_t)comet_sched_block_of_row(v.block_offset, W, lo, t.row_begin);
  t.src_last = (int16_t)comet_sched_block_of_row(v.block_offset, W, lo, t.row_begin + t.rows - 1);
  t.index = i;
  return t;
}

/* src_last of natural M-tile j of local expert el. */
static __device__ __forceinline__ int natural_src_last(const comet_comm_view_t &v,
                                                       const int32_t *mstart, int el, int j) {
  const int32_t r = v.expert_offset[el] + (j - mstart[el]) * COMET_MTILE_ROWS;
  const int32_t rows = min(COMET_MTILE_ROWS, v.expert_offset[el + 1] - r);
  return comet_sched_block_of_row(v.block_offset, v.world, el, r + rows - 1);
}

/* The run of natural tile i (t, its entry) in either list, as natural
 * indices [*b, *e): its expert's tiles with its src_last. They lie
 * together in both lists (src_last never decreases along an expert's
 * rows), so the band follows from i's offset in the run (schedule.h's
 * comet_sched_bands on the host). */
static __device__ void natural_run(const comet_comm_view_t &v, const int32_t *mstart,
                                   const comet_mtile_t &t, int i, int *b, int *e) {
  int lo = mstart[t.expert], hi = i; /* the first tile with src_last >= t's */
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (natural_src_last(v, mstart, t.expert, mid) >= t.src_last) hi = mid;
    else lo = mid + 1;
  }
  *b = lo;
  lo = i + 1;
  hi = mstart[t.expert + 1]; /* the first tile past i with a later src_last */
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (natural_src_last(v, mstart, t.expert, mid) > t.src_last) hi = mid;
    else lo = mid + 1;
  }
  *e = lo;
}

/* natural = 0: the same list as comet_sched_mtiles_layer0 (by src_last,
 * then natural order) into l0_tiles, one arrival level at a time: each
 * thread takes a contiguous run of natural tiles, a scan places each level's
 * tiles. natural = 1: the natural list (comet_sched_mtiles_natural) into
 * l1_tiles. */
__global__ void __launch_bounds__(TILES_THREADS) mtiles_kernel(comet_comm_view_t v, int natural,
                                                               int expert_bands) {
  comet_pdl_begin(); /* launched by comet_launch_pdl: nothing before this */
  extern __shared__ int32_t mstart[]; /* [El + 1] */
  __shared__ int warp_sums[32];
  comet_mtile_t *out = natural ? v.l1_tiles : v.l0_tiles;
  int32_t *count = natural ? v.l1_count : v.l0_count;
  if (threadIdx.x == 0) v.tile_next[natural] = 0; /* the fused kernel's dynamic tiles start over */
  if (v.status->code != COMET_ROUTE_OK) {
    if (threadIdx.x == 0) *count = 0;
    return;
  }
  const int El = v.num_experts / v.ep, W = v.world;
  /* M-tiles before each local expert: each expert's count by its own
   * thread, then one warp's scan (a thread's serial walk over 64 experts
   * took ~6 us, session 15; the generic CTA array scan spilled here) */
  const int32_t *eo = v.expert_offset;
  for (int el = threadIdx.x; el < El; el += blockDim.x)
    mstart[el] = (eo[el + 1] - eo[el] + COMET_MTILE_ROWS - 1) / COMET_MTILE_ROWS;
  __syncthreads();
  if (threadIdx.x < 32) warp_scan_shared(mstart, El);
  __syncthreads();
  const int n = mstart[El];
  const int chunk = (n + blockDim.x - 1) / blockDim.x;
  const int i0 = min(n, (int)threadIdx.x * chunk), i1 = min(n, i0 + chunk);
  int rb, re; /* a tile's run (natural_run) */
  if (natural) {
    for (int i = i0; i < i1; ++i) {
      comet_mtile_t t = natural_tile(v, mstart, El, i);
      natural_run(v, mstart, t, i, &rb, &re);
      comet_sched_band(i, rb, re, &t);
      out[i] = t;
    }
    if (threadIdx.x == 0) *count = n;
    return;
  }
  int base = 0;
  for (int level = 0; level < W; ++level) {
    int mine = 0;
    for (int i = i0; i < i1; ++i) mine += natural_tile(v, mstart, El, i).src_last == level;
    int total;
    int pos = base + cta_exclusive_scan<int>(mine, &total, warp_sums);
    for (int i = i0; i < i1 && mine > 0; ++i) {
      comet_mtile_t t = natural_tile(v, mstart, El, i);
      if (t.src_last != level) continue;
      if (expert_bands) {
        natural_run(v, mstart, t, i, &rb, &re);
        comet_sched_band(pos, pos - (i - rb), pos - (i - rb) + (re - rb), &t);
      } else { /* the old order's bands: COMET_SCHED_BAND entries, across experts */
        t.band_first = pos / COMET_SCHED_BAND * COMET_SCHED_BAND;
        t.band_size = min(COMET_SCHED_BAND, n - t.band_first);
      }
      out[pos++] = t;
    }
    base += total;
  }
  if (threadIdx.x == 0) *count = n;
}

static size_t mtiles_smem(int local_experts) { /* the experts' row offsets */
  return sizeof(int32_t) * ((size_t)local_experts + 1);
}

extern "C" comet_status_t comet_mtiles_launch(const comet_comm_view_t *v, int natural,
                                              int expert_bands, cudaStream_t stream) {
  const size_t smem = mtiles_smem(v->num_experts / v->ep);
  COMET_CHECK(comet_allow_smem((const void *)mtiles_kernel, smem, "M-tile list"));
  return comet_launch_pdl("mtiles_kernel", mtiles_kernel, 1, TILES_THREADS, smem, stream, *v,
                          natural, expert_bands);
}

