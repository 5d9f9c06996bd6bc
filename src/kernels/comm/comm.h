/* SPDX-License-Identifier: Apache-2.0 */
/* comm.h — the internal launch boundary of comet's communication kernels:
 * the device-side routing plan, token dispatch and combine. Host C code
 * (layer.c, tests, tools) calls these; the kernels live in plan_device.cu,
 * dispatch.cu and combine.cu. Everything a kernel needs travels in one
 * comet_comm_view_t (raw pointers and offsets), built once per layer.
 *
 * Epochs: each call's plan bumps the layer's epoch on the device (1, 2, ...;
 * the same on every rank since every rank makes the same calls); every later
 * kernel of the call reads it there, so a captured call replays. Dispatch
 * and combine publish their arrival flags with that epoch, barriers with
 * epoch * COMET_BARRIERS_PER_CALL + index; flags are never reset, a waiter
 * waits for flag >= target, bounded by the layer's timeout and its abort
 * word (kernels/wait.cuh). */
#ifndef COMET_KERNELS_COMM_H
#define COMET_KERNELS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "comet.h"
#include "schedule.h"
#include "transport/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows of an M-tile of the layer0 GEMM (= COMET_GEMM_TILE_M): the unit of
 * the fused layer0's arrival counters. */
#define COMET_MTILE_ROWS 128
/* Columns of y per published block of the fused layer1 (its GEMM's wide
 * tile, the same on every rank whatever its SM count). */
#define COMET_L1_BLOCK 256

/* Tokens per CTA of the plan's counting kernels (one thread per token). */
#define COMET_PLAN_TOKENS_PER_CTA 256

/* Routing status of the last call, in comet_comm_view_t.status (device).
 * The same on every rank (each rank derives it from every rank's record),
 * except FAULT, which is local (and ends the layer). */
enum {
  COMET_ROUTE_OK = 0,
  COMET_ROUTE_OUT_OF_RANGE = 1, /* an id outside [-1, E) */
  COMET_ROUTE_DUPLICATE = 2,    /* an expert twice in one token */
  COMET_ROUTE_CAPACITY = 3,     /* a rank would receive more rows than it holds */
  COMET_ROUTE_BAD_ARGS = 4,     /* a rank's call arguments were bad: token = COMET_ARG_*,
                                   slot = the field (COMET_FIELD_*), value */
  COMET_ROUTE_FAULT = 5,        /* a wait of this call gave up: see comet_fault_t */
  COMET_ROUTE_REPEATED = 6      /* a second combine of one plan */
};
/* What was wrong with a rank's arguments (COMET_ROUTE_BAD_ARGS). */
enum {
  COMET_ARG_NONE = 0,
  COMET_ARG_TOKENS = 1,  /* num_tokens outside 0..max (value = num_tokens) */
  COMET_ARG_NULL = 2,    /* a required pointer is NULL (slot = field) */
  COMET_ARG_ALIGN = 3,   /* a pointer is not 16-byte aligned (slot = field) */
  COMET_ARG_STRUCT = 4,  /* args NULL or args.size wrong (value = size) */
  COMET_ARG_TOKENS_DIFFER = 5, /* gemm_combine's num_tokens differs from the plan's */
  COMET_ARG_REPEATED = 6, /* a second comet_gemm_combine of one plan */
  COMET_ARG_ALLOC = 7,    /* the rank could not allocate the backward's workspace */
  COMET_ARG_SAVED_Z = 8   /* saved_z is not a forward's of this call (value = COMET_SAVED_*) */
};
enum {
  COMET_FIELD_X, COMET_FIELD_IDS, COMET_FIELD_WEIGHTS, COMET_FIELD_W1, COMET_FIELD_W2,
  COMET_FIELD_OUT, COMET_FIELD_H, COMET_FIELD_ARGS, COMET_FIELD_DOUT, COMET_FIELD_GRADS,
  COMET_FIELD_SAVED_Z, COMET_FIELDS
};
typedef struct comet_arg_fault {
  int32_t kind;  /* COMET_ARG_* */
  int32_t field; /* COMET_FIELD_* */
  int32_t value;
  int32_t pad;
} comet_arg_fault_t;

typedef struct comet_route_status {
  int32_t code;  /* COMET_ROUTE_*, the same on every rank */
  int32_t rank;  /* the rank with the bad ids (or the overfull rank) */
  int32_t token; /* first bad token on that rank (capacity: -1; bad args: COMET_ARG_*) */
  int32_t slot;  /* its slot k (bad args: COMET_FIELD_*) */
  int32_t value; /* the bad id (capacity: the rows it would receive) */
  int32_t rows;  /* rows this rank receives (valid when code == OK) */
  int32_t pad[2];
} comet_route_status_t;

/* Why a wait gave up (COMET_ROUTE_FAULT). The first fault of a layer is kept
 * in device memory and mirrored into mapped host memory, so the host reads
 * it without synchronizing. */
enum { COMET_FAULT_NONE = 0, COMET_FAULT_TIMEOUT = 1, COMET_FAULT_ABORT = 2, COMET_FAULT_PEER = 3 };
/* Which wait: names for messages (layer.c). */
enum { COMET_WAIT_BARRIER = 1, COMET_WAIT_DISPATCH = 2, COMET_WAIT_COMBINE = 3, COMET_WAIT_TEST = 4,
       COMET_WAIT_TILE = 5, /* fused layer0: an M-tile's rows (a = local expert, b = M-tile) */
       COMET_WAIT_START = 6 /* none yet: a call's first kernel found the layer faulted or aborted */ };
typedef struct comet_fault {
  int32_t code;  /* COMET_FAULT_*; written last */
  int32_t rank;  /* the rank whose wait gave up */
  int32_t what;  /* COMET_WAIT_* */
  int32_t peer;  /* the rank that never came (or that reported the fault) */
  int32_t a, b;  /* the flag's indices (barrier: its index in the call) */
  uint64_t target, seen;
} comet_fault_t;

/* Barriers of one call (plan exchange, plan done, dispatch pull, the
 * backward's row weights, combine begin, combine, the backward's dots): a
 * barrier's sequence number is epoch * this + index, waited for with >=, so
 * the indices must grow in the order one epoch's barriers are met (a
 * higher index met first satisfies a lower one at once). */
#define COMET_BARRIERS_PER_CALL 8
enum { COMET_BAR_PLAN = 0, COMET_BAR_PLAN_DONE = 1, COMET_BAR_DISPATCH = 2,
       COMET_BAR_BACKWARD = 3, COMET_BAR_COMBINE_BEGIN = 4, COMET_BAR_COMBINE = 5,
       COMET_BAR_BACKWARD_DOT = 6 };

/* Protocol choices, agreed by every rank at layer creation. */
enum { COMET_DISPATCH_PUSH = 0, COMET_DISPATCH_PULL = 1, COMET_DISPATCH_TMA = 2 };
enum { COMET_COMBINE_PULL = 0, COMET_COMBINE_PUSH = 1 };

/* One rank's view of a layer's buffers. Window offsets are the same on every
 * rank (symmetric memory); peer[p] is rank p's window base. */
typedef struct comet_comm_view {
  int rank, world;
  int num_experts, topk, ep, tp; /* E, K, EP, TP */
  int hidden;                    /* H */
  int dtype;                     /* comet_dtype_t (combine arithmetic) */
  int elem_bytes;
  int max_tokens;                /* T_max */
  int64_t row_capacity;          /* rows one rank can receive */
  int sm_budget;                 /* SMs this rank may use */
  int max_mtiles;                /* bound on this rank's M-tiles: ceil(cap / 128) + El */
  int l1_blocks;                 /* column blocks of the fused layer1: ceil(H / COMET_L1_BLOCK) */
  int dispatch_mode, combine_mode; /* COMET_DISPATCH_*, COMET_COMBINE_* */
  uint64_t timeout_ns;           /* bound of every wait */
  char *win_local;               /* this rank's window base (= peer[rank]) */
  char *peer[COMET_MAX_WORLD]; /* every rank's window base */
  /* window regions (byte offsets; see layer.c: comet_layer_carve) */
  size_t off_bar;                /* uint64 [W]: barrier sequence number reached by rank s */
  size_t off_fault;              /* uint32: nonzero (rank + 1) once a peer's wait gave up */
  size_t off_counts;             /* int32 [2][W][E]: counts of source s at [p][s*E + e], p = epoch & 1 */
  size_t off_errors;             /* int32x4 [2][W]: first bad (code, token, slot, value) of source s */
  size_t off_argerr;             /* comet_arg_fault_t [W]: combine-begin arguments of source s */
  size_t off_dflags;             /* uint64 [El][W]: dispatch block (el, arrival j) arrived at epoch */
  size_t off_tcount;             /* uint64 [max_mtiles]: rows arrived in natural M-tile i (fused
                                    layer0; zeroed by the plan before its barrier) */
  size_t off_l1flags;            /* uint64 [max_mtiles][l1_blocks]: fused layer1's (M-tile, column
                                    block) of y stored at epoch */
  size_t off_cflags;             /* uint64 [W]: combine rows from rank q all arrived at epoch (push) */
  size_t off_row_src;            /* int32 [cap]: receiver row table, written by the sources */
  size_t off_row_token;          /* int32 [cap] */
  size_t off_row_slot;           /* int32 [cap] */
  size_t off_row_weight;         /* float [cap]: the row's topk weight (backward; written by the
                                    sources) */
  size_t off_row_dot;            /* float [cap]: <dout row, y row> (backward's d topk_weights) */
  size_t off_rows;               /* [cap][H]: dispatched rows, in plan order */
  size_t off_y;                  /* [cap][H]: expert outputs the combine pulls home; the same
                                    memory as rows (rows are dead once layer0's GEMM ran) */
  size_t off_x;                  /* [T_max][H]: this rank's tokens (pull dispatch only) */
  size_t off_ret;                /* [T_max*K*tp][H]: push combine inputs at ((t*K + k)*tp + i)
                                    (push combine only) */
  /* local device scratch (cudaMalloc) */
  uint64_t *epoch;               /* the call's epoch: bumped by the plan's exchange kernel */
  uint64_t *combined_epoch;      /* epoch of the last combine (one per plan) */
  uint64_t *began_epoch;         /* epoch of the last combine begin (comet_gemm_combine) */
  comet_fault_t *fault;          /* first fault of the layer (device copy) */
  comet_fault_t *fault_host;     /* its mapped host mirror (device address) */
  const uint32_t *abort;         /* the context's abort word (mapped host, device address) */
  int32_t *cta_counts;           /* [ceil(T_max/256)][E] */
  uint32_t *err_key;             /* smallest bad t*K+k, UINT32_MAX if none */
  comet_arg_fault_t *pending;    /* a bad argument found on the device (the backward's
                                    saved_z check): the next plan reports it as this
                                    rank's and clears it; kind NONE if none */
  int32_t *all_counts;           /* [W][E] copy of the exchanged counts */
  int32_t *expert_offset;        /* [El+1] */
  int32_t *block_offset;         /* [El*(W+1)] */
  int32_t *send_offset;          /* [E+1] own rows by expert, prefix */
  int32_t *send_list;            /* [T_max*K]: t*K+k of own rows, by expert, then token */
  int32_t *send_base;            /* [E*tp]: first row of (this source, e) on rank g*tp+i */
  int32_t *dest_row;             /* [T_max*K*tp], as comet_rank_plan_t.dest_row (-1: dropped) */
  int32_t *slot_expert;          /* [T_max*K]: the plan's expert of each (t, k), -1 = dropped */
  int32_t *recv_row0;            /* [E]: first row of expert e on its receivers (any of its group) */
  int32_t *recv_tile0;           /* [E]: natural index of expert e's first M-tile there */
  comet_mtile_t *l0_tiles;       /* [max_mtiles]: this rank's layer0 M-tile list (fused layer0) */
  int32_t *l0_count;             /* its length */
  comet_mtile_t *l1_tiles;       /* [max_mtiles]: the natural M-tile list (fused layer1) */
  int32_t *l1_count;             /* its length */
  uint32_t *tile_next;           /* [2]: the fused layer0 / layer1's dynamic tile counters
                                    (zeroed by the tile-list kernel) */
  uint32_t *dispatch_done;       /* [E] rows of expert e sent this call (self-resetting) */
  uint32_t *pulled_done;         /* [El*W] rows of block (el, j) pulled this call (self-resetting) */
  uint32_t *combine_done;        /* [W] rows sent home to rank s this call (self-resetting) */
  comet_route_status_t *status;
  comet_route_status_t *status_host; /* its mapped host mirror (device address), written by the
                                        kernel that settles the status (the plan's exchange,
                                        the combine's begin): the host reads it after an event,
                                        with no copy in the stream */
} comet_comm_view_t;

/* Shared memory (bytes) of the kernels whose needs grow with the config;
 * the launchers and comet_config_validate use the same formulas. */
size_t comet_plan_count_smem(int num_experts);
size_t comet_plan_exchange_smem(int num_experts, int world);
size_t comet_plan_rows_smem(int topk);
size_t comet_dispatch_smem(int mode, int num_experts, int local_experts, int world);
size_t comet_combine_smem(int mode, int local_experts, int world);

/* Device plan: counts and checks this rank's ids, exchanges counts with the
 * peers (comet's barrier), bumps the device epoch, derives offsets,
 * dest_row, slot_expert and the receivers' row tables. No host
 * synchronization; errors land in view->status on every rank and make the
 * later kernels of this call do nothing. arg (may be NULL) reports this
 * rank's bad arguments instead of planning (num_tokens and ids are then
 * ignored): every rank's status becomes COMET_ROUTE_BAD_ARGS naming it. */
comet_status_t comet_plan_device_launch(const comet_comm_view_t *view, int num_tokens,
                                        const int32_t *topk_ids, const comet_arg_fault_t *arg,
                                        struct CUstream_st *stream);

/* Dispatch: row x[t] of every (t, k) lands in row dest_row of each rank of
 * expert ids[t,k]'s group; block flags (el, j) = epoch are published on the
 * receivers. Ways (view->dispatch_mode, agreed at layer creation): push
 * (default): each source stores its rows into the receivers' windows and
 * publishes their flags; pull: each receiver reads its rows from the
 * sources' windows (x region) and publishes its own flags; x given
 * elsewhere is first copied into the window, x already there is used in
 * place, then a barrier; tma: push through bulk copies (slower so far).
 * ctas: number of CTAs (1..sm_budget). num_tokens: as planned. */
comet_status_t comet_dispatch_launch(const comet_comm_view_t *view, const void *x, int num_tokens,
                                     int ctas, struct CUstream_st *stream);

/* Combine begin: the guard against a second combine of one plan, and the
 * exchange of every rank's combine arguments (arg NULL: good), both turned
 * into the status on every rank. A barrier; the standalone layer1 calls it,
 * the whole forward needs none (its plan carries both halves' arguments). */
comet_status_t comet_combine_begin_launch(const comet_comm_view_t *view,
                                          const comet_arg_fault_t *arg, struct CUstream_st *stream);

/* Combine: out[t] = sum_k sum_tp w[t,k] * y (k ascending, then tp
 * ascending, fp32, one rounding), which slots count and where their rows
 * are from the plan. y [rows, H]: NULL = the dispatched rows (a round trip,
 * for tests); the window's y region (where a fused GEMM writes) is used in
 * place; any other pointer is copied into it first; then a barrier. Ways
 * (view->combine_mode): pull (default): each home reads its rows from the
 * expert ranks' windows and reduces in registers, one pass; push: each rank
 * pushes its rows home, each home reduces after the arrival flags. Refuses
 * (status REPEATED, out poisoned) a second combine of one plan. */
comet_status_t comet_combine_launch(const comet_comm_view_t *view, const void *y, int num_tokens,
                                    const float *topk_weights, void *out, int ctas,
                                    struct CUstream_st *stream);

/* The combine's guard alone (a second combine of one plan gets status
 * REPEATED): what the fused layer1 runs before its launch. */
comet_status_t comet_combine_guard_launch(const comet_comm_view_t *view, struct CUstream_st *stream);

/* 16-byte vectors a lane keeps in flight in the copy loops (4, 8 or 16;
 * env COMET_COMM_UNROLL, default 8): a knob for experiments. */
int comet_comm_unroll(void);

#ifdef __cplusplus
}
#endif
#endif /* COMET_KERNELS_COMM_H */
