/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.h — tile schedules of the two grouped GEMMs, host- and
 * device-callable pure functions of the routing plan and the tile shape.
 *
 * An M-tile is up to tile_m consecutive rows of one local expert. Its rows
 * come from arrival blocks src_first..src_last (plan_core.h): a layer0 tile
 * may start once those sources' rows have arrived.
 *
 * Layer0 order: M-tiles sorted by src_last (tiles of only local rows first,
 * then in the order the peers' rows arrive), then expert, then row; bands
 * of at most COMET_SCHED_BAND M-tiles of one expert and one arrival level
 * expanded into their N-tiles, M fastest.
 * Layer1 order: column block by column block (n slowest), every M-tile in
 * natural (expert, row) order within a block, so whole column blocks finish
 * early and can travel home. */
#ifndef COMET_SCHEDULE_H
#define COMET_SCHEDULE_H

#include <stdint.h>

#include "hd.h"

typedef struct comet_mtile {
  int32_t expert;    /* local expert */
  int32_t row_begin; /* first row (global row index on this rank) */
  int32_t rows;      /* 1..tile_m */
  int16_t src_first; /* arrival index of the first row's source block */
  int16_t src_last;  /* arrival index of the last row's source block */
  int32_t index;     /* position in the natural (expert, row) order: the M-tile's
                        arrival counter in the fused layer0 */
  int32_t band_first; /* list position of the first entry of this entry's band */
  int32_t band_size;  /* entries in that band (comet_sched_band) */
} comet_mtile_t;

typedef struct comet_tile {
  int32_t mtile; /* index into the M-tile list */
  int32_t n;     /* N-tile index */
} comet_tile_t;

/* Number of M-tiles of an expert layout (expert_offset[El+1]). */
COMET_HD int comet_sched_mtile_count(const int32_t *expert_offset, int num_local_experts,
                                     int tile_m) {
  int n = 0;
  for (int el = 0; el < num_local_experts; ++el)
    n += (expert_offset[el + 1] - expert_offset[el] + tile_m - 1) / tile_m;
  return n;
}

/* Arrival block holding row r of expert el (block_offset[El*(W+1)]). */
COMET_HD int comet_sched_block_of_row(const int32_t *block_offset, int world, int el, int32_t r) {
  const int32_t *b = block_offset + el * (world + 1);
  int j = 0;
  while (j + 1 < world && b[j + 1] <= r) ++j;
  return j;
}

/* M-tiles per band of layer0's order, at most. */
#define COMET_SCHED_BAND 8

/* The band of list entry pos, in its run [run_begin, run_end): the list's
 * consecutive entries of one expert and one arrival level (src_last), cut
 * into ceil(len / COMET_SCHED_BAND) bands of near-equal size, the earlier
 * ones larger by one. A band never spans two experts: CTAs at work on one
 * band's N-tile read one B tile together, where a band straddling experts
 * swept both experts' B once each (Mixtral at 2048 tokens, W = 1: bands of
 * 8 over 36 M-tiles of 4-5 an expert read w1 1.5 times, 2.86 GB against
 * 1.88; session 17 run 1, ncu). */
COMET_HD void comet_sched_band(int pos, int run_begin, int run_end, comet_mtile_t *t) {
  const int len = run_end - run_begin, nb = (len + COMET_SCHED_BAND - 1) / COMET_SCHED_BAND;
  const int base = len / nb, big = (len % nb) * (base + 1), o = pos - run_begin;
  if (o < big) {
    t->band_first = run_begin + o / (base + 1) * (base + 1);
    t->band_size = base + 1;
  } else {
    t->band_first = run_begin + big + (o - big) / base * base;
    t->band_size = base;
  }
}

/* Sets the band of every entry of a list of n (comet_sched_band). */
COMET_HD void comet_sched_bands(comet_mtile_t *list, int n) {
  for (int b = 0, e; b < n; b = e) {
    for (e = b + 1; e < n && list[e].expert == list[b].expert && list[e].src_last == list[b].src_last;)
      ++e;
    for (int i = b; i < e; ++i) comet_sched_band(i, b, e, &list[i]);
  }
}

/* Fills out[] with the M-tiles in natural (expert, row) order (layer1's
 * order of M-tiles) and returns their count. */
COMET_HD int comet_sched_mtiles_natural(const int32_t *block_offset, int num_local_experts,
                                        int world, int tile_m, comet_mtile_t *out) {
  int n = 0;
  for (int el = 0; el < num_local_experts; ++el) {
    const int32_t begin = block_offset[el * (world + 1)], end = block_offset[el * (world + 1) + world];
    for (int32_t r = begin; r < end; r += tile_m) {
      comet_mtile_t t;
      t.expert = el;
      t.row_begin = r;
      t.rows = end - r < tile_m ? end - r : tile_m;
      t.src_first = (int16_t)comet_sched_block_of_row(block_offset, world, el, r);
      t.src_last = (int16_t)comet_sched_block_of_row(block_offset, world, el, r + t.rows - 1);
      t.index = n;
      out[n++] = t;
    }
  }
  comet_sched_bands(out, n);
  return n;
}

/* Fills out[] with the M-tiles in layer0 order (by src_last, then expert,
 * then row) and returns their count. A counting pass per arrival level keeps
 * it O(W * tiles) with no sort, so one device thread can run it. */
COMET_HD int comet_sched_mtiles_layer0(const int32_t *block_offset, int num_local_experts,
                                       int world, int tile_m, comet_mtile_t *out) {
  int n = 0;
  for (int level = 0; level < world; ++level) {
    int natural = 0;
    for (int el = 0; el < num_local_experts; ++el) {
      const int32_t begin = block_offset[el * (world + 1)];
      const int32_t end = block_offset[el * (world + 1) + world];
      for (int32_t r = begin; r < end; r += tile_m, ++natural) {
        const int32_t rows = end - r < tile_m ? end - r : tile_m;
        const int last = comet_sched_block_of_row(block_offset, world, el, r + rows - 1);
        if (last != level) continue;
        comet_mtile_t t;
        t.expert = el;
        t.row_begin = r;
        t.rows = rows;
        t.src_first = (int16_t)comet_sched_block_of_row(block_offset, world, el, r);
        t.src_last = (int16_t)last;
        t.index = natural;
        out[n++] = t;
      }
    }
  }
  comet_sched_bands(out, n);
  return n;
}

/* The i-th tile of layer0 (list: its M-tiles, with their bands): the list
 * band by band, M fastest inside a band, so the GEMM CTAs at work together
 * share B tiles in L2 (N fastest would make every M-tile read all of B
 * again); bands in list order, so arrival order holds band by band. A band
 * of entries [f, f + size) holds tiles [f * n_tiles, (f + size) * n_tiles),
 * so entry i / n_tiles lies in tile i's band. */
COMET_HD comet_tile_t comet_sched_layer0_tile(int i, int n_tiles, const comet_mtile_t *list) {
  const int e = i / n_tiles, first = list[e].band_first, size = list[e].band_size;
  const int rem = i - first * n_tiles;
  comet_tile_t t;
  t.mtile = first + rem % size;
  t.n = rem / size;
  return t;
}

/* Column blocks per group of layer1's order. */
#define COMET_SCHED_L1_GROUP 4

/* The i-th tile of layer1 (m_tiles entries in the natural list, n_tiles
 * column blocks): groups of COMET_SCHED_L1_GROUP column blocks in order,
 * inside a group M-tile by M-tile, its blocks fastest. One block at a time
 * (every M-tile, then the next block) read all of A again per block: 16
 * times for Mixtral's H = 4096, and the fused layer1's GEMM alone ran 22%
 * slower than the composed one (run 3); a group's blocks share each A
 * tile in L2 while the movers still get the blocks in order, group by
 * group. */
COMET_HD comet_tile_t comet_sched_layer1_tile(int i, int n_tiles, int m_tiles) {
  const int g0 = i / (COMET_SCHED_L1_GROUP * m_tiles) * COMET_SCHED_L1_GROUP;
  const int gn = n_tiles - g0 < COMET_SCHED_L1_GROUP ? n_tiles - g0 : COMET_SCHED_L1_GROUP;
  const int rem = i - g0 * m_tiles;
  comet_tile_t t;
  t.mtile = rem / gn;
  t.n = g0 + rem % gn;
  return t;
}

#endif /* COMET_SCHEDULE_H */
