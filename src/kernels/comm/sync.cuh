/* SPDX-License-Identifier: Apache-2.0 */
/* sync.cuh — memory-ordering wrappers named by operation, semantics and
 * scope (PTX ISA 8.x, section 9.7.12 "Parallel Synchronization and
 * Communication Instructions" and the memory consistency model, 8.x), the
 * 16-byte vector accesses of the data movers.
 *
 * Flags in symmetric windows are read and written by other GPUs over NVLink,
 * so every flag access is at system (.sys) scope. A producer publishes data
 * with st_release_sys(flag, epoch) after its data stores; a consumer waits
 * with comet_wait_geq (wait.cuh, bounded) before reading the data. */
#ifndef COMET_SYNC_CUH
#define COMET_SYNC_CUH

#include <stdint.h>
#include <stdio.h>

#include "kernels/ptx.cuh"

/* ---- flags and counters ---- */

__device__ __forceinline__ void st_release_sys_u64(uint64_t *p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ uint64_t ld_acquire_sys_u64(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_relaxed_sys_u32(uint32_t *p, uint32_t v) {
  asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
/* Fetch-and-add with acquire+release at system scope: the release sequence
 * through a completion counter (see dispatch.cu) carries every earlier
 * adder's data stores to whoever publishes the flag after the last add. */
__device__ __forceinline__ uint32_t atom_add_acq_rel_sys_u32(uint32_t *p, uint32_t v) {
  uint32_t old;
  asm volatile("atom.acq_rel.sys.global.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
  return old;
}
/* Release add at system scope: a mover counts the rows it delivered into a
 * receiver's M-tile counter after storing them (fused layer0). */
__device__ __forceinline__ void red_add_release_sys_u64(uint64_t *p, uint64_t v) {
  asm volatile("red.release.sys.global.add.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
/* The same at GPU scope: for a counter of this GPU's own window (a
 * system-scope release may drain far more than this GPU's stores). */
__device__ __forceinline__ void red_add_release_gpu_u64(uint64_t *p, uint64_t v) {
  asm volatile("red.release.gpu.global.add.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
/* fence.acq_rel.sys: orders this thread's earlier accesses (and, through a
 * preceding barrier, its CTA's or warp's) before its later ones, system-wide. */
__device__ __forceinline__ void fence_acq_rel_sys() { asm volatile("fence.acq_rel.sys;" ::: "memory"); }

/* ---- 16-byte data accesses ---- */

/* Streaming read of source rows: read once, keep them out of L1. */
__device__ __forceinline__ uint4 ld_nc_na_v4(const void *p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
/* Plain 16-byte load (data another kernel or GPU wrote: no .nc). */
__device__ __forceinline__ uint4 ld_v4(const void *p) {
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}
/* 16-byte load cached in L2 only: data that other CTAs or GPUs write while
 * this kernel runs (after an acquire of their flag). L1 is not coherent: a
 * line cached there earlier in the kernel, for a neighbouring segment,
 * could be stale. */
__device__ __forceinline__ uint4 ld_cg_v4(const void *p) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}
/* A float another GPU (or kernel) wrote, cached in L2 only (see ld_cg_v4). */
__device__ __forceinline__ float ld_cg_f32(const float *p) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
  return v;
}
/* 16-byte store (local or to a peer through an LSA pointer), not kept in L1. */
__device__ __forceinline__ void st_na_v4(void *p, uint4 v) {
  asm volatile("st.global.L1::no_allocate.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x),
               "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

/* A warp copies one row of n16 16-byte vectors from src to dst (a peer's
 * window too): each lane loads U vectors before it stores them, U * 512
 * bytes in flight per warp. */
template <int U>
__device__ __forceinline__ void copy_row(const char *__restrict__ src, char *dst, int n16,
                                         int lane) {
  for (int base = 0; base < n16; base += 32 * U) {
    uint4 val[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * 32 + lane;
      if (j < n16) val[u] = ld_nc_na_v4(src + (size_t)j * 16);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * 32 + lane;
      if (j < n16) st_na_v4(dst + (size_t)j * 16, val[u]);
    }
  }
}

/* ---- bulk copies through shared memory (PTX ISA 9.7.9.25.4, cp.async.bulk) ----
 * One thread moves whole row chunks: global -> shared completing on an
 * mbarrier, shared -> global (a peer's window too) in bulk groups.
 * bulk_commit / bulk_wait_all are ptx.cuh's. */
__device__ __forceinline__ void bulk_load_g2s(void *smem_dst, const void *src, uint32_t bytes,
                                              uint64_t *bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          (uint32_t)__cvta_generic_to_shared(smem_dst)),
      "l"(src), "r"(bytes), "r"((uint32_t)__cvta_generic_to_shared(bar))
      : "memory");
}
__device__ __forceinline__ void bulk_store_s2g(void *dst, const void *smem_src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst),
               "r"((uint32_t)__cvta_generic_to_shared(smem_src)), "r"(bytes)
               : "memory");
}
/* Orders this thread's async-proxy accesses (bulk copies) with its later
 * generic-proxy ones (the release that publishes them). */
__device__ __forceinline__ void fence_proxy_async_all() { asm volatile("fence.proxy.async;" ::: "memory"); }

/* ---- plain system-scope accesses for fault words and the abort word ---- */

__device__ __forceinline__ uint32_t ld_relaxed_sys_u32(const uint32_t *p) {
  uint32_t v;
  asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

#endif /* COMET_SYNC_CUH */
