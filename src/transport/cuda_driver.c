/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_driver.c — the driver-API table of cuda_driver.h, loaded through the
 * runtime at the ABI of the CUDA headers comet was compiled with. */
#include "transport/cuda_driver.h"

#include <pthread.h>
#include <stdio.h>

#include <cuda_runtime.h>

#include "error.h"

static comet_cu_t g_cu;
static comet_status_t g_status = COMET_OK;
static char g_msg[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int load(const char *name, void **fn) {
  enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  cudaError_t e = cudaGetDriverEntryPointByVersion(name, fn, CUDA_VERSION, cudaEnableDefault, &q);
  if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !*fn) {
    snprintf(g_msg, sizeof g_msg,
             "the CUDA driver has no %s (runtime: %s, query result %d); the loopback world needs "
             "green contexts (driver for CUDA 12.4 or newer)",
             name, cudaGetErrorString(e), (int)q);
    cudaGetLastError();
    return 0;
  }
  return 1;
}

/* An entry point of a later ABI that comet can do without: NULL if absent. */
static void load_optional(const char *name, void **fn, int version) {
  enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion(name, fn, version, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess)
    *fn = NULL;
  cudaGetLastError();
}

static void load_all(void) {
  int ok = load("cuDeviceGet", (void **)&g_cu.DeviceGet) &&
           load("cuDeviceGetDevResource", (void **)&g_cu.DeviceGetDevResource) &&
           load("cuDevSmResourceSplitByCount", (void **)&g_cu.DevSmResourceSplitByCount) &&
           load("cuDevResourceGenerateDesc", (void **)&g_cu.DevResourceGenerateDesc) &&
           load("cuGreenCtxCreate", (void **)&g_cu.GreenCtxCreate) &&
           load("cuGreenCtxDestroy", (void **)&g_cu.GreenCtxDestroy) &&
           load("cuCtxFromGreenCtx", (void **)&g_cu.CtxFromGreenCtx) &&
           load("cuCtxSetCurrent", (void **)&g_cu.CtxSetCurrent) &&
           load("cuGreenCtxStreamCreate", (void **)&g_cu.GreenCtxStreamCreate) &&
           load("cuGetErrorString", (void **)&g_cu.GetErrorString) &&
           load("cuModuleGetLoadingMode", (void **)&g_cu.ModuleGetLoadingMode);
  load_optional("cuDeviceGetDevResource", (void **)&g_cu.DeviceGetDevResource131, 13010);
  load_optional("cuDevResourceGenerateDesc", (void **)&g_cu.DevResourceGenerateDesc131, 13010);
  g_status = ok ? COMET_OK : COMET_ERR_CUDA;
}

comet_status_t comet_cu_get(const comet_cu_t **cu) {
  pthread_once(&g_once, load_all);
  if (g_status != COMET_OK) return comet_set_error(g_status, "%s", g_msg);
  *cu = &g_cu;
  return COMET_OK;
}

const char *comet_cu_error_string(CUresult r) {
  const char *s = NULL;
  if (g_cu.GetErrorString && g_cu.GetErrorString(r, &s) == CUDA_SUCCESS && s) return s;
  return "unknown driver error";
}
