/* SPDX-License-Identifier: Apache-2.0 */
/* comet.h — public C API of comet: the Mixture-of-Experts layer across GPUs
 * with its communication hidden inside its computation.
 *
 * Conventions: every function returns a comet_status_t; on failure
 * comet_last_error() holds a message (per thread) naming the argument and
 * the value that was wrong. Handles are opaque. Config and argument structs
 * start with a `size` field and have an *_INITIALIZER macro so they can grow
 * without breaking callers. All device pointers are on the context's GPU. */
#ifndef COMET_H
#define COMET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COMET_VERSION_MAJOR 0
#define COMET_VERSION_MINOR 1
#define COMET_VERSION_PATCH 0
#define COMET_VERSION_CODE \
  (COMET_VERSION_MAJOR * 10000 + COMET_VERSION_MINOR * 100 + COMET_VERSION_PATCH)

/* Forward declarations so this header needs neither cuda_runtime.h nor
 * nccl.h: they name the same types as cudaStream_t and ncclComm_t. */
struct CUstream_st;
struct ncclComm;

typedef enum comet_status {
  COMET_OK = 0,
  COMET_ERR_INVALID_ARGUMENT = 1,
  COMET_ERR_UNSUPPORTED = 2,
  COMET_ERR_OUT_OF_MEMORY = 3,
  COMET_ERR_CUDA = 4,
  COMET_ERR_NCCL = 5,
  COMET_ERR_ROUTING = 6,
  COMET_ERR_INTERNAL = 7,
  COMET_ERR_TIMEOUT = 8, /* a rank waited longer than the context's timeout for a peer */
  COMET_ERR_ABORTED = 9  /* comet_context_abort() was called on this rank or a peer */
} comet_status_t;

/* Short fixed name of a status ("invalid argument", ...). */
const char *comet_status_string(comet_status_t status);
/* Detailed message of the last failure on this thread ("" if none). */
const char *comet_last_error(void);

/* Run-time version (COMET_VERSION_CODE of the library that is loaded). */
int comet_version(void);
/* NCCL_VERSION_CODE comet was built against, and COMET_OK if the NCCL loaded
 * in this process is that one (else COMET_ERR_NCCL saying both versions):
 * the NCCL device API has no ABI promise. */
int comet_nccl_build_version(void);
comet_status_t comet_nccl_check(void);

typedef enum comet_dtype {
  COMET_DTYPE_BF16 = 0,
  COMET_DTYPE_FP16 = 1,
  COMET_DTYPE_FP8_E4M3 = 2 /* declared for later: returns UNSUPPORTED */
} comet_dtype_t;

typedef enum comet_activation {
  COMET_ACT_SWIGLU = 0, /* silu(gate) * up; w1 holds gate rows then up rows */
  COMET_ACT_GELU = 1,   /* gelu (tanh form) */
  COMET_ACT_NONE = 2
} comet_activation_t;

const char *comet_dtype_name(comet_dtype_t dtype);
const char *comet_activation_name(comet_activation_t act);
/* Bytes of one element of dtype (0 for an unknown dtype). */
size_t comet_dtype_size(comet_dtype_t dtype);

/* One MoE layer's shape and parallel layout. World = ep * tp; rank
 * r = ep_rank * tp + tp_rank. Per rank: w1 [E/ep, w1_rows, H] with
 * w1_rows = 2F/tp (swiglu) or F/tp, and w2 [E/ep, H, F/tp]. */
typedef struct comet_layer_config {
  size_t size;             /* sizeof(comet_layer_config_t) */
  int hidden;              /* H: multiple of 8 */
  int ffn;                 /* F per expert: F/tp a multiple of 8 */
  int num_experts;         /* E: multiple of ep */
  int topk;                /* K: 1..E */
  int ep;                  /* expert-parallel size */
  int tp;                  /* tensor-parallel size */
  int max_tokens_per_rank; /* T_max: tokens a rank may bring to one call */
  int max_rows_per_rank;   /* rows an expert rank may receive; 0 (or more
                              than it) = the worst case ep*tp*T_max*min(K, E/ep).
                              A routing that needs more is COMET_ERR_ROUTING. */
  comet_dtype_t dtype;
  comet_activation_t activation;
} comet_layer_config_t;

#define COMET_LAYER_CONFIG_INITIALIZER \
  { sizeof(comet_layer_config_t), 0, 0, 0, 0, 1, 1, 0, 0, COMET_DTYPE_BF16, COMET_ACT_SWIGLU }

/* Checks cfg on its own and against world_size (ep*tp must equal it). */
comet_status_t comet_config_validate(const comet_layer_config_t *cfg, int world_size);
/* Rows of w1 per local expert (2F/tp for swiglu, F/tp otherwise). */
int comet_config_w1_rows(const comet_layer_config_t *cfg);
/* Row capacity of one rank's expert buffers (max_rows_per_rank or the worst case). */
int64_t comet_config_row_capacity(const comet_layer_config_t *cfg);
/* Bytes of a forward's saved pre-activations (comet_moe_args_t.saved_z):
 * row capacity x w1_rows elements of the dtype, and one row more (two for
 * rows under 32 bytes) for the forward's stamp, which its backward checks. */
size_t comet_config_saved_z_bytes(const comet_layer_config_t *cfg);

/* Model presets (Mixtral-8x7B, Qwen2-MoE, ...): shapes only; ep/tp/tokens
 * are left as in the INITIALIZER for the caller to set. */
typedef struct comet_preset {
  const char *name;
  int hidden, ffn, num_experts, topk;
  comet_activation_t activation;
} comet_preset_t;
int comet_preset_count(void);
const comet_preset_t *comet_preset_at(int index);
/* NULL (and a last-error message listing the names) if unknown. */
const comet_preset_t *comet_preset_find(const char *name);
/* Sets cfg's shape (hidden, ffn, num_experts, topk, activation) to the
 * preset's; the other fields stay. COMET_ERR_INVALID_ARGUMENT, listing the
 * names, if name is unknown. */
comet_status_t comet_config_from_preset(comet_layer_config_t *cfg, const char *name);

/* ---- contexts: one per rank ----
 * A rank is a process and a GPU (NCCL transport) or, in the loopback world,
 * a host thread and an SM partition of one GPU. */

typedef struct comet_context *comet_context_t;

#define COMET_UNIQUE_ID_BYTES 128
typedef struct comet_unique_id { char internal[COMET_UNIQUE_ID_BYTES]; } comet_unique_id_t;

/* Called on one rank; the id is then passed to every rank out of band. */
comet_status_t comet_get_unique_id(comet_unique_id_t *id);
/* Creates a context and its own NCCL communicator on cuda_device. Collective. */
comet_status_t comet_context_create(comet_context_t *ctx, int rank, int world_size,
                                    const comet_unique_id_t *id, int cuda_device);
/* Adopts a caller's communicator (not destroyed with the context).
 * Collective: every rank of comm calls it. */
comet_status_t comet_context_create_from_comm(comet_context_t *ctx, struct ncclComm *comm,
                                              int cuda_device);
/* Destroying NULL is a no-op (COMET_OK), as for layers. */
comet_status_t comet_context_destroy(comet_context_t ctx);
/* -1 for a NULL context. */
int comet_context_rank(comet_context_t ctx);
int comet_context_world_size(comet_context_t ctx);
/* SMs this rank's kernels may use: the whole GPU, or the rank's partition in
 * the loopback world. Every persistent grid comet launches fits in it. */
int comet_context_sm_budget(comet_context_t ctx);
/* A stream of the context that runs on the rank's SMs. In the loopback world
 * calls must be made on it (or on another stream made while the rank's
 * partition is current, see comet_context_make_current); with NCCL any
 * stream of the device will do. Owned by the context. */
struct CUstream_st *comet_context_stream(comet_context_t ctx);
/* Makes the context's device (loopback: its SM partition) current in the
 * calling thread, for the caller's own CUDA calls. comet's calls do this
 * themselves. */
comet_status_t comet_context_make_current(comet_context_t ctx);
/* Seconds a rank's kernels wait for a peer before they give up (default 10,
 * or env COMET_TIMEOUT_S). A wait that gives up makes the call fail with
 * COMET_ERR_TIMEOUT on this rank and on its peers, naming the flag and the
 * peer that never came; the layer is then unusable (every later call returns
 * the same error): destroy it and create a new one. Applies to layers
 * created after the call. */
comet_status_t comet_context_set_timeout(comet_context_t ctx, double seconds);
/* Raises this rank's abort word: every wait of its running and later calls
 * gives up (COMET_ERR_ABORTED), and peers waiting on it give up too. Safe to
 * call from any host thread while a call is in flight. */
comet_status_t comet_context_abort(comet_context_t ctx);

/* The tuning table this context's layers take their fused kernels' choices
 * from (mover CTAs, GEMM tile, layer0's A), replacing the one read at
 * creation ($COMET_TUNING_TABLE, else the table shipped with the library).
 * path NULL: read those again. A missing or malformed table is a warning on
 * stderr and the cost model chooses: this returns COMET_OK but for a NULL
 * ctx. Layers created after the call use it. */
comet_status_t comet_context_set_tuning_table(comet_context_t ctx, const char *path);

/* ---- the loopback world: W ranks on one GPU, for testing ----
 * One process, one host thread per rank, each rank on its own disjoint
 * partition of the GPU's SMs (a CUDA green context; SMs are split in
 * multiples of 8, e.g. 64/32/16 SMs for W = 2/4/8 on a 132-SM H200). Every
 * multi-rank code path (plan, dispatch, combine, forward) runs unchanged over
 * it; peer copies are HBM copies, so its timings are not NVLink timings.
 *
 *   comet_loopback_t world;  comet_loopback_create(&world, 4, 0);
 *   in thread r:  comet_context_create_loopback(&ctx, world, r);
 *                 ... comet calls on comet_context_stream(ctx) ...
 *                 comet_context_destroy(ctx);
 *   comet_loopback_destroy(world);   (after every rank's context is gone)
 *
 * Collective calls (layer create/destroy) must be made by every rank's
 * thread; a rank that never arrives makes the others fail after the
 * context's timeout (host side: 120 s, or env COMET_HOST_TIMEOUT_S).
 *
 * Rules, because all ranks share one device: the process must run with
 * CUDA_MODULE_LOADING=EAGER and CUDA_DEVICE_MAX_CONNECTIONS >= min(32, 4 W)
 * (both set before its first CUDA call; creation refuses otherwise: under
 * lazy loading a rank's first launch of a kernel, and with too few hardware
 * queues a rank's kernel, can wait for a peer's kernel that waits for it;
 * comet_launch_loopback in src/launch.h sets both), and a rank's thread must not
 * make device-wide synchronizing calls (cudaDeviceSynchronize, cudaFree,
 * cudaMalloc may) while peers wait for its next call: use stream-ordered
 * cudaMallocAsync / cudaFreeAsync and stream or event synchronization. */
typedef struct comet_loopback *comet_loopback_t;
comet_status_t comet_loopback_create(comet_loopback_t *world, int world_size, int cuda_device);
comet_status_t comet_loopback_destroy(comet_loopback_t world);
/* SMs of each rank's partition (0 for NULL). */
int comet_loopback_sm_per_rank(comet_loopback_t world);
/* Called in rank's own thread; leaves the rank's partition current in it. */
comet_status_t comet_context_create_loopback(comet_context_t *ctx, comet_loopback_t world,
                                             int rank);

/* ---- layers: a config plus its symmetric workspace. Creation is collective:
 * every rank's config (NULL or invalid ones too) is exchanged first, then
 * every rank fails, naming the rank and the problem, if any rank's config is
 * invalid or differs from rank 0's, or any rank's allocation failed. ---- */

typedef struct comet_layer *comet_layer_t;

comet_status_t comet_layer_create(comet_layer_t *layer, comet_context_t ctx,
                                  const comet_layer_config_t *cfg);
comet_status_t comet_layer_destroy(comet_layer_t layer);

/* Device memory a layer with cfg takes on each of world_size ranks (its
 * symmetric window, local scratch and layer0 output buffer), before creating
 * it. README.md gives the formula. */
comet_status_t comet_layer_workspace_bytes(const comet_layer_config_t *cfg, int world_size,
                                           size_t *bytes);

/* Calls on one layer are ordered: a call waits (on the device) for the
 * previous call on the layer to finish, also when the two are on different
 * streams. A bad argument on one rank (num_tokens, a NULL pointer, ...) is
 * reported on every rank: the rank with it returns its own message, the
 * others COMET_ERR_INVALID_ARGUMENT naming it (outside graph mode from the
 * call itself, in graph mode from comet_layer_check), and the next good call
 * works. A NULL layer on one rank cannot reach the others: they time out. */

/* Graph mode. Off (default): each call checks the routing on the host (one
 * synchronization after the routing plan) and returns COMET_ERR_ROUTING on
 * every rank if any rank's topk_ids are bad. On: calls never synchronize
 * with the host, so they can be captured in a CUDA graph, and a captured
 * graph may be replayed any number of times (the call's epoch lives on the
 * device); a refused routing then fills the outputs with NaN and
 * comet_layer_check() reports it. */
comet_status_t comet_layer_set_graph_mode(comet_layer_t layer, int on);

/* CTAs of this rank's SM budget that move data in the fused kernels (the
 * rest compute): 0 = comet's choice per call (the tuning table's entry for
 * the shape and token count, else its cost model), else 1 .. budget - 1.
 * Per rank (ranks may differ); takes effect at the next call. */
comet_status_t comet_layer_set_n_comm(comet_layer_t layer, int n_comm);
/* Waits for stream; returns the status of the layer's last call: COMET_OK,
 * COMET_ERR_ROUTING naming the rank, token and slot, INVALID_ARGUMENT naming
 * the rank whose arguments were bad, or TIMEOUT / ABORTED naming the wait. */
comet_status_t comet_layer_check(comet_layer_t layer, struct CUstream_st *stream);

/* Whole forward on this rank: out[t] = sum_k w[t,k] * expert_{ids[t,k]}(x[t]). */
typedef struct comet_moe_args {
  size_t size;                /* sizeof(comet_moe_args_t) */
  int num_tokens;             /* T_r on this rank, 0..max_tokens_per_rank */
  const void *x;              /* [T_r, H] dtype */
  const int32_t *topk_ids;    /* [T_r, K] in [0, E) or -1 (dropped) */
  const float *topk_weights;  /* [T_r, K] */
  const void *w1;             /* [E/ep, w1_rows, H] dtype */
  const void *w2;             /* [E/ep, H, F/tp] dtype */
  void *out;                  /* [T_r, H] dtype */
  /* NULL, or a caller-owned buffer of comet_config_saved_z_bytes: the
   * forward keeps this rank's pre-activations z = A . w1^T there (its
   * experts' rows in the plan's order) for comet_moe_backward's save mode.
   * h is then act(z) after z's rounding, and layer0's activation is not
   * fused into its GEMM (a separate pass). One buffer per forward whose
   * backward is still to come. The forward stamps it (the layer and its
   * routing plan); a backward refuses, on every rank, a saved_z that no
   * forward of this layer filled or that holds a forward of other routing
   * or token counts. The backward only reads it: one saved_z may serve
   * several backwards of its forward (retain_graph). */
  void *saved_z;
} comet_moe_args_t;
#define COMET_MOE_ARGS_INITIALIZER \
  { sizeof(comet_moe_args_t), 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL }

comet_status_t comet_moe_forward(comet_layer_t layer, const comet_moe_args_t *args,
                                 struct CUstream_st *stream);

/* The backward of comet_moe_forward given dout [T_r, H]: dx [T_r, H], dw1
 * and dw2 (the weights' layouts, overwritten) and d topk_weights [T_r, K]
 * (fp32; 0 for a dropped slot). Any output may be NULL (not computed), at
 * least one is needed. It recomputes what the forward produced from x (the
 * routing plan, the dispatched rows, the activation; fc1 too unless
 * saved_z is given: save mode, w1_rows elements per row of the row
 * capacity kept between the two; fc2 never, d topk_weights comes from dh):
 * any number of forwards may run before their backwards, in any order.
 * Collective, like the forward; bad arguments on one rank are an error on
 * every rank; ranks may ask for different outputs and choose save or
 * recompute each on its own. The first call on a layer allocates its
 * workspace (H + 2 * F/tp + 2 * w1_rows elements per row of the row
 * capacity, the recompute's z among them even when every call saves, and H
 * elements and K floats per token) and meets every rank on the host: make
 * it outside CUDA-graph capture. */
typedef struct comet_moe_backward_args {
  size_t size;                /* sizeof(comet_moe_backward_args_t) */
  int num_tokens;             /* as the forward's */
  const void *x;              /* [T_r, H]: the forward's input */
  const int32_t *topk_ids;    /* [T_r, K]: the forward's */
  const float *topk_weights;  /* [T_r, K]: the forward's */
  const void *w1, *w2;        /* the forward's weights */
  const void *dout;           /* [T_r, H]: the gradient of the forward's out */
  void *dx;                   /* [T_r, H] or NULL */
  void *dw1;                  /* like w1 or NULL */
  void *dw2;                  /* like w2 or NULL */
  float *dtopk_weights;       /* [T_r, K] or NULL */
  const void *saved_z;        /* NULL (recompute fc1), or the saved_z its forward (of these
                                 same inputs and weights) filled */
} comet_moe_backward_args_t;

#define COMET_MOE_BACKWARD_ARGS_INITIALIZER \
  { sizeof(comet_moe_backward_args_t), 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL }

comet_status_t comet_moe_backward(comet_layer_t layer, const comet_moe_backward_args_t *args,
                                  struct CUstream_st *stream);

/* Layer0, fused: dispatch this rank's token rows to the experts' ranks and
 * compute h = act(A @ w1^T) for the rows this rank receives, in the routing
 * plan's row order. h may be NULL: it then stays in the layer's workspace
 * for comet_gemm_combine. The routing plan is kept in the layer. */
typedef struct comet_dispatch_gemm_args {
  size_t size;
  int num_tokens;
  const void *x;              /* [T_r, H] */
  const int32_t *topk_ids;    /* [T_r, K] */
  const void *w1;             /* [E/ep, w1_rows, H] */
  void *h;                    /* [row capacity, F/tp] or NULL */
} comet_dispatch_gemm_args_t;
#define COMET_DISPATCH_GEMM_ARGS_INITIALIZER { sizeof(comet_dispatch_gemm_args_t), 0, NULL, NULL, NULL, NULL }

/* Layer1, fused: y = h @ w2^T on this rank's rows, sent home and reduced:
 * out[t] = sum_k sum_tp w[t,k] * y. Uses the routing plan of the last
 * comet_dispatch_gemm on this layer (which slots are dropped, where each row
 * went); once per comet_dispatch_gemm (a second one is refused). */
typedef struct comet_gemm_combine_args {
  size_t size;
  int num_tokens;             /* as given to comet_dispatch_gemm */
  const float *topk_weights;  /* [T_r, K] */
  const void *h;              /* [rows, F/tp] or NULL for the layer's workspace */
  const void *w2;             /* [E/ep, H, F/tp] */
  void *out;                  /* [T_r, H] */
} comet_gemm_combine_args_t;
#define COMET_GEMM_COMBINE_ARGS_INITIALIZER { sizeof(comet_gemm_combine_args_t), 0, NULL, NULL, NULL, NULL }

comet_status_t comet_dispatch_gemm(comet_layer_t layer, const comet_dispatch_gemm_args_t *args,
                                   struct CUstream_st *stream);
comet_status_t comet_gemm_combine(comet_layer_t layer, const comet_gemm_combine_args_t *args,
                                  struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif /* COMET_H */
