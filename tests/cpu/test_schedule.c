/* SPDX-License-Identifier: Apache-2.0 */
/* test_schedule.c — tile schedules: every tile appears exactly once in each
 * order, M-tiles cover every row once and never straddle experts, layer0's
 * waits are monotone with local-only tiles first, bands hold one expert's
 * entries of one arrival level, layer1 goes column block by column block. */
#include <stdlib.h>

#include "plan.h"
#include "schedule.h"
#include "test_util.h"

/* Bands (both lists): consecutive entries of one expert and one arrival
 * level, at most COMET_SCHED_BAND of them, a run of such entries cut into
 * as few bands as that allows, their sizes at most one apart. */
static void check_bands(const comet_mtile_t *l, int n) {
  for (int i = 0; i < n;) {
    const int f = l[i].band_first, sz = l[i].band_size;
    CHECK(f == i && sz >= 1 && sz <= COMET_SCHED_BAND && f + sz <= n);
    for (int j = f; j < f + sz && j < n; ++j) {
      CHECK(l[j].band_first == f && l[j].band_size == sz);
      CHECK(l[j].expert == l[f].expert && l[j].src_last == l[f].src_last);
    }
    i = f + sz > i ? f + sz : i + 1;
  }
  for (int b = 0, e; b < n; b = e) { /* runs */
    for (e = b + 1; e < n && l[e].expert == l[b].expert && l[e].src_last == l[b].src_last;) ++e;
    const int len = e - b, bands = (len + COMET_SCHED_BAND - 1) / COMET_SCHED_BAND;
    int seen = 0, lo = len, hi = 0;
    for (int i = b; i < e; i += l[i].band_size > 0 ? l[i].band_size : 1) {
      ++seen;
      lo = l[i].band_size < lo ? l[i].band_size : lo;
      hi = l[i].band_size > hi ? l[i].band_size : hi;
    }
    CHECK(seen == bands && hi - lo <= 1);
    CHECK(b == 0 || l[b].band_first == b); /* a run starts a band */
  }
}

static void check_layout(const int32_t *block_offset, int El, int W, int tile_m, int n_tiles) {
  const int32_t total = block_offset[(El - 1) * (W + 1) + W];
  int32_t eo[65];
  for (int el = 0; el <= El; ++el) eo[el] = el < El ? block_offset[el * (W + 1)] : total;
  const int count = comet_sched_mtile_count(eo, El, tile_m);
  comet_mtile_t *l0 = malloc(sizeof(comet_mtile_t) * (size_t)(count + 1));
  comet_mtile_t *l1 = malloc(sizeof(comet_mtile_t) * (size_t)(count + 1));
  CHECK(comet_sched_mtiles_layer0(block_offset, El, W, tile_m, l0) == count);
  CHECK(comet_sched_mtiles_natural(block_offset, El, W, tile_m, l1) == count);

  /* Rows covered exactly once, within one expert, by both lists. */
  int *cover0 = calloc((size_t)total + 1, sizeof(int)), *cover1 = calloc((size_t)total + 1, sizeof(int));
  for (int i = 0; i < count; ++i) {
    const comet_mtile_t a = l0[i], b = l1[i];
    CHECK(a.rows >= 1 && a.rows <= tile_m && b.rows >= 1 && b.rows <= tile_m);
    CHECK(a.row_begin >= eo[a.expert] && a.row_begin + a.rows <= eo[a.expert + 1]);
    CHECK(b.row_begin >= eo[b.expert] && b.row_begin + b.rows <= eo[b.expert + 1]);
    for (int r = 0; r < a.rows; ++r) cover0[a.row_begin + r]++;
    for (int r = 0; r < b.rows; ++r) cover1[b.row_begin + r]++;
    /* src_first/src_last are the arrival blocks of the first and last rows. */
    const int32_t *bo = block_offset + a.expert * (W + 1);
    CHECK(a.src_first <= a.src_last);
    /* index: the entry's place in the natural list (the layer0 arrival counter) */
    CHECK(b.index == i);
    CHECK(a.index >= 0 && a.index < count && l1[a.index].expert == a.expert &&
          l1[a.index].row_begin == a.row_begin && l1[a.index].rows == a.rows);
    CHECK(bo[a.src_first] <= a.row_begin && a.row_begin < bo[a.src_first + 1]);
    CHECK(bo[a.src_last] <= a.row_begin + a.rows - 1 && a.row_begin + a.rows - 1 < bo[a.src_last + 1]);
    if (i > 0) {
      /* layer0: waits monotone; natural list: (expert, row) increasing */
      CHECK(l0[i - 1].src_last <= a.src_last);
      CHECK(l1[i - 1].expert < b.expert ||
            (l1[i - 1].expert == b.expert && l1[i - 1].row_begin < b.row_begin));
    }
  }
  for (int32_t r = 0; r < total; ++r) CHECK(cover0[r] == 1 && cover1[r] == 1);

  /* Tile index maps: bijections onto (mtile, n); layer0 bands and layer1 groups never go back. */
  const int tiles = count * n_tiles;
  char *seen0 = calloc((size_t)tiles + 1, 1), *seen1 = calloc((size_t)tiles + 1, 1);
  for (int i = 0; i < tiles; ++i) {
    comet_tile_t t0 = comet_sched_layer0_tile(i, n_tiles, l0), t1 = comet_sched_layer1_tile(i, n_tiles, count);
    CHECK(t0.mtile >= 0 && t0.mtile < count && t0.n >= 0 && t0.n < n_tiles);
    CHECK(t1.mtile >= 0 && t1.mtile < count && t1.n >= 0 && t1.n < n_tiles);
    seen0[t0.mtile * n_tiles + t0.n]++;
    seen1[t1.mtile * n_tiles + t1.n]++;
    if (i > 0) {
      comet_tile_t p0 = comet_sched_layer0_tile(i - 1, n_tiles, l0), p1 = comet_sched_layer1_tile(i - 1, n_tiles, count);
      /* bands never go back, so neither do the waits of the bands' first tiles */
      CHECK(l0[p0.mtile].band_first <= l0[t0.mtile].band_first);
      CHECK(l0[l0[p0.mtile].band_first].src_last <= l0[l0[t0.mtile].band_first].src_last);
      CHECK(p1.n / COMET_SCHED_L1_GROUP <= t1.n / COMET_SCHED_L1_GROUP); /* groups in order */
    }
  }
  for (int i = 0; i < tiles; ++i) CHECK(seen0[i] == 1 && seen1[i] == 1);
  check_bands(l0, count);
  check_bands(l1, count);
  free(seen0); free(seen1); free(cover0); free(cover1); free(l0); free(l1);
}

int main(void) {
  uint64_t rng = test_seed("test_schedule");
  for (int iter = 0; iter < 200; ++iter) {
    const int W = test_rand_int(&rng, 1, 8), El = test_rand_int(&rng, 1, 8);
    const int tile_m = (int[]){1, 7, 64, 128}[test_rand_int(&rng, 0, 3)];
    const int n_tiles = test_rand_int(&rng, 1, 5);
    const int skew = test_rand_int(&rng, 0, 2);
    int32_t bo[8 * 9];
    int32_t row = 0;
    for (int el = 0; el < El; ++el) {
      for (int j = 0; j < W; ++j) {
        bo[el * (W + 1) + j] = row;
        int n = test_rand_int(&rng, 0, 300);
        if (skew == 1 && el > 0) n = 0;           /* empty experts */
        if (skew == 2 && test_rand_int(&rng, 0, 2)) n = test_rand_int(&rng, 0, 2); /* tiny blocks */
        row += n;
      }
      bo[el * (W + 1) + W] = row;
    }
    check_layout(bo, El, W, tile_m, n_tiles);
  }
  /* Local rows come first: a layout where only remote sources have rows
   * has no tile at level 0, and a local-only expert's tiles lead. */
  int32_t bo[2 * 3] = {0, 100, 100, 100, 100, 300}; /* W=2: e0 local 100 rows; e1 remote 200 */
  comet_mtile_t l0[8];
  int n = comet_sched_mtiles_layer0(bo, 2, 2, 128, l0);
  CHECK(n == 3);
  CHECK(l0[0].expert == 0 && l0[0].src_last == 0 && l0[0].rows == 100);
  CHECK(l0[1].expert == 1 && l0[1].src_last == 1 && l0[2].src_last == 1);
  check_layout(bo, 2, 2, 128, 3);
  return test_finish("test_schedule");
}
