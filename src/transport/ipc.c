/* SPDX-License-Identifier: Apache-2.0 */
/* ipc.c — the ipc transport: W ranks as W processes on one GPU, for running
 * the multi-rank tests under compute-sanitizer, which does not run the
 * loopback world (under the tool, a rank's kernels make no progress while a
 * peer's kernel waits for it: seen with memcheck, 2026-12-01). Each process
 * has the whole GPU, time-sliced with the others (so a spinning kernel
 * yields at the end of its slice); the window is each rank's own cudaMalloc,
 * opened by the peers through CUDA IPC handles; host collectives meet in a
 * process-shared rendezvous in memory the launcher shares across fork.
 * Slow, and for correctness only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "context.h"
#include "error.h"
#include "transport/ipc.h"
#include "transport/meet.h"
#include "transport/transport.h"

struct comet_ipc_world {
  int W, device;
  comet_meet_t meet;
  size_t post_bytes[COMET_MAX_WORLD];
  char post[COMET_MAX_WORLD][COMET_IPC_SLOT]; /* what each rank brought */
};

size_t comet_ipc_world_bytes(void) { return sizeof(struct comet_ipc_world); }

void comet_ipc_world_init(comet_ipc_world_t *w, int W, int device) {
  memset(w, 0, sizeof *w);
  w->W = W;
  w->device = device;
  comet_meet_init(&w->meet, W, 1);
}

static comet_ipc_world_t *world_of(comet_transport_t *t) { return (comet_ipc_world_t *)t->impl; }

static comet_status_t ipc_allgather(comet_transport_t *t, const void *mine, void *all, size_t bytes) {
  comet_ipc_world_t *w = world_of(t);
  if (bytes > COMET_IPC_SLOT)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "ipc allgather of %zu bytes: at most %d per rank",
                           bytes, COMET_IPC_SLOT);
  memcpy(w->post[t->rank], mine, bytes);
  w->post_bytes[t->rank] = bytes;
  COMET_CHECK(comet_meet(&w->meet, t->rank, "allgather", t->timeout_s));
  comet_status_t st = COMET_OK;
  for (int p = 0; p < w->W; ++p) {
    if (w->post_bytes[p] != bytes && st == COMET_OK)
      st = comet_set_error(COMET_ERR_INTERNAL, "ipc allgather: rank %d brought %zu bytes, rank %d %zu",
                           p, w->post_bytes[p], t->rank, bytes);
    memcpy((char *)all + (size_t)p * bytes, w->post[p], bytes);
  }
  /* nobody overwrites its slot before every rank has read it */
  comet_status_t m = comet_meet(&w->meet, t->rank, "allgather", t->timeout_s);
  return st != COMET_OK ? st : m;
}

static comet_status_t ipc_barrier(comet_transport_t *t) {
  return comet_meet(&world_of(t)->meet, t->rank, "barrier", t->timeout_s);
}

typedef struct handle_wire {
  int32_t status; /* comet_status_t of this rank's cudaMalloc */
  int32_t pad;
  cudaIpcMemHandle_t handle;
} handle_wire_t;

static comet_status_t ipc_sym_alloc(comet_transport_t *t, size_t bytes, comet_sym_t *m) {
  memset(m, 0, sizeof *m);
  handle_wire_t mine, all[COMET_MAX_WORLD];
  memset(&mine, 0, sizeof mine);
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaSuccess) e = cudaIpcGetMemHandle(&mine.handle, p);
  if (e != cudaSuccess) cudaGetLastError();
  mine.status = e == cudaSuccess ? COMET_OK : COMET_ERR_OUT_OF_MEMORY;
  comet_status_t st = ipc_allgather(t, &mine, all, sizeof mine);
  for (int q = 0; q < t->world && st == COMET_OK; ++q)
    if (all[q].status != COMET_OK)
      st = comet_set_error(COMET_ERR_OUT_OF_MEMORY, "symmetric alloc of %zu bytes failed on rank %d",
                           bytes, q);
  for (int q = 0; q < t->world && st == COMET_OK; ++q) {
    if (q == t->rank) {
      m->peer[q] = (char *)p;
      continue;
    }
    void *pp = NULL;
    e = cudaIpcOpenMemHandle(&pp, all[q].handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess)
      st = comet_set_error(COMET_ERR_CUDA, "opening rank %d's window: %s", q, cudaGetErrorString(e));
    m->peer[q] = (char *)pp;
  }
  if (st != COMET_OK) {
    for (int q = 0; q < t->world; ++q)
      if (q != t->rank && m->peer[q]) cudaIpcCloseMemHandle(m->peer[q]);
    if (p) cudaFree(p);
    memset(m, 0, sizeof *m);
    return st;
  }
  m->local = (char *)p;
  return COMET_OK;
}

static comet_status_t ipc_sym_free(comet_transport_t *t, comet_sym_t *m) {
  comet_status_t st = ipc_barrier(t); /* every rank's kernels are done */
  for (int q = 0; q < t->world; ++q)
    if (q != t->rank && m->peer[q] && cudaIpcCloseMemHandle(m->peer[q]) != cudaSuccess && st == COMET_OK)
      st = comet_set_error(COMET_ERR_CUDA, "closing rank %d's window failed", q);
  comet_status_t b = ipc_barrier(t); /* no peer still maps ours */
  if (st == COMET_OK) st = b;
  if (m->local && cudaFree(m->local) != cudaSuccess && st == COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "symmetric free: cudaFree failed");
  memset(m, 0, sizeof *m);
  return st;
}

static void ipc_destroy(comet_transport_t *t) { free(t); }

static const comet_transport_ops_t ipc_ops = {"ipc",         ipc_allgather, ipc_barrier,
                                              ipc_sym_alloc, ipc_sym_free,  comet_transport_device_current,
                                              comet_transport_device_stream, ipc_destroy};

comet_status_t comet_transport_ipc_create(comet_transport_t **out, comet_ipc_world_t *w, int rank) {
  *out = NULL;
  COMET_ARG(w != NULL, "ipc world is NULL");
  COMET_ARG(rank >= 0 && rank < w->W, "rank = %d is outside 0..%d of the ipc world", rank, w->W - 1);
  comet_transport_t *t = calloc(1, sizeof *t);
  if (!t) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "ipc transport: host allocation failed");
  t->ops = &ipc_ops;
  t->impl = w;
  t->rank = rank;
  t->world = w->W;
  t->device = w->device;
  t->timeout_s = comet_transport_host_timeout();
  cudaError_t e = cudaSetDevice(w->device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&t->sm_budget, cudaDevAttrMultiProcessorCount, w->device);
  if (e != cudaSuccess) {
    free(t);
    return comet_set_error(COMET_ERR_CUDA, "ipc rank %d on device %d: %s", rank, w->device,
                           cudaGetErrorString(e));
  }
  *out = t;
  return COMET_OK;
}
