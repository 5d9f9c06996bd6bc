/* layer.h — internal view of a comet layer: its config, its symmetric
 * workspace (one NCCL window), the NCCL device communicator, local scratch
 * for the routing plan, and the communication steps the fused ops are built
 * from (plan, dispatch, combine), usable on their own by tests and tools. */
#ifndef COMET_LAYER_H
#define COMET_LAYER_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "comet.h"
#include "kernels/comm.h"
#include "plan_core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct comet_layer {
  comet_context_t ctx;
  comet_layer_config_t cfg;
  comet_plan_dims_t dims;
  int64_t row_capacity;
  void *win_base;     /* ncclMemAlloc'd, registered as `win` */
  size_t win_bytes;
  ncclWindow_t win;
  void *devcomm;      /* ncclDevComm* (opaque in C; see kernels/nccl_dev.cu) */
  void *scratch;      /* cudaMalloc'd local scratch of the device plan */
  size_t scratch_bytes;
  comet_comm_view_t view;
  uint64_t epoch;     /* epoch of the last plan (0 = none yet) */
  int planned_tokens; /* num_tokens of the last plan */
  void *h_buf;        /* cudaMalloc'd [row capacity][F/tp]: layer0 output (forward.c) */
  const void *h_last; /* where the last comet_dispatch_gemm wrote h */
  int graph_mode;     /* 1: no host sync in calls (comet_layer_set_graph_mode) */
};

/* Lays out the window and the local scratch of a layer with cfg on `world`
 * ranks: fills view's offsets (window) and, if scratch is non-NULL, its
 * scratch pointers; returns both sizes. The one place buffer sizes are set. */
comet_status_t comet_layer_carve(const comet_layer_config_t *cfg, int world,
                                 comet_comm_view_t *view, size_t *win_bytes,
                                 size_t *scratch_bytes, char *scratch);

const comet_comm_view_t *comet_layer_view(comet_layer_t layer);

/* Device routing plan for this call (takes a new epoch). num_tokens above
 * max_tokens_per_rank is an INVALID_ARGUMENT here, before any kernel. */
comet_status_t comet_layer_plan(comet_layer_t layer, int num_tokens, const int32_t *topk_ids,
                                cudaStream_t stream);
/* Dispatch x [num_tokens of the plan, H] with `ctas` CTAs (0 = default). */
comet_status_t comet_layer_dispatch(comet_layer_t layer, const void *x, int ctas,
                                    cudaStream_t stream);
/* Combine y [rows, H] (NULL: the dispatched rows) into out [num_tokens, H]. */
comet_status_t comet_layer_combine(comet_layer_t layer, const void *y, const int32_t *topk_ids,
                                   const float *topk_weights, void *out, int ctas,
                                   cudaStream_t stream);
/* Waits for stream, reads the plan's status: COMET_OK (rows = rows this rank
 * received) or COMET_ERR_ROUTING with a message naming the rank and token.
 * The same answer on every rank. */
comet_status_t comet_layer_route_status(comet_layer_t layer, cudaStream_t stream,
                                        comet_route_status_t *status);

/* Default number of data-moving CTAs. */
int comet_layer_default_ctas(comet_layer_t layer);

#ifdef __cplusplus
}
#endif
#endif /* COMET_LAYER_H */
