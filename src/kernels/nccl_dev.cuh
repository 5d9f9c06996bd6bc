/* nccl_dev.cuh — the small part of the NCCL device API (2.28) that comet's
 * kernels use, behind names of our own: peer pointers into a symmetric
 * window and a CTA-wide LSA barrier across ranks. C++ only because the
 * NCCL device API is. See NCCL's docs/examples/06_device_api. */
#ifndef COMET_NCCL_DEV_CUH
#define COMET_NCCL_DEV_CUH

#include <nccl.h>
#include <nccl_device.h>

/* Base of `peer`'s copy of the window (peer = LSA rank = world rank: comet
 * requires one LSA team, checked in comet_devcomm_create). A world of one
 * rank has no NCCL window (NCCL gives a 1-rank communicator no symmetric
 * memory): win is NULL and the local buffer is the only "peer". */
__device__ __forceinline__ char *comet_peer_base(void *win, char *local, int peer) {
  return win ? (char *)ncclGetLsaPointer((ncclWindow_t)win, 0, peer) : local;
}

/* All threads of the CTA: every rank's CTA using barrier `index` meets here.
 * Release before, acquire after: stores to peers' windows made before are
 * visible to every rank's loads after. */
__device__ __forceinline__ void comet_lsa_barrier_cta(const ncclDevComm &dc, int index) {
  ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dc, ncclTeamTagLsa(), (uint32_t)index);
  bar.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
}

#endif /* COMET_NCCL_DEV_CUH */
