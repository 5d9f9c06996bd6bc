/* context.c — comet contexts: an NCCL communicator (created or adopted), the
 * rank's GPU and a setup stream; the NCCL version check. */
#include "context.h"

#include <stdlib.h>
#include <string.h>

#ifndef COMET_NCCL_BUILD_VERSION
#error "COMET_NCCL_BUILD_VERSION (NCCL_VERSION_CODE of the headers) must be defined by the build"
#endif

_Static_assert(sizeof(ncclUniqueId) == COMET_UNIQUE_ID_BYTES,
               "comet_unique_id_t must hold an ncclUniqueId");

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

comet_status_t comet_get_unique_id(comet_unique_id_t *id) {
  COMET_ARG(id != NULL, "id is NULL");
  COMET_CHECK(comet_nccl_version_check());
  ncclUniqueId nid;
  COMET_NCCL(ncclGetUniqueId(&nid));
  memset(id, 0, sizeof *id);
  memcpy(id->internal, &nid, sizeof nid);
  return COMET_OK;
}

/* Device checks and the setup stream, shared by both constructors. */
static comet_status_t context_init_device(struct comet_context *c) {
  int n = 0;
  COMET_CUDA(cudaGetDeviceCount(&n));
  COMET_ARG(c->device >= 0 && c->device < n, "cuda_device = %d, but %d CUDA device(s) are visible",
            c->device, n);
  COMET_CUDA(cudaSetDevice(c->device));
  int major = 0;
  COMET_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device));
  COMET_CUDA(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
  if (major != 9)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "device %d has compute capability %d.x; comet's kernels need Hopper (9.0)",
                           c->device, major);
  COMET_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  return COMET_OK;
}

comet_status_t comet_context_create(comet_context_t *out, int rank, int world_size,
                                    const comet_unique_id_t *id, int cuda_device) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  COMET_ARG(id != NULL, "id is NULL");
  COMET_ARG(world_size >= 1, "world_size = %d must be >= 1", world_size);
  COMET_ARG(rank >= 0 && rank < world_size, "rank = %d is outside 0..world_size-1 (%d)", rank,
            world_size - 1);
  COMET_CHECK(comet_nccl_version_check());
  struct comet_context *c = calloc(1, sizeof *c);
  if (!c) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "context: host allocation failed");
  comet_status_t st = COMET_OK;
  c->rank = rank;
  c->world = world_size;
  c->device = cuda_device;
  COMET_CHECK_GOTO(context_init_device(c), st, fail);
  ncclUniqueId nid;
  memcpy(&nid, id->internal, sizeof nid);
  COMET_NCCL_GOTO(ncclCommInitRank(&c->comm, world_size, nid, rank), st, fail);
  c->owns_comm = 1;
  *out = c;
  return COMET_OK;
fail:
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
  return st;
}

comet_status_t comet_context_create_from_comm(comet_context_t *out, struct ncclComm *comm,
                                              int cuda_device) {
  COMET_ARG(out != NULL, "ctx is NULL");
  *out = NULL;
  COMET_ARG(comm != NULL, "comm is NULL");
  COMET_CHECK(comet_nccl_version_check());
  int rank = 0, world = 0, dev = -1;
  COMET_NCCL(ncclCommUserRank(comm, &rank));
  COMET_NCCL(ncclCommCount(comm, &world));
  COMET_NCCL(ncclCommCuDevice(comm, &dev));
  COMET_ARG(dev == cuda_device, "cuda_device = %d, but the communicator is on device %d",
            cuda_device, dev);
  struct comet_context *c = calloc(1, sizeof *c);
  if (!c) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "context: host allocation failed");
  comet_status_t st = COMET_OK;
  c->rank = rank;
  c->world = world;
  c->device = cuda_device;
  c->comm = comm;
  c->owns_comm = 0;
  COMET_CHECK_GOTO(context_init_device(c), st, fail);
  *out = c;
  return COMET_OK;
fail:
  free(c);
  return st;
}

comet_status_t comet_context_destroy(comet_context_t c) {
  if (!c) return COMET_OK;
  comet_status_t st = COMET_OK;
  if (cudaSetDevice(c->device) != cudaSuccess)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: cudaSetDevice(%d) failed", c->device);
  if (c->stream && cudaStreamDestroy(c->stream) != cudaSuccess && st == COMET_OK)
    st = comet_set_error(COMET_ERR_CUDA, "context destroy: cudaStreamDestroy failed");
  if (c->owns_comm) {
    ncclResult_t r = ncclCommFinalize(c->comm);
    ncclResult_t r2 = ncclCommDestroy(c->comm);
    if ((r != ncclSuccess || r2 != ncclSuccess) && st == COMET_OK)
      st = comet_set_error(COMET_ERR_NCCL, "context destroy: ncclCommFinalize/Destroy failed: %s",
                           ncclGetErrorString(r != ncclSuccess ? r : r2));
  }
  free(c);
  return st;
}

int comet_context_rank(comet_context_t c) { return c ? c->rank : -1; }
int comet_context_world_size(comet_context_t c) { return c ? c->world : -1; }
ncclComm_t comet_context_comm(comet_context_t c) { return c->comm; }
int comet_context_device(comet_context_t c) { return c->device; }
cudaStream_t comet_context_stream(comet_context_t c) { return c->stream; }
int comet_context_sm_count(comet_context_t c) { return c->sm_count; }
