/* SPDX-License-Identifier: Apache-2.0 */
/* ptx.cuh — one small named wrapper per Hopper PTX instruction the GEMM
 * engine uses, each with the PTX ISA section it follows (ISA 8.x/9.0
 * numbering). sm_90a only where marked. Shared-memory addresses are 32-bit
 * .shared::cta addresses (cvta'd once by smem_u32). */
#ifndef COMET_PTX_CUH
#define COMET_PTX_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* ---- mbarrier (9.7.13.15) ---- */

/* mbarrier.init: expected arrival count. */
__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
/* fence.mbarrier_init (9.7.13.4): make inits visible to the async proxy (TMA). */
__device__ __forceinline__ void fence_mbar_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
/* mbarrier.arrive.expect_tx: arrive once and expect `bytes` of TMA traffic. */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}
/* mbarrier.arrive (release at CTA scope, the default). */
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
/* mbarrier.try_wait.parity in a loop: returns once phase `parity` completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

/* ---- clusters (9.7.13.x barrier.cluster, mapa; special register %cluster_ctarank) ---- */

__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
/* Every thread of every CTA of the cluster meets (release / acquire). */
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;" ::: "memory");
}
/* mbarrier.arrive on the barrier at the same shared offset in CTA `cta`
 * of this cluster (mapa gives its shared::cluster address), with the
 * default .release.cta semantics: the pairs' consumers release a stage
 * whose only reads (wgmma's) wgmma.wait_group has already completed, so
 * there is nothing for a cluster-scope release to order, and
 * .release.cluster compiled to MEMBAR.ALL.GPU before every remote arrival
 * (each stage, each consumer warpgroup): the pairs ran 1.34x the single
 * CTAs' time a tile (session 23 run 1). */
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *bar, uint32_t cta) {
  asm volatile(
      "{\n.reg .b32 ra;\n"
      "mapa.shared::cluster.u32 ra, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}" ::"r"(smem_u32(bar)),
      "r"(cta)
      : "memory");
}

/* ---- bulk tensor copies, TMA (9.7.9.25.5) ---- */

/* cp.async.bulk.tensor.2d global -> shared, completing on an mbarrier. */
__device__ __forceinline__ void tma_load_2d(void *dst, const void *tmap, uint64_t *bar, int c0,
                                            int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];" ::"r"(smem_u32(dst)),
      "l"(tmap), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(void *dst, const void *tmap, uint64_t *bar, int c0,
                                            int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];" ::"r"(smem_u32(dst)),
      "l"(tmap), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
/* The 3d load multicast (.multicast::cluster): the box lands at the same
 * shared offset in every CTA of ctaMask and completes on the mbarrier at
 * the same offset in each. */
__device__ __forceinline__ void tma_load_3d_mc(void *dst, const void *tmap, uint64_t *bar, int c0,
                                               int c1, int c2, uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%3, %4, %5}], [%2], %6;" ::"r"(smem_u32(dst)),
      "l"(tmap), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2), "h"(mask)
      : "memory");
}
/* The 2d load multicast (.multicast::cluster), as tma_load_3d_mc above. */
__device__ __forceinline__ void tma_load_2d_mc(void *dst, const void *tmap, uint64_t *bar, int c0,
                                               int c1, uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(smem_u32(dst)),
      "l"(tmap), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
      : "memory");
}
/* cp.async.bulk.tensor.2d shared -> global (bulk-group completion);
 * elements outside the tensor's bounds are not written. */
__device__ __forceinline__ void tma_store_2d(const void *tmap, const void *src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group [%0, {%2, %3}], [%1];" ::
                   "l"(tmap),
               "r"(smem_u32(src)), "r"(c0), "r"(c1)
               : "memory");
}
/* cp.async.bulk.commit_group / wait_group (9.7.9.25.6, .7). `.read` waits only
 * until the sources were read (shared memory reusable); without it, until
 * the writes are complete. */
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;"); }
__device__ __forceinline__ void bulk_wait_read_all() {
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}
/* At most N of this thread's bulk groups still reading shared memory. */
template <int N> __device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void bulk_wait_all() {
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}
/* prefetch.tensormap (9.7.9.26): pull a __grid_constant__ tensor map into cache. */
__device__ __forceinline__ void tma_prefetch_desc(const void *tmap) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(tmap) : "memory");
}

/* ---- proxy fences (9.7.13.4, membar/fence) ---- */

/* Generic-proxy shared writes before async-proxy reads of them (TMA store, wgmma). */
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
/* Orders global memory between the generic and async proxies: after an
 * acquire (TMA loads next read what the releaser wrote) and after a TMA
 * store's completion (a generic release publishes it next). */
__device__ __forceinline__ void fence_proxy_async_global() {
  asm volatile("fence.proxy.async.global;" ::: "memory");
}

/* ---- memory-ordering loads and stores (9.7.9.8 ld, 9.7.9.10 st; 8.x model) ---- */

/* Nanoseconds of the global timer (PTX ISA 10.22, %globaltimer): coarse, for timeouts. */
__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ uint32_t ld_acquire_sys_u32(const uint32_t *p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_sys_u32(uint32_t *p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* red.global.add.v4.f32 (9.7.13.6 red, vector form: sm_90, PTX 8.1), relaxed at
 * GPU scope: four fp32 adds into 16 aligned bytes of global memory. */
__device__ __forceinline__ void red_add_v4_f32(float *p, float x, float y, float z, float w) {
  asm volatile("red.relaxed.gpu.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(x),
               "f"(y), "f"(z), "f"(w)
               : "memory");
}

/* st.shared.u32 at a 32-bit shared address (keeps address arithmetic 32-bit). */
__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}

/* stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 (9.7.14.5.16): four 8 x 8
 * matrices of 16-bit elements, each held as an mma fragment (register i of
 * lane l: row l / 4, columns 2 (l % 4) and the next, of matrix i), stored
 * transposed: row r of matrix i (16 bytes) goes to the address that lane
 * 8 i + r gives. x2: matrices 0 and 1 (lanes 0-15's addresses). */
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1,
                                                  uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}
__device__ __forceinline__ void stmatrix_x2_trans(uint32_t addr, uint32_t r0, uint32_t r1) {
  asm volatile("stmatrix.sync.aligned.m8n8.x2.trans.shared.b16 [%0], {%1, %2};" ::"r"(addr),
               "r"(r0), "r"(r1)
               : "memory");
}

/* ---- cp.async, 16 bytes (9.7.9.25.3), completing on an mbarrier ----
 * src_bytes < 16 zero-fills the rest (0: no read, the 16 bytes are zeros). */
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
/* The mbarrier receives one arrival once this thread's earlier cp.asyncs
 * are complete (.noinc: the arrival is one of the barrier's init count). */
__device__ __forceinline__ void cp_async_mbar_arrive_noinc(uint64_t *bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_u32(bar)) : "memory");
}

/* ---- named barriers (9.7.13.1 bar.sync): a subset of the CTA's warps ---- */

__device__ __forceinline__ void named_bar_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

/* ---- register reallocation, sm_90a (9.7.17.1 setmaxnreg) ---- */

template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kRegs));
}
template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kRegs));
}

/* ---- warpgroup MMA control, sm_90a (9.7.15.6) ---- */

/* wgmma.fence: accumulator registers written before are ordered before the next wgmma. */
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
/* wgmma.wait_group N: at most N committed groups still pending. */
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

/* Matrix descriptor (9.7.15.5.1) of a K-major tile in shared memory written
 * by TMA with 128-byte swizzle: rows of 128 bytes (64 bf16 of K), 8-row
 * core groups 1024 bytes apart (stride byte offset), leading byte offset
 * unused for this layout (1), swizzle mode 1 = 128B in bits 62-63. The tile
 * base must be 1024-byte aligned; a K step of 16 elements inside the
 * 128-byte row advances the start address by 32 bytes. */
/* The same for an MN-major operand (wgmma's transposed B): 128-byte rows
 * of 64 MN values at one k, 8 k-rows per 1024-byte swizzle atom (SBO), the
 * next 64 MN values lbo_bytes further (LBO; PTX ISA 9.7.15.5.1.2.1). */
__device__ __forceinline__ uint64_t wgmma_desc_sw128_mn(uint32_t smem_addr, uint32_t lbo_bytes) {
  uint64_t d = 0;
  d |= (uint64_t)((smem_addr & 0x3FFFF) >> 4);
  d |= (uint64_t)((lbo_bytes & 0x3FFFF) >> 4) << 16;
  d |= (uint64_t)(1024 >> 4) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}

__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr) {
  uint64_t d = 0;
  d |= (uint64_t)((smem_addr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16;
  d |= (uint64_t)(1024 >> 4) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}

#endif /* COMET_PTX_CUH */
