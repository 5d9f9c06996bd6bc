/* SPDX-License-Identifier: Apache-2.0 */
/* kernel_preload.c — loads every comet kernel into the calling thread's
 * current context and reserves the largest kernel's local memory there,
 * before the rank's first collective call.
 *
 * Why: a loopback rank shares its device with its peers. Whatever the driver
 * does on a context's first launch of a kernel (loading it into that
 * context, growing the context's local memory) may wait for the device's
 * running work, and that work can be a peer's kernel spinning at a barrier
 * for this very rank: the peers then give up after their timeout and only
 * then does this rank's kernel start (docs/status.md, Known gaps 11).
 * Loading them all here, while no peer can be waiting yet, takes that first
 * launch out of the protocol. */
#include <pthread.h>

#include <cuda.h>
#include <cuda_runtime.h>

#include "context.h"
#include "error.h"
#include "kernels/kernel_anchors.h"
#include "transport/cuda_driver.h"
#include "transport/transport.h"

#define MAX_LIBRARIES 16
#define MAX_KERNELS 1024

typedef const void *(*anchor_fn)(void);

/* Loads the kernels of lib; *local is raised to their largest per-thread
 * local memory. */
static comet_status_t load_library(const comet_cu_t *cu, CUlibrary lib, size_t *local) {
  static CUkernel kernels[MAX_KERNELS]; /* under the caller's context: one thread at a time */
  unsigned n = 0;
  COMET_CU(cu->LibraryGetKernelCount(&n, lib));
  if (n > MAX_KERNELS)
    return comet_set_error(COMET_ERR_INTERNAL, "kernel preload: a library of %u kernels (at most %d)",
                           n, MAX_KERNELS);
  COMET_CU(cu->LibraryEnumerateKernels(kernels, n, lib));
  for (unsigned i = 0; i < n; ++i) {
    CUfunction f = NULL;
    int bytes = 0;
    COMET_CU(cu->KernelGetFunction(&f, kernels[i])); /* loads it into the current context */
    COMET_CU(cu->FuncGetAttribute(&bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, f));
    if ((size_t)bytes > *local) *local = (size_t)bytes;
  }
  return COMET_OK;
}

comet_status_t comet_kernels_preload(void) {
  static const anchor_fn anchors[] = {comet_anchor_plan,     comet_anchor_dispatch, comet_anchor_combine,
                                      comet_anchor_forward,  comet_anchor_backward, comet_anchor_gemm,
                                      comet_anchor_tiles,    comet_anchor_layer0,   comet_anchor_layer1};
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  const comet_cu_t *cu = NULL;
  COMET_CHECK(comet_cu_get(&cu));
  CUlibrary libs[MAX_LIBRARIES];
  int nlibs = 0;
  for (size_t a = 0; a < sizeof anchors / sizeof anchors[0]; ++a) {
    cudaKernel_t k = NULL;
    COMET_CUDA(cudaGetKernel(&k, anchors[a]()));
    CUlibrary lib = NULL;
    COMET_CU(cu->KernelGetLibrary(&lib, (CUkernel)k));
    int seen = 0;
    for (int i = 0; i < nlibs; ++i) seen |= libs[i] == lib;
    if (!seen && nlibs < MAX_LIBRARIES) libs[nlibs++] = lib;
  }
  size_t local = 0;
  pthread_mutex_lock(&mu);
  comet_status_t st = COMET_OK;
  for (int i = 0; i < nlibs && st == COMET_OK; ++i) st = load_library(cu, libs[i], &local);
  pthread_mutex_unlock(&mu);
  COMET_CHECK(st);
  /* the context's local memory sized for the hungriest kernel now, not
   * grown at that kernel's first launch */
  size_t stack = 0;
  COMET_CU(cu->CtxGetLimit(&stack, CU_LIMIT_STACK_SIZE));
  if (local > stack) COMET_CU(cu->CtxSetLimit(CU_LIMIT_STACK_SIZE, local));
  return COMET_OK;
}
