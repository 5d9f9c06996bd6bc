/* SPDX-License-Identifier: Apache-2.0 */
/* tune.c — `comet tune`'s sweep of one config (tune.h). Each point is a
 * whole bench_comet_run (the slowest rank's median per phase, no reference
 * timings) with the layer's choices forced: layer0's A and mover count
 * (copied A with each n_comm of the sweep; at W = 1 also gathered, which
 * needs no movers), then the two fixed tiles at layer0's best point. Then
 * comet's own choice (the table or the model) and the cost model's pick
 * are timed too, so the rows say how far each is from the best. With
 * --repeat N every point is timed N times, in N passes over all the
 * points (so that drift hits all alike; every other pass backwards), and
 * its median counts. With
 * --refine R the finalists (each layer's best 3, the table's and the
 * model's picks) get R more passes and the best is chosen among them: the
 * best of a dozen noisy points is biased low, and the few that can win
 * are the ones worth the time. With several routings (--routing
 * uniform,skew:0.05) each timing of a point runs every routing's inputs in
 * turn, and the joint best is the point whose worst ratio to a routing's
 * own best is least: one table entry serves them all (its key has no
 * routing; session 11's two passes, one per routing, let the second
 * replace the first's entry by one 4% behind on the first). What goes into
 * the table is comet_tune_entry_from's choice (tune/table.h: the table's
 * own entry, the model's pick or the joint best, by that worst ratio); the
 * rows' entry_from says which. */
#include "tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_comet.h"
#include "context.h"
#include "run_record.h"
#include "tune/choice.h"
#include "tune/table.h"

#define MAX_POINTS 48
#define MAX_SAMPLES (TUNE_MAX_REPEAT + TUNE_MAX_REFINE)
#define FINALISTS 3 /* per layer, besides the table's and the model's picks */

typedef struct point {
  int a, n, tile; /* forced: -1 = comet's choice */
  double ms[TUNE_MAX_ROUTINGS][2]; /* per routing, layer0, layer1: the median of the samples */
  float sample[TUNE_MAX_ROUTINGS][2][MAX_SAMPLES];
  int nsample;
  int finalist;
} point_t;

/* Times p once under every routing (collective); 0 on success, 1 harness
 * failure, 2 comet refused. */
/* preheat: a pass's first point runs its own forward for o->preheat_ms
 * first (the clock settles under the power cap in ~1 s: bench_preheat);
 * the pass's other points (and routings) follow back to back, at that
 * clock. */
static int time_point(const comet_rank_info_t *info, const tune_opts_t *o,
                      const comet_layer_config_t *cfg, comet_context_t ctx, cudaStream_t st,
                      const comet_moe_args_t *args, point_t *p, bench_comet_t *out, int preheat) {
  const int s = p->nsample < MAX_SAMPLES ? p->nsample : -1; /* the sample's slot (-1: full) */
  for (int r = 0; r < o->nrouting; ++r) {
    const bench_comet_opts_t co = {o->warmup, o->iters, p->n, p->a, p->tile, 0, 0, 1, o->seed,
                                   o->routing[r], 0, preheat && r == 0 ? o->preheat_ms : 0.0f};
    if (bench_comet_run(info, cfg, ctx, st, &args[r], &co, out) != 0) return 1;
    if (!out->ran) return 2;
    if (s < 0) continue;
    p->sample[r][0][s] = out->layer0_ms;
    p->sample[r][1][s] = out->layer1_ms;
  }
  if (s < 0) return 0;
  p->nsample = s + 1;
  for (int r = 0; r < o->nrouting; ++r)
    for (int layer = 0; layer < 2; ++layer) {
      float v[MAX_SAMPLES]; /* bench_median sorts */
      memcpy(v, p->sample[r][layer], sizeof(float) * (size_t)p->nsample);
      p->ms[r][layer] = bench_median(v, p->nsample);
    }
  return 0;
}

/* The point with (a, n, tile), timing it if it is not there yet; NULL when
 * no more fit or comet refused it. */
static point_t *find_or_time(const comet_rank_info_t *info, const tune_opts_t *o,
                             const comet_layer_config_t *cfg, comet_context_t ctx, cudaStream_t st,
                             const comet_moe_args_t *args, point_t *pts, int *npts, int a, int n,
                             int tile, int *err) {
  for (int i = 0; i < *npts; ++i)
    if (pts[i].a == a && pts[i].n == n && pts[i].tile == tile) return &pts[i];
  if (*npts == MAX_POINTS) return NULL;
  point_t *p = &pts[*npts];
  memset(p, 0, sizeof *p);
  p->a = a;
  p->n = n;
  p->tile = tile;
  bench_comet_t cm;
  const int x = time_point(info, o, cfg, ctx, st, args, p, &cm, 0);
  if (x == 1) *err = 1;
  if (x) return NULL;
  ++*npts;
  return p;
}

/* The j-th point of a timing pass: every other pass runs backwards, so
 * that a point's place in the pass evens out (the clock drifts under the
 * power limit; session 7 run 1 timed the same launch 1-8% apart by its
 * place in a fixed order). */
static point_t *pass_point(point_t *pts, int npts, int pass, int j) {
  return &pts[pass & 1 ? npts - 1 - j : j];
}

/* key[i]: point i's median on layer under routing r (r < R), or with r =
 * R its joint score: its worst ratio to a routing's best (best[], 1 = the
 * best under every routing). */
static void keys_of(const point_t *pts, int npts, int R, int layer, int r, const double *best,
                    double *key) {
  for (int i = 0; i < npts; ++i) {
    if (r < R) {
      key[i] = pts[i].ms[r][layer];
      continue;
    }
    key[i] = 0;
    for (int q = 0; q < R; ++q)
      if (pts[i].ms[q][layer] / best[q] > key[i]) key[i] = pts[i].ms[q][layer] / best[q];
  }
}

/* The point of least key among the candidates (the finalists only when
 * finalists_only); -1: none. */
static int argmin(const point_t *pts, int npts, const double *key, int finalists_only) {
  int b = -1;
  for (int i = 0; i < npts; ++i)
    if ((!finalists_only || pts[i].finalist) && (b < 0 || key[i] < key[b])) b = i;
  return b;
}

/* best[r]: routing r's least median on layer among the candidates; key[i]:
 * point i's joint score against those. 0 when there is no candidate. */
static int joint_scores(const point_t *pts, int npts, int R, int layer, int finalists_only,
                        double *best, double *key) {
  for (int r = 0; r < R; ++r) {
    keys_of(pts, npts, R, layer, r, NULL, key);
    const int b = argmin(pts, npts, key, finalists_only);
    if (b < 0) return 0;
    best[r] = key[b];
  }
  keys_of(pts, npts, R, layer, R, best, key);
  return 1;
}

/* p's joint score against best[] (0 for no point). */
static double score_of(const point_t *p, int R, int layer, const double *best) {
  double key = 0;
  if (p) keys_of(p, 1, R, layer, R, best, &key);
  return key;
}

/* Marks the FINALISTS points of least key as finalists. */
static void mark_finalists(point_t *pts, int npts, const double *key) {
  int taken[MAX_POINTS] = {0};
  for (int k = 0; k < FINALISTS; ++k) {
    int b = -1;
    for (int i = 0; i < npts; ++i)
      if (!taken[i] && (b < 0 || key[i] < key[b])) b = i;
    if (b < 0) return;
    taken[b] = pts[b].finalist = 1;
  }
}

static const char *a_name(int a) { return a == 1 ? "gathered" : a == 0 ? "copied" : "comet"; }

static void json_point(FILE *f, const char *key, const point_t *p, int r, int layer) {
  if (p) fprintf(f, ", \"%s_ms\": %.6g, \"%s_n_comm\": %d", key, p->ms[r][layer], key, p->n);
  else fprintf(f, ", \"%s_ms\": null, \"%s_n_comm\": null", key, key);
}

/* What a row says besides the config: routing r's best, the table's, the
 * model's and comet's own choice, and the entry chosen for all routings. */
typedef struct row {
  int r, layer;
  const point_t *best, *table, *mdl, *choice, *entry;
  int choice_n;
  const char *choice_from;
  double entry_worst; /* the entry's worst ratio to a routing's best */
  comet_tune_entry_from_t from;
} row_t;

static int write_row(const tune_opts_t *o, const char *model, const comet_layer_config_t *c, int W,
                     const char *device, const row_t *w, const point_t *pts, int npts) {
  static const char *const from_name[] = {"kept", "model", "best"};
  const int r = w->r, layer = w->layer;
  FILE *f = fopen(o->json, "a");
  if (!f) {
    fprintf(stderr, "comet tune: cannot open --json file %s\n", o->json);
    return 1;
  }
  fprintf(f,
          "{\"op\": \"tune\", \"layer\": %d, \"model\": \"%s\", \"H\": %d, \"F\": %d, \"E\": %d, "
          "\"K\": %d, \"world\": %d, \"ep\": %d, \"tp\": %d, \"tokens_per_rank\": %d, "
          "\"routing\": \"%s\", \"routings\": \"%s\", \"device\": \"%s\", \"commit\": \"%s\", "
          "\"date\": \"%s\", \"command\": \"%s\", \"iters\": %d, \"repeat\": %d, \"refine\": %d",
          layer, model, c->hidden, c->ffn, c->num_experts, c->topk, W, c->ep, c->tp,
          c->max_tokens_per_rank, o->routing_str[r], o->routings_str, device, o->commit, o->date,
          comet_run_command(), o->iters, o->repeat, o->refine);
  fprintf(f, ", \"seed\": %llu", o->seed + (unsigned long long)r); /* routing r's draw (bench.c) */
  json_point(f, "best", w->best, r, layer);
  if (layer == 0 && w->best)
    fprintf(f, ", \"best_a\": \"%s\", \"best_tile\": %d", a_name(w->best->a), w->best->tile);
  json_point(f, "table", w->table, r, layer);
  json_point(f, "model", w->mdl, r, layer);
  json_point(f, "entry", w->entry, r, layer);
  fprintf(f, ", \"entry_a\": \"%s\", \"entry_tile\": %d, \"entry_worst\": %.4f", a_name(w->entry->a),
          w->entry->tile, w->entry_worst);
  fprintf(f, ", \"table_kept\": %s, \"entry_from\": \"%s\"",
          w->from == COMET_TUNE_ENTRY_KEPT ? "true" : "false", from_name[w->from]);
  fprintf(f, ", \"choice_ms\": %.6g, \"choice_n_comm\": %d, \"choice_from\": \"%s\", \"sweep\": [",
          w->choice->ms[r][layer], w->choice_n, w->choice_from);
  for (int i = 0; i < npts; ++i)
    fprintf(f, "%s{\"a\": \"%s\", \"n_comm\": %d, \"tile\": %d, \"ms\": %.6g}", i ? ", " : "",
            a_name(pts[i].a), pts[i].n, pts[i].tile, pts[i].ms[r][layer]);
  fprintf(f, "]}\n");
  fclose(f);
  return 0;
}

/* Merges point best (the entry chosen) of layer into the table file (rank
 * 0); what it held for other keys stays. */
static int merge_best(const tune_opts_t *o, const comet_tune_key_t *key, int T, int layer,
                      const point_t *best) {
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
  e.key = *key;
  e.tokens = T;
  e.op = layer;
  e.n_comm = best->n;
  e.tile = layer ? 1 : (best->tile > 0 ? best->tile : 0);
  e.a = layer ? COMET_TUNE_A_ANY : best->a;
  e.ms = best->ms[0][layer]; /* the first routing's (informative only) */
  FILE *f = NULL;
  if (comet_tune_table_merge(&t, &e) == COMET_OK) f = fopen(o->table_out, "w");
  const int bad = !f || comet_tune_table_write(&t, f) != COMET_OK;
  if (f) fclose(f);
  comet_tune_table_free(&t);
  if (bad) fprintf(stderr, "comet tune: writing %s failed\n", o->table_out);
  return bad;
}

int tune_config(const comet_rank_info_t *info, const tune_opts_t *o, const comet_layer_config_t *cfg,
                comet_context_t ctx, cudaStream_t st, const comet_moe_args_t *args, const char *model,
                const char *device_name, int index, int count) {
  const int W = info->world, T = cfg->max_tokens_per_rank, R = o->nrouting;
  point_t pts[MAX_POINTS];
  int npts = 0, err = 0;
  double best[TUNE_MAX_ROUTINGS], jkey[MAX_POINTS]; /* joint_scores */
  /* comet's own choice first: it tells whether layer1 runs fused */
  bench_comet_t cm;
  point_t choice;
  memset(&choice, 0, sizeof choice);
  choice.a = choice.tile = -1;
  {
    const int x = time_point(info, o, cfg, ctx, st, args, &choice, &cm, 1);
    if (x) return x == 1;
  }
  const int fused1 = cm.fused1, choice_n[2] = {cm.n_comm0, cm.n_comm1};
  const int choice_from[2] = {cm.from0, cm.from1};
  /* the sweep: copied A with each mover count; gathered A (W = 1: none) */
  for (int i = 0; i < o->nsweep && !err; ++i)
    if (o->sweep[i] < ctx->sm_budget)
      find_or_time(info, o, cfg, ctx, st, args, pts, &npts, COMET_TUNE_A_COPIED, o->sweep[i], -1, &err);
  if (W == 1 && !err) find_or_time(info, o, cfg, ctx, st, args, pts, &npts, COMET_TUNE_A_GATHERED, 0, -1, &err);
  for (int i = 0; i < o->nsweep && W > 1 && !err; ++i)
    if (o->sweep[i] < ctx->sm_budget)
      find_or_time(info, o, cfg, ctx, st, args, pts, &npts, COMET_TUNE_A_GATHERED, o->sweep[i], -1, &err);
  if (err) return 1;
  /* layer0: the fixed tiles at the joint best point */
  if (joint_scores(pts, npts, R, 0, 0, best, jkey)) {
    const int b0 = argmin(pts, npts, jkey, 0);
    for (int tile = 1; tile <= 2 && !err; ++tile)
      find_or_time(info, o, cfg, ctx, st, args, pts, &npts, pts[b0].a, pts[b0].n, tile, &err);
  }
  if (err) return 1;
  /* the cost model's and the table's picks */
  const comet_cost_device_t dev = comet_cost_device_for(device_name);
  comet_cost_shape_t shape = comet_cost_shape_for(W, cfg, T, ctx->sm_budget);
  shape.dynamic = cm.dynamic0; /* the layer's tiles, as comet's own choice ran */
  const int mg = comet_cost_layer0_gather(&shape) ? COMET_TUNE_A_GATHERED : COMET_TUNE_A_COPIED;
  const int mn0 = comet_cost_pick_layer0(&dev, &shape, mg == COMET_TUNE_A_GATHERED, NULL);
  const int mn1 = comet_cost_pick_layer1(&dev, &shape, NULL);
  const comet_tune_key_t key = comet_tune_key_for(ctx->device_name, ctx->world, cfg);
  /* every point first (the model's and the table's picks of each layer) */
  const int layers = fused1 ? 2 : 1;
  point_t *mdl[2] = {NULL, NULL}, *tab[2] = {NULL, NULL};
  int tab_tokens[2] = {0, 0}; /* the table entry's own token count */
  for (int layer = 0; layer < layers; ++layer) {
    mdl[layer] = layer == 0
                     ? find_or_time(info, o, cfg, ctx, st, args, pts, &npts, mg, mn0, -1, &err)
                     : find_or_time(info, o, cfg, ctx, st, args, pts, &npts, COMET_TUNE_A_COPIED, mn1, -1, &err);
    const comet_tune_entry_t *te = comet_tune_lookup(&ctx->tuning, &key, layer, T);
    if (te) tab_tokens[layer] = te->tokens;
    if (te && !err)
      tab[layer] = find_or_time(info, o, cfg, ctx, st, args, pts, &npts,
                                layer == 0 && te->a != COMET_TUNE_A_ANY ? te->a : COMET_TUNE_A_COPIED,
                                te->n_comm, layer == 0 && te->tile ? te->tile : -1, &err);
    if (err) return 1;
  }
  /* --repeat: the other passes, over every point and comet's choice */
  for (int r = 1; r < o->repeat; ++r) {
    for (int j = 0; j < npts; ++j)
      if (time_point(info, o, cfg, ctx, st, args, pass_point(pts, npts, r, j), &cm, j == 0) == 1)
        return 1;
    if (time_point(info, o, cfg, ctx, st, args, &choice, &cm, 0) == 1) return 1;
  }
  /* --refine: the finalists (each routing's best 3, the joint best 3, the
   * model's and the table's picks), then the best among them */
  if (o->refine > 0) {
    for (int layer = 0; layer < layers; ++layer) {
      for (int r = 0; r < R; ++r) {
        keys_of(pts, npts, R, layer, r, NULL, jkey);
        mark_finalists(pts, npts, jkey);
      }
      if (joint_scores(pts, npts, R, layer, 0, best, jkey)) mark_finalists(pts, npts, jkey);
      if (mdl[layer]) mdl[layer]->finalist = 1;
      if (tab[layer]) tab[layer]->finalist = 1;
    }
    for (int r = 0; r < o->refine; ++r)
      for (int j = 0, first = 1; j < npts; ++j) {
        point_t *p = pass_point(pts, npts, o->repeat + r, j);
        if (!p->finalist) continue;
        if (time_point(info, o, cfg, ctx, st, args, p, &cm, first) == 1) return 1;
        first = 0;
      }
  }
  for (int layer = 0; layer < layers; ++layer) {
    if (!joint_scores(pts, npts, R, layer, o->refine > 0, best, jkey)) continue;
    const point_t *joint = &pts[argmin(pts, npts, jkey, o->refine > 0)];
    if (info->rank != 0) continue;
    const double worst = score_of(joint, R, layer, best);
    const comet_tune_entry_from_t from = comet_tune_entry_from(
        tab[layer] && tab_tokens[layer] == T ? score_of(tab[layer], R, layer, best) : 0.0,
        score_of(mdl[layer], R, layer, best), worst, o->keep);
    const int kept = from == COMET_TUNE_ENTRY_KEPT;
    const int by_model = from == COMET_TUNE_ENTRY_MODEL && mdl[layer] != joint;
    const point_t *entry = by_model ? mdl[layer] : joint;
    const point_t *own[TUNE_MAX_ROUTINGS]; /* each routing's best */
    for (int r = 0; r < R; ++r) {
      keys_of(pts, npts, R, layer, r, NULL, jkey);
      own[r] = &pts[argmin(pts, npts, jkey, o->refine > 0)];
      printf("[%d/%d] %s %d tokens %s, layer%d: best n_comm %d (A %s, %.3f ms); model %d (%+.1f%%); "
             "comet's choice %d from the %s (%+.1f%%)\n",
             index, count, model, T, o->routing_str[r], layer, own[r]->n, a_name(own[r]->a),
             best[r], mdl[layer] ? mdl[layer]->n : -1,
             mdl[layer] ? 100.0 * (mdl[layer]->ms[r][layer] / best[r] - 1) : 0, choice_n[layer],
             comet_choice_from_name(choice_from[layer]), 100.0 * (choice.ms[r][layer] / best[r] - 1));
    }
    if (R > 1)
      printf("  joint best: n_comm %d (A %s, tile %d), within %.1f%% of each routing's best\n",
             joint->n, a_name(joint->a), joint->tile, 100.0 * (worst - 1));
    if (kept) printf("  the table's entry stays (within %.1f%% of the best)\n", 100.0 * o->keep);
    if (by_model)
      printf("  the model's pick is the entry (within %.1f%% of the best)\n", 100.0 * o->keep);
    fflush(stdout);
    for (int r = 0; r < R && o->json; ++r) {
      const row_t w = {r, layer, own[r], tab[layer], mdl[layer], &choice, kept ? tab[layer] : entry,
                       choice_n[layer], comet_choice_from_name(choice_from[layer]),
                       score_of(kept ? tab[layer] : entry, R, layer, best), from};
      if (write_row(o, model, cfg, W, device_name, &w, pts, npts)) return 1;
    }
    if (o->table_out && !kept && merge_best(o, &key, T, layer, entry)) return 1;
  }
  return 0;
}
