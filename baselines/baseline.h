/* SPDX-License-Identifier: Apache-2.0 */
/* baseline.h — the unfused MoE layer that Megatron/PyTorch users run today,
 * in C: NCCL collectives + cuBLAS + small permutation kernels, one step
 * after the other on one stream. comet's fused ops are judged against it in
 * the same run (docs/baseline.md).
 *
 * Layout (Megatron-Core's all-to-all token dispatcher with expert tensor
 * parallelism): W = ep * tp ranks, rank r = ep_rank * tp + tp_rank.
 *   dispatch: count rows per expert, all-gather the counts (host sync),
 *             permute own rows by expert, all-to-all-v within the EP group
 *             of equal tp_rank, all-gather-v within the TP group (every TP
 *             shard needs every row), sort the rows by local expert;
 *   experts:  cuBLAS fc1 per expert, activation, cuBLAS fc2 per expert;
 *   combine:  unsort, reduce-scatter-v (sum of the TP partials) within the
 *             TP group, all-to-all-v back, weighted top-k sum per token.
 *
 * One baseline per rank; comm is the world communicator (ep*tp ranks). The
 * caller keeps comm and the cuBLAS handle; the baseline splits its own EP and
 * TP communicators from comm (collective at create) and frees them. */
#ifndef COMET_BASELINE_H
#define COMET_BASELINE_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comet_baseline *comet_baseline_t;

/* How the experts' GEMMs run. AUTO times both once per (GEMM, shape bucket)
 * on first use and keeps the faster. */
typedef enum comet_baseline_gemm {
  COMET_BASELINE_GEMM_AUTO = 0,
  COMET_BASELINE_GEMM_GROUPED = 1, /* one cublasGemmGroupedBatchedEx per GEMM */
  COMET_BASELINE_GEMM_LOOP = 2     /* one cublasGemmEx per non-empty expert */
} comet_baseline_gemm_t;

/* Phase times of the last forward, from CUDA events (ms). dispatch includes
 * the host sync of the count exchange; fc1_ms is the first GEMM and the
 * activation (part of experts_ms): dispatch + fc1 is layer0's figure. */
typedef struct comet_baseline_times {
  float dispatch_ms, experts_ms, combine_ms, total_ms, fc1_ms;
} comet_baseline_times_t;

/* Collective over comm. cfg is validated against comm's size; buffers are
 * sized for cfg->max_tokens_per_rank and comet_config_row_capacity(cfg). */
comet_status_t comet_baseline_create(comet_baseline_t *b, const comet_layer_config_t *cfg,
                                     ncclComm_t comm, cublasHandle_t cublas);
comet_status_t comet_baseline_destroy(comet_baseline_t b);

/* The whole forward (comet_moe_forward's contract), collective over comm.
 * Bad arguments or routing on any rank make every rank return an error (the
 * count exchange carries each rank's status), so no rank is left waiting.
 * Synchronizes the host with stream once (after the count exchange).
 * args->saved_z must be NULL: it is comet's buffer, the baseline saves in
 * its own (comet_baseline_set_save). */
comet_status_t comet_baseline_forward(comet_baseline_t b, const comet_moe_args_t *args,
                                      cudaStream_t stream);

/* The backward (comet_moe_backward's contract: dx, dw1, dw2, d topk_weights
 * from x, the routing, the weights and dout; any output NULL, not all;
 * args->saved_z NULL), collective over comm, as a Megatron stack runs it:
 *   recompute (the default): under activation recompute, the whole forward
 *     again (its comm included: y comes home), then autograd's steps in
 *     reverse (baseline.c says which); nothing is kept between a forward
 *     and a backward (comet's backward recomputes too);
 *   save mode (comet_baseline_set_save): as without recompute, the steps
 *     in reverse on what the last forward kept; x and topk_ids are not
 *     read (the saved routing is used), topk_weights and dout are.
 * Its first call (or the first save-mode forward) allocates the backward's
 * buffers (a rank that cannot make them fails every rank). Synchronizes the
 * host with stream once (the count exchange; in save mode the status
 * exchange alone: counts, routing and plan are the forward's). Not yet run
 * on a GPU. */
comet_status_t comet_baseline_backward(comet_baseline_t b, const comet_moe_backward_args_t *args,
                                       cudaStream_t stream);

/* Save mode, off by default; every rank must set the same (a backward on
 * ranks that disagree fails every rank). On: each forward keeps what the
 * backward needs in the baseline's own buffers (no extra memory beyond the
 * backward's: the dispatched rows A, z, h, y as it came home, the slot
 * rows and the call's plan; fc2 then writes the backward's y buffer
 * instead of over A), and each backward uses the last forward's and skips
 * its recompute. One saved forward at a time: the backward consumes it (z
 * becomes da, y dy), any other call replaces or drops it, and a save-mode
 * backward without one (or with another num_tokens) is refused on every
 * rank. Takes effect at the next call. */
comet_status_t comet_baseline_set_save(comet_baseline_t b, int on);

/* Waits for the last forward to finish and reads its phase times. */
comet_status_t comet_baseline_last_times(comet_baseline_t b, comet_baseline_times_t *t);

comet_status_t comet_baseline_set_gemm(comet_baseline_t b, comet_baseline_gemm_t mode);
/* Which GEMM path the last call used for fc1 and fc2 ("grouped"/"loop"). */
const char *comet_baseline_last_gemm(comet_baseline_t b, int which /* 1 or 2 */);

/* all_counts[s*E + e] of the last forward (rows of rank s for expert e),
 * valid until the next forward; NULL before the first. */
const int32_t *comet_baseline_last_counts(comet_baseline_t b);

#ifdef __cplusplus
}
#endif
#endif /* COMET_BASELINE_H */
