/* SPDX-License-Identifier: Apache-2.0 */
/* test_ref_forward.c — the reference forward (ref.h) against a direct
 * formula written here: for each token, out[t] = sum_k w * fc2_e(act(fc1_e(x)))
 * with each expert's whole weights assembled from its TP shards, in double.
 * Fixed layouts with the awkward cases (W = 1, E = 1, K = 1, K = E, EP only,
 * TP only, EP x TP, a rank without tokens, all tokens on one expert, empty
 * experts, dropped slots) and random ones; every activation; bf16 and fp16.
 * Also: the fp64 path equals the formula to rounding; h rows follow the
 * plan (one row per rank recomputed from its shard); layer0 and layer1
 * called apart give the forward's h, y and out bit for bit. */
#include "test_ref_common.h"

/* The expert's whole fc1 [N1 * tp, H] (gate rows then up rows) and fc2 [H, F]. */
static void assemble(const tr_problem_t *p, int e, double *W1, double *W2) {
  const int H = p->cfg.hidden, F = p->cfg.ffn, Fs = p->Fs, tp = p->cfg.tp;
  const int g = e / p->El, el = e % p->El, gated = p->cfg.activation == COMET_ACT_SWIGLU;
  for (int i = 0; i < tp; ++i) {
    const double *s1 = p->w1d[g * tp + i] + (size_t)el * p->N1 * H;
    const double *s2 = p->w2d[g * tp + i] + (size_t)el * H * Fs;
    for (int j = 0; j < Fs; ++j)
      for (int h = 0; h < H; ++h) {
        W1[(size_t)(i * Fs + j) * H + h] = s1[(size_t)j * H + h];
        if (gated) W1[(size_t)(F + i * Fs + j) * H + h] = s1[(size_t)(Fs + j) * H + h];
      }
    for (int h = 0; h < H; ++h)
      for (int j = 0; j < Fs; ++j) W2[(size_t)h * F + i * Fs + j] = s2[(size_t)h * Fs + j];
  }
}

static double act_direct(comet_activation_t act, double g, double u) {
  switch (act) {
    case COMET_ACT_SWIGLU: return g / (1.0 + exp(-g)) * u;
    case COMET_ACT_GELU:
      return 0.5 * g *
             (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (g + 0.044715 * g * g * g)));
    default: return g;
  }
}

/* out[s] [T_s, H] by the formula. */
static void direct_forward(const tr_problem_t *p, double **out) {
  const int H = p->cfg.hidden, F = p->cfg.ffn, K = p->cfg.topk, E = p->cfg.num_experts;
  const int gated = p->cfg.activation == COMET_ACT_SWIGLU, N1 = gated ? 2 * F : F;
  double *W1 = tr_alloc(sizeof(double) * (size_t)E * N1 * H);
  double *W2 = tr_alloc(sizeof(double) * (size_t)E * H * F);
  double *z = tr_alloc(sizeof(double) * (size_t)N1), *a = tr_alloc(sizeof(double) * (size_t)F);
  for (int e = 0; e < E; ++e) assemble(p, e, W1 + (size_t)e * N1 * H, W2 + (size_t)e * H * F);
  for (int s = 0; s < p->W; ++s)
    for (int t = 0; t < p->T[s]; ++t) {
      const double *x = p->xd[s] + (size_t)t * H;
      double *o = out[s] + (size_t)t * H;
      for (int h = 0; h < H; ++h) o[h] = 0;
      for (int k = 0; k < K; ++k) {
        const int e = p->ids[s][t * K + k];
        if (e < 0) continue;
        for (int n = 0; n < N1; ++n) {
          z[n] = 0;
          for (int h = 0; h < H; ++h) z[n] += W1[((size_t)e * N1 + n) * H + h] * x[h];
        }
        for (int j = 0; j < F; ++j)
          a[j] = act_direct(p->cfg.activation, z[j], gated ? z[F + j] : 0);
        for (int h = 0; h < H; ++h) {
          double y = 0;
          for (int j = 0; j < F; ++j) y += W2[((size_t)e * H + h) * F + j] * a[j];
          o[h] += p->twd[s][t * K + k] * y;
        }
      }
    }
  free(W1); free(W2); free(z); free(a);
}

/* Row r of h on rank q, recomputed from the plan's (s, t, k) and q's shard. */
static void check_h_row(const tr_problem_t *p, const comet_plan_t *plan, int q, int64_t r,
                        const uint16_t *hq) {
  const int H = p->cfg.hidden, K = p->cfg.topk, Fs = p->Fs, g = q / p->cfg.tp;
  const comet_rank_plan_t *rp = &plan->ranks[q];
  const int s = rp->row_src[r], t = rp->row_token[r], k = rp->row_slot[r];
  const int el = p->ids[s][t * K + k] - g * p->El;
  CHECK_MSG(el >= 0 && el < p->El && rp->expert_offset[el] <= r && r < rp->expert_offset[el + 1],
            "rank %d row %lld (%d, %d, %d) is outside its expert's rows", q, (long long)r, s, t, k);
  if (el < 0 || el >= p->El) return;
  const double *w = p->w1d[q] + (size_t)el * p->N1 * H, *x = p->xd[s] + (size_t)t * H;
  const double tol = p->cfg.dtype == COMET_DTYPE_BF16 ? 1.0 / 256 : 1.0 / 1024;
  int bad = 0;
  for (int j = 0; j < Fs; ++j) {
    double zg = 0, zu = 0;
    for (int h = 0; h < H; ++h) {
      zg += w[(size_t)j * H + h] * x[h];
      if (p->cfg.activation == COMET_ACT_SWIGLU) zu += w[(size_t)(Fs + j) * H + h] * x[h];
    }
    const double want = act_direct(p->cfg.activation, zg, zu);
    const double got = comet_load_f32(hq, (size_t)r * Fs + j, p->cfg.dtype);
    bad += !(fabs(got - want) <= tol * fabs(want) + 1e-5);
  }
  CHECK_MSG(bad == 0, "rank %d row %lld: %d of %d h values differ from the direct ones (%s)", q,
            (long long)r, bad, Fs, tr_describe(p));
}

static double worst_rel[2];

static void run_case(tr_problem_t *p, uint64_t *rng) {
  const int W = p->W, H = p->cfg.hidden, Fs = p->Fs;
  const comet_dtype_t dt = p->cfg.dtype;
  comet_plan_t plan;
  CHECK_OK(comet_ref_plan(&plan, &p->cfg, p->ranks));
  uint16_t *out[TR_MAX_W], *h[TR_MAX_W], *y[TR_MAX_W], *h0[TR_MAX_W], *out1[TR_MAX_W],
      *y1[TR_MAX_W];
  double *want[TR_MAX_W], *got[TR_MAX_W], *o64[TR_MAX_W];
  for (int s = 0; s < W; ++s) {
    const size_t rows = (size_t)plan.ranks[s].rows, T = (size_t)p->T[s];
    out[s] = T ? tr_alloc(T * H * 2) : NULL; /* NULL is fine for a rank without tokens */
    out1[s] = tr_alloc(T * H * 2);
    h[s] = tr_alloc(rows * Fs * 2); h0[s] = tr_alloc(rows * Fs * 2);
    y[s] = tr_alloc(rows * H * 2); y1[s] = tr_alloc(rows * H * 2);
    want[s] = tr_alloc(T * H * sizeof(double)); got[s] = tr_alloc(T * H * sizeof(double));
    o64[s] = tr_alloc(T * H * sizeof(double));
  }
  CHECK_OK(comet_ref_forward(&p->cfg, p->ranks, out, h, y));
  CHECK_OK(comet_ref_forward_f64(&p->cfg, p->ranks64, o64));
  direct_forward(p, want);

  tr_err_t e = {0}, e64 = {0};
  double num = 0, den = 0, num64 = 0, den64 = 0;
  for (int s = 0; s < W; ++s) {
    for (size_t i = 0; i < (size_t)p->T[s] * H; ++i) got[s][i] = comet_load_f32(out[s], i, dt);
    tr_err_add(&e, &num, &den, got[s], want[s], (size_t)p->T[s] * H);
    tr_err_add(&e64, &num64, &den64, o64[s], want[s], (size_t)p->T[s] * H);
  }
  tr_err_finish(&e, num, den);
  tr_err_finish(&e64, num64, den64);
  const double rel_tol = dt == COMET_DTYPE_BF16 ? 1e-2 : 2e-3;
  CHECK_MSG(e.rel < rel_tol, "rel error %.3g >= %.3g (%s)", e.rel, rel_tol, tr_describe(p));
  CHECK_MSG(e.max_abs <= 2 * rel_tol * e.max_want, "max abs error %.3g, max |out| %.3g (%s)",
            e.max_abs, e.max_want, tr_describe(p));
  CHECK_MSG(e64.rel < 1e-12 && e64.max_abs <= 1e-12 * (1 + e64.max_want),
            "fp64 path: rel error %.3g, max abs %.3g (%s)", e64.rel, e64.max_abs, tr_describe(p));
  if (e.rel > worst_rel[dt == COMET_DTYPE_FP16]) worst_rel[dt == COMET_DTYPE_FP16] = e.rel;
  /* Tokens with every slot dropped give exactly 0. */
  for (int s = 0; s < W; ++s)
    for (int t = 0; t < p->T[s]; ++t) {
      int live = 0;
      for (int k = 0; k < p->cfg.topk; ++k) live |= p->ids[s][t * p->cfg.topk + k] >= 0;
      if (live) continue;
      int nonzero = 0;
      for (int i = 0; i < H; ++i) nonzero |= (out[s][(size_t)t * H + i] & 0x7fff) != 0;
      CHECK_MSG(!nonzero, "rank %d token %d has no expert but a non-zero output", s, t);
    }

  /* h rows in plan order: one random row per rank, plus its last. */
  for (int q = 0; q < W; ++q) {
    const int64_t rows = plan.ranks[q].rows;
    if (rows == 0) continue;
    check_h_row(p, &plan, q, test_rand_int(rng, 0, (int)rows - 1), h[q]);
    check_h_row(p, &plan, q, rows - 1, h[q]);
  }

  /* The layers called apart give the same bits. */
  CHECK_OK(comet_ref_layer0(&p->cfg, p->ranks, h0));
  const uint16_t *hin[TR_MAX_W];
  int same_h = 1, same_y = 1, same_out = 1;
  for (int q = 0; q < W; ++q) {
    same_h &= memcmp(h0[q], h[q], (size_t)plan.ranks[q].rows * Fs * 2) == 0;
    hin[q] = h0[q];
  }
  CHECK_OK(comet_ref_layer1(&p->cfg, p->ranks, hin, out1, y1));
  for (int q = 0; q < W; ++q) {
    same_y &= memcmp(y1[q], y[q], (size_t)plan.ranks[q].rows * H * 2) == 0;
    if (p->T[q]) same_out &= memcmp(out1[q], out[q], (size_t)p->T[q] * H * 2) == 0;
  }
  CHECK_MSG(same_h && same_y && same_out,
            "layer0/layer1 apart differ from the forward: h %d y %d out %d (%s)", same_h, same_y,
            same_out, tr_describe(p));

  for (int s = 0; s < W; ++s) {
    free(out[s]); free(out1[s]); free(h[s]); free(h0[s]); free(y[s]); free(y1[s]);
    free(want[s]); free(got[s]); free(o64[s]);
  }
  comet_plan_free(&plan);
}

typedef struct fcase {
  int ep, tp, E, K, H, F;
  comet_activation_t act;
  comet_dtype_t dt;
  int max_tokens, mode, zero_rank;
} fcase_t;

int main(void) {
  uint64_t rng = test_seed("test_ref_forward");
  const comet_activation_t SW = COMET_ACT_SWIGLU, GE = COMET_ACT_GELU, NO = COMET_ACT_NONE;
  const comet_dtype_t BF = COMET_DTYPE_BF16, FP = COMET_DTYPE_FP16;
  const fcase_t cases[] = {
      {1, 1, 1, 1, 16, 32, SW, BF, 12, TR_UNIFORM, -1},       /* W = 1, E = 1, K = 1 */
      {1, 1, 4, 2, 24, 40, GE, FP, 10, TR_DROPPED, -1},       /* W = 1 */
      {4, 1, 8, 2, 32, 48, SW, BF, 14, TR_UNIFORM, 2},        /* EP only, a rank without tokens */
      {2, 1, 4, 1, 16, 24, NO, FP, 9, TR_DROPPED, -1},        /* EP only, dropped */
      {1, 4, 4, 2, 32, 64, SW, BF, 11, TR_ONE_EXPERT, -1},    /* TP only */
      {1, 2, 1, 1, 16, 32, GE, BF, 8, TR_UNIFORM, 0},         /* TP only, E = 1 */
      {2, 2, 4, 2, 32, 64, SW, BF, 12, TR_UNIFORM, -1},       /* EP x TP */
      {2, 2, 8, 3, 24, 32, GE, FP, 10, TR_EVEN_EXPERTS, -1},  /* empty experts */
      {2, 2, 4, 2, 16, 48, NO, BF, 10, TR_DROPPED, 3},        /* dropped, a rank without tokens */
      {4, 2, 8, 1, 16, 32, SW, FP, 9, TR_ONE_EXPERT, 5},      /* every token to one expert */
      {2, 4, 2, 2, 16, 64, SW, BF, 7, TR_UNIFORM, -1},        /* K = E */
      {2, 2, 4, 2, 528, 1040, SW, BF, 20, TR_UNIFORM, -1},    /* past the GEMM's blocks */
  };
  tr_problem_t p;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    const fcase_t *c = &cases[i];
    tr_make(&p, &rng, c->ep, c->tp, c->E, c->K, c->H, c->F, c->act, c->dt, c->max_tokens,
            c->mode, c->zero_rank);
    run_case(&p, &rng);
    tr_free(&p);
  }
  /* Random layouts and shapes. */
  const int sizes[][2] = {{1, 1}, {2, 1}, {1, 2}, {4, 1}, {1, 4}, {2, 2}, {8, 1}, {2, 4}, {4, 2}};
  for (int i = 0; i < 30; ++i) {
    const int *sz = sizes[test_rand_int(&rng, 0, 8)];
    const int ep = sz[0], tp = sz[1], E = ep * test_rand_int(&rng, 1, 3);
    const int K = test_rand_int(&rng, 1, E < 4 ? E : 4);
    tr_make(&p, &rng, ep, tp, E, K, 8 * test_rand_int(&rng, 1, 6),
            tp * 4 * test_rand_int(&rng, 1, 4), (comet_activation_t)test_rand_int(&rng, 0, 2),
            (comet_dtype_t)test_rand_int(&rng, 0, 1), test_rand_int(&rng, 1, 16),
            test_rand_int(&rng, 0, TR_NUM_MODES - 1), test_rand_int(&rng, -ep * tp, ep * tp - 1));
    run_case(&p, &rng);
    tr_free(&p);
  }
  printf("test_ref_forward: worst relative error vs the formula: bf16 %.3g, fp16 %.3g\n",
         worst_rel[0], worst_rel[1]);
  return test_finish("test_ref_forward");
}
