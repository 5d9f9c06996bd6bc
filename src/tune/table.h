/* SPDX-License-Identifier: Apache-2.0 */
/* table.h — comet's tuning table: measured choices of the fused kernels
 * (mover CTAs, GEMM tile, layer0's A), keyed by device, layout, shape and
 * a token-count bucket. Plain text, versioned:
 *
 *   comet-tuning-table 1
 *   # device world ep tp hidden ffn experts topk tokens op n_comm tile a ms
 *   "NVIDIA H200" 1 1 1 4096 14336 8 2 8192 layer0 8 auto copied 6.438
 *
 * op: layer0 | layer1; tile: auto | wide | narrow; a (layer0's A): gathered
 * | copied | - ; ms: the measured time of that choice (information).
 * Lines starting with '#' and blank lines are skipped. A lookup takes the
 * entry of the same key and op whose token count is nearest (in log2);
 * between two, the smaller. Host C, no CUDA. */
#ifndef COMET_TUNE_TABLE_H
#define COMET_TUNE_TABLE_H

#include <stddef.h>
#include <stdio.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COMET_TUNE_TABLE_VERSION 1
#define COMET_TUNE_DEVICE_LEN 64

typedef struct comet_tune_key {
  char device[COMET_TUNE_DEVICE_LEN]; /* cudaDeviceProp.name */
  int world, ep, tp, hidden, ffn, experts, topk;
} comet_tune_key_t;

enum { COMET_TUNE_LAYER0 = 0, COMET_TUNE_LAYER1 = 1 };
enum { COMET_TUNE_A_ANY = -1, COMET_TUNE_A_COPIED = 0, COMET_TUNE_A_GATHERED = 1 };

typedef struct comet_tune_entry {
  comet_tune_key_t key;
  int tokens;  /* tokens per rank the choice was measured at */
  int op;      /* COMET_TUNE_LAYER0 / LAYER1 */
  int n_comm;  /* mover CTAs, >= 0 */
  int tile;    /* 0 auto, 1 wide, 2 narrow (comet_gemm_tile_t) */
  int a;       /* COMET_TUNE_A_* (layer0) */
  double ms;
} comet_tune_entry_t;

typedef struct comet_tune_table {
  comet_tune_entry_t *e;
  int n, cap;
} comet_tune_table_t;

/* Parses text (a whole file; name for messages) and appends its entries.
 * COMET_OK, or COMET_ERR_INVALID_ARGUMENT with a message naming the file
 * and line when the version line is missing or wrong or a line is
 * malformed: then nothing of this text is kept. */
comet_status_t comet_tune_table_parse(comet_tune_table_t *t, const char *text, const char *name);
/* The file at path, as above; COMET_ERR_INVALID_ARGUMENT naming it and the
 * system error if it cannot be read. */
comet_status_t comet_tune_table_load(comet_tune_table_t *t, const char *path);
/* Writes every entry, with the version line and the field comment. */
comet_status_t comet_tune_table_write(const comet_tune_table_t *t, FILE *f);
/* Adds e, replacing an entry of the same key, op and token count. */
comet_status_t comet_tune_table_merge(comet_tune_table_t *t, const comet_tune_entry_t *e);
void comet_tune_table_free(comet_tune_table_t *t);

int comet_tune_key_equal(const comet_tune_key_t *a, const comet_tune_key_t *b);
/* The key of a layer of config c on a world-rank job on device. */
comet_tune_key_t comet_tune_key_for(const char *device, int world, const comet_layer_config_t *c);
/* comet tune's rule for the entry a key already has at the same token
 * count: kept while its time in this sweep is within `keep` (a fraction;
 * `comet tune --keep PCT`, default COMET_TUNE_KEEP) of the sweep's best,
 * so that an entry another routing's pass (or an earlier table) chose is
 * replaced only for a clear gain. The check wants each routing within 3%
 * of its own best and a point's timings spread by 1-2%; session 7 run 3
 * missed once where the skew pass's entry had replaced the uniform one
 * (1.033x on uniform), session 9 run 3 once more (a 2.9% gain on skew, 13%
 * worse on uniform: a second routing's pass wants keep near the check's
 * 3%). */
#define COMET_TUNE_KEEP 0.015
static inline int comet_tune_keep_entry(double entry_ms, double best_ms, double keep) {
  return entry_ms > 0 && best_ms > 0 && entry_ms <= best_ms * (1.0 + keep);
}

/* Which timing becomes comet tune's entry for a config: the table's own
 * entry at the token count while it is within keep of the best (entry_ms
 * <= 0: none), else the cost model's pick while it is within keep (a prior
 * where the timings cannot tell: session 10 run 3 missed twice on an old
 * entry kept within 1.5% that the next pass timed 3.8% behind the model's
 * pick), else the best. */
typedef enum comet_tune_entry_from {
  COMET_TUNE_ENTRY_KEPT = 0,
  COMET_TUNE_ENTRY_MODEL = 1,
  COMET_TUNE_ENTRY_BEST = 2
} comet_tune_entry_from_t;
static inline comet_tune_entry_from_t comet_tune_entry_from(double entry_ms, double model_ms,
                                                            double best_ms, double keep) {
  if (comet_tune_keep_entry(entry_ms, best_ms, keep)) return COMET_TUNE_ENTRY_KEPT;
  if (comet_tune_keep_entry(model_ms, best_ms, keep)) return COMET_TUNE_ENTRY_MODEL;
  return COMET_TUNE_ENTRY_BEST;
}

/* The entry for key and op nearest to tokens, or NULL. */
const comet_tune_entry_t *comet_tune_lookup(const comet_tune_table_t *t, const comet_tune_key_t *key,
                                            int op, int tokens);

#ifdef __cplusplus
}
#endif
#endif
