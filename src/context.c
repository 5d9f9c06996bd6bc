/* SPDX-License-Identifier: Apache-2.0 */
/* context.c — comet contexts: one rank's transport (an NCCL communicator,
 * created or adopted, or a rank of the loopback world), its device and SM
 * budget, its streams, its wait timeout and abort word; the NCCL version
 * check. */
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef COMET_NCCL_BUILD_VERSION
#error "COMET_NCCL_BUILD_VERSION (NCCL_VERSION_CODE of the headers) must be defined by the build"
#endif

_Static_assert(sizeof(ncclUniqueId) == COMET_UNIQUE_ID_BYTES,
               "comet_unique_id_t must hold an ncclUniqueId");

#define DEFAULT_TIMEOUT_S 10.0

comet_status_t comet_nccl_version_check(void) {
  int v = 0;
  COMET_NCCL(ncclGetVersion(&v));
  if (v != COMET_NCCL_BUILD_VERSION)
    return comet_set_error(COMET_ERR_NCCL,
                           "the loaded NCCL is version %d but comet was built against %d: the NCCL "
                           "device API has no ABI promise, so rebuild comet against the NCCL it "
                           "loads (or point LD_LIBRARY_PATH at the one it was built with)",
                           v, COMET_NCCL_BUILD_VERSION);
  return COMET_OK;
}

int comet_nccl_build_version(void) { return COMET_NCCL_BUILD_VERSION; }
comet_status_t comet_nccl_check(void) { return comet_nccl_version_check(); }

comet_status_t comet_get_unique_id(comet_unique_id_t *id) {
  COMET_ARG(id != NULL, "id is NULL");
  COMET_CHECK(comet_nccl_version_check());
  ncclUniqueId nid;
  COMET_NCCL(ncclGetUniqueId(&nid));
  memset(id, 0, sizeof *id);
  memcpy(id->internal, &nid, sizeof nid);
  return COMET_OK;
}

comet_status_t comet_cuda_device_usable(int device) {
  int drv = 0, rt = 0, n = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
    cudaGetLastError();
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "no CUDA driver is installed on this machine: comet needs an NVIDIA GPU "
                           "and its driver (the CPU reference and the config checks run without)");
  }
  cudaRuntimeGetVersion(&rt);
  if (drv < rt)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "the CUDA driver supports CUDA %d.%d, older than the CUDA %d.%d runtime "
                           "comet was built with: update the driver or build with an older toolkit",
                           drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    return comet_set_error(COMET_ERR_UNSUPPORTED, "no CUDA GPU is visible%s%s",
                           e != cudaSuccess ? ": " : "", e != cudaSuccess ? cudaGetErrorString(e) : "");
  }
  COMET_ARG(device >= 0 && device < n, "cuda_device = %d, but %d CUDA device(s) are visible",
            device, n);
  int major = 0;
  COMET_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major != 9)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "device %d has compute capability %d.x; comet's kernels need Hopper (9.0)",
                           device, major);
  return COMET_OK;
}

static double env_timeout(void) {
  const char *v = getenv("COMET_TIMEOUT_S");
  const double x = v ? atof(v) : 0.0;
  return x > 0 ? x : DEFAULT_TIMEOUT_S;
}

/* Everything above the transport: streams, abort word. Takes t. */
static comet_status_t context_finish(comet_context_t *out, comet_transport_t *t) {
  struct comet_context *c = calloc(1, sizeof *c);
  if (!c) {
    t->ops->destroy(t);
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "context: host allocation failed");
  }
  comet_status_t st = COMET_OK;
  c->tp = t;
  c->rank = t->rank;
  c->world = t->world;
  c->device = t->device;
  c->sm_budget = t->sm_budget;
  c->timeout_s = env_timeout();
  COMET_CHECK_GOTO(t->ops->make_current(t), st, fail);
  COMET_CHECK_GOTO(t->ops->stream_create(t, &c->stream), st, fail);
  COMET_CHECK_GOTO(t->ops->stream_create(t, &c->user_stream), st, fail);
  void *h = NULL, *d = NULL;
  COMET_CUDA_GOTO(cudaHostAlloc(&h, sizeof(uint32_t), cudaHostAllocMapped | cudaHostAllocPortable),
                  st, fail);
  c->abort_host = (volatile uint32_t *)h;
  *c->abort_host = 0;
  COMET_CUDA_GOTO(cudaHostGetDevicePointer(&d, h, 0), st, fail);
  c->abort_dev = (uint32_t *)d;
  struct cudaDeviceProp prop;
  COMET_CUDA_GOTO(cudaGetDeviceProperties(&prop, c->device), st, fail);
  snprintf(c->device_name, sizeof c->device_name, "%.63s", prop.name);
  comet_context_load_tuning(c);
  *out = c;
  return COMET_OK;
fail:
  comet_context_destroy(c);
  return st;
}

comet_status_t comet_context_create(comet_context_t *out, int rank, int world_size,
                                    const comet_unique_id_t *id, int cuda_device) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  COMET_ARG(id != NULL, "id is NULL");
  COMET_ARG(world_size >= 1 && world_size <= COMET_MAX_WORLD, "world_size = %d must be in 1..%d",
            world_size, COMET_MAX_WORLD);
  COMET_ARG(rank >= 0 && rank < world_size, "rank = %d is outside 0..world_size-1 (%d)", rank,
            world_size - 1);
  COMET_CHECK(comet_nccl_version_check());
  COMET_CHECK(comet_cuda_device_usable(cuda_device));
  COMET_CUDA(cudaSetDevice(cuda_device));
  ncclUniqueId nid;
  memcpy(&nid, id->internal, sizeof nid);
  ncclComm_t comm = NULL;
  COMET_NCCL(ncclCommInitRank(&comm, world_size, nid, rank));
  comet_transport_t *t = NULL;
  comet_status_t st = comet_transport_nccl_create(&t, comm, 1, cuda_device);
  if (st != COMET_OK) {
    ncclCommDestroy(comm);
    return comet_trace_error(st, __FILE__, __LINE__);
  }
  return context_finish(out, t);
}

comet_status_t comet_context_create_from_comm(comet_context_t *out, struct ncclComm *comm,
                                              int cuda_device) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  COMET_ARG(comm != NULL, "comm is NULL");
  COMET_CHECK(comet_nccl_version_check());
  int dev = -1;
  COMET_NCCL(ncclCommCuDevice(comm, &dev));
  COMET_ARG(dev == cuda_device, "cuda_device = %d, but the communicator is on device %d",
            cuda_device, dev);
  COMET_CHECK(comet_cuda_device_usable(cuda_device));
  comet_transport_t *t = NULL;
  COMET_CHECK(comet_transport_nccl_create(&t, comm, 0, cuda_device));
  return context_finish(out, t);
}

comet_status_t comet_context_create_loopback(comet_context_t *out, comet_loopback_t world, int rank) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  COMET_ARG(world != NULL, "world is NULL");
  comet_transport_t *t = NULL;
  COMET_CHECK(comet_transport_loopback_create(&t, world, rank));
  comet_status_t st = t->ops->make_current(t);
  if (st == COMET_OK) st = comet_cuda_device_usable(t->device);
  if (st != COMET_OK) {
    t->ops->destroy(t);
    return comet_trace_error(st, __FILE__, __LINE__);
  }
  return context_finish(out, t);
}

comet_status_t comet_context_create_ipc(comet_context_t *out, struct comet_ipc_world *world, int rank) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  comet_transport_t *t = NULL;
  COMET_CHECK(comet_transport_ipc_create(&t, world, rank));
  comet_status_t st = comet_cuda_device_usable(t->device);
  if (st != COMET_OK) {
    t->ops->destroy(t);
    return comet_trace_error(st, __FILE__, __LINE__);
  }
  return context_finish(out, t);
}

comet_status_t comet_context_destroy(comet_context_t c) {
  if (!c) return COMET_OK;
  comet_status_t st = COMET_OK;
  if (c->tp->ops->make_current(c->tp) != COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: making device %d current failed", c->device);
  if (c->stream && cudaStreamDestroy(c->stream) != cudaSuccess && st == COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: cudaStreamDestroy failed");
  if (c->user_stream && cudaStreamDestroy(c->user_stream) != cudaSuccess && st == COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: cudaStreamDestroy failed");
  if (c->abort_host && cudaFreeHost((void *)c->abort_host) != cudaSuccess && st == COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: cudaFreeHost failed");
  c->tp->ops->destroy(c->tp);
  comet_tune_table_free(&c->tuning);
  free(c);
  return st;
}

int comet_context_rank(comet_context_t c) { return c ? c->rank : -1; }
int comet_context_world_size(comet_context_t c) { return c ? c->world : -1; }
int comet_context_sm_budget(comet_context_t c) { return c ? c->sm_budget : 0; }
struct CUstream_st *comet_context_stream(comet_context_t c) { return c ? c->user_stream : NULL; }
int comet_context_device(comet_context_t c) { return c->device; }

ncclComm_t comet_context_comm(comet_context_t c) {
  return strcmp(c->tp->ops->name, "nccl") ? NULL : comet_transport_nccl_comm(c->tp);
}

comet_status_t comet_context_make_current(comet_context_t c) {
  COMET_ARG(c != NULL, "ctx is NULL");
  return c->tp->ops->make_current(c->tp);
}

comet_status_t comet_context_set_timeout(comet_context_t c, double seconds) {
  COMET_ARG(c != NULL, "ctx is NULL");
  COMET_ARG(seconds > 0 && seconds < 1e6, "timeout = %g s must be in (0, 1e6)", seconds);
  c->timeout_s = seconds;
  return COMET_OK;
}

comet_status_t comet_context_abort(comet_context_t c) {
  COMET_ARG(c != NULL, "ctx is NULL");
  __atomic_store_n(c->abort_host, 1u, __ATOMIC_RELEASE);
  return COMET_OK;
}
