/* SPDX-License-Identifier: Apache-2.0 */
/* bench.c — `comet bench [--op moe]`: the MoE layer per config, the unfused
 * baseline (NCCL + cuBLAS) and comet's forward (tools/bench_comet.c), on one
 * process per GPU; or, with --loopback W, comet's forward alone on W ranks
 * of one GPU (the loopback world: no NCCL, so no baseline; its timings are
 * not NVLink timings and are labelled so). Per config: a table of phase
 * times (median over the timed iterations of the slowest rank's time),
 * optionally a check of the outputs against the CPU reference on sampled
 * tokens, and one JSON Lines object. Every option, and every config for the
 * world when the options decide it (--loopback, --gpus, --ep x --tp, the
 * launcher's WORLD_SIZE), is checked (exit 2) before the GPUs are counted;
 * without one it says why in one line (exit 1). */
#define _GNU_SOURCE
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../baselines/baseline.h"
#include "tune/cost_model.h"
#include "../baselines/moe_data.h"
#include "bench_check.h"
#include "bench_comet.h"
#include "tune/choice.h"
#include "tune.h"
#include "cli.h"
#include "launch.h"
#include "run_record.h"
#include "tools.h"
#include "transport/transport.h"

enum { MAX_LIST = 16 };

/* The sides' order in a row. The clock falls as the GPU heats under its
 * power limit, so whatever runs later runs slower (session 6 found the same
 * in the GEMM bench's turns): abba times baseline, comet, comet, baseline
 * and averages each side's two passes. */
enum { BENCH_ORDER_BASELINE_FIRST, BENCH_ORDER_COMET_FIRST, BENCH_ORDER_ABBA };
static const char *const bench_order_names[] = {"baseline-first", "comet-first", "abba"};

typedef struct bench_opts {
  const char *models[MAX_LIST];
  int nmodels;
  int hidden, ffn, experts, topk; /* explicit shapes (model "custom") */
  comet_activation_t act;
  int tokens[MAX_LIST];
  int ntokens;
  int ep, tp, gpus;
  int loopback; /* W ranks in the loopback world on GPU 0; 0 = one process per GPU */
  comet_md_routing_t routing; /* bench's; tune's first */
  const char *routing_str;    /* as given (tune: the list) */
  comet_md_routing_t routings[TUNE_MAX_ROUTINGS]; /* tune: --routing A,B,.. */
  const char *routing_strs[TUNE_MAX_ROUTINGS];
  int nrouting;
  int iters, warmup, check, check_tokens;
  int n_comm; /* mover CTAs of the fused layer0; 0 = comet's default */
  int backward; /* --backward: also time comet's and the baseline's backward */
  int save;     /* --save: both in save mode (the forward keeps, the backward skips recompute) */
  int order;    /* --order: BENCH_ORDER_* (which side runs first; abba: both twice) */
  int preheat_ms; /* --preheat: device time before each timed phase (bench_preheat) */
  int tune;   /* `comet tune`: no baseline; the sweep (tools/tune.c) */
  int sweep[32], nsweep;
  int repeat; /* tune: timings of each point, interleaved (the median) */
  int refine; /* tune: more passes over the finalists */
  double keep; /* tune: --keep PCT, as a fraction */
  const char *table_out;
  const char *json, *rendezvous;
  unsigned long long seed;
  comet_baseline_gemm_t gemm;
  double timeout_s;
  char commit[64], date[32];
} bench_opts_t;

static void usage_tune(FILE *f) {
  fprintf(f,
          "usage: comet tune [options]   (the options of comet bench, but --check/--gemm/--n-comm)\n"
          "  --sweep N[,N..]         mover CTA counts to time (default 1,2,4,6,8,12,16,24)\n"
          "  --table FILE            merge the best per config into this tuning table\n"
          "                          (default comet-tuning.txt here; see tuning/)\n"
          "  --repeat N              time every point N times, in N interleaved passes over\n"
          "                          the points, and take each point's median (default 1)\n"
          "  --refine N              then N more passes over the finalists only (the best 3\n"
          "                          of each layer, the table's and the model's picks), the\n"
          "                          best chosen among them (default 0)\n"
          "  --keep PCT              a table entry of the same token count stays while it is\n"
          "                          within PCT%% of the sweep's best, else the cost model's\n"
          "                          pick does while within PCT%% (default 1.5; a second\n"
          "                          routing's pass: near the check's 3)\n"
          "  --routing R[,R..]       up to 4 routings, each point timed under all of them: the\n"
          "                          entry is the point whose worst ratio to a routing's own\n"
          "                          best is least (the table's key has no routing); the n-th\n"
          "                          is drawn with seed + n (a routing twice: two draws)\n"
          "  --json FILE             append one {\"op\": \"tune\"} row per config, layer and\n"
          "                          routing\n"
          "Times comet_dispatch_gemm (and comet_gemm_combine when the layer runs its layer1\n"
          "fused: COMET_LAYER1=fused) for each mover count, comet's own choice and the cost\n"
          "model's pick, and prints one progress line per config.\n");
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: comet bench [--op moe] [options]\n"
          "  --model NAME[,NAME..]   preset(s) (comet presets), or give the shape:\n"
          "  --hidden H --ffn F --experts E --topk K [--act swiglu|gelu|none]\n"
          "  --tokens T[,T..]        tokens per rank (default 4096)\n"
          "  --gpus N                ranks, one process per GPU (default: all GPUs)\n"
          "  --loopback W            W ranks on one GPU (the loopback world, for testing; not NVLink timings; no baseline)\n"
          "  --ep N --tp N           parallel layout, ep*tp = ranks (default ep = ranks)\n"
          "  --routing uniform|skew:S   S = standard deviation of the experts' load fractions\n"
          "  --iters N --warmup N    timed and untimed iterations (default 20, 5)\n"
          "  --n-comm N              data-moving CTAs of the fused layer0 (default: comet's choice)\n"
          "  --backward              also time the backward, comet's and the baseline's (all\n"
          "                          gradients; with --check, comet's against the baseline's)\n"
          "  --save                  with --backward: both in save mode (comet's forward keeps\n"
          "                          z in saved_z, the baseline's forward keeps its backward's\n"
          "                          inputs; the backwards skip that recompute; forwards timed\n"
          "                          saving; default: both recompute)\n"
          "  --order baseline-first|comet-first|abba   which side each row times first (abba:\n"
          "                          baseline, comet, comet, baseline, each side the mean of\n"
          "                          its two; the later side runs on a hotter, slower GPU;\n"
          "                          default baseline-first)\n"
          "  --preheat MS            run each timed phase's step for MS ms of device time\n"
          "                          first (default 1000: the GPU's clock settles under its\n"
          "                          power cap in about a second; 0: none)\n"
          "  --check                 compare the baseline's and comet's outputs with the CPU\n"
          "                          reference on sampled tokens (--check-tokens N per rank);\n"
          "                          fail -> exit 1\n"
          "  --gemm auto|grouped|loop   the baseline's expert GEMMs (default auto)\n"
          "  --json FILE             append one JSON object per config\n"
          "  --seed N                data seed (default: from the clock; printed)\n"
          "  --rendezvous PATH       join an external launcher's ranks (env RANK, WORLD_SIZE,\n"
          "                          LOCAL_RANK) instead of forking\n"
          "  --timeout S             whole-run limit in seconds (default 1200)\n"
          "other ops: comet bench --op dispatch|combine|gemm (each with its own --help)\n");
}

static void read_commit(char *buf, size_t n) {
  const char *env = getenv("COMET_COMMIT");
  if (env && *env) {
    snprintf(buf, n, "%s", env);
    return;
  }
  snprintf(buf, n, "unknown");
  FILE *f = popen("git rev-parse --short=10 HEAD 2>/dev/null", "r");
  if (!f) return;
  char line[64] = "";
  if (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0]) snprintf(buf, n, "%s", line);
  }
  pclose(f);
  f = popen("git status --porcelain --untracked-files=no 2>/dev/null | head -1", "r");
  if (f) {
    if (fgets(line, sizeof line, f) && line[0] && strcmp(buf, "unknown") != 0)
      strncat(buf, "+dirty", n - strlen(buf) - 1);
    pclose(f);
  }
}

/* The layer config of one model and token count (ep, tp as in o: 0 = not yet known). */
static comet_layer_config_t make_config(const bench_opts_t *o, const char *model, int T) {
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  if (strcmp(model, "custom")) {
    comet_config_from_preset(&cfg, model); /* the names were checked with the options */
  } else {
    cfg.hidden = o->hidden;
    cfg.ffn = o->ffn;
    cfg.num_experts = o->experts;
    cfg.topk = o->topk;
    cfg.activation = o->act;
  }
  cfg.ep = o->ep;
  cfg.tp = o->tp;
  cfg.max_tokens_per_rank = T;
  return cfg;
}

/* ep/tp for a world of W ranks (what: where W comes from), then every
 * config against it; W = 0 (not known yet): what ep or tp decide alone. */
static int check_configs(bench_opts_t *o, int W, const char *what) {
  if (W && cli_layout("comet bench", W, what, &o->ep, &o->tp)) return -1;
  for (int m = 0; m < o->nmodels; ++m)
    for (int t = 0; t < o->ntokens; ++t)
      if (cli_config_ok("comet bench", o->models[m], make_config(o, o->models[m], o->tokens[t]), W))
        return -1;
  return 0;
}

/* --routing: one routing, or for tune a comma list of up to
 * TUNE_MAX_ROUTINGS; nonzero when v is not that. */
static int parse_routings(const char *v, bench_opts_t *o) {
  static char buf[256];
  if (snprintf(buf, sizeof buf, "%s", v) >= (int)sizeof buf) return 1;
  o->nrouting = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (o->nrouting == (o->tune ? TUNE_MAX_ROUTINGS : 1)) return 1;
    if (comet_md_parse_routing(tok, &o->routings[o->nrouting])) return 1;
    o->routing_strs[o->nrouting++] = tok;
  }
  if (!o->nrouting) return 1;
  o->routing = o->routings[0];
  o->routing_str = v;
  return 0;
}

static int parse(int argc, char **argv, bench_opts_t *o, int tune) {
  memset(o, 0, sizeof *o);
  o->tune = tune;
  *cli_prog() = tune ? "comet tune" : "comet bench";
  if (tune) {
    static const int sweep[] = COMET_COST_MOVER_STEPS;
    o->nsweep = (int)(sizeof sweep / sizeof sweep[0]);
    memcpy(o->sweep, sweep, sizeof sweep);
    o->table_out = "comet-tuning.txt";
  }
  o->act = COMET_ACT_SWIGLU;
  o->iters = 20;
  o->warmup = 5;
  o->preheat_ms = 1000;
  o->keep = COMET_TUNE_KEEP;
  o->timeout_s = 1200;
  o->routing_str = o->routing_strs[0] = "uniform";
  o->nrouting = 1;
  o->seed = (unsigned long long)time(NULL);
  static char model_buf[512];
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      if (o->tune) usage_tune(stdout);
      else usage(stdout);
      return 1;
    } else if (o->tune && !strcmp(a, "--sweep")) {
      CLI_NEED();
      if ((o->nsweep = cli_int_list(v, 1, 1024, o->sweep, 32)) < 0) CLI_BAD();
    } else if (o->tune && !strcmp(a, "--repeat")) {
      CLI_NEED();
      if (cli_int(v, 1, TUNE_MAX_REPEAT, &o->repeat)) CLI_BAD();
    } else if (o->tune && !strcmp(a, "--refine")) {
      CLI_NEED();
      if (cli_int(v, 0, TUNE_MAX_REFINE, &o->refine)) CLI_BAD();
    } else if (o->tune && !strcmp(a, "--keep")) {
      CLI_NEED();
      char *end = NULL;
      const double pct = strtod(v, &end);
      if (end == v || *end || !(pct >= 0 && pct <= 20)) CLI_BAD();
      o->keep = pct / 100.0;
    } else if (o->tune && !strcmp(a, "--table")) {
      CLI_NEED();
      o->table_out = v;
    } else if (!strcmp(a, "--op")) {
      CLI_NEED();
      if (strcmp(v, "moe")) CLI_BAD();
    } else if (!strcmp(a, "--model")) {
      CLI_NEED();
      snprintf(model_buf, sizeof model_buf, "%s", v);
      o->nmodels = 0;
      for (char *tok = strtok(model_buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->nmodels == MAX_LIST) CLI_BAD();
        o->models[o->nmodels++] = tok;
      }
      if (!o->nmodels) CLI_BAD();
    } else if (!strcmp(a, "--hidden")) { CLI_NEED(); if (cli_int(v, 8, CLI_MAX_COUNT, &o->hidden)) CLI_BAD();
    } else if (!strcmp(a, "--ffn")) { CLI_NEED(); if (cli_int(v, 8, CLI_MAX_COUNT, &o->ffn)) CLI_BAD();
    } else if (!strcmp(a, "--experts")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->experts)) CLI_BAD();
    } else if (!strcmp(a, "--topk")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->topk)) CLI_BAD();
    } else if (!strcmp(a, "--act")) {
      CLI_NEED();
      if (!strcmp(v, "swiglu")) o->act = COMET_ACT_SWIGLU;
      else if (!strcmp(v, "gelu")) o->act = COMET_ACT_GELU;
      else if (!strcmp(v, "none")) o->act = COMET_ACT_NONE;
      else CLI_BAD();
    } else if (!strcmp(a, "--tokens")) {
      CLI_NEED();
      if ((o->ntokens = cli_int_list(v, 1, CLI_MAX_COUNT, o->tokens, MAX_LIST)) < 0) CLI_BAD();
    } else if (!strcmp(a, "--gpus")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->gpus)) CLI_BAD();
    } else if (!strcmp(a, "--loopback")) { CLI_NEED(); if (cli_int(v, 1, COMET_MAX_WORLD, &o->loopback)) CLI_BAD();
    } else if (!strcmp(a, "--ep")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->ep)) CLI_BAD();
    } else if (!strcmp(a, "--tp")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_RANKS, &o->tp)) CLI_BAD();
    } else if (!strcmp(a, "--routing")) {
      CLI_NEED();
      if (parse_routings(v, o)) CLI_BAD();
    } else if (!strcmp(a, "--iters")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->iters)) CLI_BAD();
    } else if (!strcmp(a, "--warmup")) { CLI_NEED(); if (cli_int(v, 0, CLI_MAX_COUNT, &o->warmup)) CLI_BAD();
    } else if (!strcmp(a, "--n-comm")) { CLI_NEED(); if (cli_int(v, 1, 1024, &o->n_comm)) CLI_BAD();
    } else if (!strcmp(a, "--check")) { o->check = 1;
    } else if (!strcmp(a, "--backward")) { o->backward = 1;
    } else if (!strcmp(a, "--save")) { o->save = 1;
    } else if (!strcmp(a, "--preheat")) { CLI_NEED(); if (cli_int(v, 0, 60000, &o->preheat_ms)) CLI_BAD();
    } else if (!strcmp(a, "--order")) {
      CLI_NEED();
      o->order = -1;
      for (int i = 0; i < 3; ++i)
        if (!strcmp(v, bench_order_names[i])) o->order = i;
      if (o->order < 0) CLI_BAD();
    } else if (!strcmp(a, "--check-tokens")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &o->check_tokens)) CLI_BAD();
    } else if (!strcmp(a, "--json")) { CLI_NEED(); o->json = v;
    } else if (!strcmp(a, "--rendezvous")) { CLI_NEED(); o->rendezvous = v;
    } else if (!strcmp(a, "--seed")) {
      CLI_NEED();
      char *end = NULL;
      errno = 0;
      o->seed = strtoull(v, &end, 0);
      if (end == v || *end || errno || v[0] == '-') CLI_BAD();
    } else if (!strcmp(a, "--gemm")) {
      CLI_NEED();
      if (!strcmp(v, "auto")) o->gemm = COMET_BASELINE_GEMM_AUTO;
      else if (!strcmp(v, "grouped")) o->gemm = COMET_BASELINE_GEMM_GROUPED;
      else if (!strcmp(v, "loop")) o->gemm = COMET_BASELINE_GEMM_LOOP;
      else CLI_BAD();
    } else if (!strcmp(a, "--timeout")) {
      CLI_NEED();
      char *end = NULL;
      o->timeout_s = strtod(v, &end);
      if (end == v || *end || !(o->timeout_s > 0)) CLI_BAD();
    } else {
      fprintf(stderr, "comet bench: unknown option '%s' (comet bench --help lists them)\n", a);
      return -1;
    }
  }
  const int custom = o->hidden || o->ffn || o->experts || o->topk;
  if (custom && o->nmodels) {
    fprintf(stderr, "comet bench: give --model or --hidden/--ffn/--experts/--topk, not both\n");
    return -1;
  }
  if (custom) {
    if (!o->hidden || !o->ffn || !o->experts || !o->topk) {
      fprintf(stderr, "comet bench: explicit shapes need all of --hidden --ffn --experts --topk\n");
      return -1;
    }
    o->models[o->nmodels++] = "custom";
  }
  if (!o->nmodels) o->models[o->nmodels++] = "mixtral-8x7b";
  for (int m = 0; m < o->nmodels; ++m)
    if (strcmp(o->models[m], "custom") && !comet_preset_find(o->models[m])) {
      fprintf(stderr, "comet bench: %s\n", comet_last_error());
      return -1;
    }
  if (!o->ntokens) o->tokens[o->ntokens++] = 4096;
  if (o->save && !o->backward) {
    fprintf(stderr, "comet bench: --save is the backward's save mode: give it with --backward\n");
    return -1;
  }
  if (o->loopback && (o->gpus || o->rendezvous)) {
    fprintf(stderr, "comet bench: --loopback runs all its ranks on one GPU: give it without "
                    "--gpus and --rendezvous\n");
    return -1;
  }
  if (o->json && cli_json_ok("comet bench", o->json)) return -1;
  /* The world where the options decide it; else all the GPUs (checked again
   * once they are counted). */
  if (o->loopback) return check_configs(o, o->loopback, "--loopback");
  int W = 0;
  const char *what = NULL;
  if (cli_option_world(&o->gpus, o->rendezvous, o->ep, o->tp, &W, &what)) return -1;
  return check_configs(o, W, what);
}

/* ---- one rank ---- */

#define RCUDA(x)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", info->rank, __FILE__, __LINE__, #x,        \
              cudaGetErrorString(e_));                                                        \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)
#define RNCCL(x)                                                                              \
  do {                                                                                        \
    ncclResult_t r_ = (x);                                                                    \
    if (r_ != ncclSuccess) {                                                                  \
      fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", info->rank, __FILE__, __LINE__, #x,        \
              ncclGetErrorString(r_));                                                        \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)
#define RCOMET(x)                                                                             \
  do {                                                                                        \
    comet_status_t s_ = (x);                                                                  \
    if (s_ != COMET_OK) {                                                                     \
      fprintf(stderr, "[rank %d] %s: %s\n", info->rank, #x, comet_last_error());              \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

float bench_median(float *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_float);
  return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

static void json_num(FILE *f, const char *key, double v, int valid) {
  if (valid && isfinite(v)) fprintf(f, ", \"%s\": %.6g", key, v);
  else fprintf(f, ", \"%s\": null", key);
}

typedef struct config_result {
  float ms[5]; /* dispatch, experts, combine, layer, layer0 (dispatch + fc1 + act): medians of
                  the slowest rank */
  double tflops, floor_ms, skew_real;
  const char *gemm1, *gemm2;
  bench_check_t chk;
  float bwd_ms; /* the baseline's backward (with --backward) */
} config_result_t;

/* abba: each side's times are the mean of its two passes (a, the first,
 * keeps its check and everything else). */
static void mean_baseline(config_result_t *a, const config_result_t *b) {
  const float experts = a->ms[1];
  for (int i = 0; i < 5; ++i) a->ms[i] = 0.5f * (a->ms[i] + b->ms[i]);
  if (a->ms[1] > 0) a->tflops *= experts / a->ms[1]; /* the rate of the mean time */
  a->bwd_ms = 0.5f * (a->bwd_ms + b->bwd_ms);
}

static void mean_comet(bench_comet_t *a, const bench_comet_t *b) {
  if (!b->ran) { /* the second pass failed: report that */
    a->ran = 0;
    snprintf(a->err, sizeof a->err, "%s", b->err);
    return;
  }
  float *x[11] = {&a->forward_ms, &a->layer0_ms, &a->layer1_ms, &a->layer0_gemm_only_ms,
                  &a->layer0_comm_only_ms, &a->layer1_gemm_only_ms, &a->layer1_comm_only_ms,
                  &a->backward_ms, &a->layer1_gemm_ms, &a->layer1_gemm_static_ms,
                  &a->layer1_gemm_rand_h_ms};
  const float y[11] = {b->forward_ms, b->layer0_ms, b->layer1_ms, b->layer0_gemm_only_ms,
                       b->layer0_comm_only_ms, b->layer1_gemm_only_ms, b->layer1_comm_only_ms,
                       b->backward_ms, b->layer1_gemm_ms, b->layer1_gemm_static_ms,
                       b->layer1_gemm_rand_h_ms};
  for (int i = 0; i < 11; ++i) *x[i] = 0.5f * (*x[i] + y[i]);
}

/* Expert FLOPs and NVLink bytes of the slowest rank (DESIGN.md section 5). */
static double floor_ms(const comet_layer_config_t *c, const int32_t *counts, int W, double *tflops_out,
                       float experts_ms) {
  const int E = c->num_experts, El = E / c->ep, TP = c->tp, EP = c->ep, S = E + 4; /* status slots */
  const int w1r = comet_config_w1_rows(c), Fl = c->ffn / TP;
  double max_flops = 0, max_bytes = 0, sum_flops = 0;
#define CNT(s, e) ((double)counts[(size_t)(s) * S + (e)])
  for (int r = 0; r < W; ++r) {
    const int g0 = r / TP, i0 = r % TP;
    double rows = 0, d_out = 0, d_in = 0, n1_own = 0, n1_other = 0;
    for (int s = 0; s < W; ++s)
      for (int el = 0; el < El; ++el) rows += CNT(s, g0 * El + el);
    for (int g = 0; g < EP; ++g)
      for (int el = 0; el < El; ++el) {
        if (g != g0) d_out += CNT(r, g * El + el), d_in += CNT(g * TP + i0, g0 * El + el);
        for (int i = 0; i < TP; ++i) {
          if (i == i0) n1_own += CNT(g * TP + i, g0 * El + el);
          else n1_other += CNT(g * TP + i, g0 * El + el);
        }
      }
    const double flops = rows * 2.0 * c->hidden * (w1r + Fl);
    const double bytes = (d_out + d_in + n1_own * (TP - 1) + n1_other) * c->hidden * 2.0;
    sum_flops += flops;
    if (flops > max_flops) max_flops = flops;
    if (bytes > max_bytes) max_bytes = bytes;
  }
#undef CNT
  *tflops_out = experts_ms > 0 ? sum_flops / W / (experts_ms * 1e-3) / 1e12 : 0;
  const double t_flops = max_flops / 780e12, t_bytes = max_bytes / 400e9;
  return 1e3 * (t_flops > t_bytes ? t_flops : t_bytes);
}

/* Device memory of a rank, stream-ordered: a loopback rank must not make
 * device-wide synchronizing calls (cudaMalloc, cudaFree) while its peers'
 * kernels may be waiting for it. Freed with cudaFreeAsync on the same st. */
static cudaError_t dev_alloc(void *pp, size_t bytes, cudaStream_t st) {
  cudaError_t e = cudaMallocAsync((void **)pp, bytes, st);
  return e == cudaSuccess ? cudaStreamSynchronize(st) : e;
}

static const char *tile_name(int t) { return t == 1 ? "wide" : t == 2 ? "narrow" : "auto"; }

/* "%.3f" of v, or "-" where there is no number (no baseline in the loopback
 * world). */
static const char *ms_cell(char buf[16], float v, int valid) {
  if (!valid) return "-";
  snprintf(buf, 16, "%.3f", v);
  return buf;
}

/* The preheat steps of the baseline's phases (bench_preheat). */
typedef struct baseline_step {
  comet_baseline_t b;
  const comet_moe_args_t *fwd;
  const comet_moe_backward_args_t *bwd; /* save: each after its forward */
  int save;
} baseline_step_t;

static int baseline_forward_step(void *arg, cudaStream_t st) {
  const baseline_step_t *s = (const baseline_step_t *)arg;
  return comet_baseline_forward(s->b, s->fwd, st) != COMET_OK;
}

static int baseline_backward_step(void *arg, cudaStream_t st) {
  const baseline_step_t *s = (const baseline_step_t *)arg;
  if (s->save && comet_baseline_forward(s->b, s->fwd, st) != COMET_OK) return 1;
  return comet_baseline_backward(s->b, s->bwd, st) != COMET_OK;
}

/* The baseline's backward from g's dout into g's buffers, every gradient:
 * one untimed call, the preheat, 2 more untimed calls (comet's count), then the slowest rank's median over
 * iters into *ms. save (b in save mode): each backward after its own
 * forward, untimed and finished first (as comet's, bench_comet.c). */
static int time_baseline_backward(const comet_rank_info_t *info, comet_context_t ctx,
                                  comet_baseline_t b, const comet_moe_args_t *a,
                                  const bench_grads_t *g, int save, int iters, float preheat_ms,
                                  cudaStream_t st, float *ms) {
  const comet_moe_backward_args_t bw = bench_grads_args(a, g);
  baseline_step_t step = {b, a, &bw, save};
  if (save) RCOMET(comet_baseline_forward(b, a, st));
  RCOMET(comet_baseline_backward(b, &bw, st)); /* first, outside the preheat's timing */
  if (bench_preheat(info, ctx, st, preheat_ms, baseline_backward_step, &step) != 0) return 1;
  float *t = malloc(sizeof(float) * (size_t)iters);
  cudaEvent_t ev[2];
  if (!t) {
    fprintf(stderr, "[rank %d] host allocation failed\n", info->rank);
    return 1;
  }
  RCUDA(cudaEventCreate(&ev[0]));
  RCUDA(cudaEventCreate(&ev[1]));
  for (int it = -2; it < iters; ++it) {
    if (save) {
      RCOMET(comet_baseline_forward(b, a, st));
      RCUDA(cudaStreamSynchronize(st));
    }
    RCUDA(cudaEventRecord(ev[0], st));
    RCOMET(comet_baseline_backward(b, &bw, st));
    RCUDA(cudaEventRecord(ev[1], st));
    RCUDA(cudaEventSynchronize(ev[1]));
    if (it >= 0) RCUDA(cudaEventElapsedTime(&t[it], ev[0], ev[1]));
  }
  if (bench_slowest(info, ctx, t, iters) != 0) return 1;
  *ms = bench_median(t, iters);
  free(t);
  cudaEventDestroy(ev[0]);
  cudaEventDestroy(ev[1]);
  return 0;
}

/* The unfused baseline on a's inputs (NCCL mode only): the phase medians of
 * the slowest rank, its GEMM paths and the floor into res; with --check, one
 * more forward on NaN-poisoned output, sampled rows checked on rank 0; with
 * g (--backward), its backward timed into res->bwd_ms, g's buffers left
 * holding its gradients; with g and --save, all of it in save mode. */
static int run_baseline(const comet_rank_info_t *info, const bench_opts_t *o, comet_context_t ctx,
                        ncclComm_t comm, cublasHandle_t blas, cudaStream_t st,
                        const comet_layer_config_t *cfg, const comet_moe_args_t *a,
                        const bench_grads_t *g, config_result_t *res) {
  comet_baseline_t b = NULL;
  RCOMET(comet_baseline_create(&b, cfg, comm, blas));
  RCOMET(comet_baseline_set_gemm(b, o->gemm));
  RCOMET(comet_baseline_set_save(b, g && o->save));
  for (int it = 0; it < o->warmup; ++it) RCOMET(comet_baseline_forward(b, a, st));
  baseline_step_t step = {b, a, NULL, 0};
  if (bench_preheat(info, ctx, st, o->preheat_ms, baseline_forward_step, &step) != 0) return 1;
  const int n = o->iters;
  float *h_times = malloc(sizeof(float) * 5 * (size_t)n), *col = malloc(sizeof(float) * (size_t)n);
  if (!h_times || !col) {
    fprintf(stderr, "[rank %d] host allocation failed\n", info->rank);
    return 1;
  }
  for (int it = 0; it < n; ++it) {
    RCOMET(comet_baseline_forward(b, a, st));
    comet_baseline_times_t t;
    RCOMET(comet_baseline_last_times(b, &t));
    h_times[5 * it] = t.dispatch_ms;
    h_times[5 * it + 1] = t.experts_ms;
    h_times[5 * it + 2] = t.combine_ms;
    h_times[5 * it + 3] = t.total_ms;
    h_times[5 * it + 4] = t.dispatch_ms + t.fc1_ms;
  }
  /* Slowest rank per iteration and phase, then the median over iterations. */
  if (bench_slowest(info, ctx, h_times, 5 * n) != 0) return 1;
  for (int ph = 0; ph < 5; ++ph) {
    for (int it = 0; it < n; ++it) col[it] = h_times[5 * it + ph];
    res->ms[ph] = bench_median(col, n);
  }
  free(col);
  free(h_times);
  res->gemm1 = comet_baseline_last_gemm(b, 1);
  res->gemm2 = comet_baseline_last_gemm(b, 2);
  const int32_t *counts = comet_baseline_last_counts(b);
  res->floor_ms = counts ? floor_ms(cfg, counts, info->world, &res->tflops, res->ms[1]) : 0;
  if (o->check) {
    RCUDA(cudaMemsetAsync(a->out, 0xFF, (size_t)a->num_tokens * cfg->hidden * 2, st));
    RCOMET(comet_baseline_forward(b, a, st));
    if (bench_check_run(info, cfg, o->seed, &o->routing, a->num_tokens, o->check_tokens, a->out,
                        ctx, st, &res->chk) != 0)
      return 1;
  }
  if (g && time_baseline_backward(info, ctx, b, a, g, o->save, n, o->preheat_ms, st, &res->bwd_ms) != 0)
    return 1;
  RCOMET(comet_baseline_destroy(b));
  return 0;
}

/* One set of gradient buffers, with dout shared from another set, or (dout
 * NULL) made here: a token-like fill from the seed, the same for both
 * backwards. */
static cudaError_t grads_alloc(bench_grads_t *g, const comet_layer_config_t *c, int T, int rank,
                               uint64_t seed, const void *dout, cudaStream_t st) {
  const size_t El = (size_t)(c->num_experts / c->ep), H = (size_t)c->hidden;
  cudaError_t e = cudaSuccess;
  memset(g, 0, sizeof *g);
  g->dout = dout;
  if (!dout) {
    void *d = NULL;
    e = dev_alloc(&d, (size_t)T * H * 2 + 16, st);
    if (e == cudaSuccess)
      e = comet_md_fill_x(d, T, (int)H, c->dtype, rank, seed ^ 0xD0D0D0D0ull, st);
    g->dout = d;
  }
  if (e == cudaSuccess) e = dev_alloc(&g->dx, (size_t)T * H * 2 + 16, st);
  if (e == cudaSuccess) e = dev_alloc(&g->dw1, El * comet_config_w1_rows(c) * H * 2, st);
  if (e == cudaSuccess) e = dev_alloc(&g->dw2, El * H * (c->ffn / c->tp) * 2, st);
  if (e == cudaSuccess) e = dev_alloc(&g->dtw, sizeof(float) * (size_t)T * c->topk + 16, st);
  return e;
}

/* Frees what grads_alloc made (dout too when owns_dout). */
static void grads_free(bench_grads_t *g, int owns_dout, cudaStream_t st) {
  if (owns_dout && g->dout) cudaFreeAsync((void *)g->dout, st);
  if (g->dx) cudaFreeAsync(g->dx, st);
  if (g->dw1) cudaFreeAsync(g->dw1, st);
  if (g->dw2) cudaFreeAsync(g->dw2, st);
  if (g->dtw) cudaFreeAsync(g->dtw, st);
}

/* a's topk ids and weights: this rank's routing drawn on the host with
 * routing ro and seed (p, ids, wt: host scratch of E, T*K, T*K), in device
 * buffers of their own (the caller frees them); *load_std (if not NULL):
 * the experts' drawn load spread. Nonzero on failure. */
static int routing_args(const comet_rank_info_t *info, comet_moe_args_t *a,
                        const comet_layer_config_t *cfg, const comet_md_routing_t *ro,
                        uint64_t seed, double *p, int32_t *ids, float *wt, double *load_std,
                        cudaStream_t st) {
  const int T = a->num_tokens, K = cfg->topk, E = cfg->num_experts;
  const size_t n = (size_t)T * K;
  const double spread = comet_md_expert_probs(p, E, ro, seed);
  if (load_std) *load_std = spread;
  comet_md_routing_host(ids, wt, T, K, E, p, ro, info->rank, seed);
  void *dids = NULL, *dwt = NULL;
  a->topk_ids = NULL;
  a->topk_weights = NULL;
  RCUDA(dev_alloc(&dids, sizeof(int32_t) * n, st));
  a->topk_ids = dids;
  RCUDA(dev_alloc(&dwt, sizeof(float) * n, st));
  a->topk_weights = dwt;
  RCUDA(cudaMemcpyAsync(dids, ids, sizeof(int32_t) * n, cudaMemcpyHostToDevice, st));
  RCUDA(cudaMemcpyAsync(dwt, wt, sizeof(float) * n, cudaMemcpyHostToDevice, st));
  RCUDA(cudaStreamSynchronize(st)); /* the host scratch is drawn again for the next */
  return 0;
}

/* One config on every rank. comm and blas are NULL in the loopback world,
 * which runs comet alone. */
static int run_config(const comet_rank_info_t *info, const bench_opts_t *o, comet_context_t ctx,
                      ncclComm_t comm, cublasHandle_t blas, cudaStream_t st, const char *model,
                      int T, const char *device_name) {
  const int W = info->world, r = info->rank, loop = info->loopback != NULL;
  const comet_layer_config_t cfg = make_config(o, model, T); /* validated for W in parse/main */
  const int E = cfg.num_experts, K = cfg.topk, H = cfg.hidden, El = E / cfg.ep;
  const int Fl = cfg.ffn / cfg.tp, w1r = comet_config_w1_rows(&cfg);
  const uint64_t seed = o->seed;

  /* Inputs: weights and tokens on the GPU from the seed; routing on the host. */
  double *p = malloc(sizeof(double) * (size_t)E);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * K);
  float *wt = malloc(sizeof(float) * (size_t)T * K);
  if (!p || !ids || !wt) {
    fprintf(stderr, "[rank %d] host allocation failed\n", r);
    return 1;
  }
  config_result_t res;
  memset(&res, 0, sizeof res);
  void *dx, *dout, *dw1, *dw2;
  const size_t xb = (size_t)T * H * 2;
  RCUDA(dev_alloc(&dx, xb, st));
  RCUDA(dev_alloc(&dout, xb, st));
  RCUDA(dev_alloc(&dw1, (size_t)El * w1r * H * 2, st));
  RCUDA(dev_alloc(&dw2, (size_t)El * H * Fl * 2, st));
  RCUDA(comet_md_fill_x(dx, T, H, cfg.dtype, r, seed, st));
  RCUDA(comet_md_fill_w1(dw1, &cfg, r / cfg.tp, r % cfg.tp, seed, st));
  RCUDA(comet_md_fill_w2(dw2, &cfg, r / cfg.tp, r % cfg.tp, seed, st));

  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T;
  a.x = dx;
  if (routing_args(info, &a, &cfg, &o->routing, seed, p, ids, wt, &res.skew_real, st)) return 1;
  a.w1 = dw1;
  a.w2 = dw2;
  a.out = dout;
  int rc = 0;
  if (o->tune) { /* the sweep instead of the baseline and the bench table */
    tune_opts_t to;
    memset(&to, 0, sizeof to);
    memcpy(to.sweep, o->sweep, sizeof to.sweep);
    to.nsweep = o->nsweep;
    to.table_out = o->table_out;
    to.json = o->json;
    to.iters = o->iters;
    to.repeat = o->repeat > 0 ? o->repeat : 1;
    to.refine = o->refine;
    to.preheat_ms = (float)o->preheat_ms;
    to.keep = o->keep;
    to.warmup = o->warmup;
    to.seed = o->seed;
    to.routings_str = o->routing_str;
    to.commit = o->commit;
    to.date = o->date;
    to.nrouting = o->nrouting;
    int index = 0; /* the config's place in the run, for the progress line */
    for (int m = 0; m < o->nmodels; ++m)
      for (int t = 0; t < o->ntokens; ++t)
        if (o->models[m] == model && o->tokens[t] == T && !index) index = m * o->ntokens + t + 1;
    /* each routing's ids and weights (the first's are a's); routing q is
     * drawn with seed + q, so a routing given twice is two draws of it and
     * the entry must suit both (a skewed draw moves the best point) */
    comet_moe_args_t ta[TUNE_MAX_ROUTINGS];
    for (int q = 0; q < o->nrouting; ++q) {
      to.routing[q] = &o->routings[q];
      to.routing_str[q] = o->routing_strs[q];
      ta[q] = a;
    }
    for (int q = 1; q < o->nrouting && rc == 0; ++q)
      rc = routing_args(info, &ta[q], &cfg, &o->routings[q], seed + (uint64_t)q, p, ids, wt, NULL,
                        st);
    if (rc == 0)
      rc = tune_config(info, &to, &cfg, ctx, st, ta, model, device_name, index,
                       o->nmodels * o->ntokens);
    for (int q = 1; q < o->nrouting; ++q) {
      if (ta[q].topk_ids && ta[q].topk_ids != a.topk_ids) cudaFreeAsync((void *)ta[q].topk_ids, st);
      if (ta[q].topk_weights && ta[q].topk_weights != a.topk_weights)
        cudaFreeAsync((void *)ta[q].topk_weights, st);
    }
  }
  /* --backward: one dout, comet's gradients in gc, the baseline's in gb */
  const int bwd = o->backward && !o->tune;
  bench_grads_t gc, gb;
  memset(&gc, 0, sizeof gc);
  memset(&gb, 0, sizeof gb);
  if (bwd) RCUDA(grads_alloc(&gc, &cfg, T, r, seed, NULL, st));
  if (bwd && !loop) RCUDA(grads_alloc(&gb, &cfg, T, r, seed, gc.dout, st));
  /* comet on the same inputs, the same way; the sides in --order (a
   * second pass of a side checks nothing) */
  const int n = o->iters;
  bench_comet_t cm, cm2;
  config_result_t res2;
  memset(&cm, 0, sizeof cm);
  memset(&res2, 0, sizeof res2);
  const bench_comet_opts_t co = {o->warmup, n, o->n_comm, -1, -1, 1, o->check, o->check_tokens,
                                 o->seed, &o->routing, bwd ? &gc : NULL, (float)o->preheat_ms};
  /* --save: comet's forwards keep z in ca.saved_z, its backwards read it */
  comet_moe_args_t ca = a;
  if (bwd && o->save) RCUDA(dev_alloc(&ca.saved_z, comet_config_saved_z_bytes(&cfg), st));
  static const char *const sides[3] = {"bc", "cb", "bccb"};
  int nb = 0, nc = 0;
  for (const char *sd = sides[o->order]; !o->tune && *sd; ++sd) {
    if (*sd == 'b' && !loop) {
      bench_opts_t ob = *o;
      ob.check = nb ? 0 : o->check;
      if (run_baseline(info, &ob, ctx, comm, blas, st, &cfg, &a, bwd ? &gb : NULL,
                       nb ? &res2 : &res) != 0)
        return 1;
      ++nb;
    } else if (*sd == 'c') {
      bench_comet_opts_t c2 = co;
      c2.check = nc ? 0 : o->check;
      if (bench_comet_run(info, &cfg, ctx, st, &ca, &c2, nc ? &cm2 : &cm) != 0) return 1;
      ++nc;
    }
  }
  if (nb == 2) mean_baseline(&res, &res2);
  if (nc == 2) mean_comet(&cm, &cm2);
  /* bwd_check: comet's gradients against the baseline's, on every element */
  bench_grads_check_t bchk;
  memset(&bchk, 0, sizeof bchk);
  if (bwd && !loop && o->check && cm.ran &&
      bench_grads_compare(info, &cfg, T, &gc, &gb, ctx, st, &bchk) != 0)
    return 1;
  if (ca.saved_z) RCUDA(cudaFreeAsync(ca.saved_z, st));
  grads_free(&gc, 1, st);
  grads_free(&gb, 0, st);
  RCUDA(cudaFreeAsync(dx, st));
  RCUDA(cudaFreeAsync(dout, st));
  RCUDA(cudaFreeAsync(dw1, st));
  RCUDA(cudaFreeAsync(dw2, st));
  RCUDA(cudaFreeAsync((void *)a.topk_ids, st));
  RCUDA(cudaFreeAsync((void *)a.topk_weights, st));
  free(p);
  free(ids);
  free(wt);
  if (o->tune) return rc;

  if (r != 0) return 0;
  /* layer0_overlap_eff = max(gemm only, comm only) / fused */
  const float l0_ref = cm.layer0_gemm_only_ms > cm.layer0_comm_only_ms ? cm.layer0_gemm_only_ms
                                                                       : cm.layer0_comm_only_ms;
  const double l0_eff = cm.fused0 && cm.layer0_ms > 0 ? l0_ref / cm.layer0_ms : 0;
  const float l1_ref = cm.layer1_gemm_only_ms > cm.layer1_comm_only_ms ? cm.layer1_gemm_only_ms
                                                                       : cm.layer1_comm_only_ms;
  const double l1_eff = cm.fused1 && cm.layer1_ms > 0 ? l1_ref / cm.layer1_ms : 0;
  /* the baseline's fc2 + combine: its experts phase less fc1, then the combine */
  const float l1_base = res.ms[1] - (res.ms[4] - res.ms[0]) + res.ms[2];
  /* ---- rank 0 reports; the loopback world has no baseline: "-" and null ---- */
  const int base = !loop;
  const double speedup = base && cm.ran && cm.forward_ms > 0 ? res.ms[3] / cm.forward_ms : 0;
  /* fwd_bwd_speedup = (baseline forward + backward) / (comet's); --save: both forwards saving,
   * both backwards reading what they saved */
  const double fb_comet = cm.forward_ms + cm.backward_ms;
  const double fb_speedup =
      base && bwd && cm.ran && fb_comet > 0 ? (res.ms[3] + res.bwd_ms) / fb_comet : 0;
  char world[64], cell[16];
  if (loop) snprintf(world, sizeof world, "%d rank(s) on 1 GPU (loopback)", W);
  else snprintf(world, sizeof world, "%d GPU(s)", W);
  printf("\n== %s  H %d  F %d  E %d  top-%d  %s | %s = ep %d x tp %d | %d tokens/rank | "
         "routing %s (load std %.4f) | %s | seed %llu | %d iters\n",
         model, H, cfg.ffn, E, K, comet_activation_name(cfg.activation), world, cfg.ep, cfg.tp, T,
         o->routing_str, res.skew_real, device_name, (unsigned long long)o->seed, n);
  if (loop)
    printf("  (loopback world: %d ranks on one GPU, each on its own SM partition; peer copies are "
           "HBM copies, so these are not NVLink timings)\n",
           W);
  printf("  %-22s %12s %10s\n", "phase", "baseline ms", "comet ms");
  const char *names[4] = {"dispatch", "experts", "combine", "layer"};
  for (int ph = 0; ph < 3; ++ph)
    printf("  %-22s %12s %10s\n", names[ph], ms_cell(cell, res.ms[ph], base), "-");
  if (cm.ran) {
    printf("  %-22s %12s %10.3f   %s", "layer0 (dispatch+fc1)", ms_cell(cell, res.ms[4], base),
           cm.layer0_ms, cm.fused0 ? "fused" : "composed");
    if (cm.fused0)
      printf(" (A %s, tile %s), n_comm %d (%s) | gemm only %.3f, comm only %.3f -> overlap eff %.3f",
             cm.gather0 ? "gathered" : "copied", tile_name(cm.tile0), cm.n_comm0,
             comet_choice_from_name(cm.from0), cm.layer0_gemm_only_ms, cm.layer0_comm_only_ms, l0_eff);
    printf("\n");
    printf("  %-22s %12s %10.3f   %s", "layer1 (fc2+combine)", ms_cell(cell, l1_base, base),
           cm.layer1_ms, cm.fused1 ? "fused" : "composed");
    if (cm.fused1)
      printf(", n_comm %d (%s) | gemm only %.3f, comm only %.3f -> overlap eff %.3f", cm.n_comm1,
             comet_choice_from_name(cm.from1), cm.layer1_gemm_only_ms, cm.layer1_comm_only_ms, l1_eff);
    printf("\n");
    printf("  %-22s %12s %10.3f\n", names[3], ms_cell(cell, res.ms[3], base), cm.forward_ms);
    if (bwd) {
      printf("  %-22s %12s %10.3f\n", o->save ? "backward (save mode)" : "backward",
             ms_cell(cell, res.bwd_ms, base), cm.backward_ms);
      printf("  %-22s %12s %10.3f", "forward + backward",
             ms_cell(cell, res.ms[3] + res.bwd_ms, base), cm.forward_ms + cm.backward_ms);
      if (base) printf("   speedup %.3fx", fb_speedup);
      printf("\n");
    }
  } else {
    printf("  %-22s %12s %10s   (comet: %s)\n", names[3], ms_cell(cell, res.ms[3], base), "-", cm.err);
  }
  if (base) {
    const double comm_share = res.ms[3] > 0 ? (res.ms[0] + res.ms[2]) / res.ms[3] : 0;
    printf("  experts %.0f TFLOP/s per GPU (gemm: fc1 %s, fc2 %s) | comm share %.0f%% | floor %.3f ms "
           "(limit eff: baseline %.2f",
           res.tflops, res.gemm1, res.gemm2, 100 * comm_share, res.floor_ms,
           res.ms[3] > 0 ? res.floor_ms / res.ms[3] : 0);
    if (cm.ran) printf(", comet %.2f) | speedup %.3fx\n", res.floor_ms / cm.forward_ms, speedup);
    else printf(") | speedup -\n");
  }
  if (res.chk.ran)
    printf("  check baseline: %s (rel_err %.3e, max abs err %.3g, %d tokens on %d rank(s)%s)\n",
           res.chk.pass ? "pass" : "fail", res.chk.rel_err, res.chk.max_abs, res.chk.tokens, W,
           res.chk.nan_count ? ", NaN/unwritten outputs!" : "");
  if (cm.chk.ran)
    printf("  check comet:    %s (rel_err %.3e, max abs err %.3g, %d tokens on %d rank(s)%s)\n",
           cm.chk.pass ? "pass" : "fail", cm.chk.rel_err, cm.chk.max_abs, cm.chk.tokens, W,
           cm.chk.nan_count ? ", NaN/unwritten outputs!" : "");
  /* checked: every forward that ran was checked (in the loopback world, comet's alone) */
  const int checked = loop ? cm.chk.ran : res.chk.ran && (cm.chk.ran || !cm.ran);
  const int passed = loop ? cm.chk.pass : res.chk.pass && (!cm.ran || cm.chk.pass);
  const double rel_err = cm.chk.ran && cm.chk.rel_err > res.chk.rel_err ? cm.chk.rel_err : res.chk.rel_err;
  const int check_tokens = res.chk.ran ? res.chk.tokens : cm.chk.tokens;
  if (bchk.ran)
    printf("  check backward: %s (comet vs baseline rel_err: dx %.3e, dw1 %.3e, dw2 %.3e, "
           "dtopk_weights %.3e; tol %.0e%s)\n",
           bchk.pass ? "pass" : "fail", bchk.rel_err[0], bchk.rel_err[1], bchk.rel_err[2],
           bchk.rel_err[3], BENCH_GRADS_TOL, bchk.nan_count ? ", NaN/unwritten outputs!" : "");
  if (checked) printf("  check: %s\n", passed ? "pass" : "fail");
  fflush(stdout);
  if (o->json) {
    FILE *f = fopen(o->json, "a");
    if (!f) {
      fprintf(stderr, "[rank 0] cannot open --json file %s\n", o->json);
      return 1;
    }
    fprintf(f,
            "{\"op\": \"moe\", \"model\": \"%s\", \"H\": %d, \"F\": %d, \"E\": %d, \"K\": %d, "
            "\"act\": \"%s\", \"world\": %d, \"transport\": \"%s\", \"ep\": %d, \"tp\": %d, "
            "\"tokens_per_rank\": %d, \"routing\": \"%s\", \"device\": \"%s\", \"commit\": \"%s\", "
            "\"date\": \"%s\", \"command\": \"%s\", \"seed\": %llu, \"iters\": %d",
            model, H, cfg.ffn, E, K, comet_activation_name(cfg.activation), W,
            loop ? "loopback" : "nccl", cfg.ep, cfg.tp, T, o->routing_str, device_name, o->commit,
            o->date, comet_run_command(), (unsigned long long)o->seed, n);
    json_num(f, "load_std", res.skew_real, 1);
    json_num(f, "baseline_ms", res.ms[3], base);
    json_num(f, "baseline_dispatch_ms", res.ms[0], base);
    json_num(f, "baseline_experts_ms", res.ms[1], base);
    json_num(f, "baseline_combine_ms", res.ms[2], base);
    json_num(f, "baseline_experts_tflops", res.tflops, base);
    if (base) fprintf(f, ", \"baseline_gemm\": \"%s/%s\"", res.gemm1, res.gemm2);
    else fprintf(f, ", \"baseline_gemm\": null");
    json_num(f, "floor_ms", res.floor_ms, res.floor_ms > 0);
    json_num(f, "baseline_limit_eff", res.ms[3] > 0 ? res.floor_ms / res.ms[3] : 0, res.floor_ms > 0);
    json_num(f, "comet_ms", cm.forward_ms, cm.ran);
    json_num(f, "comet_layer0_ms", cm.layer0_ms, cm.ran);
    json_num(f, "baseline_layer0_ms", res.ms[4], base);
    fprintf(f, ", \"fused\": %s", cm.ran && cm.fused0 ? "true" : "false");
    json_num(f, "n_comm", cm.n_comm0, cm.ran && cm.fused0);
    if (cm.ran && cm.fused0)
      fprintf(f, ", \"layer0_a\": \"%s\", \"layer0_tile\": \"%s\", \"layer0_dynamic\": %s, \"n_comm_from\": \"%s\"",
              cm.gather0 ? "gathered" : "copied", tile_name(cm.tile0), cm.dynamic0 ? "true" : "false",
              comet_choice_from_name(cm.from0));
    else fprintf(f, ", \"layer0_a\": null, \"layer0_tile\": null, \"layer0_dynamic\": null, \"n_comm_from\": null");
    json_num(f, "layer0_gemm_only_ms", cm.layer0_gemm_only_ms, cm.ran && cm.fused0);
    json_num(f, "layer0_comm_only_ms", cm.layer0_comm_only_ms, cm.ran && cm.fused0);
    json_num(f, "layer0_overlap_eff", l0_eff, cm.ran && cm.fused0);
    json_num(f, "layer0_speedup", cm.layer0_ms > 0 ? res.ms[4] / cm.layer0_ms : 0, base && cm.ran);
    json_num(f, "baseline_layer1_ms", l1_base, base);
    /* per GPU, on the average rank's rows (T * K * tp): COMET's figures */
    const double rows_avg = (double)T * K * cfg.tp, n1 = (double)w1r;
    json_num(f, "layer0_tflops_per_gpu", 2 * rows_avg * H * n1 / (cm.layer0_ms * 1e9), cm.ran && cm.layer0_ms > 0);
    json_num(f, "layer1_tflops_per_gpu", 2 * rows_avg * Fl * H / (cm.layer1_ms * 1e9), cm.ran && cm.layer1_ms > 0);
    fprintf(f, ", \"fused1\": %s", cm.ran && cm.fused1 ? "true" : "false");
    json_num(f, "n_comm1", cm.n_comm1, cm.ran && cm.fused1);
    if (cm.ran && cm.fused1) fprintf(f, ", \"n_comm1_from\": \"%s\"", comet_choice_from_name(cm.from1));
    else fprintf(f, ", \"n_comm1_from\": null");
    json_num(f, "layer1_gemm_only_ms", cm.layer1_gemm_only_ms, cm.ran && cm.fused1);
    json_num(f, "layer1_comm_only_ms", cm.layer1_comm_only_ms, cm.ran && cm.fused1);
    json_num(f, "layer1_overlap_eff", l1_eff, cm.ran && cm.fused1);
    json_num(f, "layer1_speedup", cm.layer1_ms > 0 ? l1_base / cm.layer1_ms : 0, base && cm.ran);
    json_num(f, "comet_layer1_ms", cm.layer1_ms, cm.ran);
    json_num(f, "layer1_gemm_ms", cm.layer1_gemm_ms, cm.ran && cm.layer1_gemm_ms > 0);
    json_num(f, "layer1_gemm_static_ms", cm.layer1_gemm_static_ms, cm.ran && cm.layer1_gemm_static_ms > 0);
    json_num(f, "layer1_gemm_rand_h_ms", cm.layer1_gemm_rand_h_ms, cm.ran && cm.layer1_gemm_rand_h_ms > 0);
    fprintf(f, ", \"save\": %s", o->save ? "true" : "false");
    fprintf(f, ", \"order\": \"%s\"", bench_order_names[o->order]);
    fprintf(f, ", \"preheat_ms\": %d", o->preheat_ms);
    json_num(f, "comet_backward_ms", cm.backward_ms, cm.ran && bwd);
    json_num(f, "bwd_ms", cm.backward_ms, cm.ran && bwd);
    json_num(f, "baseline_bwd_ms", res.bwd_ms, base && bwd);
    json_num(f, "fwd_bwd_speedup", fb_speedup, base && bwd && cm.ran);
    if (bchk.ran) fprintf(f, ", \"bwd_check\": \"%s\"", bchk.pass ? "pass" : "fail");
    else fprintf(f, ", \"bwd_check\": null");
    json_num(f, "comet_limit_eff", cm.ran ? res.floor_ms / cm.forward_ms : 0, cm.ran && res.floor_ms > 0);
    json_num(f, "speedup", speedup, base && cm.ran);
    if (checked) fprintf(f, ", \"check\": \"%s\"", passed ? "pass" : "fail");
    else fprintf(f, ", \"check\": null");
    json_num(f, "rel_err", rel_err, checked);
    json_num(f, "baseline_rel_err", res.chk.rel_err, res.chk.ran);
    json_num(f, "comet_rel_err", cm.chk.rel_err, cm.chk.ran);
    json_num(f, "check_tokens", check_tokens, res.chk.ran || cm.chk.ran);
    fprintf(f, "}\n");
    fclose(f);
  }
  return (checked && !passed) || (bchk.ran && !bchk.pass) ? 2 : 0;
}

static int rank_main(const comet_rank_info_t *info, void *arg) {
  const bench_opts_t *o = arg;
  /* One comet context per rank, for every config: comet's forward, the
   * checks and the slowest-rank reductions run on it. Over NCCL it adopts
   * the baseline's communicator; the loopback world has no NCCL, hence no
   * baseline. */
  ncclComm_t comm = NULL;
  cublasHandle_t blas = NULL;
  comet_context_t ctx = NULL;
  if (info->loopback) {
    RCOMET(comet_context_create_loopback(&ctx, info->loopback, info->rank));
  } else {
    RCUDA(cudaSetDevice(info->device));
    ncclUniqueId id;
    memcpy(&id, info->id.internal, sizeof id);
    RNCCL(ncclCommInitRank(&comm, info->world, id, info->rank));
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
      fprintf(stderr, "[rank %d] cublasCreate failed\n", info->rank);
      return 1;
    }
    RCOMET(comet_context_create_from_comm(&ctx, (struct ncclComm *)comm, info->device));
  }
  /* the context's stream: on the rank's SMs (its partition in the loopback world) */
  cudaStream_t st = comet_context_stream(ctx);
  struct cudaDeviceProp prop;
  RCUDA(cudaGetDeviceProperties(&prop, info->device));
  int rc = 0, failed_checks = 0;
  for (int m = 0; m < o->nmodels && rc == 0; ++m)
    for (int t = 0; t < o->ntokens && rc == 0; ++t) {
      int x = run_config(info, o, ctx, comm, blas, st, o->models[m], o->tokens[t], prop.name);
      if (x == 2) failed_checks++;
      else rc = x;
    }
  if (comet_context_destroy(ctx) != COMET_OK) {
    fprintf(stderr, "[rank %d] comet_context_destroy: %s\n", info->rank, comet_last_error());
    rc = 1;
  }
  if (blas) cublasDestroy(blas);
  if (comm) ncclCommDestroy(comm);
  if (failed_checks) {
    fprintf(stderr, "[rank %d] %d config(s) failed the check against the CPU reference\n",
            info->rank, failed_checks);
    return 1;
  }
  return rc;
}

static int moe_main(int argc, char **argv, int tune) {
  bench_opts_t o;
  const int pr = parse(argc, argv, &o, tune);
  if (pr) return pr > 0 ? 0 : 2;
  if (tune && (o.check || o.n_comm)) {
    fprintf(stderr, "comet tune: --check and --n-comm are comet bench's (tune sweeps --sweep)\n");
    return 2;
  }
  /* Counted in a child: the ranks forked below must find CUDA uninitialized. */
  const int avail = cli_fork_gpu_count(tune ? "comet tune" : "comet bench");
  if (avail < 1) return 1;
  if (!o.loopback && !o.rendezvous && !o.gpus) { /* all of them: now the world is known */
    o.gpus = avail;
    if (check_configs(&o, o.gpus, "the GPU count")) return 2;
  }
  if (o.gpus > avail) {
    fprintf(stderr, "comet bench: --gpus %d but only %d GPU(s) present\n", o.gpus, avail);
    return 1;
  }
  setenv("NCCL_NVLS_ENABLE", "0", 0); /* no NVLink multicast (see the device notes) */
  read_commit(o.commit, sizeof o.commit);
  snprintf(o.date, sizeof o.date, "%s", comet_run_date());
  if (o.rendezvous) {
    printf("comet bench: joining external ranks via %s; seed %llu, commit %s\n", o.rendezvous,
           o.seed, o.commit);
    return comet_launch_external(o.rendezvous, o.timeout_s, rank_main, &o);
  }
  if (o.loopback) {
    printf("comet bench: loopback world of %d rank(s) on GPU 0, ep %d x tp %d, seed %llu, commit %s, "
           "%s\n",
           o.loopback, o.ep, o.tp, o.seed, o.commit, o.date);
    fflush(stdout);
    return comet_launch_loopback(o.loopback, 0, o.timeout_s, rank_main, &o) == 0 ? 0 : 1;
  }
  printf("comet bench: %d GPU(s), ep %d x tp %d, seed %llu, commit %s, %s\n", o.gpus, o.ep, o.tp,
         o.seed, o.commit, o.date);
  fflush(stdout);
  return comet_launch_local(o.gpus, o.timeout_s, rank_main, &o) == 0 ? 0 : 1;
}

int comet_bench_moe_main(int argc, char **argv) { return moe_main(argc, argv, 0); }
int comet_tune_main(int argc, char **argv) { return moe_main(argc, argv, 1); }
