/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_window.cu — the NCCL device-API pieces the nccl transport needs: the
 * peers' base pointers of a symmetric window (read once on the device, where
 * ncclGetLsaPointer lives) and the device communicator that proves every
 * rank load/store reachable. C++ only because the NCCL device API is;
 * nothing of it reaches comet's kernels, which get plain pointers. */
#include <stdlib.h>

#include <nccl.h>
#include <nccl_device.h>

#include "error.h"
#include "transport/nccl_window.h"

/* ncclDevComm's layout is compiled in: the nccl.h the compiler saw must be
 * the one the build found (and the one loaded, checked at run time). */
static_assert(NCCL_VERSION_CODE == COMET_NCCL_BUILD_VERSION,
              "nccl.h seen by nvcc differs from the NCCL found by CMake: an nccl.h earlier on the "
              "include path (e.g. in the CUDA toolkit) shadows it");

__global__ void peer_table_kernel(ncclWindow_t win, int world, char **out) {
  for (int p = threadIdx.x; p < world; p += blockDim.x) out[p] = (char *)ncclGetLsaPointer(win, 0, p);
}

extern "C" comet_status_t comet_nccl_peer_table(void *win, int world, char **peers,
                                                cudaStream_t stream) {
  char **d = NULL;
  cudaError_t e = cudaMalloc((void **)&d, sizeof(char *) * (size_t)world);
  if (e == cudaSuccess) {
    peer_table_kernel<<<1, 64, 0, stream>>>((ncclWindow_t)win, world, d);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(peers, d, sizeof(char *) * (size_t)world, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  if (d) cudaFree(d);
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "reading the window's peer pointers: %s",
                           cudaGetErrorString(e));
  return COMET_OK;
}

extern "C" comet_status_t comet_nccl_check_lsa(ncclComm *comm) {
  ncclDevComm dc;
#ifdef NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER
  ncclDevCommRequirements reqs = NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER;
#else
  ncclDevCommRequirements reqs = {}; /* 2.28 has no initializer: zero = nothing optional */
#endif
  ncclResult_t r = ncclDevCommCreate(comm, &reqs, &dc);
  if (r != ncclSuccess)
    return comet_set_error(COMET_ERR_NCCL, "ncclDevCommCreate failed: %s (%s)", ncclGetErrorString(r),
                           ncclGetLastError(comm));
  const int lsa = dc.lsaSize, n = dc.nRanks;
  r = ncclDevCommDestroy(comm, &dc);
  if (lsa != n)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "comet needs every rank load/store reachable (one NVLink domain): the "
                           "LSA team has %d of %d ranks", lsa, n);
  if (r != ncclSuccess)
    return comet_set_error(COMET_ERR_NCCL, "ncclDevCommDestroy failed: %s", ncclGetErrorString(r));
  return COMET_OK;
}
