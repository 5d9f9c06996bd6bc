/* SPDX-License-Identifier: Apache-2.0 */
/* fused.h — the fused persistent kernels of comet's forward (internal,
 * C-callable): layer0 = dispatch + grouped GEMM with w1 (layer0.cu),
 * layer1 = grouped GEMM with w2 + combine (layer1.cu), and their M-tile
 * lists (tiles.cu). */
#ifndef COMET_KERNELS_FUSED_H
#define COMET_KERNELS_FUSED_H

#include <stddef.h>

#include "comet.h"
#include "kernels/comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the fused layer0 launch does: the real thing, or one of the two
 * reference timings of layer0_overlap_eff (the same kernel either way). */
typedef enum comet_l0_mode {
  COMET_L0_FUSED = 0,     /* movers + GEMM, each tile waiting for its rows */
  COMET_L0_GEMM_ONLY = 1, /* movers off, no waits: the rows must already be in place */
  COMET_L0_COMM_ONLY = 2  /* the n_comm movers alone */
} comet_l0_mode_t;

typedef struct comet_fused_layer0 {
  const comet_comm_view_t *view; /* the layer's view, after this call's device plan */
  const void *x;                 /* [num_tokens, H]: this rank's tokens */
  const void *w1;                /* [El, NB, H]: NB = 2n (swiglu) or n */
  void *h;                       /* [row capacity, n] */
  int n;                         /* F / tp */
  int swiglu;                    /* 1: SwiGLU epilogue; 0: plain store */
  int gelu;                      /* 1 (swiglu 0): the GELU epilogue (gemm.h COMET_GEMM_EPI_GELU) */
  int gather;                    /* 1: the GEMM reads this rank's own rows from x (cp.async);
                                    0: movers copy them too, the GEMM loads A with TMA */
  int n_comm;                    /* mover CTAs, 0 (W = 1 with gather) or 1..sm_budget - 1 */
  int tile;                      /* the GEMM tile: 0 auto, 1 wide, 2 narrow */
  int dynamic;                   /* 1: tiles from a counter; the movers join the GEMM when done */
  int expert_bands;              /* 1: the tile list's bands hold one expert (schedule.h); 0: bands
                                    of COMET_SCHED_BAND entries across experts (the old order) */
  int stages;                    /* 4: the GEMM's 4-stage ring (wide tiles, <= 128 local
                                    experts; else three); 3: three */
  comet_l0_mode_t mode;
} comet_fused_layer0_t;

/* The tile list (1 CTA) then the fused kernel, on stream; no host sync. */
comet_status_t comet_fused_layer0_launch(const comet_fused_layer0_t *f, struct CUstream_st *stream);

/* The fused layer1 (layer1.cu) and its reference timings. Mover counts,
 * tiles and layer0's A are chosen per call by src/tune/choice.h. */
typedef enum comet_l1_mode {
  COMET_L1_FUSED = 0,     /* GEMM + movers, each block waited for */
  COMET_L1_GEMM_ONLY = 1, /* movers off (out not written) */
  COMET_L1_COMM_ONLY = 2  /* the n_comm movers alone, no waits (y as an earlier call left it) */
} comet_l1_mode_t;

typedef struct comet_fused_layer1 {
  const comet_comm_view_t *view; /* after this call's plan (and combine begin) */
  const void *h;                 /* [row capacity, k]: layer0's output */
  const void *w2;                /* [El, H, k] */
  const float *topk_weights;     /* [num_tokens, K] */
  void *out;                     /* [num_tokens, H] */
  int num_tokens;                /* as planned */
  int k;                         /* F / tp */
  int n_comm;                    /* mover CTAs, 1..sm_budget - 1 */
  comet_l1_mode_t mode;
} comet_fused_layer1_t;

/* The combine's guard, the natural tile list, then the fused kernel, on
 * stream; no host sync. Needs the pull combine mode. */
comet_status_t comet_fused_layer1_launch(const comet_fused_layer1_t *f, struct CUstream_st *stream);


/* This rank's M-tile list from the plan, built on the device (tiles.cu):
 * natural = 0: comet_sched_mtiles_layer0's list into view->l0_tiles /
 * l0_count; 1: comet_sched_mtiles_natural's into l1_tiles / l1_count.
 * expert_bands = 0: bands of COMET_SCHED_BAND entries across experts in
 * place of comet_sched_band's (for A/B timing). Part of the fused launches;
 * alone for tests. */
comet_status_t comet_mtiles_launch(const comet_comm_view_t *view, int natural, int expert_bands,
                                   struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
