/* SPDX-License-Identifier: Apache-2.0 */
/* plan_core.h — the routing plan's arithmetic, host- and device-callable.
 *
 * Ranks: W = ep*tp, rank r = ep_rank*tp + tp_rank. Expert e lives on EP group
 * g = e / El (El = E/ep); every rank q of that group (q = g*tp + i) receives
 * the rows routed to e and computes its F/tp shard.
 *
 * all_counts[s*E + e]: number of (t, k) on source rank s with topk_ids == e.
 *
 * Row order on a receiving rank q: by local expert; within an expert by
 * arrival index j = 0..W-1 with source s = (q + j) mod W (own rows first,
 * then in the order the peers' rows arrive); within a source by token t,
 * then slot k. block_offset[e_l*(W+1) + j] is the first row of (e_l, j);
 * block_offset[e_l*(W+1) + W] is the end of expert e_l. */
#ifndef COMET_PLAN_CORE_H
#define COMET_PLAN_CORE_H

#include <stdint.h>

#include "hd.h"

typedef struct comet_plan_dims {
  int num_experts; /* E */
  int topk;        /* K */
  int ep, tp;      /* world = ep*tp */
} comet_plan_dims_t;

/* What is wrong with one token's expert ids, if anything. */
enum { COMET_TOKEN_OK = 0, COMET_TOKEN_OUT_OF_RANGE = 1, COMET_TOKEN_DUPLICATE = 2 };

COMET_HD int comet_plan_world(comet_plan_dims_t d) { return d.ep * d.tp; }
COMET_HD int comet_plan_local_experts(comet_plan_dims_t d) { return d.num_experts / d.ep; }
/* EP group that owns expert e. */
COMET_HD int comet_plan_owner_group(comet_plan_dims_t d, int e) {
  return e / comet_plan_local_experts(d);
}
/* Arrival index of source s on receiving rank q, and back. */
COMET_HD int comet_plan_arrival(int q, int s, int world) { return (s - q + world) % world; }
COMET_HD int comet_plan_source(int q, int j, int world) { return (q + j) % world; }

/* Checks one token's K ids: each in [0, E) or -1, no expert twice.
 * Returns COMET_TOKEN_*; *bad_slot gets the offending k. */
COMET_HD int comet_plan_check_token(const int32_t *ids, int K, int E, int *bad_slot) {
  for (int k = 0; k < K; ++k) {
    int e = ids[k];
    if (e == -1) continue;
    if (e < 0 || e >= E) { *bad_slot = k; return COMET_TOKEN_OUT_OF_RANGE; }
    for (int k2 = 0; k2 < k; ++k2)
      if (ids[k2] == e) { *bad_slot = k; return COMET_TOKEN_DUPLICATE; }
  }
  return COMET_TOKEN_OK;
}

/* Rows received by rank q, its expert offsets and block offsets.
 * expert_offset[El+1], block_offset[El*(W+1)] (either may be NULL).
 * Returns the total number of rows. */
COMET_HD int64_t comet_plan_offsets(comet_plan_dims_t d, const int32_t *all_counts, int q,
                                    int32_t *expert_offset, int32_t *block_offset) {
  const int W = comet_plan_world(d), El = comet_plan_local_experts(d);
  const int g = q / d.tp;
  int64_t row = 0;
  for (int el = 0; el < El; ++el) {
    const int e = g * El + el;
    if (expert_offset) expert_offset[el] = (int32_t)row;
    for (int j = 0; j < W; ++j) {
      if (block_offset) block_offset[el * (W + 1) + j] = (int32_t)row;
      row += all_counts[comet_plan_source(q, j, W) * d.num_experts + e];
    }
    if (block_offset) block_offset[el * (W + 1) + W] = (int32_t)row;
  }
  if (expert_offset) expert_offset[El] = (int32_t)row;
  return row;
}

/* First row, on receiving rank q, of the rows that source s routes to expert
 * e (q must be in e's owner group). O(W); no tables needed. */
COMET_HD int64_t comet_plan_block_start(comet_plan_dims_t d, const int32_t *all_counts, int q,
                                        int s, int e) {
  const int W = comet_plan_world(d), El = comet_plan_local_experts(d);
  const int g = q / d.tp;
  int64_t row = 0;
  for (int e2 = g * El; e2 < e; ++e2)
    for (int s2 = 0; s2 < W; ++s2) row += all_counts[s2 * d.num_experts + e2];
  for (int j = 0; j < comet_plan_arrival(q, s, W); ++j)
    row += all_counts[comet_plan_source(q, j, W) * d.num_experts + e];
  return row;
}

/* Worst-case rows one rank can receive: W * T_max * min(K, El). */
COMET_HD int64_t comet_plan_worst_rows(comet_plan_dims_t d, int max_tokens) {
  const int El = comet_plan_local_experts(d);
  return (int64_t)comet_plan_world(d) * max_tokens * (d.topk < El ? d.topk : El);
}

#endif /* COMET_PLAN_CORE_H */
