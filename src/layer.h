/* SPDX-License-Identifier: Apache-2.0 */
/* layer.h — internal view of a comet layer: its config, its symmetric
 * workspace (one window from the context's transport), local scratch for the
 * routing plan, its fault record, and the communication steps the fused ops
 * are built from (plan, dispatch, combine), usable on their own by tests and
 * tools. */
#ifndef COMET_LAYER_H
#define COMET_LAYER_H

#include <cuda_runtime.h>

#include "comet.h"
#include "kernels/comm/comm.h"
#include "kernels/gemm/gemm.h"
#include "plan_core.h"
#include "transport/transport.h"
#include "tune/choice.h"

#ifdef __cplusplus
extern "C" {
#endif

struct comet_layer {
  comet_context_t ctx;
  comet_layer_config_t cfg;
  int64_t row_capacity;
  comet_sym_t win;    /* the symmetric window */
  size_t win_bytes;
  void *scratch;      /* cudaMalloc'd local scratch of the device plan */
  size_t scratch_bytes;
  comet_fault_t *fault_host; /* mapped pinned mirror of view.fault */
  comet_comm_view_t view;
  int planned;        /* a plan has been launched (host's view) */
  int planned_tokens; /* num_tokens of the last plan */
  void *h_buf;        /* cudaMalloc'd [row capacity][F/tp]: layer0 output (forward.c) */
  const void *h_last; /* where the last comet_dispatch_gemm wrote h */
  int graph_mode;     /* 1: no host sync in calls (comet_layer_set_graph_mode) */
  int route_check_due; /* this call's host check of its routing is due (route_check) */
  comet_route_status_t *status_host; /* mapped: view.status as the kernel that settled it left
                                        it (view.status_host is its device address) */
  cudaEvent_t plan_done;             /* ... recorded after that kernel */
  cudaEvent_t last_call;    /* recorded at the end of every call */
  cudaStream_t last_stream; /* its stream */
  int has_last;
  int layer0_path;    /* COMET_LAYER0_* (agreed at creation: COMET_LAYER0=composed) */
  int n_comm0;        /* mover CTAs of the fused layer0; 0 = the default */
  int gather0;        /* the fused layer0's A: -1 = by shape, 0 = copied, 1 = gathered */
  int tile0;          /* its GEMM tile: -1 = comet's choice, else 0 auto, 1 wide, 2 narrow */
  int dynamic0;       /* 1 (default): its tiles from a counter, the movers join the GEMM; 0: static shares (COMET_L0_DYNAMIC=0) */
  int expert_bands0;  /* 1 (default): its tile list's bands hold one expert each; 0: bands of 8 entries across experts (COMET_L0_BANDS=8, for A/B) */
  int stages0;        /* its GEMM's ring: 4 (default) four stages where they apply, 3 three (COMET_L0_STAGES=3, for A/B) */
  int layer1_path;    /* COMET_LAYER1_* (agreed at creation: COMET_LAYER1=fused) */
  int n_comm1;        /* mover CTAs of the fused layer1; 0 = the default */
  comet_choice_t c0, c1; /* the last call's choices for the fused layer0 / layer1 */
  void *bw_ws;        /* the backward's workspace (backward.c), made by its first call */
  void *split_ws;     /* the GEMMs' split-tail workspace (gemm.h), zeroed at creation */
  int split_slots;
  size_t bw_bytes;
  int bw_met;         /* the first backward's host rendezvous is done (backward.c) */
  uint64_t uid;       /* unique in the process: the save mode's stamp names the layer */
};

/* How comet_dispatch_gemm runs: fused (default), composed (separate
 * kernels), or one of the fused kernel's two reference timings (bench). */
enum {
  COMET_LAYER0_FUSED = 0,     /* = COMET_L0_FUSED */
  COMET_LAYER0_GEMM_ONLY = 1, /* = COMET_L0_GEMM_ONLY: rows already in place */
  COMET_LAYER0_COMM_ONLY = 2, /* = COMET_L0_COMM_ONLY */
  COMET_LAYER0_COMPOSED = 3
};
/* For the bench and tests: switch a layer's layer0 between the paths
 * (every rank the same way, between calls: ranks on different paths would
 * wait for flags the others never raise). */
comet_status_t comet_layer_set_layer0_path(comet_layer_t layer, int path);
/* For the bench and tests: the fused layer0's tiles taken from a counter,
 * the movers joining the GEMM once their rows are out (1), or each GEMM CTA
 * its static share (0; COMET_L0_DYNAMIC=0 at creation sets it). Dynamic is
 * the default: 3-4% faster on Mixtral at W = 1 (session 6 run 6).
 * A rank-local choice: the bits are the same either way. */
comet_status_t comet_layer_set_layer0_dynamic(comet_layer_t layer, int on);
/* For the bench and tests: the fused layer0's GEMM ring, 4 (four stages,
 * the default: wide tiles with at most 128 local experts, else three) or 3
 * (three; COMET_L0_STAGES=3 at creation sets it). Rank-local: the same
 * bits. Four measured 1.6% faster forwards at W = 1 (session 18 run 1). */
comet_status_t comet_layer_set_layer0_stages(comet_layer_t layer, int stages);
/* The save mode's trailer in saved_z z of this layer (kernels/saved_z.h). */
struct comet_saved_trailer *comet_layer_saved_trailer(comet_layer_t layer, const void *z);
/* How comet_gemm_combine runs: as layer0's paths (COMET_L1_* for the fused
 * ones). The fused layer1 is opt-in until it has run on a GPU. */
enum {
  COMET_LAYER1_FUSED = 0,
  COMET_LAYER1_GEMM_ONLY = 1,
  COMET_LAYER1_COMM_ONLY = 2,
  COMET_LAYER1_COMPOSED = 3
};
comet_status_t comet_layer_set_layer1_path(comet_layer_t layer, int path);
int comet_layer_layer1_fused(comet_layer_t layer);
int comet_layer_layer1_n_comm(comet_layer_t layer);

/* Whether layer0 runs fused, and with how many movers the last call ran (0
 * when composed, or at W = 1 with A gathered, where nothing moves). */
int comet_layer_layer0_fused(comet_layer_t layer);
/* Whether the last fused layer0 gathered A (read own rows from x) or
 * copied it; tests force either (gather -1 = comet's choice). */
int comet_layer_layer0_gather(comet_layer_t layer);
comet_status_t comet_layer_set_layer0_gather(comet_layer_t layer, int gather);
/* Forces layer0's GEMM tile (0 auto, 1 wide, 2 narrow; -1 = comet's choice). */
comet_status_t comet_layer_set_layer0_tile(comet_layer_t layer, int tile);
int comet_layer_layer0_n_comm(comet_layer_t layer);
/* Where the last call's choices came from (COMET_FROM_*), for the bench. */
static inline int comet_layer_layer0_from(comet_layer_t layer) { return layer->c0.from; }
static inline int comet_layer_layer1_from(comet_layer_t layer) { return layer->c1.from; }

/* Lays out the window and the local scratch of a layer with cfg on `world`
 * ranks and the given protocol modes (COMET_DISPATCH_*, COMET_COMBINE_*):
 * fills view's offsets (window) and, if scratch is non-NULL, its scratch
 * pointers; returns both sizes. The one place buffer sizes are set. */
comet_status_t comet_layer_carve(const comet_layer_config_t *cfg, int world, int dispatch_mode,
                                 int combine_mode, comet_comm_view_t *view, size_t *win_bytes,
                                 size_t *scratch_bytes, char *scratch);

const comet_comm_view_t *comet_layer_view(comet_layer_t layer);

/* The layer's fault (a wait that gave up, here or on a peer), read from the
 * host mirror without synchronizing: COMET_OK or TIMEOUT/ABORTED naming the
 * wait, the flag and the peer. Every call checks it first. */
comet_status_t comet_layer_fault_status(comet_layer_t layer);

/* Orders a call after the previous call on the layer when the streams
 * differ (an event wait, capturable), and records the end of this one. */
comet_status_t comet_layer_call_begin(comet_layer_t layer, cudaStream_t stream);
comet_status_t comet_layer_call_end(comet_layer_t layer, cudaStream_t stream);

/* Device routing plan for this call (bumps the device epoch). arg non-NULL
 * with a kind: this rank's arguments were bad, plan nothing and report them
 * to every rank. num_tokens above max_tokens_per_rank is reported so. */
comet_status_t comet_layer_plan(comet_layer_t layer, int num_tokens, const int32_t *topk_ids,
                                const comet_arg_fault_t *arg, cudaStream_t stream);
/* Dispatch x [num_tokens of the plan, H] with `ctas` CTAs (0 = default). */
comet_status_t comet_layer_dispatch(comet_layer_t layer, const void *x, int ctas,
                                    cudaStream_t stream);
/* Combine y [rows, H] (NULL: the dispatched rows) into out [num_tokens, H]. */
comet_status_t comet_layer_combine(comet_layer_t layer, const void *y, const float *topk_weights,
                                   void *out, int ctas, cudaStream_t stream);
/* Waits for stream, reads the call's status: COMET_OK (rows = rows this
 * rank received), COMET_ERR_ROUTING naming the rank and token,
 * INVALID_ARGUMENT naming the rank whose arguments were bad or a repeated
 * combine, TIMEOUT/ABORTED. The same answer on every rank (but for faults). */
comet_status_t comet_layer_route_status(comet_layer_t layer, cudaStream_t stream,
                                        comet_route_status_t *status);

/* Outside graph mode, a call's host check of its routing: _queue after
 * the plan (the status copied into pinned memory, an event after it);
 * comet_layer_route_check once the call's next big kernel is queued, so the
 * GPU keeps working while the host waits for the plan only (a refused plan
 * makes the kernels in between do nothing, as in graph mode); finish makes
 * a check still due. */
comet_status_t comet_layer_route_check_queue(comet_layer_t layer, struct CUstream_st *stream);
comet_status_t comet_layer_route_check(comet_layer_t layer);

/* The calls' common steps (forward.c): the device plan and, outside graph
 * mode, the host check of its routing status (queued: above); a refusal of this rank's bad
 * arguments told to every rank (through each of the call's plans, or the
 * combine's begin exchange when plans is 0); the call's end (its event),
 * keeping a failure's message. */
comet_status_t comet_layer_plan_checked(comet_layer_t layer, int num_tokens, const int32_t *ids,
                                        struct CUstream_st *stream);
comet_status_t comet_layer_refuse(comet_layer_t layer, comet_status_t local,
                                  const comet_arg_fault_t *fault, struct CUstream_st *stream,
                                  int plans);
comet_status_t comet_layer_finish(comet_layer_t layer, comet_status_t st,
                                  struct CUstream_st *stream);

/* The composed layer1's GEMM (forward.c): h . w2^T of every local expert
 * into y, in the forward's mode (deterministic, the layer's split
 * workspace, the whole SM budget). The bench times it alone (W = 1). */
void comet_layer1_gemm_params(comet_layer_t layer, const void *h, const void *w2, void *y,
                              comet_gemm_params_t *g);

/* Default number of data-moving CTAs (within the SM budget). */
int comet_layer_default_ctas(comet_layer_t layer);

/* Protocol modes from the environment (COMET_DISPATCH_MODE = push|pull|tma,
 * COMET_COMBINE_MODE = pull|push); exchanged and agreed at layer creation. */
void comet_protocol_modes_from_env(int *dispatch_mode, int *combine_mode, int *fused_layer0,
                                   int *fused_layer1);

#ifdef __cplusplus
}
#endif
#endif /* COMET_LAYER_H */
