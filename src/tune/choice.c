/* SPDX-License-Identifier: Apache-2.0 */
/* choice.c — table, model or override (choice.h). */
#include "tune/choice.h"

#include <stddef.h>

/* the most movers a table entry or the model may give (an override may go
 * up to the budget less one): with dynamic tiles 24, the largest step
 * swept in session 7, was the best in 8 of the 20 H200 entries, so a
 * wider sweep may find more */
#define MAX_MOVERS 64

const char *comet_choice_from_name(int from) {
  return from == COMET_FROM_TABLE ? "table" : from == COMET_FROM_OVERRIDE ? "override" : "model";
}

comet_choice_t comet_tune_choose(const comet_tune_table_t *table, const comet_tune_key_t *key,
                                 const comet_cost_device_t *dev, const comet_cost_shape_t *s,
                                 int op, int n_override, int a_override) {
  comet_choice_t c = {0, COMET_TUNE_A_COPIED, 0, COMET_FROM_MODEL};
  if (op == COMET_TUNE_LAYER0)
    c.a = a_override >= 0 ? a_override
                          : comet_cost_layer0_gather(s) ? COMET_TUNE_A_GATHERED : COMET_TUNE_A_COPIED;
  const comet_tune_entry_t *e = comet_tune_lookup(table, key, op, s->tokens);
  /* an entry measured with another A says nothing of this one's movers */
  if (e && op == COMET_TUNE_LAYER0 && a_override >= 0 && e->a != COMET_TUNE_A_ANY && e->a != a_override)
    e = NULL;
  if (e) {
    c.n_comm = e->n_comm;
    c.tile = op == COMET_TUNE_LAYER0 ? e->tile : 1;
    if (op == COMET_TUNE_LAYER0 && e->a != COMET_TUNE_A_ANY && a_override < 0) c.a = e->a;
    c.from = COMET_FROM_TABLE;
  } else {
    c.n_comm = op == COMET_TUNE_LAYER0 ? comet_cost_pick_layer0(dev, s, c.a == COMET_TUNE_A_GATHERED, NULL)
                                       : comet_cost_pick_layer1(dev, s, NULL);
    c.tile = op == COMET_TUNE_LAYER0 ? 0 : 1;
  }
  if (n_override > 0) {
    c.n_comm = n_override;
    c.from = COMET_FROM_OVERRIDE;
  }
  /* what this rank can run */
  const int nothing_to_move = op == COMET_TUNE_LAYER0 && s->world == 1 && c.a == COMET_TUNE_A_GATHERED;
  const int lo = nothing_to_move ? 0 : 1;
  int hi = s->sm_budget - 1 < MAX_MOVERS ? s->sm_budget - 1 : MAX_MOVERS;
  if (n_override > 0 && s->sm_budget - 1 > hi) hi = s->sm_budget - 1; /* an override may go higher */
  if (c.n_comm < lo) c.n_comm = lo;
  if (c.n_comm > hi) c.n_comm = hi;
  return c;
}
