/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_driver.h — the few CUDA driver-API functions comet calls (green
 * contexts for the loopback world), reached through the runtime's
 * cudaGetDriverEntryPointByVersion so that nothing links libcuda at build
 * time and CPU-only machines still link and run the CPU tests. */
#ifndef COMET_CUDA_DRIVER_H
#define COMET_CUDA_DRIVER_H

#include <cuda.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comet_cu {
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetDevResource)(CUdevice, CUdevResource *, CUdevResourceType);
  CUresult (*DevSmResourceSplitByCount)(CUdevResource *, unsigned int *, const CUdevResource *,
                                        CUdevResource *, unsigned int, unsigned int);
  CUresult (*DevResourceGenerateDesc)(CUdevResourceDesc *, CUdevResource *, unsigned int);
  CUresult (*GreenCtxCreate)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned int);
  CUresult (*GreenCtxDestroy)(CUgreenCtx);
  CUresult (*CtxFromGreenCtx)(CUcontext *, CUgreenCtx);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*GreenCtxStreamCreate)(CUstream *, CUgreenCtx, unsigned int, int);
  CUresult (*GetErrorString)(CUresult, const char **);
  CUresult (*ModuleGetLoadingMode)(CUmoduleLoadingMode *);
  /* CUDA 13.1's entry points of the same two functions, which know the
   * workqueue resources (NULL where the driver is older) */
  CUresult (*DeviceGetDevResource131)(CUdevice, CUdevResource *, CUdevResourceType);
  CUresult (*DevResourceGenerateDesc131)(CUdevResourceDesc *, CUdevResource *, unsigned int);
} comet_cu_t;

/* The table, loaded once (thread-safe); COMET_ERR_CUDA naming the missing
 * function if the driver lacks one (green contexts need CUDA 12.4+). */
comet_status_t comet_cu_get(const comet_cu_t **cu);

/* Message text of a driver result. */
const char *comet_cu_error_string(CUresult r);

#ifdef __cplusplus
}
#endif

/* Return COMET_ERR_CUDA with the driver call's text and error. */
#define COMET_CU(call)                                                                   \
  do {                                                                                   \
    CUresult comet_cu_r_ = (call);                                                       \
    if (comet_cu_r_ != CUDA_SUCCESS) {                                                   \
      comet_set_error(COMET_ERR_CUDA, "%s failed: %s", #call,                            \
                      comet_cu_error_string(comet_cu_r_));                               \
      return comet_trace_error(COMET_ERR_CUDA, __FILE__, __LINE__);                      \
    }                                                                                    \
  } while (0)

#endif /* COMET_CUDA_DRIVER_H */
