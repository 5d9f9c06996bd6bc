/* SPDX-License-Identifier: Apache-2.0 */
/* transport.h — the seam between comet and the world its ranks live in
 * (DESIGN §3.1). Everything above it (layers, plan, dispatch, combine,
 * forward, tests, bench) is one code path; two backends implement it:
 *
 *   nccl      one process per GPU; symmetric memory is an NCCL window
 *             (ncclMemAlloc + NCCL_WIN_COLL_SYMMETRIC), peers' bases from
 *             the window's LSA pointers; host collectives on NCCL, bounded
 *   loopback  W ranks as threads of one process on one GPU, each in its own
 *             green context (SM partition); the window is one allocation of
 *             W slices; host collectives on a mutex and condition variable
 *   ipc       W processes on one GPU, windows shared through CUDA IPC: the
 *             multi-rank tests under compute-sanitizer (internal, ipc.h)
 *
 * Kernels get exactly two things from the world: the W peers' window bases
 * (plain device pointers, comet_sym_t.peer) and comet's own device barrier
 * over flags in that window (kernels/barrier.cuh). Host side: rank, size, an
 * all-gather of small records, a barrier, symmetric alloc/free, and making
 * the rank's device current in the calling thread. Every host wait is
 * bounded: it fails with COMET_ERR_TIMEOUT after timeout_s. */
#ifndef COMET_TRANSPORT_H
#define COMET_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Ranks a layer supports (the size of the peer table kernels carry). */
#define COMET_MAX_WORLD 64

/* One symmetric allocation: the same size on every rank, reachable by every
 * rank's kernels at peer[p] (peer[rank] == local). */
typedef struct comet_sym {
  char *local;
  char *peer[COMET_MAX_WORLD];
  void *handle; /* the backend's (an ncclWindow_t, or the loopback slab) */
} comet_sym_t;

typedef struct comet_transport comet_transport_t;
typedef struct comet_transport_ops {
  const char *name; /* "nccl" or "loopback" */
  /* every rank's `bytes` record into all[W * bytes], in rank order */
  comet_status_t (*allgather)(comet_transport_t *t, const void *mine, void *all, size_t bytes);
  comet_status_t (*barrier)(comet_transport_t *t);
  /* collective; every rank passes the same bytes (checked) */
  comet_status_t (*sym_alloc)(comet_transport_t *t, size_t bytes, comet_sym_t *out);
  comet_status_t (*sym_free)(comet_transport_t *t, comet_sym_t *m);
  /* the rank's device (loopback: its partition) current in this thread */
  comet_status_t (*make_current)(comet_transport_t *t);
  /* a new stream on the rank's SMs */
  comet_status_t (*stream_create)(comet_transport_t *t, struct CUstream_st **stream);
  void (*destroy)(comet_transport_t *t);
} comet_transport_ops_t;

struct comet_transport {
  const comet_transport_ops_t *ops;
  int rank, world;
  int device;
  int sm_budget;     /* SMs this rank may use */
  double timeout_s;  /* bound of every host-side wait */
  void *impl;
};

/* Host-side wait bound: env COMET_HOST_TIMEOUT_S, else 120 s. */
double comet_transport_host_timeout(void);

/* make_current and stream_create of the transports whose rank has a whole
 * device (nccl, ipc): cudaSetDevice, a non-blocking stream. */
comet_status_t comet_transport_device_current(comet_transport_t *t);
comet_status_t comet_transport_device_stream(comet_transport_t *t, struct CUstream_st **stream);

/* Backends. nccl: comm is adopted (owns_comm = 0) or owned. */
comet_status_t comet_transport_nccl_create(comet_transport_t **t, struct ncclComm *comm,
                                           int owns_comm, int device);
struct ncclComm *comet_transport_nccl_comm(const comet_transport_t *t);
comet_status_t comet_transport_loopback_create(comet_transport_t **t, comet_loopback_t world,
                                               int rank);
/* The work queues of the last loopback world made in this process: 1 each
 * rank its own (balanced), 0 shared by all ranks (the driver lacks CUDA
 * 13.1's workqueue resources), -1 no world yet. */
int comet_loopback_last_workqueues(void);
struct comet_ipc_world;
comet_status_t comet_transport_ipc_create(comet_transport_t **t, struct comet_ipc_world *world,
                                          int rank);

#ifdef __cplusplus
}
#endif
#endif /* COMET_TRANSPORT_H */
