/* SPDX-License-Identifier: Apache-2.0 */
/* transport.c — what the transports share: the host-side wait bound, and
 * the device handling of the ones whose rank has a whole GPU. */
#include <stdlib.h>

#include <cuda_runtime.h>

#include "context.h"
#include "error.h"
#include "transport/transport.h"

double comet_transport_host_timeout(void) {
  const char *v = getenv("COMET_HOST_TIMEOUT_S");
  const double x = v ? atof(v) : 0.0;
  return x > 0 ? x : 120.0;
}

comet_status_t comet_transport_device_current(comet_transport_t *t) {
  COMET_CUDA(cudaSetDevice(t->device));
  return COMET_OK;
}

comet_status_t comet_transport_device_stream(comet_transport_t *t, struct CUstream_st **s) {
  COMET_CUDA(cudaSetDevice(t->device));
  cudaStream_t cs = NULL;
  COMET_CUDA(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
  *s = cs;
  return COMET_OK;
}
