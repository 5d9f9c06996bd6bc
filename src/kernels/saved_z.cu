/* SPDX-License-Identifier: Apache-2.0 */
/* saved_z.cu — the save mode's stamp and check (saved_z.h). One CTA hashes
 * this rank's plan: the row count, the local experts' row offsets and every
 * row's (source rank, token, slot) from the receivers' row tables, each
 * term mixed with its index and the terms XORed, so the hash is the same
 * whatever order the threads take. Both kernels run after a plan's row
 * tables are complete (its plan-done barrier, or stream order at W = 1). */
#include <stdint.h>

#include "error.h"
#include "kernels/launch_check.cuh"
#include "kernels/saved_z.h"

#define HASH_THREADS 512

static __device__ __forceinline__ uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The plan's hash and row count, in thread 0 (every thread must call). */
static __device__ uint64_t plan_hash(const comet_comm_view_t &v, int64_t *rows_out) {
  __shared__ uint64_t warp_h[HASH_THREADS / 32];
  const int El = v.num_experts / v.ep;
  const int64_t rows = v.expert_offset[El];
  const int32_t *src = (const int32_t *)(v.win_local + v.off_row_src);
  const int32_t *tok = (const int32_t *)(v.win_local + v.off_row_token);
  const int32_t *slot = (const int32_t *)(v.win_local + v.off_row_slot);
  uint64_t h = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const uint64_t key = ((uint64_t)(uint32_t)tok[r] << 32) ^ ((uint64_t)(uint32_t)src[r] << 12) ^
                         (uint64_t)(uint32_t)slot[r];
    h ^= mix64(key + 0x9e3779b97f4a7c15ull * (uint64_t)(r + 1));
  }
  for (int e = threadIdx.x; e <= El; e += blockDim.x)
    h ^= mix64(0xd6e8feb86659fd93ull * (uint64_t)(e + 1) + (uint64_t)(uint32_t)v.expert_offset[e]);
  for (int o = 16; o > 0; o >>= 1) h ^= __shfl_xor_sync(0xffffffffu, h, o);
  if (threadIdx.x % 32 == 0) warp_h[threadIdx.x / 32] = h;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)blockDim.x / 32; ++w) h ^= warp_h[w];
    h ^= mix64((uint64_t)rows);
  }
  *rows_out = rows;
  return h;
}

__global__ void __launch_bounds__(HASH_THREADS) saved_z_stamp_kernel(comet_comm_view_t v,
                                                                     comet_saved_trailer_t *t,
                                                                     uint64_t layer) {
  if (v.status->code != COMET_ROUTE_OK) { /* a refused plan filled no z */
    if (threadIdx.x == 0) t->magic = 0;
    return;
  }
  int64_t rows;
  const uint64_t h = plan_hash(v, &rows);
  if (threadIdx.x == 0) {
    t->layer = layer;
    t->hash = h;
    t->rows = (uint64_t)rows;
    t->magic = COMET_SAVED_MAGIC;
  }
}

__global__ void __launch_bounds__(HASH_THREADS) saved_z_check_kernel(comet_comm_view_t v,
                                                                     const comet_saved_trailer_t *t,
                                                                     uint64_t layer) {
  if (v.status->code != COMET_ROUTE_OK) return; /* the next plan is refused anyway */
  int64_t rows;
  const uint64_t h = plan_hash(v, &rows);
  if (threadIdx.x != 0) return;
  const comet_saved_trailer_t got = *t;
  const int why = got.magic != COMET_SAVED_MAGIC ? COMET_SAVED_NOT_FILLED
                : got.layer != layer              ? COMET_SAVED_OTHER_LAYER
                : got.hash != h || got.rows != (uint64_t)rows ? COMET_SAVED_OTHER_PLAN
                                                               : 0;
  if (why) *v.pending = comet_arg_fault_t{COMET_ARG_SAVED_Z, COMET_FIELD_SAVED_Z, why, 0};
}

extern "C" comet_status_t comet_saved_z_stamp_launch(const comet_comm_view_t *v,
                                                     comet_saved_trailer_t *t, uint64_t layer,
                                                     cudaStream_t s) {
  saved_z_stamp_kernel<<<1, HASH_THREADS, 0, s>>>(*v, t, layer);
  return comet_launched("saved_z_stamp_kernel");
}

extern "C" comet_status_t comet_saved_z_check_launch(const comet_comm_view_t *v,
                                                     const comet_saved_trailer_t *t,
                                                     uint64_t layer, cudaStream_t s) {
  saved_z_check_kernel<<<1, HASH_THREADS, 0, s>>>(*v, t, layer);
  return comet_launched("saved_z_check_kernel");
}
