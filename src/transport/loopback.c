/* SPDX-License-Identifier: Apache-2.0 */
/* loopback.c — the loopback world: W ranks as threads of one process on one
 * GPU (DESIGN §3.2). Each rank owns a green context on a disjoint SM
 * partition; memory is the device's, shared by all (green contexts share the
 * primary context's memory). Host collectives meet in a bounded rendezvous
 * (meet.h). A symmetric allocation is one cudaMalloc of W slices made by
 * rank 0 between two meetings. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "context.h"
#include "error.h"
#include "transport/cuda_driver.h"
#include "transport/meet.h"
#include "transport/transport.h"

#define SLICE_ALIGN 4096

struct comet_loopback {
  int W, device, sms_per_rank;
  CUgreenCtx green[COMET_MAX_WORLD];
  CUcontext cuctx[COMET_MAX_WORLD];
  int attached[COMET_MAX_WORLD]; /* a context of rank r exists (under mu) */
  pthread_mutex_t mu;
  comet_meet_t meet;  /* the host collectives' rendezvous */
  const void *post[COMET_MAX_WORLD]; /* what each rank brought to the meeting */
  size_t post_bytes[COMET_MAX_WORLD];
  char *slab;         /* rank 0's answer of a sym_alloc */
  comet_status_t slab_status;
  char slab_msg[256];
};

static const char *const meeting_names[] = {"allgather", "barrier", "symmetric alloc",
                                            "symmetric free"};
enum { MEET_ALLGATHER, MEET_BARRIER, MEET_ALLOC, MEET_FREE };

static comet_status_t meet(struct comet_loopback *w, int rank, int what, double timeout_s) {
  return comet_meet(&w->meet, rank, meeting_names[what], timeout_s);
}

static struct comet_loopback *world_of(comet_transport_t *t) { return (struct comet_loopback *)t->impl; }

static comet_status_t lb_allgather(comet_transport_t *t, const void *mine, void *all, size_t bytes) {
  struct comet_loopback *w = world_of(t);
  w->post[t->rank] = mine;
  w->post_bytes[t->rank] = bytes;
  COMET_CHECK(meet(w, t->rank, MEET_ALLGATHER, t->timeout_s));
  for (int p = 0; p < w->W; ++p) {
    if (w->post_bytes[p] != bytes)
      return comet_set_error(COMET_ERR_INTERNAL, "loopback allgather: rank %d brought %zu bytes, "
                             "rank %d %zu", p, w->post_bytes[p], t->rank, bytes);
    memcpy((char *)all + (size_t)p * bytes, w->post[p], bytes);
  }
  /* nobody reuses its record before every rank has copied it */
  return meet(w, t->rank, MEET_ALLGATHER, t->timeout_s);
}

static comet_status_t lb_barrier(comet_transport_t *t) {
  return meet(world_of(t), t->rank, MEET_BARRIER, t->timeout_s);
}

static size_t slice_bytes(size_t bytes) { return (bytes + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN; }

static comet_status_t lb_sym_alloc(comet_transport_t *t, size_t bytes, comet_sym_t *m) {
  struct comet_loopback *w = world_of(t);
  memset(m, 0, sizeof *m);
  w->post_bytes[t->rank] = bytes;
  COMET_CHECK(meet(w, t->rank, MEET_ALLOC, t->timeout_s));
  if (t->rank == 0) {
    w->slab = NULL;
    w->slab_status = COMET_OK;
    for (int p = 1; p < w->W; ++p)
      if (w->post_bytes[p] != bytes) {
        w->slab_status = COMET_ERR_INTERNAL;
        snprintf(w->slab_msg, sizeof w->slab_msg,
                 "symmetric alloc: rank %d asked for %zu bytes, rank 0 for %zu", p,
                 w->post_bytes[p], bytes);
      }
    if (w->slab_status == COMET_OK) {
      void *p = NULL;
      cudaError_t e = cudaMalloc(&p, slice_bytes(bytes) * (size_t)w->W);
      if (e != cudaSuccess) {
        cudaGetLastError();
        w->slab_status = COMET_ERR_OUT_OF_MEMORY;
        snprintf(w->slab_msg, sizeof w->slab_msg,
                 "symmetric alloc of %d x %zu bytes on device %d failed: %s", w->W,
                 slice_bytes(bytes), w->device, cudaGetErrorString(e));
      }
      w->slab = (char *)p;
    }
  }
  COMET_CHECK(meet(w, t->rank, MEET_ALLOC, t->timeout_s));
  if (w->slab_status != COMET_OK) return comet_set_error(w->slab_status, "%s", w->slab_msg);
  m->handle = w->slab;
  for (int p = 0; p < w->W; ++p) m->peer[p] = w->slab + (size_t)p * slice_bytes(bytes);
  m->local = m->peer[t->rank];
  /* rank 0 may start the next allocation only once everyone read this one */
  COMET_CHECK(meet(w, t->rank, MEET_ALLOC, t->timeout_s));
  return COMET_OK;
}

/* Collective; each rank's work on the slab must be finished (the layer
 * synchronizes its device first). */
static comet_status_t lb_sym_free(comet_transport_t *t, comet_sym_t *m) {
  struct comet_loopback *w = world_of(t);
  const comet_status_t met = meet(w, t->rank, MEET_FREE, t->timeout_s);
  comet_status_t st = met;
  if (st == COMET_OK && t->rank == 0 && m->handle) {
    cudaError_t e = cudaFree(m->handle);
    if (e != cudaSuccess)
      st = comet_set_error(COMET_ERR_CUDA, "symmetric free: cudaFree failed: %s", cudaGetErrorString(e));
  }
  /* No rank leaves before rank 0's cudaFree is done: it waits for the whole
   * device, so a peer's next kernel waiting for rank 0 would stall it until
   * that kernel's timeout (session 8 run 3: a layer destroyed, then the next
   * call on another layer). Not after a failed meeting: the peers missing
   * from it would not come to this one either. */
  if (met == COMET_OK) {
    const comet_status_t after = meet(w, t->rank, MEET_FREE, t->timeout_s);
    if (st == COMET_OK) st = after;
  }
  memset(m, 0, sizeof *m);
  return st;
}

static comet_status_t lb_make_current(comet_transport_t *t) {
  const comet_cu_t *cu = NULL;
  COMET_CHECK(comet_cu_get(&cu));
  COMET_CU(cu->CtxSetCurrent(world_of(t)->cuctx[t->rank]));
  return COMET_OK;
}

static comet_status_t lb_stream_create(comet_transport_t *t, struct CUstream_st **s) {
  const comet_cu_t *cu = NULL;
  COMET_CHECK(comet_cu_get(&cu));
  CUstream cs = NULL;
  COMET_CU(cu->GreenCtxStreamCreate(&cs, world_of(t)->green[t->rank], CU_STREAM_NON_BLOCKING, 0));
  *s = (struct CUstream_st *)cs;
  return COMET_OK;
}

static void lb_destroy(comet_transport_t *t) {
  struct comet_loopback *w = world_of(t);
  pthread_mutex_lock(&w->mu);
  w->attached[t->rank] = 0;
  pthread_mutex_unlock(&w->mu);
  free(t);
}

static const comet_transport_ops_t lb_ops = {"loopback",      lb_allgather, lb_barrier,
                                             lb_sym_alloc,    lb_sym_free,  lb_make_current,
                                             lb_stream_create, lb_destroy};

comet_status_t comet_transport_loopback_create(comet_transport_t **out, comet_loopback_t w, int rank) {
  *out = NULL;
  COMET_ARG(w != NULL, "loopback world is NULL");
  COMET_ARG(rank >= 0 && rank < w->W, "rank = %d is outside 0..%d of the loopback world", rank,
            w->W - 1);
  pthread_mutex_lock(&w->mu);
  const int taken = w->attached[rank];
  if (!taken) w->attached[rank] = 1;
  pthread_mutex_unlock(&w->mu);
  COMET_ARG(!taken, "loopback rank %d already has a context", rank);
  comet_transport_t *t = calloc(1, sizeof *t);
  if (!t) {
    pthread_mutex_lock(&w->mu);
    w->attached[rank] = 0;
    pthread_mutex_unlock(&w->mu);
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "loopback: host allocation failed");
  }
  t->ops = &lb_ops;
  t->impl = w;
  t->rank = rank;
  t->world = w->W;
  t->device = w->device;
  t->sm_budget = w->sms_per_rank;
  t->timeout_s = comet_transport_host_timeout();
  *out = t;
  return COMET_OK;
}

/* ---- the world ---- */

/* CUDA 13.1's CUdevWorkqueueConfigResource, the union member of a
 * CUdevResource of type CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG (1000); the
 * 13.0 headers comet builds with do not have it. */
typedef struct {
  int device;
  unsigned int concurrency_limit;
  unsigned int sharing_scope; /* 1: CU_WORKQUEUE_SCOPE_GREEN_CTX_BALANCED */
} wq_config_t;
enum { WQ_CONFIG_TYPE = 1000, WQ_SCOPE_BALANCED = 1 };

static int g_last_wq = -1; /* the last world's work queues: see comet_loopback_last_workqueues */

int comet_loopback_last_workqueues(void) { return g_last_wq; }

/* By default every context on a device, green ones too, shares the device's
 * hardware work queues (CU_WORKQUEUE_SCOPE_DEVICE_CTX), so a rank's kernel
 * can queue behind a peer's kernel that spins waiting for it: the loopback
 * world's first-call timeouts (docs/status.md, Known gaps 11) look like
 * that. Where the driver has CUDA 13.1's workqueue resources, each rank's
 * green context gets queues of its own (balanced scope, conns / W of
 * them): *out is the configuration to add to each rank's descriptor, and 1
 * is returned; else 0 (the queues stay shared). */
static int balanced_workqueues(const comet_cu_t *cu, CUdevice dev, int W, int conns,
                               CUdevResource *out) {
  if (!cu->DeviceGetDevResource131 || !cu->DevResourceGenerateDesc131) return 0;
  memset(out, 0, sizeof *out);
  if (cu->DeviceGetDevResource131(dev, out, (CUdevResourceType)WQ_CONFIG_TYPE) != CUDA_SUCCESS)
    return 0;
  wq_config_t *c = (wq_config_t *)((char *)out + offsetof(CUdevResource, sm));
  c->concurrency_limit = (unsigned)(conns / W > 0 ? conns / W : 1);
  c->sharing_scope = WQ_SCOPE_BALANCED;
  return 1;
}

/* Each rank's green context on its SM group (and with wq, work queues of
 * its own); on failure none is left and *bad names the rank. */
static CUresult green_contexts(const comet_cu_t *cu, CUdevice dev, struct comet_loopback *w,
                               CUdevResource *groups, const CUdevResource *wq, int *bad) {
  CUresult r = CUDA_SUCCESS;
  for (int i = 0; i < w->W && r == CUDA_SUCCESS; ++i) {
    CUdevResourceDesc desc;
    CUdevResource res[2];
    res[0] = groups[i];
    if (wq) res[1] = *wq;
    r = wq ? cu->DevResourceGenerateDesc131(&desc, res, 2) : cu->DevResourceGenerateDesc(&desc, res, 1);
    if (r == CUDA_SUCCESS) r = cu->GreenCtxCreate(&w->green[i], desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
    if (r == CUDA_SUCCESS) r = cu->CtxFromGreenCtx(&w->cuctx[i], w->green[i]);
    if (r != CUDA_SUCCESS) *bad = i;
  }
  if (r != CUDA_SUCCESS)
    for (int i = 0; i < w->W; ++i) {
      if (w->green[i]) cu->GreenCtxDestroy(w->green[i]);
      w->green[i] = NULL;
      w->cuctx[i] = NULL;
    }
  return r;
}

comet_status_t comet_loopback_create(comet_loopback_t *out, int W, int device) {
  COMET_ARG(out != NULL, "world is NULL");
  *out = NULL;
  COMET_ARG(W >= 1 && W <= COMET_MAX_WORLD, "world_size = %d must be in 1..%d", W, COMET_MAX_WORLD);
  COMET_CHECK(comet_cuda_device_usable(device));
  const comet_cu_t *cu = NULL;
  COMET_CHECK(comet_cu_get(&cu));
  COMET_CUDA(cudaSetDevice(device));
  COMET_CUDA(cudaFree(NULL)); /* the primary context, which the green ones retain */
  /* Lazy loading may make a rank's first launch of a kernel wait until the
   * device is idle, while a peer's kernel spins waiting for that very rank:
   * a deadlock (CUDA programming guide, "Lazy Loading", potential hazards). */
  CUmoduleLoadingMode lm = CU_MODULE_LAZY_LOADING;
  COMET_CU(cu->ModuleGetLoadingMode(&lm));
  if (lm != CU_MODULE_EAGER_LOADING)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "the loopback world needs CUDA_MODULE_LOADING=EAGER in the environment "
                           "before the process's first CUDA call: with lazy loading a rank's first "
                           "launch of a kernel can wait for a peer's kernel that waits for it");
  CUdevice dev;
  COMET_CU(cu->DeviceGet(&dev, device));
  CUdevResource all;
  memset(&all, 0, sizeof all);
  COMET_CU(cu->DeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
  const unsigned total = all.sm.smCount;
  const unsigned per = total / (unsigned)W / 8u * 8u; /* partitions come in multiples of 8 SMs */
  if (per < 8)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "loopback: %u SMs of device %d cannot be split into %d partitions of at "
                           "least 8", total, device, W);
  /* Every rank's streams need hardware queues of their own: with fewer
   * connections than streams, a rank's kernel can queue behind a peer's
   * kernel that spins waiting for it. Two streams per rank (setup, calls). */
  const char *mc = getenv("CUDA_DEVICE_MAX_CONNECTIONS");
  const int conns = mc ? atoi(mc) : 8, want = 4 * W < 32 ? 4 * W : 32;
  if (conns < want)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "the loopback world of %d ranks needs CUDA_DEVICE_MAX_CONNECTIONS >= %d "
                           "in the environment before the process's first CUDA call (it is %s): "
                           "with fewer hardware queues than the ranks' streams, a rank's kernel "
                           "can wait behind a peer's kernel that waits for it",
                           W, want, mc ? mc : "unset, i.e. 8");
  struct comet_loopback *w = calloc(1, sizeof *w);
  CUdevResource *groups = calloc((size_t)W, sizeof(CUdevResource));
  if (!w || !groups) {
    free(w);
    free(groups);
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "loopback: host allocation failed");
  }
  w->W = W;
  w->device = device;
  pthread_mutex_init(&w->mu, NULL);
  comet_meet_init(&w->meet, W, 0);
  comet_status_t st = COMET_OK;
  unsigned ngroups = (unsigned)W;
  CUdevResource rest;
  memset(&rest, 0, sizeof rest);
  CUresult r = cu->DevSmResourceSplitByCount(groups, &ngroups, &all, &rest, 0, per);
  if (r != CUDA_SUCCESS || ngroups < (unsigned)W) {
    st = comet_set_error(COMET_ERR_CUDA, "loopback: splitting %u SMs into %d groups of %u: %s (got %u)",
                         total, W, per, comet_cu_error_string(r), ngroups);
    goto fail;
  }
  w->sms_per_rank = (int)groups[0].sm.smCount;
  CUdevResource wq_res;
  int wq = balanced_workqueues(cu, dev, W, conns, &wq_res);
  int bad = -1;
  r = green_contexts(cu, dev, w, groups, wq ? &wq_res : NULL, &bad);
  if (r != CUDA_SUCCESS && wq) { /* the queues refused: every rank on the shared ones */
    wq = 0;
    r = green_contexts(cu, dev, w, groups, NULL, &bad);
  }
  if (r != CUDA_SUCCESS) {
    st = comet_set_error(COMET_ERR_CUDA, "loopback: green context of rank %d (%d SMs): %s", bad,
                         (int)groups[bad].sm.smCount, comet_cu_error_string(r));
    goto fail;
  }
  for (int i = 0; i < W; ++i)
    if ((int)groups[i].sm.smCount < w->sms_per_rank) w->sms_per_rank = (int)groups[i].sm.smCount;
  free(groups);
  g_last_wq = wq;
  *out = w;
  return COMET_OK;
fail:
  for (int i = 0; i < W; ++i)
    if (w->green[i]) cu->GreenCtxDestroy(w->green[i]);
  free(groups);
  pthread_mutex_destroy(&w->mu);
  comet_meet_destroy(&w->meet);
  free(w);
  return st;
}

comet_status_t comet_loopback_destroy(comet_loopback_t w) {
  if (!w) return COMET_OK;
  for (int i = 0; i < w->W; ++i)
    if (w->attached[i])
      return comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "loopback destroy: rank %d still has a context (destroy it first)", i);
  const comet_cu_t *cu = NULL;
  COMET_CHECK(comet_cu_get(&cu));
  comet_status_t st = COMET_OK;
  for (int i = 0; i < w->W; ++i) {
    CUresult r = w->green[i] ? cu->GreenCtxDestroy(w->green[i]) : CUDA_SUCCESS;
    if (r != CUDA_SUCCESS && st == COMET_OK)
      st = comet_set_error(COMET_ERR_CUDA, "loopback destroy: green context of rank %d: %s", i,
                           comet_cu_error_string(r));
  }
  pthread_mutex_destroy(&w->mu);
  comet_meet_destroy(&w->meet);
  free(w);
  return st;
}

int comet_loopback_sm_per_rank(comet_loopback_t w) { return w ? w->sms_per_rank : 0; }
