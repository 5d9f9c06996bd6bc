/* context.h — internal view of a comet context (one rank: a process, a GPU,
 * an NCCL communicator) and the CUDA/NCCL check macros of host code. */
#ifndef COMET_CONTEXT_H
#define COMET_CONTEXT_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "comet.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct comet_context {
  ncclComm_t comm;
  int owns_comm;       /* created here (destroyed with the context) or adopted */
  int rank, world;
  int device;          /* CUDA device of this rank */
  int sm_count;
  cudaStream_t stream; /* internal stream for setup work (non-blocking) */
};

/* Accessors for other subsystems. */
ncclComm_t comet_context_comm(comet_context_t ctx);
int comet_context_device(comet_context_t ctx);
cudaStream_t comet_context_stream(comet_context_t ctx);
int comet_context_sm_count(comet_context_t ctx);

/* COMET_ERR_NCCL unless the loaded NCCL is the one comet was built against
 * (the device API has no ABI promise: ncclDevComm is compiled into kernels). */
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
