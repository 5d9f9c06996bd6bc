/* SPDX-License-Identifier: Apache-2.0 */
/* context.h — internal view of a comet context (one rank: a process, a GPU,
 * a transport) and the CUDA/NCCL check macros of host code. */
#ifndef COMET_CONTEXT_H
#define COMET_CONTEXT_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "comet.h"
#include "error.h"
#include "transport/transport.h"
#include "tune/table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fault injection for the fault tests (internal; set by tests before a
 * layer create): the layer's local allocation fails on this rank. */
enum { COMET_INJECT_ALLOC = 1 };

struct comet_context {
  comet_transport_t *tp; /* the world this rank lives in (owned) */
  int rank, world;
  int device;            /* CUDA device of this rank */
  int sm_budget;         /* SMs this rank may use (loopback: its partition) */
  cudaStream_t stream;   /* internal stream for setup work, on the rank's SMs */
  cudaStream_t user_stream; /* comet_context_stream() */
  double timeout_s;      /* device-side wait bound of layers created next */
  volatile uint32_t *abort_host; /* mapped pinned word: nonzero = abort */
  uint32_t *abort_dev;   /* the same word as the kernels see it */
  int inject;            /* COMET_INJECT_* (tests only) */
  char device_name[64];  /* cudaDeviceProp.name: the tuning table's key */
  comet_tune_table_t tuning; /* the table read at creation (tune/load.c) */
  char tuning_path[4096];    /* where it came from ("" = none) */
};

/* Reads the tuning table a new context uses (tune/load.c): never fails,
 * warns on stderr. */
void comet_context_load_tuning(comet_context_t ctx);

/* A rank of the ipc world (transport/ipc.h; tests under the sanitizers). */
struct comet_ipc_world;
comet_status_t comet_context_create_ipc(comet_context_t *ctx, struct comet_ipc_world *world, int rank);

/* COMET_OK if `device` is a usable Hopper GPU; else a plain message: no
 * driver, a driver older than the runtime, no GPU, a device out of range,
 * not Hopper. */
comet_status_t comet_cuda_device_usable(int device);

/* Accessors for other subsystems. */
ncclComm_t comet_context_comm(comet_context_t ctx); /* NULL in the loopback world */
int comet_context_device(comet_context_t ctx);

/* COMET_ERR_NCCL unless the loaded NCCL is the one comet was built against
 * (the device API has no ABI promise: the window layout is compiled in). */
comet_status_t comet_nccl_version_check(void);

#ifdef __cplusplus
}
#endif

/* Return COMET_ERR_CUDA / COMET_ERR_NCCL with the call's text and error. */
#define COMET_CUDA(call)                                                               \
  do {                                                                                 \
    cudaError_t comet_cu_e_ = (call);                                                  \
    if (comet_cu_e_ != cudaSuccess) {                                                  \
      comet_set_error(COMET_ERR_CUDA, "%s failed: %s", #call,                          \
                      cudaGetErrorString(comet_cu_e_));                                \
      return comet_trace_error(COMET_ERR_CUDA, __FILE__, __LINE__);                    \
    }                                                                                  \
  } while (0)

#define COMET_NCCL(call)                                                               \
  do {                                                                                 \
    ncclResult_t comet_nc_r_ = (call);                                                 \
    if (comet_nc_r_ != ncclSuccess) {                                                  \
      comet_set_error(COMET_ERR_NCCL, "%s failed: %s", #call,                          \
                      ncclGetErrorString(comet_nc_r_));                                \
      return comet_trace_error(COMET_ERR_NCCL, __FILE__, __LINE__);                    \
    }                                                                                  \
  } while (0)

/* Same, jumping to a cleanup label with the status in st. */
#define COMET_CUDA_GOTO(call, st, label)                                               \
  do {                                                                                 \
    cudaError_t comet_cu_e_ = (call);                                                  \
    if (comet_cu_e_ != cudaSuccess) {                                                  \
      (st) = comet_set_error(COMET_ERR_CUDA, "%s failed: %s", #call,                   \
                             cudaGetErrorString(comet_cu_e_));                         \
      comet_trace_error((st), __FILE__, __LINE__);                                     \
      goto label;                                                                      \
    }                                                                                  \
  } while (0)

#define COMET_NCCL_GOTO(call, st, label)                                               \
  do {                                                                                 \
    ncclResult_t comet_nc_r_ = (call);                                                 \
    if (comet_nc_r_ != ncclSuccess) {                                                  \
      (st) = comet_set_error(COMET_ERR_NCCL, "%s failed: %s", #call,                   \
                             ncclGetErrorString(comet_nc_r_));                         \
      comet_trace_error((st), __FILE__, __LINE__);                                     \
      goto label;                                                                      \
    }                                                                                  \
  } while (0)

#endif /* COMET_CONTEXT_H */
