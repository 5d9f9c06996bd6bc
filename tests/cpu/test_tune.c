/* SPDX-License-Identifier: Apache-2.0 */
/* test_tune.c — the tuning table (src/tune/table.h): parse, refuse bad
 * text with the line named and nothing kept, nearest-bucket lookup, merge,
 * write + parse round trip; the cost model (src/tune/cost_model.h): picks
 * among its mover steps and least of its predictions, no movers where
 * nothing moves, gathered A at W = 1 (session 4 run 5) and for small fc1s,
 * copied for Mixtral's at W > 1, 4-12 movers for Mixtral's copied A at
 * 8192 tokens (8 measured best of 2, 4, 8 in fused0 run 7); the per-call choice
 * (src/tune/choice.h): table, then model, an override over both. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "tune/choice.h"
#include "tune/cost_model.h"
#include "tune/table.h"

static const char *GOOD =
    "# a comment\n"
    "comet-tuning-table 1\n"
    "\n"
    "\"NVIDIA H200\" 1 1 1 4096 14336 8 2 8192 layer0 8 auto copied 6.438\n"
    "\"NVIDIA H200\" 1 1 1 4096 14336 8 2 2048 layer0 4 wide copied 1.9\n"
    "\"NVIDIA H200\" 1 1 1 4096 14336 8 2 2048 layer1 6 wide - 0.9\n"
    "\"NVIDIA H200\" 4 2 2 4096 14336 8 2 2048 layer0 16 auto gathered 2.5\n";

static comet_tune_key_t mixtral_w1(void) {
  comet_tune_key_t k;
  memset(&k, 0, sizeof k);
  strcpy(k.device, "NVIDIA H200");
  k.world = k.ep = k.tp = 1;
  k.hidden = 4096; k.ffn = 14336; k.experts = 8; k.topk = 2;
  return k;
}

static void table_cases(void) {
  comet_tune_table_t t = {0};
  CHECK_OK(comet_tune_table_parse(&t, GOOD, "good"));
  CHECK(t.n == 4);
  const comet_tune_key_t k = mixtral_w1();
  const comet_tune_entry_t *e = comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 8192);
  CHECK(e && e->n_comm == 8 && e->tile == 0 && e->a == COMET_TUNE_A_COPIED);
  e = comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 1000); /* nearest in log2: 2048 */
  CHECK(e && e->tokens == 2048 && e->n_comm == 4 && e->tile == 1);
  e = comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 4096); /* between: the smaller */
  CHECK(e && e->tokens == 2048);
  e = comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 100000);
  CHECK(e && e->tokens == 8192);
  e = comet_tune_lookup(&t, &k, COMET_TUNE_LAYER1, 8192);
  CHECK(e && e->n_comm == 6 && e->a == COMET_TUNE_A_ANY);
  comet_tune_key_t other = k;
  other.topk = 4;
  CHECK(comet_tune_lookup(&t, &other, COMET_TUNE_LAYER0, 8192) == NULL);
  strcpy(other.device, "NVIDIA H100");
  other.topk = 2;
  CHECK(comet_tune_lookup(&t, &other, COMET_TUNE_LAYER0, 8192) == NULL);

  /* merge: replace the same (key, op, tokens), else append */
  comet_tune_entry_t m = *comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 8192);
  m.n_comm = 10;
  CHECK_OK(comet_tune_table_merge(&t, &m));
  CHECK(t.n == 4 && comet_tune_lookup(&t, &k, COMET_TUNE_LAYER0, 8192)->n_comm == 10);
  m.tokens = 16384;
  CHECK_OK(comet_tune_table_merge(&t, &m));
  CHECK(t.n == 5);

  /* write, parse back: the same entries */
  FILE *f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    CHECK_OK(comet_tune_table_write(&t, f));
    const long len = ftell(f);
    rewind(f);
    char *text = calloc((size_t)len + 1, 1);
    CHECK(fread(text, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    comet_tune_table_t u = {0};
    CHECK_OK(comet_tune_table_parse(&u, text, "round trip"));
    CHECK(u.n == t.n);
    for (int i = 0; i < u.n && i < t.n; ++i)
      CHECK(comet_tune_key_equal(&u.e[i].key, &t.e[i].key) && u.e[i].op == t.e[i].op &&
            u.e[i].tokens == t.e[i].tokens && u.e[i].n_comm == t.e[i].n_comm &&
            u.e[i].tile == t.e[i].tile && u.e[i].a == t.e[i].a);
    comet_tune_table_free(&u);
    free(text);
  }

  /* bad texts: refused, the line named, nothing of them kept */
  const int n = t.n;
  CHECK_ERR(comet_tune_table_parse(&t, "\"NVIDIA H200\" 1 1 1 4096 14336 8 2 8192 layer0 8 auto copied 1\n", "nov"),
            COMET_ERR_INVALID_ARGUMENT, "first line must be");
  CHECK_ERR(comet_tune_table_parse(&t, "comet-tuning-table 2\n", "v2"), COMET_ERR_INVALID_ARGUMENT,
            "version 2");
  CHECK_ERR(comet_tune_table_parse(&t, "comet-tuning-table 1\n\"NVIDIA H200\" 1 1 1 4096 14336 8 2 "
                                       "8192 layer0 8 auto copied 6.4\n\"x\" 1 1 1 4096\n", "short"),
            COMET_ERR_INVALID_ARGUMENT, "line 3");
  CHECK_ERR(comet_tune_table_parse(&t, "comet-tuning-table 1\n\"d\" 2 1 1 4096 14336 8 2 8192 layer0 "
                                       "8 auto copied 6.4\n", "ep*tp"),
            COMET_ERR_INVALID_ARGUMENT, "line 2");
  CHECK_ERR(comet_tune_table_parse(&t, "comet-tuning-table 1\n\"d\" 1 1 1 4096 14336 8 2 8192 layer2 "
                                       "8 auto copied 6.4\n", "op"),
            COMET_ERR_INVALID_ARGUMENT, "line 2");
  CHECK_ERR(comet_tune_table_parse(&t, "comet-tuning-table 1\n\"d\" 1 1 1 4096 14336 8 2 8192 layer0 "
                                       "8 auto copied 6.4 extra\n", "extra"),
            COMET_ERR_INVALID_ARGUMENT, "line 2");
  CHECK_ERR(comet_tune_table_parse(&t, "", "empty"), COMET_ERR_INVALID_ARGUMENT, "empty");
  { /* the version line alone: a table with no entries (gpu_tune_w1.sh's pass 1 starts so) */
    comet_tune_table_t e = {0};
    CHECK_OK(comet_tune_table_parse(&e, "comet-tuning-table 1\n", "version only"));
    CHECK(e.n == 0);
    comet_tune_table_free(&e);
  }
  CHECK_ERR(comet_tune_table_load(&t, "/nonexistent/comet-tuning.txt"), COMET_ERR_INVALID_ARGUMENT,
            "cannot read");
  CHECK(t.n == n);
  comet_tune_table_free(&t);
  /* comet tune keeps an entry within COMET_TUNE_KEEP of the sweep's best */
  CHECK(comet_tune_keep_entry(1.010, 1.0, COMET_TUNE_KEEP));
  CHECK(comet_tune_keep_entry(1.0, 1.0, COMET_TUNE_KEEP));
  CHECK(!comet_tune_keep_entry(1.020, 1.0, COMET_TUNE_KEEP));
  CHECK(comet_tune_keep_entry(1.029, 1.0, 0.03));
  CHECK(!comet_tune_keep_entry(1.031, 1.0, 0.03));
  CHECK(!comet_tune_keep_entry(0.0, 1.0, COMET_TUNE_KEEP));
  CHECK(!comet_tune_keep_entry(1.0, 0.0, COMET_TUNE_KEEP));
  /* the entry: the table's within keep, else the model's pick within keep, else the best */
  CHECK(comet_tune_entry_from(1.01, 1.0, 1.0, COMET_TUNE_KEEP) == COMET_TUNE_ENTRY_KEPT);
  CHECK(comet_tune_entry_from(1.02, 1.01, 1.0, COMET_TUNE_KEEP) == COMET_TUNE_ENTRY_MODEL);
  CHECK(comet_tune_entry_from(0.0, 1.01, 1.0, COMET_TUNE_KEEP) == COMET_TUNE_ENTRY_MODEL);
  CHECK(comet_tune_entry_from(0.0, 1.02, 1.0, COMET_TUNE_KEEP) == COMET_TUNE_ENTRY_BEST);
  CHECK(comet_tune_entry_from(1.04, 0.0, 1.0, 0.03) == COMET_TUNE_ENTRY_BEST);
  CHECK(comet_tune_entry_from(1.04, 1.02, 1.0, 0.03) == COMET_TUNE_ENTRY_MODEL);
}

static comet_cost_shape_t shape(int H, int F, int E, int K, int T, int W) {
  comet_cost_shape_t s = {W, W, 1, H, F, E, K, 1, T, 132 / W, 1};
  return s;
}

static comet_cost_shape_t static_tiles(comet_cost_shape_t s) {
  s.dynamic = 0;
  return s;
}

static void model_cases(void) {
  const comet_cost_device_t d = comet_cost_device_for("NVIDIA H200");
  const comet_cost_shape_t mixtral = shape(4096, 14336, 8, 2, 8192, 1);
  const comet_cost_shape_t mixtral4 = shape(4096, 14336, 8, 2, 8192, 4);
  const comet_cost_shape_t qwen = shape(2048, 1408, 64, 4, 8192, 1);
  const comet_cost_shape_t qwen4 = shape(2048, 1408, 64, 4, 8192, 4);
  /* gathered at W = 1 (no movers) and for small fc1s, copied for Mixtral's at W > 1 */
  CHECK(comet_cost_layer0_gather(&mixtral) && !comet_cost_layer0_gather(&mixtral4));
  CHECK(comet_cost_layer0_gather(&qwen) && comet_cost_layer0_gather(&qwen4));
  /* at W = 1 gathered but where it was measured to lose: Phi-3.5 at 512
   * tokens (64 rows an expert on a big fc1) copies, with movers */
  const comet_cost_shape_t phi512 = shape(4096, 6400, 16, 2, 512, 1);
  const comet_cost_shape_t phi2048 = shape(4096, 6400, 16, 2, 2048, 1);
  const comet_cost_shape_t mixtral512 = shape(4096, 14336, 8, 2, 512, 1);
  const comet_cost_shape_t qwen57_512 = shape(3584, 2560, 64, 8, 512, 1);
  CHECK(!comet_cost_layer0_gather(&phi512) && comet_cost_layer0_gather(&phi2048));
  CHECK(comet_cost_layer0_gather(&mixtral512) && comet_cost_layer0_gather(&qwen57_512));
  double ms = 0;
  const comet_cost_shape_t phi512s = static_tiles(phi512), mixtrals = static_tiles(mixtral);
  const int n_phi = comet_cost_pick_layer0(&d, &phi512s, 0, &ms);
  CHECK_MSG(n_phi >= 6 && n_phi <= 16, "Phi-3.5 512 W = 1 copied, static tiles: the model picks %d movers", n_phi);
  /* weight-bound there: 1.68 GB of w1 in ~0.54 ms measured */
  CHECK_MSG(ms > 0.54 * 0.8 && ms < 0.54 * 1.25, "Phi-3.5 512 layer0 predicted %.3f ms", ms);
  CHECK(comet_cost_layer0_ms(&d, &phi512, 0, 8) > 0.54 * 0.8 && comet_cost_layer0_ms(&d, &phi512, 0, 8) < 0.54 * 1.25);
  CHECK(comet_cost_pick_layer0(&d, &qwen, 1, &ms) == 0 && ms > 0);
  const int n = comet_cost_pick_layer0(&d, &mixtrals, 0, &ms);
  CHECK_MSG(n >= 4 && n <= 12, "Mixtral 8192 W = 1 copied, static tiles: the model picks %d movers", n);
  /* it predicts the measured ~6.4 ms within 10% */
  CHECK_MSG(ms > 6.44 * 0.9 && ms < 6.44 * 1.1, "Mixtral layer0 predicted %.3f ms", ms);
  /* dynamic tiles (the movers join the GEMM): 6.00 ms measured with 8
   * movers (session 6 run 6); more movers cost them little */
  const double dyn8 = comet_cost_layer0_ms(&d, &mixtral, 0, 8);
  CHECK_MSG(dyn8 > 6.0 * 0.9 && dyn8 < 6.0 * 1.1, "Mixtral layer0, dynamic tiles, predicted %.3f ms", dyn8);
  CHECK(dyn8 < comet_cost_layer0_ms(&d, &mixtrals, 0, 8));
  /* every pick is one of the steps, in range, and the least predicted time of them */
  static const int steps[COMET_COST_MOVER_NSTEPS] = COMET_COST_MOVER_STEPS;
  for (int T = 256; T <= 65536; T *= 2)
    for (int W = 1; W <= 8; W *= 2) {
      comet_cost_shape_t s = shape(4096, 14336, 8, 2, T, W);
      double m0 = 0, m1 = 0;
      const int p0 = comet_cost_pick_layer0(&d, &s, 0, &m0);
      const int p1 = comet_cost_pick_layer1(&d, &s, &m1);
      int in0 = 0, in1 = 0;
      for (int i = 0; i < COMET_COST_MOVER_NSTEPS; ++i) {
        in0 |= steps[i] == p0;
        in1 |= steps[i] == p1;
        if (steps[i] < s.sm_budget)
          CHECK(comet_cost_layer0_ms(&d, &s, 0, steps[i]) >= m0 &&
                comet_cost_layer1_ms(&d, &s, steps[i]) >= m1);
      }
      CHECK(in0 && in1 && p0 < s.sm_budget && p1 < s.sm_budget);
    }
}

/* choice.c: the table's entry wins over the model, an override over both;
 * the result always fits the rank; an entry of another A is ignored. */
static void choice_cases(void) {
  const comet_cost_device_t d = comet_cost_device_for("NVIDIA H200");
  comet_tune_table_t t = {0};
  CHECK_OK(comet_tune_table_parse(&t, GOOD, "good"));
  const comet_tune_key_t k = mixtral_w1();
  comet_cost_shape_t s = shape(4096, 14336, 8, 2, 8192, 1);
  comet_choice_t c = comet_tune_choose(&t, &k, &d, &s, COMET_TUNE_LAYER0, 0, -1);
  CHECK(c.from == COMET_FROM_TABLE && c.n_comm == 8 && c.a == COMET_TUNE_A_COPIED && c.tile == 0);
  c = comet_tune_choose(&t, &k, &d, &s, COMET_TUNE_LAYER0, 3, -1);
  CHECK(c.from == COMET_FROM_OVERRIDE && c.n_comm == 3);
  c = comet_tune_choose(&t, &k, &d, &s, COMET_TUNE_LAYER0, 500, -1); /* clamped to budget - 1 */
  CHECK(c.from == COMET_FROM_OVERRIDE && c.n_comm == 131);
  /* A forced gathered at W = 1: the copied entry does not apply, nothing moves */
  c = comet_tune_choose(&t, &k, &d, &s, COMET_TUNE_LAYER0, 0, COMET_TUNE_A_GATHERED);
  CHECK(c.from == COMET_FROM_MODEL && c.n_comm == 0 && c.a == COMET_TUNE_A_GATHERED);
  c = comet_tune_choose(&t, &k, &d, &s, COMET_TUNE_LAYER1, 0, -1); /* nearest layer1 entry: 2048 */
  CHECK(c.from == COMET_FROM_TABLE && c.n_comm == 6 && c.tile == 1);
  /* no entry: the model, within range; a small partition caps it */
  comet_tune_key_t other = k;
  other.experts = 16;
  s.sm_budget = 4;
  c = comet_tune_choose(&t, &other, &d, &s, COMET_TUNE_LAYER0, 0, -1); /* W = 1: gathered */
  CHECK(c.from == COMET_FROM_MODEL && c.n_comm == 0 && c.a == COMET_TUNE_A_GATHERED);
  c = comet_tune_choose(&t, &other, &d, &s, COMET_TUNE_LAYER0, 0, COMET_TUNE_A_COPIED);
  CHECK(c.from == COMET_FROM_MODEL && c.n_comm >= 1 && c.n_comm <= 3);
  c = comet_tune_choose(NULL, &other, &d, &s, COMET_TUNE_LAYER1, 0, -1);
  CHECK(c.from == COMET_FROM_MODEL && c.n_comm >= 1 && c.n_comm <= 3);
  CHECK(!strcmp(comet_choice_from_name(COMET_FROM_TABLE), "table") &&
        !strcmp(comet_choice_from_name(COMET_FROM_MODEL), "model") &&
        !strcmp(comet_choice_from_name(COMET_FROM_OVERRIDE), "override"));
  comet_tune_table_free(&t);
}

int main(void) {
  table_cases();
  model_cases();
  choice_cases();
  return test_finish("test_tune");
}
