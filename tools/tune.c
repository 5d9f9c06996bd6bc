/* SPDX-License-Identifier: Apache-2.0 */
/* tune.c — `comet tune`'s sweep of one config (tune.h). Times come from
 * bench_comet_run (the slowest rank's median per phase); the layer's n_comm
 * is forced per sweep point, then left to comet (the table or the model:
 * its "choice"), and the cost model's own pick is timed too, so the rows
 * say how far each is from the best swept. */
#include "tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_comet.h"
#include "context.h"
#include "tune/choice.h"
#include "tune/table.h"

/* comet's timing of one n_comm (0: comet's choice); 0 on success */
static int time_point(const comet_rank_info_t *info, const tune_opts_t *o,
                      const comet_layer_config_t *cfg, comet_context_t ctx, cudaStream_t st,
                      const comet_moe_args_t *a, int n_comm, bench_comet_t *out) {
  if (bench_comet_run(info, cfg, ctx, st, a, o->warmup, o->iters, n_comm, 0, o->seed, o->routing, 1,
                      out) != 0)
    return 1;
  return out->ran ? 0 : 2;
}

static comet_tune_key_t key_of(comet_context_t ctx, const comet_layer_config_t *c) {
  comet_tune_key_t k;
  memset(&k, 0, sizeof k);
  snprintf(k.device, sizeof k.device, "%s", ctx->device_name);
  k.world = ctx->world;
  k.ep = c->ep;
  k.tp = c->tp;
  k.hidden = c->hidden;
  k.ffn = c->ffn;
  k.experts = c->num_experts;
  k.topk = c->topk;
  return k;
}

static void row(FILE *f, const tune_opts_t *o, const char *model, const comet_layer_config_t *c,
                int W, int layer, const char *device, double best_ms, int best_n, double table_ms,
                int table_n, double model_ms, int model_n, double choice_ms, int choice_n,
                const char *choice_from, const int *ns, const double *ms, int npts) {
  fprintf(f,
          "{\"op\": \"tune\", \"layer\": %d, \"model\": \"%s\", \"H\": %d, \"F\": %d, \"E\": %d, "
          "\"K\": %d, \"world\": %d, \"ep\": %d, \"tp\": %d, \"tokens_per_rank\": %d, "
          "\"routing\": \"%s\", \"device\": \"%s\", \"commit\": \"%s\", \"date\": \"%s\", "
          "\"iters\": %d, \"best_ms\": %.6g, \"best_n_comm\": %d",
          layer, model, c->hidden, c->ffn, c->num_experts, c->topk, W, c->ep, c->tp,
          c->max_tokens_per_rank, o->routing_str, device, o->commit, o->date, o->iters, best_ms,
          best_n);
  if (table_n >= 0) fprintf(f, ", \"table_ms\": %.6g, \"table_n_comm\": %d", table_ms, table_n);
  else fprintf(f, ", \"table_ms\": null, \"table_n_comm\": null");
  fprintf(f, ", \"model_ms\": %.6g, \"model_n_comm\": %d, \"choice_ms\": %.6g, \"choice_n_comm\": %d, "
             "\"choice_from\": \"%s\", \"sweep\": [",
          model_ms, model_n, choice_ms, choice_n, choice_from);
  for (int i = 0; i < npts; ++i) fprintf(f, "%s{\"n_comm\": %d, \"ms\": %.6g}", i ? ", " : "", ns[i], ms[i]);
  fprintf(f, "]}\n");
}

int tune_config(const comet_rank_info_t *info, const tune_opts_t *o, const comet_layer_config_t *cfg,
                comet_context_t ctx, cudaStream_t st, const comet_moe_args_t *a, const char *model,
                const char *device_name, int index, int count) {
  const int W = info->world, T = cfg->max_tokens_per_rank;
  /* the sweep, then comet's choice (0), then the model's picks if not swept */
  int ns[40];
  double ms[2][40];
  int npts = 0;
  for (int i = 0; i < o->nsweep; ++i)
    if (o->sweep[i] < ctx->sm_budget) ns[npts++] = o->sweep[i];
  const comet_cost_device_t dev = comet_cost_device_for(device_name);
  const comet_cost_shape_t shape = {W, cfg->ep, cfg->tp, cfg->hidden, cfg->ffn, cfg->num_experts,
                                    cfg->topk, cfg->activation == COMET_ACT_SWIGLU, T, ctx->sm_budget};
  const int gather = comet_cost_layer0_gather(&shape);
  const int model_n[2] = {comet_cost_pick_layer0(&dev, &shape, gather, NULL),
                          comet_cost_pick_layer1(&dev, &shape, NULL)};
  bench_comet_t cm;
  int fused1 = 0, choice_n[2] = {0, 0}, choice_from[2] = {0, 0}, a0 = COMET_TUNE_A_COPIED;
  for (int i = 0; i < npts; ++i) {
    const int x = time_point(info, o, cfg, ctx, st, a, ns[i], &cm);
    if (x) return x == 2 ? 0 : 1;
    ms[0][i] = cm.layer0_ms;
    ms[1][i] = cm.layer1_ms;
    fused1 = cm.fused1;
  }
  /* comet's choice: the table's entry or the model's pick */
  if (time_point(info, o, cfg, ctx, st, a, 0, &cm) != 0) return 1;
  const double choice_ms[2] = {cm.layer0_ms, cm.layer1_ms};
  choice_n[0] = cm.n_comm0;
  choice_n[1] = cm.n_comm1;
  choice_from[0] = cm.from0;
  choice_from[1] = cm.from1;
  a0 = cm.gather0 ? COMET_TUNE_A_GATHERED : COMET_TUNE_A_COPIED;
  const comet_tune_key_t key = key_of(ctx, cfg);
  const comet_tune_entry_t *te0 = comet_tune_lookup(&ctx->tuning, &key, COMET_TUNE_LAYER0, T);
  const comet_tune_entry_t *te1 = comet_tune_lookup(&ctx->tuning, &key, COMET_TUNE_LAYER1, T);
  const int table_n[2] = {te0 ? te0->n_comm : -1, te1 ? te1->n_comm : -1};
  for (int layer = 0; layer < (fused1 ? 2 : 1); ++layer) {
    /* the model's and the table's picks, timed where the sweep lacks them */
    double model_ms = -1, table_ms = -1;
    int extra[2] = {model_n[layer], table_n[layer]};
    for (int q = 0; q < 2; ++q) {
      double *dst = q == 0 ? &model_ms : &table_ms;
      if (extra[q] < 0) continue;
      if (extra[q] == 0) { /* W = 1, A gathered: no movers is comet's choice */
        *dst = choice_ms[layer];
        continue;
      }
      for (int i = 0; i < npts; ++i)
        if (ns[i] == extra[q]) *dst = ms[layer][i];
      if (*dst < 0 && npts < 40 && extra[q] < ctx->sm_budget) {
        if (time_point(info, o, cfg, ctx, st, a, extra[q], &cm) != 0) return 1;
        ns[npts] = extra[q];
        ms[0][npts] = cm.layer0_ms;
        ms[1][npts] = cm.layer1_ms;
        *dst = ms[layer][npts++];
      }
    }
    int best = -1;
    for (int i = 0; i < npts; ++i)
      if (best < 0 || ms[layer][i] < ms[layer][best]) best = i;
    double best_ms = best >= 0 ? ms[layer][best] : choice_ms[layer];
    int best_n = best >= 0 ? ns[best] : choice_n[layer];
    if (choice_ms[layer] < best_ms) { /* comet's own choice (e.g. 0 movers) was faster */
      best_ms = choice_ms[layer];
      best_n = choice_n[layer];
    }
    if (info->rank != 0) continue;
    printf("[%d/%d] %s %d tokens %s, layer%d: best n_comm %d (%.3f ms); model %d (%.3f ms, %+.1f%%); "
           "comet's choice %d from the %s (%.3f ms)\n",
           index, count, model, T, o->routing_str, layer, best_n, best_ms, model_n[layer], model_ms,
           100.0 * (model_ms / best_ms - 1), choice_n[layer],
           comet_choice_from_name(choice_from[layer]), choice_ms[layer]);
    fflush(stdout);
    double dense[40];
    for (int i = 0; i < npts; ++i) dense[i] = ms[layer][i];
    if (o->json) {
      FILE *f = fopen(o->json, "a");
      if (!f) {
        fprintf(stderr, "comet tune: cannot open --json file %s\n", o->json);
        return 1;
      }
      row(f, o, model, cfg, W, layer, device_name, best_ms, best_n, table_ms, table_n[layer],
          model_ms, model_n[layer], choice_ms[layer], choice_n[layer],
          comet_choice_from_name(choice_from[layer]), ns, dense, npts);
      fclose(f);
    }
    if (o->table_out) { /* merge into the file (what it held stays) */
      comet_tune_table_t t = {0};
      FILE *probe = fopen(o->table_out, "r");
      if (probe) {
        fclose(probe);
        if (comet_tune_table_load(&t, o->table_out) != COMET_OK) {
          fprintf(stderr, "comet tune: %s; not overwriting it\n", comet_last_error());
          return 1;
        }
      }
      comet_tune_entry_t e;
      memset(&e, 0, sizeof e);
      e.key = key;
      e.tokens = T;
      e.op = layer;
      e.n_comm = best_n;
      e.tile = layer ? 1 : 0;
      e.a = layer ? COMET_TUNE_A_ANY : a0;
      e.ms = best_ms;
      FILE *f = NULL;
      if (comet_tune_table_merge(&t, &e) == COMET_OK) f = fopen(o->table_out, "w");
      if (!f || comet_tune_table_write(&t, f) != COMET_OK) {
        fprintf(stderr, "comet tune: writing %s failed\n", o->table_out);
        if (f) fclose(f);
        comet_tune_table_free(&t);
        return 1;
      }
      fclose(f);
      comet_tune_table_free(&t);
    }
  }
  return 0;
}
