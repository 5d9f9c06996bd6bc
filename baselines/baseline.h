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
 * Synchronizes the host with stream once (after the count exchange). */
comet_status_t comet_baseline_forward(comet_baseline_t b, const comet_moe_args_t *args,
                                      cudaStream_t stream);

/* The backward (comet_moe_backward's contract: dx, dw1, dw2, d topk_weights
 * from x, the routing, the weights and dout; any output NULL, not all),
 * collective over comm, as a Megatron stack with activation recompute runs
 * it: the whole forward again (its comm included: y comes home), then
 * autograd's steps in reverse (baseline.c says which). Nothing is kept
 * between a forward and a backward (comet's backward recomputes too). Its
 * first call allocates the backward's buffers (a rank that cannot make
 * them fails every rank). Synchronizes the host with stream once. Not yet
 * run on a GPU. */
comet_status_t comet_baseline_backward(comet_baseline_t b, const comet_moe_backward_args_t *args,
                                       cudaStream_t stream);

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
