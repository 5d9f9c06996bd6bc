/* SPDX-License-Identifier: Apache-2.0 */
/* wait.cuh — comet's bounded, abort-aware waits and its device barrier
 * across ranks (the transport seam's device half, DESIGN §3.1).
 *
 * Every wait gives up when the layer's timeout passes, when the context's
 * abort word (mapped host memory) is raised, or when a peer reports that its
 * own wait gave up (the fault word in this rank's window); the flag is read
 * every iteration (with a short sleep once the wait is long), the fault
 * words and the clock every 64, the abort word every 1024 (a host-memory
 * read is slow).
 * The first wait of a layer to give up records why in view.fault and its
 * host mirror, tells every peer through their fault words, and sets the
 * call's status to FAULT so the rest of the call does nothing. */
#ifndef COMET_WAIT_CUH
#define COMET_WAIT_CUH

#include <stdint.h>

#include "kernels/comm/comm.h"
#include "kernels/comm/sync.cuh"

__device__ __forceinline__ uint32_t *fault_word(const comet_comm_view_t &v, int rank) {
  return (uint32_t *)(v.peer[rank] + v.off_fault);
}


static __device__ __forceinline__ void comet_raise_fault(const comet_comm_view_t &v, int code, int what,
                                               int peer, int a, int b, uint64_t target,
                                               uint64_t seen) {
  v.status->code = COMET_ROUTE_FAULT;
  if (atomicCAS(&v.fault->code, 0, -1) != 0) return; /* not the first */
  comet_fault_t f;
  f.code = code;
  f.rank = v.rank;
  f.what = what;
  f.peer = peer;
  f.a = a;
  f.b = b;
  f.target = target;
  f.seen = seen;
  volatile comet_fault_t *h = v.fault_host;
  h->rank = f.rank;
  h->what = f.what;
  h->peer = f.peer;
  h->a = f.a;
  h->b = f.b;
  h->target = f.target;
  h->seen = f.seen;
  v.fault->rank = f.rank;
  v.fault->what = f.what;
  v.fault->peer = f.peer;
  v.fault->a = a;
  v.fault->b = b;
  v.fault->target = target;
  v.fault->seen = seen;
  __threadfence_system();
  h->code = code;
  *(volatile int32_t *)&v.fault->code = code;
  if (code != COMET_FAULT_PEER)
    for (int p = 0; p < v.world; ++p)
      if (p != v.rank) st_relaxed_sys_u32(fault_word(v, p), (uint32_t)v.rank + 1u);
}

/* All threads of the CTA, in the kernel that settles a call's status (the
 * plan's exchange, the combine's begin), on each of its ways out: the
 * status into its mapped host mirror, which the host reads after an event
 * (no copy in the stream: comm.h, status_host). */
__device__ __forceinline__ void comet_status_mirror(const comet_comm_view_t &v) {
  __syncthreads();
  if (threadIdx.x == 0) *v.status_host = *v.status;
}

/* One thread, at a call's start: has this layer already faulted (a local
 * wait gave up, or a peer said its own did), or is this rank aborted? Either
 * of the last two is recorded here as a fault of this rank, so the host
 * reports it, and the call does nothing. */
__device__ __forceinline__ bool comet_faulted(const comet_comm_view_t &v) {
  if (*(volatile int32_t *)&v.fault->code != 0) return true;
  const uint32_t pf = ld_relaxed_sys_u32(fault_word(v, v.rank));
  if (pf != 0)
    comet_raise_fault(v, COMET_FAULT_PEER, COMET_WAIT_START, (int)pf - 1, 0, 0, 0, 0);
  else if (*(volatile const uint32_t *)v.abort != 0)
    comet_raise_fault(v, COMET_FAULT_ABORT, COMET_WAIT_START, v.rank, 0, 0, 0, 0);
  else
    return false;
  return true;
}

/* Waits until *flag >= target (acquire, system scope). Returns false if the
 * wait gave up (the fault is recorded). what/peer/a/b name the flag. */
static __device__ __forceinline__ bool comet_wait_geq(const comet_comm_view_t &v, const uint64_t *flag,
                                            uint64_t target, int what, int peer, int a, int b) {
  uint64_t seen = ld_acquire_sys_u64(flag);
  if (seen >= target) return true;
  const uint64_t t0 = globaltimer_ns();
  for (uint32_t it = 1;; ++it) {
    seen = ld_acquire_sys_u64(flag);
    if (seen >= target) return true;
    /* a long wait backs off, so that many waiting CTAs leave the memory
     * system to the ones they wait for */
    if (it > 256) __nanosleep(128);
    if ((it & 63) != 0) continue;
    if (*(volatile int32_t *)&v.fault->code != 0) {
      v.status->code = COMET_ROUTE_FAULT;
      return false;
    }
    const uint32_t pf = ld_relaxed_sys_u32(fault_word(v, v.rank));
    int code = COMET_FAULT_NONE, who = peer;
    if (pf != 0) {
      code = COMET_FAULT_PEER;
      who = (int)pf - 1;
    } else if ((it & 1023) == 0 && *(volatile const uint32_t *)v.abort != 0) {
      code = COMET_FAULT_ABORT; /* host memory: read less often */
    } else if (globaltimer_ns() - t0 > v.timeout_ns) {
      code = COMET_FAULT_TIMEOUT;
    }
    if (code != COMET_FAULT_NONE) {
      comet_raise_fault(v, code, what, who, a, b, target, seen);
      return false;
    }
  }
}

/* All threads of the CTA (blockDim.x >= world): every rank's CTA meets here
 * at barrier `index` of the call of `epoch`. Stores made before (this CTA's,
 * and earlier kernels' in stream order) are visible to every rank after.
 * Returns false on every thread if the barrier gave up. */
__device__ __forceinline__ bool comet_barrier_cta(const comet_comm_view_t &v, uint64_t epoch, int index) {
  __syncthreads();
  const uint64_t seq = epoch * COMET_BARRIERS_PER_CALL + (uint64_t)index;
  bool ok = true;
  const int p = threadIdx.x;
  if (p < v.world) {
    fence_acq_rel_sys();
    st_release_sys_u64((uint64_t *)(v.peer[p] + v.off_bar) + v.rank, seq);
    ok = comet_wait_geq(v, (const uint64_t *)(v.win_local + v.off_bar) + p, seq, COMET_WAIT_BARRIER,
                        p, index, 0);
  }
  return __syncthreads_and(ok) != 0;
}

/* The call's epoch (bumped by the plan's exchange kernel, earlier in stream order). */
__device__ __forceinline__ uint64_t comet_epoch(const comet_comm_view_t &v) {
  return *(volatile const uint64_t *)v.epoch;
}

#endif /* COMET_WAIT_CUH */
