/* SPDX-License-Identifier: Apache-2.0 */
/* test_plan.c — routing plan invariants on random, skewed, empty and
 * dropped routings for many EP x TP layouts, and its routing errors. */
#include <stdlib.h>

#include "plan.h"
#include "test_util.h"

enum { MAX_W = 8 };

typedef struct routing {
  comet_plan_dims_t d;
  int tokens[MAX_W];
  int32_t *ids[MAX_W];
} routing_t;

/* mode 0 uniform, 1 all to expert 0, 2 only even experts, 3 half dropped. */
static void make_routing(routing_t *r, uint64_t *rng, int mode, int max_tokens) {
  const int W = comet_plan_world(r->d), E = r->d.num_experts, K = r->d.topk;
  for (int s = 0; s < W; ++s) {
    r->tokens[s] = test_rand_int(rng, 0, max_tokens);
    r->ids[s] = malloc(sizeof(int32_t) * (size_t)(r->tokens[s] * K + 1));
    for (int t = 0; t < r->tokens[s]; ++t) {
      int32_t *row = r->ids[s] + (size_t)t * K;
      for (int k = 0; k < K; ++k) {
        int e;
        do {
          e = test_rand_int(rng, 0, E - 1);
          if (mode == 1) e = k == 0 ? 0 : e;
          if (mode == 2 && E > 1) e = (e / 2) * 2;
          if (mode == 3 && test_rand_int(rng, 0, 1)) e = -1;
          int dup = 0;
          for (int k2 = 0; k2 < k; ++k2) dup |= e >= 0 && row[k2] == e;
          if (!dup) break;
          if (mode == 2 && K > (E + 1) / 2) { e = -1; break; } /* not enough even experts */
        } while (1);
        row[k] = e;
      }
    }
  }
}

static void free_routing(routing_t *r) {
  for (int s = 0; s < comet_plan_world(r->d); ++s) free(r->ids[s]);
}

static void check_plan(const comet_plan_t *p, const routing_t *r) {
  const comet_plan_dims_t d = p->dims;
  const int W = comet_plan_world(d), E = d.num_experts, El = comet_plan_local_experts(d), K = d.topk;
  for (int q = 0; q < W; ++q) {
    const comet_rank_plan_t *rq = &p->ranks[q];
    const int g = q / d.tp;
    int64_t expect_rows = 0;
    for (int s = 0; s < W; ++s)
      for (int el = 0; el < El; ++el) expect_rows += p->all_counts[s * E + g * El + el];
    CHECK(rq->rows == expect_rows);
    CHECK(rq->expert_offset[0] == 0 && rq->expert_offset[El] == rq->rows);
    for (int el = 0; el < El; ++el) {
      CHECK(rq->block_offset[el * (W + 1)] == rq->expert_offset[el]);
      CHECK(rq->block_offset[el * (W + 1) + W] == rq->expert_offset[el + 1]);
      for (int j = 0; j < W; ++j) {
        const int s = comet_plan_source(q, j, W);
        const int32_t b0 = rq->block_offset[el * (W + 1) + j], b1 = rq->block_offset[el * (W + 1) + j + 1];
        CHECK(b1 - b0 == p->all_counts[s * E + g * El + el]);
        CHECK(comet_plan_block_start(d, p->all_counts, q, s, g * El + el) == b0);
        for (int32_t row = b0; row < b1; ++row) {
          /* rows of a block: from source s, expert e, (t, k) increasing */
          CHECK(rq->row_src[row] == s);
          const int t = rq->row_token[row], k = rq->row_slot[row];
          CHECK(t >= 0 && t < r->tokens[s] && k >= 0 && k < K);
          CHECK(r->ids[s][(size_t)t * K + k] == g * El + el);
          CHECK(p->ranks[s].dest_row[((size_t)t * K + k) * d.tp + q % d.tp] == row);
          if (row > b0) {
            const int pt = rq->row_token[row - 1], pk = rq->row_slot[row - 1];
            CHECK(pt < t || (pt == t && pk < k));
          }
        }
      }
    }
  }
  /* Every routed (s, t, k) lands on every rank of its owner group; dropped ones nowhere. */
  for (int s = 0; s < W; ++s)
    for (int t = 0; t < r->tokens[s]; ++t)
      for (int k = 0; k < K; ++k) {
        const int e = r->ids[s][(size_t)t * K + k];
        for (int i = 0; i < d.tp; ++i) {
          const int32_t row = p->ranks[s].dest_row[((size_t)t * K + k) * d.tp + i];
          if (e < 0) {
            CHECK(row == -1);
            continue;
          }
          const int q = comet_plan_owner_group(d, e) * d.tp + i;
          CHECK(row >= 0 && row < p->ranks[q].rows);
          if (row < 0 || row >= p->ranks[q].rows) continue;
          CHECK(p->ranks[q].row_src[row] == s && p->ranks[q].row_token[row] == t &&
                p->ranks[q].row_slot[row] == k);
        }
      }
}

int main(void) {
  uint64_t rng = test_seed("test_plan");
  static const int layouts[][4] = {/* E, K, ep, tp */
                                   {1, 1, 1, 1}, {8, 2, 1, 1}, {8, 2, 4, 1}, {8, 2, 1, 4}, {8, 2, 2, 2},
                                   {16, 1, 8, 1}, {64, 8, 4, 1}, {6, 6, 2, 1}, {4, 2, 1, 8},
                                   {32, 4, 4, 2}, {2, 1, 2, 1}};
  for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; ++li)
    for (int mode = 0; mode < 4; ++mode) {
      routing_t r;
      memset(&r, 0, sizeof r);
      r.d = (comet_plan_dims_t){layouts[li][0], layouts[li][1], layouts[li][2], layouts[li][3]};
      const int max_tokens = 37;
      make_routing(&r, &rng, mode, max_tokens);
      comet_plan_t p;
      const int64_t cap = comet_plan_worst_rows(r.d, max_tokens);
      comet_status_t st = comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, max_tokens, cap);
      CHECK_MSG(st == COMET_OK, "layout %zu mode %d: %s", li, mode, comet_last_error());
      if (st == COMET_OK) {
        check_plan(&p, &r);
        comet_plan_free(&p);
      }
      free_routing(&r);
    }

  /* Errors: an id out of range names rank, token, slot and value. */
  routing_t r;
  memset(&r, 0, sizeof r);
  r.d = (comet_plan_dims_t){8, 2, 2, 1};
  make_routing(&r, &rng, 0, 10);
  r.tokens[1] = 10;
  if (r.tokens[0] > 9) r.tokens[0] = 9; /* only rank 1 is over the limit below */
  r.ids[1] = realloc(r.ids[1], sizeof(int32_t) * 20);
  for (int i = 0; i < 20; ++i) r.ids[1][i] = i % 2 ? 1 : 0;
  comet_plan_t p;
  r.ids[1][7 * 2 + 1] = 8;
  CHECK_ERR(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_ROUTING, "topk_ids[7][1] = 8 on rank 1 is out of range [0, 8)");
  r.ids[1][7 * 2 + 1] = -3;
  CHECK_ERR(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_ROUTING, "topk_ids[7][1] = -3 on rank 1");
  r.ids[1][7 * 2 + 1] = 0;
  CHECK_ERR(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_ROUTING, "topk_ids[7][1] = 0 on rank 1 repeats an expert");
  r.ids[1][7 * 2 + 1] = -1;
  r.ids[1][7 * 2 + 0] = -1; /* a fully dropped token is fine */
  CHECK_OK(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 1000));
  comet_plan_free(&p);
  CHECK_ERR(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 3),
            COMET_ERR_ROUTING, "more than its row capacity 3");
  CHECK_ERR(comet_plan_build(&p, r.d, r.tokens, (const int32_t *const *)r.ids, 9, 1000),
            COMET_ERR_INVALID_ARGUMENT, "rank 1 has 10 tokens, outside 0..max_tokens_per_rank (9)");
  comet_plan_dims_t bad = {6, 2, 4, 1};
  CHECK_ERR(comet_plan_build(&p, bad, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_INVALID_ARGUMENT, "num_experts = 6 is not a multiple of ep = 4");
  bad = (comet_plan_dims_t){4, 5, 1, 1};
  CHECK_ERR(comet_plan_build(&p, bad, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_INVALID_ARGUMENT, "topk = 5");
  CHECK_ERR(comet_plan_build(NULL, r.d, r.tokens, (const int32_t *const *)r.ids, 10, 1000),
            COMET_ERR_INVALID_ARGUMENT, "plan is NULL");
  int32_t counts[8];
  CHECK_ERR(comet_plan_count(r.d, 3, 5, NULL, counts), COMET_ERR_INVALID_ARGUMENT,
            "topk_ids of rank 3 is NULL");
  free_routing(&r);
  return test_finish("test_plan");
}
