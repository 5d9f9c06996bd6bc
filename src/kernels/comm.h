/* comm.h — the internal launch boundary of comet's communication kernels:
 * the device-side routing plan, token dispatch and combine. Host C code
 * (layer.c, tests, tools) calls these; the kernels live in plan_device.cu,
 * dispatch.cu and combine.cu. Everything a kernel needs travels in one
 * comet_comm_view_t (raw pointers and offsets), built once per layer.
 *
 * Epochs: each call of the plan takes a new epoch (1, 2, ...; the same on
 * every rank since every rank makes the same calls). Dispatch and combine
 * of that call publish their arrival flags with that epoch; flags are
 * never reset, a waiter waits for flag >= epoch. */
#ifndef COMET_KERNELS_COMM_H
#define COMET_KERNELS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tokens per CTA of the plan's counting kernels (one thread per token). */
#define COMET_PLAN_TOKENS_PER_CTA 256

/* Routing status of the last plan, in comet_comm_view_t.status (device). */
enum {
  COMET_ROUTE_OK = 0,
  COMET_ROUTE_OUT_OF_RANGE = 1, /* an id outside [-1, E) */
  COMET_ROUTE_DUPLICATE = 2,    /* an expert twice in one token */
  COMET_ROUTE_CAPACITY = 3      /* a rank would receive more rows than it holds */
};
typedef struct comet_route_status {
  int32_t code;  /* COMET_ROUTE_*, the same on every rank */
  int32_t rank;  /* the rank with the bad ids (or the overfull rank) */
  int32_t token; /* first bad token on that rank (capacity: -1) */
  int32_t slot;  /* its slot k */
  int32_t value; /* the bad id (capacity: the rows it would receive) */
  int32_t rows;  /* rows this rank receives (valid when code == OK) */
  int32_t pad[2];
} comet_route_status_t;

/* One rank's view of a layer's buffers. Window offsets are the same on every
 * rank (symmetric memory); peers are reached through ncclGetLsaPointer. */
typedef struct comet_comm_view {
  int rank, world;
  int num_experts, topk, ep, tp; /* E, K, EP, TP */
  int hidden;                    /* H */
  int dtype;                     /* comet_dtype_t (combine arithmetic) */
  int elem_bytes;
  int max_tokens;                /* T_max */
  int64_t row_capacity;          /* rows one rank can receive */
  int sm_count;
  void *win;                     /* ncclWindow_t of the symmetric workspace */
  const void *devcomm;           /* ncclDevComm (host copy, passed by value to kernels) */
  char *win_local;               /* this rank's window base */
  /* window regions (byte offsets; see layer.c: comet_layer_carve) */
  size_t off_counts;             /* int32 [2][W][E]: counts of source s at [p][s*E + e], p = epoch & 1 */
  size_t off_errors;             /* int32x4 [2][W]: first bad (code, token, slot, value) of source s */
  size_t off_dflags;             /* uint64 [El][W]: dispatch block (el, arrival j) arrived at epoch */
  size_t off_cflags;             /* uint64 [W]: combine rows from rank q all arrived at epoch */
  size_t off_row_src;            /* int32 [cap]: receiver row table, written by the sources */
  size_t off_row_token;          /* int32 [cap] */
  size_t off_row_slot;           /* int32 [cap] */
  size_t off_rows;               /* [cap][H]: dispatched rows, in plan order */
  size_t off_x;                  /* [T_max][H]: this rank's tokens, pulled by the dispatch */
  size_t off_y;                  /* [cap][H]: expert outputs, pulled home by the combine */
  size_t off_ret;                /* [T_max*K*tp][H]: push combine inputs at ((t*K + k)*tp + i) */
  /* local device scratch (cudaMalloc) */
  int32_t *cta_counts;           /* [ceil(T_max/256)][E] */
  uint32_t *err_key;             /* smallest bad t*K+k, UINT32_MAX if none */
  int32_t *all_counts;           /* [W][E] copy of the exchanged counts */
  int32_t *expert_offset;        /* [El+1] */
  int32_t *block_offset;         /* [El*(W+1)] */
  int32_t *send_offset;          /* [E+1] own rows by expert, prefix */
  int32_t *send_list;            /* [T_max*K]: t*K+k of own rows, by expert, then token */
  int32_t *send_base;            /* [E*tp]: first row of (this source, e) on rank g*tp+i */
  int32_t *dest_row;             /* [T_max*K*tp], as comet_rank_plan_t.dest_row */
  uint32_t *dispatch_done;       /* [E] rows of expert e sent this call (self-resetting) */
  uint32_t *pulled_done;         /* [El*W] rows of block (el, j) pulled this call (self-resetting) */
  uint32_t *combine_done;        /* [W] rows sent home to rank s this call (self-resetting) */
  comet_route_status_t *status;
} comet_comm_view_t;

/* Device plan: counts and checks this rank's ids, exchanges counts with the
 * peers (LSA barrier), derives offsets, dest_row and the receivers' row
 * tables. No host synchronization; errors land in view->status on every
 * rank and make later dispatch/combine calls of this plan do nothing. */
comet_status_t comet_plan_device_launch(const comet_comm_view_t *view, uint64_t epoch,
                                        int num_tokens, const int32_t *topk_ids,
                                        struct CUstream_st *stream);

/* Dispatch: row x[t] of every (t, k) lands in row dest_row of each rank of
 * expert ids[t,k]'s group; block flags (el, j) = epoch are published on the
 * receivers. Ways (env COMET_DISPATCH_MODE): push (default): each source
 * stores its rows into the receivers' windows and publishes their flags;
 * pull: each receiver reads its rows from the sources' windows (x region)
 * and publishes its own flags; x given elsewhere is first copied into the
 * window, x already there (where a producer writes it) is used in place,
 * then an LSA barrier (always, so ranks may pass x differently); tma: push
 * through bulk copies (slower so far).
 * ctas: number of CTAs (1..1024). num_tokens: as planned. */
comet_status_t comet_dispatch_launch(const comet_comm_view_t *view, uint64_t epoch,
                                     const void *x, int num_tokens, int ctas,
                                     struct CUstream_st *stream);

/* Combine: out[t] = sum_k sum_tp w[t,k] * y (k ascending, then tp
 * ascending, fp32, one rounding). y [rows, H]: NULL = the dispatched rows
 * (a round trip, for tests); the window's y region (view->win_local +
 * off_y, where a fused GEMM writes) is used in place; any other pointer is
 * copied into it first; then an LSA barrier (always). Two ways, env
 * COMET_COMBINE_MODE: pull (default): each home reads its rows from the
 * expert ranks' windows and reduces in registers, one pass; push: each rank
 * pushes its rows home, each home reduces after the arrival flags (slower:
 * the rows make a round trip through memory). */
comet_status_t comet_combine_launch(const comet_comm_view_t *view, uint64_t epoch, const void *y,
                                    int num_tokens, const int32_t *topk_ids,
                                    const float *topk_weights, void *out, int ctas,
                                    struct CUstream_st *stream);

/* LSA barrier across all ranks (no-op on one rank). */
comet_status_t comet_lsa_barrier_launch(const comet_comm_view_t *view, struct CUstream_st *stream);

/* 16-byte vectors a lane keeps in flight in the copy loops (4, 8 or 16;
 * env COMET_COMM_UNROLL, default 8): a knob for experiments. */
int comet_comm_unroll(void);

/* NCCL device communicator (nccl_dev.cu): created with lsa_barriers LSA
 * barriers. Collective. Fails (UNSUPPORTED) if not every rank is
 * load/store reachable (one NVLink domain). */
comet_status_t comet_devcomm_create(struct ncclComm *comm, int lsa_barriers, void **devcomm);
comet_status_t comet_devcomm_destroy(struct ncclComm *comm, void *devcomm);

#ifdef __cplusplus
}
#endif
#endif /* COMET_KERNELS_COMM_H */
