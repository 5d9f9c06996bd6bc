/* SPDX-License-Identifier: Apache-2.0 */
/* plan.h — the routing plan of all W ranks, built on the host from every
 * rank's topk_ids (the CPU oracle for the device-side plan, and what the
 * reference uses to order rows). Arithmetic shared with kernels is in
 * plan_core.h. */
#ifndef COMET_PLAN_H
#define COMET_PLAN_H

#include "comet.h"
#include "plan_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One rank's share of the plan: as a receiver (rows, offsets, row tables)
 * and as a source (where its own (t, k) went). */
typedef struct comet_rank_plan {
  int rank;
  int num_tokens;          /* T of this rank */
  int64_t rows;            /* rows this rank receives */
  int32_t *expert_offset;  /* [El+1] */
  int32_t *block_offset;   /* [El*(W+1)], see plan_core.h */
  int32_t *row_src;        /* [rows] source rank of each received row */
  int32_t *row_token;      /* [rows] token index on that source */
  int32_t *row_slot;       /* [rows] top-k slot k */
  int32_t *dest_row;       /* [T*K*tp]: row of own (t, k) on rank g*tp + i, at
                              index (t*K + k)*tp + i; -1 if dropped */
} comet_rank_plan_t;

typedef struct comet_plan {
  comet_plan_dims_t dims;
  int32_t *all_counts;       /* [W*E], all_counts[s*E + e] */
  comet_rank_plan_t *ranks;  /* [W] */
} comet_plan_t;

/* Validates dims (E % ep, K in 1..E). */
comet_status_t comet_plan_dims_check(comet_plan_dims_t dims);

/* Counts one source rank's rows per expert into counts[E] (zeroed here).
 * Ids out of range or an expert twice in one token: COMET_ERR_ROUTING naming
 * the rank, token, slot and value. */
comet_status_t comet_plan_count(comet_plan_dims_t dims, int rank, int num_tokens,
                                const int32_t *topk_ids, int32_t *counts);

/* Builds the whole plan. num_tokens[s] must be 0..max_tokens; a rank that
 * would receive more than row_capacity rows is COMET_ERR_ROUTING.
 * topk_ids[s] may be NULL when num_tokens[s] == 0. */
comet_status_t comet_plan_build(comet_plan_t *plan, comet_plan_dims_t dims, const int *num_tokens,
                                const int32_t *const *topk_ids, int max_tokens,
                                int64_t row_capacity);
void comet_plan_free(comet_plan_t *plan);

#ifdef __cplusplus
}
#endif
#endif /* COMET_PLAN_H */
