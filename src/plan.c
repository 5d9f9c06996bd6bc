/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c — builds the routing plan of all ranks on the host. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

comet_status_t comet_plan_dims_check(comet_plan_dims_t d) {
  COMET_ARG(d.ep >= 1, "plan: ep = %d must be >= 1", d.ep);
  COMET_ARG(d.tp >= 1, "plan: tp = %d must be >= 1", d.tp);
  COMET_ARG(d.num_experts >= 1, "plan: num_experts = %d must be >= 1", d.num_experts);
  COMET_ARG(d.num_experts % d.ep == 0, "plan: num_experts = %d is not a multiple of ep = %d",
            d.num_experts, d.ep);
  COMET_ARG(d.topk >= 1 && d.topk <= d.num_experts, "plan: topk = %d must be in 1..num_experts (%d)",
            d.topk, d.num_experts);
  return COMET_OK;
}

comet_status_t comet_plan_count(comet_plan_dims_t d, int rank, int num_tokens,
                                const int32_t *ids, int32_t *counts) {
  COMET_CHECK(comet_plan_dims_check(d));
  COMET_ARG(counts != NULL, "plan: counts is NULL");
  COMET_ARG(num_tokens == 0 || ids != NULL, "plan: topk_ids of rank %d is NULL with %d tokens",
            rank, num_tokens);
  memset(counts, 0, sizeof(int32_t) * (size_t)d.num_experts);
  for (int t = 0; t < num_tokens; ++t) {
    const int32_t *row = ids + (size_t)t * d.topk;
    int k = 0;
    int bad = comet_plan_check_token(row, d.topk, d.num_experts, &k);
    if (bad == COMET_TOKEN_OUT_OF_RANGE)
      return comet_set_error(COMET_ERR_ROUTING,
                             "topk_ids[%d][%d] = %d on rank %d is out of range [0, %d) (-1 = dropped)",
                             t, k, row[k], rank, d.num_experts);
    if (bad == COMET_TOKEN_DUPLICATE)
      return comet_set_error(COMET_ERR_ROUTING,
                             "topk_ids[%d][%d] = %d on rank %d repeats an expert of the same token",
                             t, k, row[k], rank);
    for (k = 0; k < d.topk; ++k)
      if (row[k] >= 0) counts[row[k]]++;
  }
  return COMET_OK;
}

void comet_plan_free(comet_plan_t *plan) {
  if (!plan) return;
  if (plan->ranks) {
    for (int q = 0; q < comet_plan_world(plan->dims); ++q) {
      comet_rank_plan_t *r = &plan->ranks[q];
      free(r->expert_offset);
      free(r->block_offset);
      free(r->row_src);
      free(r->row_token);
      free(r->row_slot);
      free(r->dest_row);
    }
  }
  free(plan->ranks);
  free(plan->all_counts);
  memset(plan, 0, sizeof *plan);
}

/* Fills the receivers' row tables and every source's dest_row in one pass
 * over each source's (t, k), in token-then-slot order: a cursor per
 * (receiver, local expert) block of that source hands out the rows. */
static comet_status_t fill_rows(comet_plan_t *plan, const int32_t *const *ids) {
  const comet_plan_dims_t d = plan->dims;
  const int W = comet_plan_world(d), El = comet_plan_local_experts(d), K = d.topk;
  int32_t *cursor = malloc(sizeof(int32_t) * (size_t)W * (size_t)El);
  if (!cursor) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "plan: host allocation failed");
  for (int s = 0; s < W; ++s) {
    comet_rank_plan_t *rs = &plan->ranks[s];
    for (int q = 0; q < W; ++q)
      for (int el = 0; el < El; ++el)
        cursor[q * El + el] = plan->ranks[q].block_offset[el * (W + 1) + comet_plan_arrival(q, s, W)];
    for (int t = 0; t < rs->num_tokens; ++t)
      for (int k = 0; k < K; ++k) {
        const int e = ids[s][(size_t)t * K + k];
        if (e < 0) continue;
        const int g = comet_plan_owner_group(d, e), el = e % El;
        for (int i = 0; i < d.tp; ++i) {
          const int q = g * d.tp + i;
          comet_rank_plan_t *rq = &plan->ranks[q];
          const int32_t row = cursor[q * El + el]++;
          rq->row_src[row] = s;
          rq->row_token[row] = t;
          rq->row_slot[row] = k;
          rs->dest_row[((size_t)t * K + k) * d.tp + i] = row;
        }
      }
  }
  free(cursor);
  return COMET_OK;
}

comet_status_t comet_plan_build(comet_plan_t *plan, comet_plan_dims_t d, const int *num_tokens,
                                const int32_t *const *ids, int max_tokens, int64_t row_capacity) {
  COMET_ARG(plan != NULL, "plan: plan is NULL");
  memset(plan, 0, sizeof *plan);
  COMET_CHECK(comet_plan_dims_check(d));
  COMET_ARG(num_tokens != NULL && ids != NULL, "plan: num_tokens or topk_ids is NULL");
  const int W = comet_plan_world(d), E = d.num_experts, El = comet_plan_local_experts(d);
  const int K = d.topk;
  for (int s = 0; s < W; ++s)
    COMET_ARG(num_tokens[s] >= 0 && num_tokens[s] <= max_tokens,
              "plan: rank %d has %d tokens, outside 0..max_tokens_per_rank (%d)", s, num_tokens[s],
              max_tokens);

  comet_status_t st = COMET_OK;
  plan->dims = d;
  const size_t nW = (size_t)d.ep * (size_t)d.tp; /* = W, as a size */
  plan->all_counts = calloc(nW * (size_t)E, sizeof(int32_t));
  plan->ranks = calloc(nW, sizeof(comet_rank_plan_t));
  if (!plan->all_counts || !plan->ranks) {
    st = comet_set_error(COMET_ERR_OUT_OF_MEMORY, "plan: host allocation failed");
    goto fail;
  }
  for (int s = 0; s < W; ++s) {
    COMET_CHECK_GOTO(comet_plan_count(d, s, num_tokens[s], ids[s], plan->all_counts + (size_t)s * E),
                     st, fail);
    plan->ranks[s].rank = s;
    plan->ranks[s].num_tokens = num_tokens[s];
  }
  for (int q = 0; q < W; ++q) {
    comet_rank_plan_t *r = &plan->ranks[q];
    r->rows = comet_plan_offsets(d, plan->all_counts, q, NULL, NULL);
    if (r->rows > row_capacity) {
      st = comet_set_error(COMET_ERR_ROUTING,
                           "rank %d would receive %lld rows, more than its row capacity %lld "
                           "(max_rows_per_rank)", q, (long long)r->rows, (long long)row_capacity);
      goto fail;
    }
    size_t rows = (size_t)(r->rows > 0 ? r->rows : 1);
    size_t slots = (size_t)(r->num_tokens > 0 ? r->num_tokens : 1) * K * d.tp;
    r->expert_offset = malloc(sizeof(int32_t) * (size_t)(El + 1));
    r->block_offset = malloc(sizeof(int32_t) * (size_t)El * (size_t)(W + 1));
    r->row_src = malloc(sizeof(int32_t) * rows);
    r->row_token = malloc(sizeof(int32_t) * rows);
    r->row_slot = malloc(sizeof(int32_t) * rows);
    r->dest_row = malloc(sizeof(int32_t) * slots);
    if (!r->expert_offset || !r->block_offset || !r->row_src || !r->row_token || !r->row_slot ||
        !r->dest_row) {
      st = comet_set_error(COMET_ERR_OUT_OF_MEMORY, "plan: host allocation failed");
      goto fail;
    }
    comet_plan_offsets(d, plan->all_counts, q, r->expert_offset, r->block_offset);
    for (size_t i = 0; i < slots; ++i) r->dest_row[i] = -1;
  }
  COMET_CHECK_GOTO(fill_rows(plan, ids), st, fail);
  return COMET_OK;
fail:
  comet_plan_free(plan);
  return st;
}
