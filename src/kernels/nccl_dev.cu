/* nccl_dev.cu — host side of the NCCL device communicator: ncclDevComm is a
 * C++ type (the device API headers are not C), so layer.c holds it as an
 * opaque pointer made here. */
#include <stdlib.h>

#include "error.h"
#include "kernels/comm.h"
#include "kernels/nccl_dev.cuh"

/* ncclDevComm's layout is compiled in: the nccl.h the compiler saw must be
 * the one the build found (and the one loaded, checked at run time). */
static_assert(NCCL_VERSION_CODE == COMET_NCCL_BUILD_VERSION,
              "nccl.h seen by nvcc differs from the NCCL found by CMake: an nccl.h earlier on the "
              "include path (e.g. in the CUDA toolkit) shadows it");

extern "C" comet_status_t comet_devcomm_create(ncclComm *comm, int lsa_barriers, void **out) {
  *out = NULL;
  ncclDevComm *dc = (ncclDevComm *)calloc(1, sizeof(ncclDevComm));
  if (!dc) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "devcomm: host allocation failed");
  ncclDevCommRequirements reqs = {}; /* zero = nothing optional (2.28) */
  reqs.lsaBarrierCount = lsa_barriers;
  ncclResult_t r = ncclDevCommCreate(comm, &reqs, dc);
  if (r != ncclSuccess) {
    free(dc);
    return comet_set_error(COMET_ERR_NCCL, "ncclDevCommCreate(lsaBarrierCount = %d) failed: %s (%s)",
                           lsa_barriers, ncclGetErrorString(r), ncclGetLastError(comm));
  }
  if (dc->lsaSize != dc->nRanks) {
    int lsa = dc->lsaSize, n = dc->nRanks;
    ncclDevCommDestroy(comm, dc);
    free(dc);
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "comet needs every rank load/store reachable (one NVLink domain): "
                           "the LSA team has %d of %d ranks", lsa, n);
  }
  *out = dc;
  return COMET_OK;
}

extern "C" comet_status_t comet_devcomm_destroy(ncclComm *comm, void *devcomm) {
  if (!devcomm) return COMET_OK;
  ncclResult_t r = ncclDevCommDestroy(comm, (ncclDevComm *)devcomm);
  free(devcomm);
  if (r != ncclSuccess)
    return comet_set_error(COMET_ERR_NCCL, "ncclDevCommDestroy failed: %s", ncclGetErrorString(r));
  return COMET_OK;
}
