/* SPDX-License-Identifier: Apache-2.0 */
/* cost_model.c — the fused kernels' cost model (cost_model.h). The
 * constants come from bench/results/fused0-h200-2026-12-01 (one H200):
 * Mixtral fc1 at 8192 tokens, 3.85 TFLOP in 5.9-6.2 ms on 124 GEMM CTAs
 * (~5.2 TFLOP/s per CTA); movers copy at ~53 GB/s each alone (comm only)
 * but ~19 GB/s while the GEMM runs (two movers made the fused layer0 take
 * 7.03 ms for 268 MB of copy traffic: mover-bound), which is the rate the
 * model uses; the gathered A ran ~10% under the TMA one on Mixtral and
 * Phi-3.5 then (gather_factor; session 4 run 5 measured it within 3.5% of
 * the best at W = 1, where the model now gathers). The link rate (8 GB/s per CTA) is a placeholder. The fused
 * layer1's movers sum rows home at ~12 GB/s each (bytes read + written,
 * alone: Mixtral 2048 at 4 CTAs and Qwen2-MoE 8192 at 24,
 * bench/results/session3-h200-2026-12-01 run 3): latency-bound, well under
 * the layer0 copy rate. A GEMM also reads each local expert's weights once:
 * at small token counts that bounds it (~25 GB/s per CTA: Phi-3.5 at 512
 * tokens, 1.68 GB of w1 in 0.54 ms on 124 CTAs, session 6 run 4). */
#include "tune/cost_model.h"


#define BAND_ROWS (8 * 128) /* the first band of layer0's tile order */
#define L1_BLOCK 256        /* the fused layer1's column block */
static const int k_steps[COMET_COST_MOVER_NSTEPS] = COMET_COST_MOVER_STEPS;

comet_cost_shape_t comet_cost_shape_for(int world, const comet_layer_config_t *c, int tokens,
                                        int sm_budget) {
  const comet_cost_shape_t s = {world,     c->ep,       c->tp,
                                c->hidden, c->ffn,      c->num_experts,
                                c->topk,   c->activation == COMET_ACT_SWIGLU,
                                tokens > 0 ? tokens : 1, sm_budget, 1};
  return s;
}

comet_cost_device_t comet_cost_device_for(const char *name) {
  /* H200 and H100 have the same SMs and clocks; other devices get these
   * too until they are measured (the table's entries win where present). */
  (void)name;
  comet_cost_device_t d = {5.2, 0.9, 19.0, 8.0, 12.0, 25.0};
  return d;
}

static double rows_in(const comet_cost_shape_t *s) { /* rows this rank receives, on average */
  return (double)s->tokens * s->topk * s->tp;
}

static double fc1_n(const comet_cost_shape_t *s) {
  return (double)(s->ffn / s->tp) * (s->swiglu ? 2 : 1);
}

static int local_experts(const comet_cost_shape_t *s) { return s->experts / (s->ep > 0 ? s->ep : 1); }

/* fc1's H*N at most Qwen2-57B's: above it the copied A wins at W > 1. At
 * W = 1 the gathered A needs no movers and was within 7% of the best swept
 * choice on every preset and token count but one (session 5 run 2, session
 * 6 run 4): Phi-3.5 at 512 tokens, 64 rows an expert on a big fc1, where it
 * ran 1.14-1.36x the best copied choice (Mixtral's 128 rows an expert and
 * Qwen2-57B's 64 on a small fc1 gather well). Not understood; the rule
 * keeps to what was measured. */
int comet_cost_layer0_gather(const comet_cost_shape_t *s) {
  const int big = (double)s->hidden * fc1_n(s) > 3584.0 * 5120.0;
  if (s->world > 1) return !big;
  return !(big && rows_in(s) < 128.0 * local_experts(s));
}

/* The GEMM on ctas CTAs: its FLOPs, or reading the weights of the experts
 * that have rows, whichever takes longer. */
static double gemm_ms(const comet_cost_device_t *d, const comet_cost_shape_t *s, double flops,
                      double weight_bytes_per_expert, int ctas, double factor) {
  if (ctas <= 0) return 1e30;
  const double experts = rows_in(s) < local_experts(s) ? rows_in(s) : local_experts(s);
  const double compute = flops / (ctas * d->gemm_tflops_per_sm * 1e12 * factor);
  const double weights = experts * weight_bytes_per_expert / (ctas * d->weight_gbps_per_sm * 1e9);
  return (compute > weights ? compute : weights) * 1e3;
}

/* ms for n movers to move `local` bytes within HBM at hbm_gbps each and
 * `remote` across links */
static double move_ms(const comet_cost_device_t *d, double hbm_gbps, double local, double remote,
                      int n) {
  if (local + remote <= 0) return 0;
  if (n <= 0) return 1e30;
  return (local / (hbm_gbps * 1e9) + remote / (d->mover_link_gbps * 1e9)) / n * 1e3;
}

double comet_cost_layer0_ms(const comet_cost_device_t *d, const comet_cost_shape_t *s, int gather,
                            int n) {
  const double rows = rows_in(s), row_bytes = 2.0 * s->hidden;
  const double own = 1.0 / s->world; /* share of the rows a rank sends to itself */
  /* a copy within HBM moves each byte twice (read, write) */
  const double local = gather ? 0 : 2.0 * rows * own * row_bytes;
  const double remote = rows * (1 - own) * row_bytes;
  const double factor = gather && !comet_cost_layer0_gather(s) ? d->gather_factor : 1.0;
  const double flops = 2.0 * rows * s->hidden * fc1_n(s), w_bytes = 2.0 * s->hidden * fc1_n(s);
  const double m = move_ms(d, d->mover_hbm_gbps, local, remote, n);
  const double band = rows < BAND_ROWS ? rows : BAND_ROWS;
  const double start =
      local + remote > 0 ? move_ms(d, d->mover_hbm_gbps, local * band / rows, remote * band / rows, n) : 0;
  /* static shares: the movers' SMs never run GEMM tiles; dynamic: the
   * whole budget runs the GEMM but for the n * m CTA-ms the movers move */
  const double g = s->dynamic ? gemm_ms(d, s, flops, w_bytes, s->sm_budget, factor) + n * m / s->sm_budget
                              : gemm_ms(d, s, flops, w_bytes, s->sm_budget - n, factor);
  return (g > m ? g : m) + start;
}

double comet_cost_layer1_ms(const comet_cost_device_t *d, const comet_cost_shape_t *s, int n) {
  const double rows = rows_in(s), row_bytes = 2.0 * s->hidden;
  const double own = 1.0 / s->world;
  /* reads of the (k, tp) rows and the write of out, within HBM or across */
  const double local = rows * own * row_bytes + (double)s->tokens * row_bytes;
  const double remote = rows * (1 - own) * row_bytes;
  const double g = gemm_ms(d, s, 2.0 * rows * (s->ffn / s->tp) * s->hidden,
                           2.0 * s->hidden * (s->ffn / s->tp), s->sm_budget - n, 1.0);
  const double m = move_ms(d, d->l1_mover_gbps, local, remote, n);
  const int blocks = (s->hidden + L1_BLOCK - 1) / L1_BLOCK;
  return (g > m ? g : m) + g / blocks;
}

/* The least predicted time over the steps below the budget (the first
 * step, 1, always fits: a budget is at least 2); layer0 at W = 1 gathered
 * moves nothing (0). */
static int pick(const comet_cost_device_t *d, const comet_cost_shape_t *s, int layer0, int gather,
                double *ms) {
  int best = layer0 && s->world == 1 && gather ? 0 : 1;
  double best_ms = layer0 ? comet_cost_layer0_ms(d, s, gather, best) : comet_cost_layer1_ms(d, s, best);
  for (int i = 0; i < COMET_COST_MOVER_NSTEPS && k_steps[i] < s->sm_budget; ++i) {
    const int n = k_steps[i];
    if (n <= best) continue;
    const double t = layer0 ? comet_cost_layer0_ms(d, s, gather, n) : comet_cost_layer1_ms(d, s, n);
    if (t < best_ms) {
      best = n;
      best_ms = t;
    }
  }
  if (ms) *ms = best_ms;
  return best;
}

int comet_cost_pick_layer0(const comet_cost_device_t *d, const comet_cost_shape_t *s, int gather,
                           double *ms) {
  return pick(d, s, 1, gather, ms);
}

int comet_cost_pick_layer1(const comet_cost_device_t *d, const comet_cost_shape_t *s, double *ms) {
  return pick(d, s, 0, 0, ms);
}
