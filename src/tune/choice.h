/* SPDX-License-Identifier: Apache-2.0 */
/* choice.h — what a fused kernel runs with on a call: the tuning table's
 * entry for the layer's key and the call's token count if there is one,
 * else the cost model's pick; an explicit override wins over both. Host C. */
#ifndef COMET_TUNE_CHOICE_H
#define COMET_TUNE_CHOICE_H

#include "tune/cost_model.h"
#include "tune/table.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { COMET_FROM_MODEL = 0, COMET_FROM_TABLE = 1, COMET_FROM_OVERRIDE = 2 };

typedef struct comet_choice {
  int n_comm; /* mover CTAs */
  int a;      /* layer0's A: COMET_TUNE_A_GATHERED / COPIED (layer1: COPIED) */
  int tile;   /* 0 auto, 1 wide, 2 narrow (layer1: always wide) */
  int from;   /* COMET_FROM_*: where n_comm came from */
} comet_choice_t;

/* op: COMET_TUNE_LAYER0 / LAYER1. n_override > 0 and a_override >= 0 win.
 * The result always fits: n_comm in [0 or 1, min(24, budget - 1)] (0 only
 * for layer0 at W = 1 with A gathered). */
comet_choice_t comet_tune_choose(const comet_tune_table_t *table, const comet_tune_key_t *key,
                                 const comet_cost_device_t *dev, const comet_cost_shape_t *shape,
                                 int op, int n_override, int a_override);

const char *comet_choice_from_name(int from);

#ifdef __cplusplus
}
#endif
#endif
