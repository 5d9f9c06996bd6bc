/* SPDX-License-Identifier: Apache-2.0 */
/* cost_model.h — predicted time of the fused kernels for each mover count,
 * and the pick (the default where the tuning table has no entry). Host C.
 *
 *   layer0(n) = max(GEMM on budget - n CTAs, moving the rows on n CTAs)
 *               + delivering the first band of M-tiles (the GEMM's start)
 *   with dynamic tiles the movers join the GEMM once done:
 *   layer0(n) = max(moving, GEMM on the budget + n * moving / budget) + start
 *   layer1(n) = max(GEMM on budget - n CTAs, summing the rows home on n)
 *               + computing the first column block (the movers' start)
 *
 * with the rows a rank receives on average (tokens * K * tp), fc1 / fc2
 * FLOPs from the shape, a GEMM rate per SM (or the weights' reads, where
 * they take longer), and per-CTA mover rates within HBM (this rank's own
 * rows) and across the links (the rest). */
#ifndef COMET_COST_MODEL_H
#define COMET_COST_MODEL_H

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comet_cost_device {
  double gemm_tflops_per_sm; /* the grouped GEMM, wide tiles, per CTA */
  double gather_factor;      /* its rate with a gathered A on big fc1 shapes (< 1) */
  double mover_hbm_gbps;     /* one mover CTA copying within HBM */
  double mover_link_gbps;    /* one mover CTA to or from a peer */
  double l1_mover_gbps;      /* one fused-layer1 mover summing rows home within HBM */
  double weight_gbps_per_sm; /* the GEMM's weight reads from HBM, per CTA */
} comet_cost_device_t;

typedef struct comet_cost_shape {
  int world, ep, tp;
  int hidden, ffn, experts, topk, swiglu;
  int tokens;    /* this rank's tokens */
  int sm_budget; /* this rank's SMs */
  int dynamic;   /* layer0's movers join the GEMM when their rows are out (1, the default) */
} comet_cost_shape_t;

/* The shape of a layer of config c on a world-rank job, for a call of
 * tokens (at least 1) on sm_budget SMs, with dynamic tiles. */
comet_cost_shape_t comet_cost_shape_for(int world, const comet_layer_config_t *c, int tokens,
                                        int sm_budget);

/* Constants for a device by name (measured on H200 at W = 1; the link rate
 * is a placeholder until the multi-GPU runs measure it). */
comet_cost_device_t comet_cost_device_for(const char *device_name);

/* Whether layer0 should gather A (cost_model.c says when). */
int comet_cost_layer0_gather(const comet_cost_shape_t *s);

/* Predicted ms of the fused layer0 (gather as chosen) / layer1 with n
 * movers (n = 0 only for layer0 at W = 1 with A gathered). */
double comet_cost_layer0_ms(const comet_cost_device_t *d, const comet_cost_shape_t *s, int gather,
                            int n_comm);
double comet_cost_layer1_ms(const comet_cost_device_t *d, const comet_cost_shape_t *s, int n_comm);

/* The mover counts the model chooses from, and `comet tune` sweeps by
 * default: odd and in-between counts measured worse than their neighbours
 * (Mixtral 2048 at W = 1: 9 movers 1.965 ms, 8 movers 1.713 ms;
 * bench/results/session4-h200-2026-12-01 run 5). */
#define COMET_COST_MOVER_STEPS {1, 2, 4, 6, 8, 12, 16, 24}
#define COMET_COST_MOVER_NSTEPS 8

/* The mover count of COMET_COST_MOVER_STEPS (below the budget) with the
 * least predicted time (layer0 at W = 1 gathered: 0); *ms gets its
 * prediction (may be NULL). */
int comet_cost_pick_layer0(const comet_cost_device_t *d, const comet_cost_shape_t *s, int gather,
                           double *ms);
int comet_cost_pick_layer1(const comet_cost_device_t *d, const comet_cost_shape_t *s, double *ms);

#ifdef __cplusplus
}
#endif
#endif
