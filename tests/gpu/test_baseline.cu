/* SPDX-License-Identifier: Apache-2.0 */
/* test_baseline.cu — the unfused baseline MoE layer (baselines/baseline.h)
 * against the CPU reference (src/ref/ref.h) on 1, 2 and 4 GPUs, one process
 * per GPU through comet_launch_local: EP, TP and EP x TP; uniform and skewed
 * routing, empty experts, dropped slots, unequal tokens per rank (0 too),
 * one expert per rank; swiglu, gelu (bf16 and fp16), none; both GEMM paths
 * (grouped, per-expert loop) and AUTO; bitwise-repeatable output; bad
 * routing or arguments on one rank fail every rank alike. The backward of
 * every case too: dx, dw1, dw2, d topk_weights against comet_ref_backward
 * (test_backward's tolerances), in each GEMM mode; ranks asking for
 * different gradients get the same bits as with all asked; nothing asked on
 * one rank fails every rank. Save mode too (comet_baseline_set_save: each
 * backward after its own forward): the same tolerances in each GEMM mode,
 * the loop mode's forward and gradients bitwise those of recompute; a second
 * backward (the state consumed) and ranks disagreeing on the mode fail every
 * rank. Fresh random data per run (seed printed),
 * outputs poisoned with NaN before each call. Layouts needing more GPUs
 * than present are skipped with a loud line; no GPU at all: exit 77. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "../../baselines/baseline.h"
#include "../../baselines/moe_data.h"
#include "launch.h"
#include "ref/convert.h"
#include "ref/ref.h"
#include "test_util.h"

#define CUDA_OK(x)                                                                          \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      return 1;                                                                             \
    }                                                                                       \
  } while (0)

struct Case {
  const char *name;
  int E, K;
  comet_activation_t act;
  comet_md_routing_t routing;
  int unequal; /* tokens differ per rank, one rank may have none */
  comet_dtype_t dtype;
};

static const Case k_cases[] = {
    {"uniform", 8, 2, COMET_ACT_SWIGLU, {0, 0, 0}, 0, COMET_DTYPE_BF16},
    {"skew:0.08", 8, 2, COMET_ACT_SWIGLU, {0.08, 0, 0}, 0, COMET_DTYPE_BF16},
    {"empty experts", 8, 2, COMET_ACT_SWIGLU, {0, 0, 3}, 0, COMET_DTYPE_BF16},
    {"dropped slots", 8, 2, COMET_ACT_SWIGLU, {0, 0.25, 0}, 0, COMET_DTYPE_BF16},
    {"unequal tokens", 8, 2, COMET_ACT_SWIGLU, {0.03, 0.1, 0}, 1, COMET_DTYPE_BF16},
    {"gelu top-3 of 16", 16, 3, COMET_ACT_GELU, {0, 0, 0}, 0, COMET_DTYPE_BF16},
    {"gelu fp16", 16, 3, COMET_ACT_GELU, {0.03, 0.1, 0}, 0, COMET_DTYPE_FP16},
    {"one expert per EP rank", 0 /* = ep */, 1, COMET_ACT_NONE, {0, 0, 0}, 1, COMET_DTYPE_BF16},
};
enum { H = 256, F = 512, T_BASE = 160 };

struct Layout { int ep, tp; };

static uint64_t g_seed;

static int tokens_of(int rank, int unequal, int case_no) {
  if (!unequal) return T_BASE;
  const int pattern[4] = {T_BASE + 37, 0, 5, T_BASE / 2 + 3};
  return pattern[(rank + case_no) % 4];
}

/* Relative L2 error of got against want (n values, dtype bits or fp32);
 * NaN in got counted into *nan. */
static double rel_err(const void *got, const void *want, size_t n, int fp32, comet_dtype_t dt,
                      long *nan) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = fp32 ? ((const float *)got)[i] : comet_load_f32(got, i, dt);
    const double w = fp32 ? ((const float *)want)[i] : comet_load_f32(want, i, dt);
    if (isnan(a)) { ++*nan; continue; }
    num += (a - w) * (a - w);
    den += w * w;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* One rank's gradients: device buffers (poisoned before each call) and
 * their host copies. Index: 0 dx, 1 dw1, 2 dw2, 3 d topk_weights (fp32). */
struct Grads {
  void *dev[4] = {NULL, NULL, NULL, NULL};
  size_t n[4] = {0, 0, 0, 0};
  std::vector<char> host[4];
  static size_t elem(int g) { return g == 3 ? 4 : 2; }
};
static const char *const k_grad_names[4] = {"dx", "dw1", "dw2", "dtopk_weights"};

/* The backward with the outputs in ask (bit g: gradient g) into gr, the
 * others NULL; copies the asked ones back. */
static int backward_into(comet_baseline_t b, comet_moe_backward_args_t ba, Grads &gr, unsigned ask,
                         cudaStream_t st, comet_status_t *status) {
  for (int g = 0; g < 4; ++g)
    CUDA_OK(cudaMemsetAsync(gr.dev[g], 0xFF, gr.n[g] * Grads::elem(g) + 16, st)); /* NaN */
  ba.dx = ask & 1 ? gr.dev[0] : NULL;
  ba.dw1 = ask & 2 ? gr.dev[1] : NULL;
  ba.dw2 = ask & 4 ? gr.dev[2] : NULL;
  ba.dtopk_weights = ask & 8 ? (float *)gr.dev[3] : NULL;
  *status = comet_baseline_backward(b, &ba, st);
  if (*status != COMET_OK) return 0;
  for (int g = 0; g < 4; ++g) {
    gr.host[g].resize(gr.n[g] * Grads::elem(g) + 1);
    if (ask & (1u << g))
      CUDA_OK(cudaMemcpyAsync(gr.host[g].data(), gr.dev[g], gr.n[g] * Grads::elem(g),
                              cudaMemcpyDeviceToHost, st));
  }
  CUDA_OK(cudaStreamSynchronize(st));
  return 0;
}

/* gr's gradients (all asked) against want, the relative L2 errors under tol
 * (d topk_weights: 2 tol), no NaN; pass names the run in the lines. */
static void check_grads(const comet_rank_info_t *info, comet_baseline_t b,
                        const comet_layer_config_t &cfg, const Case &c, const char *pass,
                        const Grads &gr, const void *const want[4], double tol) {
  const int r = info->rank;
  double e[4];
  long nan[4] = {0, 0, 0, 0};
  int bad = 0;
  for (int g = 0; g < 4; ++g) {
    e[g] = rel_err(gr.host[g].data(), want[g], gr.n[g], g == 3, cfg.dtype, &nan[g]);
    bad |= nan[g] || !(e[g] < (g == 3 ? 2 * tol : tol));
  }
  if (r == 0 || bad)
    printf("  [rank %d] W=%d ep=%d tp=%d %-24s %-9s gemm %-7s rel dx %.2e dw1 %.2e dw2 "
           "%.2e dtopk %.2e%s\n",
           r, info->world, cfg.ep, cfg.tp, c.name, pass, comet_baseline_last_gemm(b, 1), e[0],
           e[1], e[2], e[3], nan[0] + nan[1] + nan[2] + nan[3] ? "  NaN!" : "");
  for (int g = 0; g < 4; ++g)
    CHECK_MSG(nan[g] == 0 && e[g] < (g == 3 ? 2 * tol : tol),
              "rank %d %s %s: %s rel err %.3e (tol %.0e), %ld NaN", r, c.name, pass,
              k_grad_names[g], e[g], g == 3 ? 2 * tol : tol, nan[g]);
}

/* Save mode on the case (after the recompute passes; rec: the loop mode's
 * recompute gradients): in each GEMM mode a forward, then its backward
 * against want; the loop mode's output and gradients bitwise recompute's
 * (the same GEMMs on the same rows); then a backward without a forward, and
 * in case 0 (W > 1) the last rank recomputing while the others save, fail
 * every rank. Leaves save mode off. */
static int run_save(const comet_rank_info_t *info, comet_baseline_t b,
                    const comet_layer_config_t &cfg, const comet_moe_args_t &fa,
                    const comet_moe_backward_args_t &ba, const Grads &rec, Grads &sv,
                    const void *const want[4], double tol, cudaStream_t st, const Case &c,
                    int case_no) {
  const int W = info->world, r = info->rank;
  const size_t ob = (size_t)fa.num_tokens * cfg.hidden * 2;
  std::vector<char> out_rec(ob + 1), out_sv(ob + 1);
  CHECK_OK(comet_baseline_set_gemm(b, COMET_BASELINE_GEMM_LOOP));
  CHECK_OK(comet_baseline_forward(b, &fa, st)); /* recompute mode's output */
  CUDA_OK(cudaMemcpyAsync(out_rec.data(), fa.out, ob, cudaMemcpyDeviceToHost, st));
  CUDA_OK(cudaStreamSynchronize(st));
  CHECK_OK(comet_baseline_set_save(b, 1));
  const comet_baseline_gemm_t modes[3] = {COMET_BASELINE_GEMM_GROUPED, COMET_BASELINE_GEMM_AUTO,
                                          COMET_BASELINE_GEMM_LOOP};
  comet_status_t s = COMET_OK;
  for (int m = 0; m < 3 && s == COMET_OK; ++m) { /* s: the same on every rank */
    CHECK_OK(comet_baseline_set_gemm(b, modes[m]));
    CUDA_OK(cudaMemsetAsync(fa.out, 0xFF, ob + 16, st)); /* NaN */
    s = comet_baseline_forward(b, &fa, st);
    CHECK_MSG(s == COMET_OK, "rank %d %s: save-mode forward failed: %s", r, c.name,
              comet_last_error());
    if (s != COMET_OK) break;
    CUDA_OK(cudaMemcpyAsync(out_sv.data(), fa.out, ob, cudaMemcpyDeviceToHost, st));
    if (backward_into(b, ba, sv, 15u, st, &s) != 0) return 1;
    CHECK_MSG(s == COMET_OK, "rank %d %s: save-mode backward failed: %s", r, c.name,
              comet_last_error());
    if (s != COMET_OK) break;
    check_grads(info, b, cfg, c, "save", sv, want, tol);
  }
  if (s == COMET_OK) { /* the loop mode's, last */
    CHECK_MSG(!memcmp(out_sv.data(), out_rec.data(), ob),
              "rank %d %s: save-mode forward output differs bitwise from recompute mode's", r,
              c.name);
    for (int g = 0; g < 4; ++g)
      CHECK_MSG(!memcmp(sv.host[g].data(), rec.host[g].data(), sv.n[g] * Grads::elem(g)),
                "rank %d %s: save-mode %s differs bitwise from recompute mode's (loop GEMMs)", r,
                c.name, k_grad_names[g]);
    comet_moe_backward_args_t again = ba;
    again.dx = sv.dev[0];
    CHECK_ERR(comet_baseline_backward(b, &again, st), COMET_ERR_INVALID_ARGUMENT,
              r == 0 ? "no saved forward" : "rank 0 refused");
    if (case_no == 0 && W > 1) {
      if (r == W - 1) CHECK_OK(comet_baseline_set_save(b, 0));
      CHECK_OK(comet_baseline_forward(b, &fa, st));
      CHECK_ERR(comet_baseline_backward(b, &again, st), COMET_ERR_INVALID_ARGUMENT,
                "disagree on save mode");
    }
  }
  CHECK_OK(comet_baseline_set_save(b, 0));
  return 0;
}

/* The backward of the case on the forward's inputs fa: every rank's
 * reference gradients (dout from the seed, rank by rank), this rank's
 * compared in each GEMM mode; then ranks asking for different gradients
 * (odd ranks dw2 alone, even ranks dx and d topk_weights) get the loop
 * mode's bits; in case 0, nothing asked on the last rank fails every rank. */
static int run_backward(const comet_rank_info_t *info, comet_baseline_t b,
                        const comet_layer_config_t &cfg, const comet_layer_config_t &rcfg,
                        const std::vector<comet_ref_rank_t> &rk, const comet_moe_args_t &fa,
                        cudaStream_t st, uint64_t seed, const Case &c, int case_no) {
  const int W = info->world, r = info->rank, H = cfg.hidden, K = cfg.topk;
  const int El = cfg.num_experts / cfg.ep, Fl = cfg.ffn / cfg.tp, w1r = comet_config_w1_rows(&cfg);
  const uint64_t dseed = seed ^ 0xD0D0D0D0ull;
  std::vector<std::vector<uint16_t>> dout(W), rdx(W), rdw1(W), rdw2(W);
  std::vector<std::vector<float>> rdtw(W);
  std::vector<const uint16_t *> doutp(W);
  std::vector<uint16_t *> pdx(W), pdw1(W), pdw2(W);
  std::vector<float *> pdtw(W);
  for (int s = 0; s < W; ++s) {
    const int Ts = rk[s].num_tokens;
    dout[s].resize((size_t)Ts * H + 1);
    for (int t = 0; t < Ts; ++t)
      comet_md_x_row_host(&dout[s][(size_t)t * H], t, H, cfg.dtype, s, dseed);
    rdx[s].resize((size_t)Ts * H + 1);
    rdw1[s].resize((size_t)El * w1r * H);
    rdw2[s].resize((size_t)El * H * Fl);
    rdtw[s].resize((size_t)Ts * K + 1);
    doutp[s] = dout[s].data();
    pdx[s] = rdx[s].data();
    pdw1[s] = rdw1[s].data();
    pdw2[s] = rdw2[s].data();
    pdtw[s] = rdtw[s].data();
  }
  const comet_ref_grads_t rg = {pdx.data(), pdw1.data(), pdw2.data(), pdtw.data()};
  CHECK_OK(comet_ref_backward(&rcfg, rk.data(), doutp.data(), &rg));
  const void *want[4] = {rdx[r].data(), rdw1[r].data(), rdw2[r].data(), rdtw[r].data()};

  const int T = fa.num_tokens;
  Grads full, part, sv;
  const size_t n[4] = {(size_t)T * H, rdw1[r].size(), rdw2[r].size(), (size_t)T * K};
  void *ddout = NULL;
  CUDA_OK(cudaMalloc(&ddout, (size_t)T * H * 2 + 16));
  CUDA_OK(cudaMemcpy(ddout, dout[r].data(), (size_t)T * H * 2, cudaMemcpyHostToDevice));
  for (int g = 0; g < 4; ++g) {
    full.n[g] = part.n[g] = sv.n[g] = n[g];
    CUDA_OK(cudaMalloc(&full.dev[g], n[g] * Grads::elem(g) + 16));
    CUDA_OK(cudaMalloc(&part.dev[g], n[g] * Grads::elem(g) + 16));
    CUDA_OK(cudaMalloc(&sv.dev[g], n[g] * Grads::elem(g) + 16));
  }
  comet_moe_backward_args_t ba = COMET_MOE_BACKWARD_ARGS_INITIALIZER;
  ba.num_tokens = T;
  ba.x = fa.x;
  ba.topk_ids = fa.topk_ids;
  ba.topk_weights = fa.topk_weights;
  ba.w1 = fa.w1;
  ba.w2 = fa.w2;
  ba.dout = ddout;

  /* the GPU rounds where the reference keeps fp32 (dh, the GEMMs' outputs) */
  const double tol = cfg.dtype == COMET_DTYPE_FP16 ? 5e-3 : 2e-2;
  const comet_baseline_gemm_t modes[3] = {COMET_BASELINE_GEMM_GROUPED, COMET_BASELINE_GEMM_AUTO,
                                          COMET_BASELINE_GEMM_LOOP};
  comet_status_t s = COMET_OK;
  for (int m = 0; m < 3 && s == COMET_OK; ++m) {
    CHECK_OK(comet_baseline_set_gemm(b, modes[m]));
    if (backward_into(b, ba, full, 15u, st, &s) != 0) return 1;
    CHECK_MSG(s == COMET_OK, "rank %d %s: backward failed: %s", r, c.name, comet_last_error());
    if (s != COMET_OK) break;
    check_grads(info, b, cfg, c, "recompute", full, want, tol);
  }
  /* full holds the loop mode's gradients now */
  if (s == COMET_OK) {
    const unsigned ask = r % 2 ? 4u : 9u;
    if (backward_into(b, ba, part, ask, st, &s) != 0) return 1;
    CHECK_MSG(s == COMET_OK, "rank %d %s: partial backward failed: %s", r, c.name,
              comet_last_error());
    for (int g = 0; g < 4 && s == COMET_OK; ++g)
      if (ask & (1u << g))
        CHECK_MSG(!memcmp(part.host[g].data(), full.host[g].data(), n[g] * Grads::elem(g)),
                  "rank %d %s: %s asked with fewer gradients differs from all asked", r, c.name,
                  k_grad_names[g]);
  }
  if (s == COMET_OK && case_no == 0) {
    comet_moe_backward_args_t none = ba;
    const int last = r == W - 1;
    if (last) none.dx = none.dw1 = none.dw2 = none.dtopk_weights = NULL;
    else none.dx = full.dev[0];
    char who[32];
    snprintf(who, sizeof who, "rank %d refused", W - 1);
    CHECK_ERR(comet_baseline_backward(b, &none, st), COMET_ERR_INVALID_ARGUMENT,
              last ? "nothing to compute" : who);
    /* comet's saved_z is refused: the baseline saves in its own buffers */
    comet_moe_args_t zf = fa;
    zf.saved_z = full.dev[0];
    CHECK_ERR(comet_baseline_forward(b, &zf, st), COMET_ERR_INVALID_ARGUMENT,
              "comet_baseline_forward: saved_z is comet's");
    comet_moe_backward_args_t zb = ba;
    zb.dw2 = full.dev[2]; /* something to compute: the refusal is saved_z's */
    zb.saved_z = full.dev[0];
    CHECK_ERR(comet_baseline_backward(b, &zb, st), COMET_ERR_INVALID_ARGUMENT,
              "comet_baseline_backward: saved_z is comet's");
  }
  if (s == COMET_OK &&
      run_save(info, b, cfg, fa, ba, full, sv, want, tol, st, c, case_no) != 0)
    return 1;
  cudaFree(ddout);
  for (int g = 0; g < 4; ++g) {
    cudaFree(full.dev[g]);
    cudaFree(part.dev[g]);
    cudaFree(sv.dev[g]);
  }
  return 0;
}

/* Runs one case on this rank; every rank computes the reference of the whole
 * world (cheap at these shapes) and compares its own output. */
static int run_case(const comet_rank_info_t *info, ncclComm_t comm, cublasHandle_t blas,
                    cudaStream_t st, Layout lay, int case_no) {
  const Case &c = k_cases[case_no];
  const int W = info->world, r = info->rank;
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  cfg.hidden = H;
  cfg.ffn = F;
  cfg.num_experts = c.E ? c.E : lay.ep;
  cfg.topk = c.K;
  cfg.ep = lay.ep;
  cfg.tp = lay.tp;
  cfg.activation = c.act;
  cfg.dtype = c.dtype;
  int Tmax = 0;
  std::vector<int> T(W);
  for (int s = 0; s < W; ++s) {
    T[s] = tokens_of(s, c.unequal, case_no);
    if (T[s] > Tmax) Tmax = T[s];
  }
  cfg.max_tokens_per_rank = Tmax;
  const uint64_t seed = g_seed + 1000 * (uint64_t)case_no + 17 * (uint64_t)lay.ep;
  const int E = cfg.num_experts, K = cfg.topk, El = E / lay.ep, Fl = F / lay.tp;
  const int w1r = comet_config_w1_rows(&cfg);

  /* Inputs of every rank on the host. */
  std::vector<double> p(E);
  comet_md_expert_probs(p.data(), E, &c.routing, seed);
  std::vector<std::vector<uint16_t>> x(W), w1(W), w2(W), out_ref(W);
  std::vector<std::vector<int32_t>> ids(W);
  std::vector<std::vector<float>> wt(W);
  std::vector<comet_ref_rank_t> rk(W);
  for (int s = 0; s < W; ++s) {
    x[s].resize((size_t)T[s] * H + 1);
    for (int t = 0; t < T[s]; ++t) comet_md_x_row_host(&x[s][(size_t)t * H], t, H, cfg.dtype, s, seed);
    ids[s].resize((size_t)T[s] * K + 1);
    wt[s].resize((size_t)T[s] * K + 1);
    comet_md_routing_host(ids[s].data(), wt[s].data(), T[s], K, E, p.data(), &c.routing, s, seed);
    w1[s].resize((size_t)El * w1r * H);
    w2[s].resize((size_t)El * H * Fl);
    comet_md_fill_w1_host(w1[s].data(), &cfg, s / lay.tp, s % lay.tp, seed);
    comet_md_fill_w2_host(w2[s].data(), &cfg, s / lay.tp, s % lay.tp, seed);
    out_ref[s].resize((size_t)T[s] * H + 1);
    rk[s] = {T[s], x[s].data(), ids[s].data(), wt[s].data(), w1[s].data(), w2[s].data()};
  }
  std::vector<uint16_t *> outp(W);
  for (int s = 0; s < W; ++s) outp[s] = out_ref[s].data();
  comet_layer_config_t rcfg = cfg;
  rcfg.max_tokens_per_rank = 0; /* the reference needs no capacity */
  CHECK_OK(comet_ref_forward(&rcfg, rk.data(), outp.data(), NULL, NULL));

  /* This rank's device copies. */
  const size_t xb = (size_t)Tmax * H * 2;
  void *dx = NULL, *dout = NULL, *dw1 = NULL, *dw2 = NULL;
  int32_t *dids = NULL;
  float *dwt = NULL;
  CUDA_OK(cudaMalloc(&dx, xb + 16));
  CUDA_OK(cudaMalloc(&dout, xb + 16));
  CUDA_OK(cudaMalloc(&dw1, w1[r].size() * 2));
  CUDA_OK(cudaMalloc(&dw2, w2[r].size() * 2));
  CUDA_OK(cudaMalloc((void **)&dids, ids[r].size() * 4));
  CUDA_OK(cudaMalloc((void **)&dwt, wt[r].size() * 4));
  CUDA_OK(cudaMemcpy(dx, x[r].data(), (size_t)T[r] * H * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dids, ids[r].data(), ids[r].size() * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dwt, wt[r].data(), wt[r].size() * 4, cudaMemcpyHostToDevice));
  /* Weights filled on the GPU: must equal the host's bits. */
  CUDA_OK(comet_md_fill_w1(dw1, &cfg, r / lay.tp, r % lay.tp, seed, st));
  CUDA_OK(comet_md_fill_w2(dw2, &cfg, r / lay.tp, r % lay.tp, seed, st));
  std::vector<uint16_t> back(w1[r].size());
  CUDA_OK(cudaMemcpyAsync(back.data(), dw1, back.size() * 2, cudaMemcpyDeviceToHost, st));
  CUDA_OK(cudaStreamSynchronize(st));
  CHECK_MSG(memcmp(back.data(), w1[r].data(), back.size() * 2) == 0,
            "rank %d: w1 filled on the GPU differs from the host fill", r);

  comet_baseline_t b = NULL;
  CHECK_OK(comet_baseline_create(&b, &cfg, comm, blas));
  if (!b) return 1;
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T[r];
  a.x = dx;
  a.topk_ids = dids;
  a.topk_weights = dwt;
  a.w1 = dw1;
  a.w2 = dw2;
  a.out = dout;

  const comet_baseline_gemm_t modes[3] = {COMET_BASELINE_GEMM_GROUPED, COMET_BASELINE_GEMM_LOOP,
                                          COMET_BASELINE_GEMM_AUTO};
  std::vector<uint16_t> got((size_t)T[r] * H + 1), first;
  for (int m = 0; m < 3; ++m) {
    CHECK_OK(comet_baseline_set_gemm(b, modes[m]));
    CUDA_OK(cudaMemsetAsync(dout, 0xFF, xb, st)); /* NaN poison */
    comet_status_t s = comet_baseline_forward(b, &a, st);
    CHECK_MSG(s == COMET_OK, "rank %d: forward failed: %s", r, comet_last_error());
    if (s != COMET_OK) break;
    CUDA_OK(cudaMemcpyAsync(got.data(), dout, (size_t)T[r] * H * 2, cudaMemcpyDeviceToHost, st));
    CUDA_OK(cudaStreamSynchronize(st));
    double num = 0, den = 0, maxerr = 0, maxref = 0;
    long nan_count = 0;
    for (size_t i = 0; i < (size_t)T[r] * H; ++i) {
      const float o = comet_load_f32(got.data(), i, cfg.dtype);
      const float f = comet_load_f32(out_ref[r].data(), i, cfg.dtype);
      if (isnan(o)) { nan_count++; continue; }
      num += (double)(o - f) * (o - f);
      den += (double)f * f;
      maxerr = fmax(maxerr, fabs(o - f));
      maxref = fmax(maxref, fabs(f));
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (r == 0 || rel >= 1e-2 || nan_count)
      printf("  [rank %d] W=%d ep=%d tp=%d %-24s T=%4d gemm %-7s rel %.2e maxerr %.3g%s\n", r, W,
             lay.ep, lay.tp, c.name, T[r], comet_baseline_last_gemm(b, 1), rel, maxerr,
             nan_count ? "  NaN!" : "");
    CHECK_MSG(nan_count == 0, "rank %d %s: %ld unwritten/NaN outputs", r, c.name, nan_count);
    CHECK_MSG(rel < 1e-2, "rank %d %s: rel err %.3e >= 1e-2", r, c.name, rel);
    CHECK_MSG(maxerr <= 0.03 * maxref + 1e-3, "rank %d %s: max abs err %.3g (max|ref| %.3g)", r,
              c.name, maxerr, maxref);
    if (m == 0) first = got;
    else if (modes[m] == COMET_BASELINE_GEMM_AUTO && comet_baseline_last_gemm(b, 1)[0] == 'g')
      CHECK_MSG(memcmp(first.data(), got.data(), (size_t)T[r] * H * 2) == 0,
                "rank %d %s: two grouped runs differ bitwise", r, c.name);
  }
  comet_baseline_times_t tm;
  CHECK_OK(comet_baseline_last_times(b, &tm));
  CHECK(tm.total_ms > 0 && tm.dispatch_ms >= 0 && tm.experts_ms >= 0 && tm.combine_ms >= 0);
  if (run_backward(info, b, cfg, rcfg, rk, a, st, seed, c, case_no) != 0)
    return 1;

  /* Bad routing on the last rank: every rank must return ROUTING. */
  if (case_no == 0 && T[W - 1] > 0) {
    if (r == W - 1) {
      int32_t bad = E + 3;
      CUDA_OK(cudaMemcpy(dids + 1, &bad, 4, cudaMemcpyHostToDevice));
    }
    CHECK_ERR(comet_baseline_forward(b, &a, st), COMET_ERR_ROUTING, "out of range");
    /* Too many tokens on rank 0: every rank fails, nobody hangs. */
    CUDA_OK(cudaMemcpy(dids + 1, &ids[r][1], 4, cudaMemcpyHostToDevice));
    comet_moe_args_t a2 = a;
    if (r == 0) a2.num_tokens = Tmax + 1;
    CHECK_ERR(comet_baseline_forward(b, &a2, st), COMET_ERR_INVALID_ARGUMENT,
              r == 0 ? "max_tokens_per_rank" : "rank 0");
    /* And the layer still works afterwards. */
    CHECK_OK(comet_baseline_forward(b, &a, st));
    CUDA_OK(cudaStreamSynchronize(st));
  }
  CHECK_OK(comet_baseline_destroy(b));
  cudaFree(dx);
  cudaFree(dout);
  cudaFree(dw1);
  cudaFree(dw2);
  cudaFree(dids);
  cudaFree(dwt);
  return 0;
}

static int rank_main(const comet_rank_info_t *info, void *arg) {
  (void)arg;
  CUDA_OK(cudaSetDevice(info->device));
  ncclUniqueId id;
  memcpy(&id, info->id.internal, sizeof id);
  ncclComm_t comm;
  ncclResult_t nr = ncclCommInitRank(&comm, info->world, id, info->rank);
  if (nr != ncclSuccess) {
    fprintf(stderr, "[rank %d] ncclCommInitRank: %s\n", info->rank, ncclGetErrorString(nr));
    return 1;
  }
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "[rank %d] cublasCreate failed\n", info->rank);
    return 1;
  }
  cudaStream_t st;
  CUDA_OK(cudaStreamCreate(&st));
  const int W = info->world;
  std::vector<Layout> lays;
  for (int ep = W; ep >= 1; ep /= 2) lays.push_back({ep, W / ep});
  for (const Layout &lay : lays) {
    for (int c = 0; c < (int)(sizeof k_cases / sizeof k_cases[0]); ++c) {
      /* every rank runs every case: a failure counted on one rank only
       * (test_failures is per thread) must not send it elsewhere than its
       * peers, whose next collective call would then wait for it */
      if (run_case(info, comm, blas, st, lay, c) != 0) test_failures++;
    }
  }
  cudaStreamDestroy(st);
  cublasDestroy(blas);
  ncclCommDestroy(comm);
  char name[64];
  snprintf(name, sizeof name, "test_baseline[rank %d/%d]", info->rank, W);
  return test_finish(name);
}

int main(void) {
  const char *name = "test_baseline";
  g_seed = test_seed(name);
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  const int gpus = comet_launch_gpu_count();
  if (gpus < 1) return test_skip(name, "no CUDA GPU found; the baseline needs at least one");
  int failed = 0, ran = 0;
  for (int W = 1; W <= 4; W *= 2) {
    if (W > gpus) {
      printf("*** %s: SKIPPED the %d-GPU layouts (EP, TP%s): only %d GPU(s) present ***\n", name, W,
             W == 4 ? ", EP x TP" : "", gpus);
      continue;
    }
    printf("%s: %d GPU(s)\n", name, W);
    fflush(stdout);
    if (comet_launch_local(W, 300.0, rank_main, NULL) != 0) {
      fprintf(stderr, "FAIL %s: the %d-GPU run failed\n", name, W);
      failed++;
    }
    ran++;
  }
  printf("%s: %s (%d world size(s) run, %d failed)\n", name, failed ? "FAIL" : "PASS", ran, failed);
  return failed ? 1 : 0;
}
