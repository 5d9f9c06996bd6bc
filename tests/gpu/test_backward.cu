/* SPDX-License-Identifier: Apache-2.0 */
/* test_backward — comet_moe_backward at W = 1 on a real GPU and W = 2, 4, 8
 * in the loopback world (and over NCCL on as many GPUs as there are), every
 * EP x TP layout, against the CPU reference's backward (src/ref): dx, dw1,
 * dw2 and d topk_weights, outputs poisoned with NaN before each run, fresh
 * random data (seed printed). Routings: uniform, skewed, empty experts
 * (their weight gradients are zeros), dropped slots with an empty rank
 * (d topk_weights 0 there), all tokens on one expert; SwiGLU bf16, GELU
 * fp16, no activation. A second call gives the same bits; only dw2 asked
 * gives dw2's bits; save mode (the forward keeps z, the backward skips fc1)
 * matches the reference too, its forward's out the plain forward's; every output NULL is refused on every rank.
 * Exit 77 if no GPU. */
#include "forward_test.h"

static const char *TEST = "test_backward";

typedef struct grads {
  uint16_t *dx, *dw1, *dw2;
  float *dtw;
} grads_t;

static void compare(const char *what, const char *label, int me, const void *got, const void *want,
                    size_t n, int kind /* 0 dtype, 1 fp32 */, int fp16, double tol) {
  double num = 0, den = 0;
  long nan = 0;
  for (size_t i = 0; i < n; ++i) {
    double a, b;
    if (kind == 1) {
      a = ((const float *)got)[i];
      b = ((const float *)want)[i];
    } else {
      const uint16_t x = ((const uint16_t *)got)[i], y = ((const uint16_t *)want)[i];
      a = fp16 ? comet_fp16_to_f32(x) : comet_bf16_to_f32(x);
      b = fp16 ? comet_fp16_to_f32(y) : comet_bf16_to_f32(y);
    }
    if (isnan(a)) { nan++; continue; }
    num += (a - b) * (a - b);
    den += b * b;
  }
  const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  CHECK_MSG(nan == 0 && rel < tol, "[rank %d] %s: %s rel err %.3g (tol %.1g), %ld NaN", me, label,
            what, rel, tol, nan);
}

/* One backward into the args' (device) outputs, poisoned first, copied
 * into fresh host buffers (sizes: dx, dw1, dw2, dtopk_weights bytes). */
static void backward_into(comet_layer_t L, const comet_moe_backward_args_t *a, cudaStream_t stream,
                          const size_t sizes[4], grads_t *got) {
  void *const dev[4] = {a->dx, a->dw1, a->dw2, a->dtopk_weights};
  void **host[4] = {(void **)&got->dx, (void **)&got->dw1, (void **)&got->dw2, (void **)&got->dtw};
  for (int i = 0; i < 4; ++i) test_fill(dev[i], 0xff, sizes[i], stream);
  const double t0 = test_now_s();
  CHECK_OK(comet_moe_backward(L, a, stream));
  test_note_slow(L->ctx->rank, "comet_moe_backward", t0);
  CUDA_OK(cudaStreamSynchronize(stream));
  for (int i = 0; i < 4; ++i) {
    *host[i] = malloc(sizes[i] + 4);
    CUDA_OK(cudaMemcpy(*host[i], dev[i], sizes[i], cudaMemcpyDeviceToHost));
  }
}

static void compare_grads(const char *label, int me, const grads_t *got, const uint16_t *rdx,
                          const uint16_t *rdw1, const uint16_t *rdw2, const float *rdtw,
                          const size_t sizes[4], int fp16, double tol) {
  compare("dx", label, me, got->dx, rdx, sizes[0] / 2, 0, fp16, tol);
  compare("dw1", label, me, got->dw1, rdw1, sizes[1] / 2, 0, fp16, tol);
  compare("dw2", label, me, got->dw2, rdw2, sizes[2] / 2, 0, fp16, tol);
  compare("dtopk_weights", label, me, got->dtw, rdtw, sizes[3] / 4, 1, fp16, 2 * tol);
}

/* Save mode's refusals (kernels/saved_z.h), on every rank: saved_z filled
 * by a forward of other routing (each rank's ids rotated by one token), by
 * another layer's forward (uniform routing only: a layer a case costs a
 * window), then one no forward filled; then a right one is accepted. */
static void saved_z_refusals(comet_layer_t L, const comet_layer_config_t *c, const world_data_t *d,
                             int W, int me, int kind, comet_moe_args_t fa,
                             comet_moe_backward_args_t sa, cudaStream_t stream) {
  const int K = c->topk, T = d->tokens[me];
  int differs = 0; /* whether some rank's rotated ids are other ids: then some plan differs */
  for (int r = 0; r < W; ++r)
    for (int t = 0; t + 1 < d->tokens[r]; ++t)
      differs |= memcmp(d->ids[r] + (size_t)t * K, d->ids[r] + (size_t)(t + 1) * K,
                        sizeof(int32_t) * K) != 0;
  int32_t *rot = (int32_t *)malloc(sizeof(int32_t) * ((size_t)T * K + 1));
  for (int t = 0; t < T; ++t)
    memcpy(rot + (size_t)t * K, d->ids[me] + (size_t)((t + 1) % T) * K, sizeof(int32_t) * K);
  int32_t *drot = (int32_t *)upload(rot, sizeof(int32_t) * ((size_t)T * K + 1));
  comet_moe_args_t other = fa;
  other.topk_ids = drot;
  CHECK_OK(comet_moe_forward(L, &other, stream));
  if (differs)
    CHECK_ERR(comet_moe_backward(L, &sa, stream), COMET_ERR_INVALID_ARGUMENT,
              "other routing or token counts");
  else
    CHECK_OK(comet_moe_backward(L, &sa, stream));
  if (kind == ROUTE_UNIFORM) {
    comet_layer_t other_layer = NULL;
    CHECK_OK(comet_layer_create(&other_layer, L->ctx, c));
    if (other_layer) {
      CHECK_OK(comet_moe_forward(other_layer, &fa, stream));
      CHECK_ERR(comet_moe_backward(L, &sa, stream), COMET_ERR_INVALID_ARGUMENT,
                "was filled by another layer's forward");
      CUDA_OK(cudaStreamSynchronize(stream));
      CHECK_OK(comet_layer_destroy(other_layer));
    }
  }
  test_fill((void *)sa.saved_z, 0, comet_config_saved_z_bytes(c), stream);
  CHECK_ERR(comet_moe_backward(L, &sa, stream), COMET_ERR_INVALID_ARGUMENT,
            "was not filled by a forward in save mode");
  CHECK_OK(comet_moe_forward(L, &fa, stream)); /* the layer is still usable */
  CHECK_OK(comet_moe_backward(L, &sa, stream));
  CHECK_OK(comet_moe_backward(L, &sa, stream)); /* a second backward of one forward (retain_graph) */
  CUDA_OK(cudaStreamSynchronize(stream));
  test_free(drot);
  free(rot);
}

static void run_case(comet_layer_t L, const comet_layer_config_t *c, const comet_rank_info_t *info,
                     cudaStream_t stream, int kind, uint64_t seed, int zero_rank, const char *label) {
  const int W = info->world, me = info->rank, fp16 = c->dtype == COMET_DTYPE_FP16;
  const int El = c->num_experts / c->ep, N1 = comet_config_w1_rows(c), Fl = c->ffn / c->tp;
  const int H = c->hidden, K = c->topk;
  world_data_t d;
  make_world(&d, c, W, kind, seed, zero_rank);
  const int T = d.tokens[me];
  /* dout of every rank, and the reference's gradients */
  uint16_t *dout[8];
  uint16_t *rdx[8], *rdw1[8], *rdw2[8];
  float *rdtw[8];
  const size_t n1 = (size_t)El * N1 * H, n2 = (size_t)El * H * Fl;
  for (int r = 0; r < W; ++r) {
    dout[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)d.tokens[r] * H + 1));
    gen_bits16(mix_seed(seed, 6, r, kind), (size_t)d.tokens[r] * H, dout[r], fp16);
    rdx[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)d.tokens[r] * H + 1));
    rdw1[r] = (uint16_t *)malloc(sizeof(uint16_t) * n1);
    rdw2[r] = (uint16_t *)malloc(sizeof(uint16_t) * n2);
    rdtw[r] = (float *)malloc(sizeof(float) * ((size_t)d.tokens[r] * K + 1));
  }
  const comet_ref_grads_t rg = {rdx, rdw1, rdw2, rdtw};
  CHECK_OK(comet_ref_backward(c, d.ref, (const uint16_t *const *)dout, &rg));

  dev_in_t g = upload_rank(&d, c, me, comet_config_row_capacity(c));
  void *ddout = upload(dout[me], sizeof(uint16_t) * (size_t)T * H);
  void *ddx = upload(NULL, sizeof(uint16_t) * ((size_t)T * H + 8));
  void *ddw1 = upload(NULL, sizeof(uint16_t) * n1), *ddw2 = upload(NULL, sizeof(uint16_t) * n2);
  float *ddtw = (float *)upload(NULL, sizeof(float) * ((size_t)T * K + 1));
  comet_moe_backward_args_t a = COMET_MOE_BACKWARD_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1;
  a.w2 = g.w2; a.dout = ddout; a.dx = ddx; a.dw1 = ddw1; a.dw2 = ddw2; a.dtopk_weights = ddtw;
  void *dz = upload(NULL, comet_config_saved_z_bytes(c)); /* save mode's z and out */
  void *dy = upload(NULL, sizeof(uint16_t) * ((size_t)T * H + 8));
  grads_t got[3];
  const size_t sizes[4] = {sizeof(uint16_t) * (size_t)T * H, sizeof(uint16_t) * n1,
                           sizeof(uint16_t) * n2, sizeof(float) * (size_t)T * K};
  /* the ranks meet after their CPU references (seconds each at W = 8) and
   * allocations: a rank's first wait must not run out while a peer still
   * computes, nor spin while a peer allocates (which may wait for it) */
  test_barrier(L->ctx, stream);
  for (int run = 0; run < 2; ++run) backward_into(L, &a, stream, sizes, &got[run]);
  /* the GPU rounds where the reference keeps fp32 (dh, dA's GEMM outputs) */
  const double tol = fp16 ? 5e-3 : 2e-2;
  compare_grads(label, me, &got[0], rdx[me], rdw1[me], rdw2[me], rdtw[me], sizes, fp16, tol);
  CHECK_MSG(!memcmp(got[0].dx, got[1].dx, sizeof(uint16_t) * (size_t)T * H) &&
                !memcmp(got[0].dw1, got[1].dw1, sizeof(uint16_t) * n1) &&
                !memcmp(got[0].dw2, got[1].dw2, sizeof(uint16_t) * n2) &&
                !memcmp(got[0].dtw, got[1].dtw, sizeof(float) * (size_t)T * K),
            "[rank %d] %s: a second backward gives other bits", me, label);
  /* only dw2 asked: its bits */
  comet_moe_backward_args_t only = a;
  only.dx = only.dw1 = NULL;
  only.dtopk_weights = NULL;
  test_fill(ddw2, 0xff, sizeof(uint16_t) * n2, stream);
  CHECK_OK(comet_moe_backward(L, &only, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got[1].dw2, ddw2, sizeof(uint16_t) * n2, cudaMemcpyDeviceToHost));
  CHECK_MSG(!memcmp(got[0].dw2, got[1].dw2, sizeof(uint16_t) * n2),
            "[rank %d] %s: dw2 alone differs from dw2 with the others", me, label);
  /* save mode: the forward keeps z, the backward skips fc1's recompute */
  comet_moe_args_t fa = COMET_MOE_ARGS_INITIALIZER;
  fa.num_tokens = T; fa.x = g.x; fa.topk_ids = g.ids; fa.topk_weights = g.wt; fa.w1 = g.w1;
  fa.w2 = g.w2; fa.out = dy;
  CHECK_OK(comet_moe_forward(L, &fa, stream)); /* the plain forward's out, then save mode's */
  uint16_t *out_plain = (uint16_t *)malloc(sizes[0] + 2), *out_save = (uint16_t *)malloc(sizes[0] + 2);
  CUDA_OK(cudaMemcpyAsync(out_plain, dy, sizes[0], cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  test_fill(dy, 0xff, sizes[0], stream);
  fa.saved_z = dz;
  CHECK_OK(comet_moe_forward(L, &fa, stream));
  CUDA_OK(cudaMemcpyAsync(out_save, dy, sizes[0], cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  /* z is rounded before the activation in save mode: close, not the same bits */
  compare("save-mode forward out", label, me, out_save, out_plain, (size_t)T * H, 0, fp16, tol);
  free(out_plain);
  free(out_save);
  comet_moe_backward_args_t sa = a;
  sa.saved_z = dz;
  backward_into(L, &sa, stream, sizes, &got[2]);
  char save_label[160];
  snprintf(save_label, sizeof save_label, "%s, save mode", label);
  compare_grads(save_label, me, &got[2], rdx[me], rdw1[me], rdw2[me], rdtw[me], sizes, fp16, tol);
  saved_z_refusals(L, c, &d, W, me, kind, fa, sa, stream);
  test_free(dz); test_free(dy);
  if (me == 0) printf("  %-44s %s\n", label, test_failures ? "FAILED" : "ok");
  for (int run = 0; run < 3; ++run) {
    free(got[run].dx); free(got[run].dw1); free(got[run].dw2); free(got[run].dtw);
  }
  test_free(ddout); test_free(ddx); test_free(ddw1); test_free(ddw2); test_free(ddtw);
  free_dev(&g);
  for (int r = 0; r < W; ++r) { free(dout[r]); free(rdx[r]); free(rdw1[r]); free(rdw2[r]); free(rdtw[r]); }
  free_world(&d);
}

typedef struct run_args {
  uint64_t seed;
  int quick;
} run_args_t;

/* nothing asked: refused on this rank (local; no rank is involved yet) */
static void nothing_asked(comet_layer_t L, cudaStream_t stream) {
  comet_moe_backward_args_t none = COMET_MOE_BACKWARD_ARGS_INITIALIZER;
  none.w1 = none.w2 = (const void *)16;
  CHECK_ERR(comet_moe_backward(L, &none, stream), COMET_ERR_INVALID_ARGUMENT, "nothing to compute");
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const run_args_t *ra = (const run_args_t *)arg;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  const tshape_t quick = {8, 2, 256, 512, 96, COMET_DTYPE_BF16, COMET_ACT_SWIGLU};
  run_matrix(info, ctx, ra->seed, ra->quick, &quick, 1u << ROUTE_UNIFORM, nothing_asked, run_case);
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a;
  a.seed = test_seed(TEST);
  a.quick = w.quick;
  return test_run_worlds(TEST, &w, rank_body, &a, 900.0);
}
