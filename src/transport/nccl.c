/* SPDX-License-Identifier: Apache-2.0 */
/* nccl.c — the nccl transport: one process per GPU. Host collectives are
 * NCCL collectives on the transport's own stream, waited for with a bound:
 * past it the communicator is aborted (ncclCommAbort) and the transport is
 * broken, every later call failing at once. Symmetric memory is an NCCL
 * window; a world of one rank gets plain device memory (NCCL gives a 1-rank
 * communicator no symmetric memory, and nothing is shared then). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "context.h"
#include "error.h"
#include "transport/nccl_window.h"
#include "transport/transport.h"

typedef struct nccl_rank {
  ncclComm_t comm;
  int owns_comm;
  int broken;
  cudaStream_t stream;
  void *dbuf; /* device staging for allgather records */
  size_t dbuf_bytes;
} nccl_rank_t;

static nccl_rank_t *impl(comet_transport_t *t) { return (nccl_rank_t *)t->impl; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for the transport's stream, at most timeout_s. */
static comet_status_t bounded_sync(comet_transport_t *t, const char *what) {
  nccl_rank_t *n = impl(t);
  const double deadline = now_s() + t->timeout_s;
  for (;;) {
    cudaError_t e = cudaStreamQuery(n->stream);
    if (e == cudaSuccess) return COMET_OK;
    if (e != cudaErrorNotReady)
      return comet_set_error(COMET_ERR_CUDA, "rank %d: %s: %s", t->rank, what, cudaGetErrorString(e));
    ncclResult_t ar = ncclSuccess;
    if (ncclCommGetAsyncError(n->comm, &ar) == ncclSuccess && ar != ncclSuccess && ar != ncclInProgress)
      return comet_set_error(COMET_ERR_NCCL, "rank %d: %s: NCCL reported %s", t->rank, what,
                             ncclGetErrorString(ar));
    if (now_s() > deadline) {
      ncclCommAbort(n->comm); /* unblocks the collective; the communicator is gone */
      n->broken = 1;
      return comet_set_error(COMET_ERR_TIMEOUT,
                             "rank %d: %s: the other ranks did not arrive within %.0f s; the "
                             "communicator was aborted",
                             t->rank, what, t->timeout_s);
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
}

static comet_status_t not_broken(comet_transport_t *t) {
  if (impl(t)->broken)
    return comet_set_error(COMET_ERR_TIMEOUT, "rank %d: the NCCL communicator was aborted after a "
                           "timeout; create a new context", t->rank);
  return COMET_OK;
}

static comet_status_t nc_allgather(comet_transport_t *t, const void *mine, void *all, size_t bytes) {
  nccl_rank_t *n = impl(t);
  COMET_CHECK(not_broken(t));
  const size_t need = bytes * (size_t)(t->world + 1);
  if (n->dbuf_bytes < need) {
    if (n->dbuf) cudaFree(n->dbuf);
    n->dbuf = NULL;
    n->dbuf_bytes = 0;
    COMET_CUDA(cudaMalloc(&n->dbuf, need));
    n->dbuf_bytes = need;
  }
  char *slot = (char *)n->dbuf + bytes * (size_t)t->world;
  COMET_CUDA(cudaMemcpyAsync(slot, mine, bytes, cudaMemcpyHostToDevice, n->stream));
  COMET_NCCL(ncclAllGather(slot, n->dbuf, bytes, ncclUint8, n->comm, n->stream));
  COMET_CUDA(cudaMemcpyAsync(all, n->dbuf, bytes * (size_t)t->world, cudaMemcpyDeviceToHost, n->stream));
  return bounded_sync(t, "allgather");
}

static comet_status_t nc_barrier(comet_transport_t *t) {
  int32_t one = 1, all[COMET_MAX_WORLD];
  return nc_allgather(t, &one, all, sizeof one);
}

static comet_status_t nc_sym_alloc(comet_transport_t *t, size_t bytes, comet_sym_t *m) {
  nccl_rank_t *n = impl(t);
  memset(m, 0, sizeof *m);
  COMET_CHECK(not_broken(t));
  if (t->world == 1) {
    void *p = NULL;
    COMET_CUDA(cudaMalloc(&p, bytes));
    m->local = m->peer[0] = (char *)p;
      return COMET_OK;
  }
  /* Every rank's ncclMemAlloc must succeed before the collective register. */
  void *p = NULL;
  ncclResult_t r = ncclMemAlloc(&p, bytes);
  int32_t ok = r == ncclSuccess, oks[COMET_MAX_WORLD];
  COMET_CHECK(nc_allgather(t, &ok, oks, sizeof ok));
  for (int q = 0; q < t->world; ++q)
    if (!oks[q]) {
      if (p) ncclMemFree(p);
      return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "symmetric alloc of %zu bytes failed on rank %d%s%s",
                             bytes, q, q == t->rank ? ": " : "",
                             q == t->rank ? ncclGetErrorString(r) : "");
    }
  ncclWindow_t win = NULL;
  comet_status_t st = COMET_OK;
  COMET_NCCL_GOTO(ncclCommWindowRegister(n->comm, p, bytes, &win, NCCL_WIN_COLL_SYMMETRIC), st, fail);
  COMET_CHECK_GOTO(comet_nccl_peer_table((void *)win, t->world, m->peer, n->stream), st, fail);
  m->local = (char *)p;
  m->handle = (void *)win;
  return COMET_OK;
fail:
  if (win) ncclCommWindowDeregister(n->comm, win);
  ncclMemFree(p);
  return st;
}

static comet_status_t nc_sym_free(comet_transport_t *t, comet_sym_t *m) {
  nccl_rank_t *n = impl(t);
  comet_status_t st = COMET_OK;
  if (t->world == 1) {
    if (m->local && cudaFree(m->local) != cudaSuccess)
      st = comet_set_error(COMET_ERR_CUDA, "symmetric free: cudaFree failed");
  } else if (m->local) {
    if (m->handle && !n->broken && ncclCommWindowDeregister(n->comm, (ncclWindow_t)m->handle) != ncclSuccess)
      st = comet_set_error(COMET_ERR_NCCL, "symmetric free: ncclCommWindowDeregister failed");
    if (ncclMemFree(m->local) != ncclSuccess && st == COMET_OK)
      st = comet_set_error(COMET_ERR_NCCL, "symmetric free: ncclMemFree failed");
  }
  memset(m, 0, sizeof *m);
  return st;
}

static void nc_destroy(comet_transport_t *t) {
  nccl_rank_t *n = impl(t);
  if (n->dbuf) cudaFree(n->dbuf);
  if (n->stream) cudaStreamDestroy(n->stream);
  if (n->owns_comm && !n->broken) {
    ncclCommFinalize(n->comm);
    ncclCommDestroy(n->comm);
  }
  free(n);
  free(t);
}

static const comet_transport_ops_t nccl_ops = {"nccl",       nc_allgather, nc_barrier,
                                               nc_sym_alloc, nc_sym_free,  comet_transport_device_current,
                                               comet_transport_device_stream, nc_destroy};

comet_status_t comet_transport_nccl_create(comet_transport_t **out, struct ncclComm *comm,
                                           int owns_comm, int device) {
  *out = NULL;
  comet_transport_t *t = calloc(1, sizeof *t);
  nccl_rank_t *n = calloc(1, sizeof *n);
  if (!t || !n) {
    free(t);
    free(n);
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "nccl transport: host allocation failed");
  }
  comet_status_t st = COMET_OK;
  t->ops = &nccl_ops;
  t->impl = n;
  t->device = device;
  t->timeout_s = comet_transport_host_timeout();
  n->comm = comm;
  COMET_NCCL_GOTO(ncclCommUserRank(comm, &t->rank), st, fail);
  COMET_NCCL_GOTO(ncclCommCount(comm, &t->world), st, fail);
  if (t->world > COMET_MAX_WORLD) {
    st = comet_set_error(COMET_ERR_UNSUPPORTED, "world of %d ranks: comet supports up to %d",
                         t->world, COMET_MAX_WORLD);
    goto fail;
  }
  COMET_CUDA_GOTO(cudaSetDevice(device), st, fail);
  COMET_CUDA_GOTO(cudaDeviceGetAttribute(&t->sm_budget, cudaDevAttrMultiProcessorCount, device), st, fail);
  COMET_CUDA_GOTO(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking), st, fail);
  if (t->world > 1) COMET_CHECK_GOTO(comet_nccl_check_lsa(comm), st, fail);
  n->owns_comm = owns_comm;
  *out = t;
  return COMET_OK;
fail:
  if (n->stream) cudaStreamDestroy(n->stream);
  free(n);
  free(t);
  return st;
}

struct ncclComm *comet_transport_nccl_comm(const comet_transport_t *t) {
  return ((const nccl_rank_t *)t->impl)->comm;
}
