/* SPDX-License-Identifier: Apache-2.0 */
/* test_forward — comet_moe_forward and its halves (comet_dispatch_gemm,
 * comet_gemm_combine) at W = 1 on a real GPU, W = 2, 4, 8 in the loopback
 * world and over NCCL on as many GPUs as there are, every EP x TP layout,
 * against the CPU reference (src/ref): out and the layer0 rows h (the device
 * plan's row order is the CPU plan's). Routings: uniform, skewed, empty
 * experts, dropped tokens with a rank that has no tokens, all tokens on one
 * expert; SwiGLU bf16, GELU fp16, no activation. Outputs poisoned with NaN
 * before each run, fresh random data (seed printed). Also: the halves give
 * the forward's bits, also when made on two streams with no host sync
 * between them (calls on one layer are ordered on the device); the fused
 * layer0 gives the same bits with any n_comm and as the composed layer0,
 * and so does the fused layer1 (opt-in) as the composed one;
 * calls out of order -> INVALID_ARGUMENT. --quick: one small shape (for the
 * sanitizers). Graph replays: test_graph_replay; one-rank faults:
 * test_faults. Exit 77 if no GPU. */
#include "forward_test.h"

static const char *TEST = "test_forward";

/* A forward into out (poisoned first), its bits against want's. */
static int forward_matches(comet_layer_t L, const comet_moe_args_t *a, cudaStream_t stream,
                           size_t out_n, const uint16_t *want, uint16_t *got) {
  test_fill(a->out, 0xff, sizeof(uint16_t) * (out_n ? out_n : 1), stream);
  CHECK_OK(comet_moe_forward(L, a, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got, a->out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
  return memcmp(want, got, sizeof(uint16_t) * out_n) == 0;
}

/* The fused layer0 with A copied, then gathered, with each of the mover
 * counts ns[0..count) that the SM budget allows: the default forward's
 * bits (want). */
static void layer0_sweep(comet_layer_t L, const comet_moe_args_t *a, cudaStream_t stream,
                         size_t out_n, const uint16_t *want, uint16_t *got, const int *ns,
                         int count, int budget, int me, const char *label, const char *what) {
  for (int i = 0; i < 2 * count; ++i) {
    const int n = ns[i % count];
    if (n < 1 || n >= budget) continue;
    CHECK_OK(comet_layer_set_layer0_gather(L, i / count));
    CHECK_OK(comet_layer_set_n_comm(L, n));
    CHECK_MSG(forward_matches(L, a, stream, out_n, want, got),
              "[rank %d] %s: the fused layer0 %s (A %s, n_comm %d) differs from the default "
              "fused forward's bits", me, label, what, i < count ? "copied" : "gathered", n);
  }
}

/* One routing case: forward vs reference, halves vs forward, h vs reference. */
static void run_case(comet_layer_t L, const comet_layer_config_t *c, const comet_rank_info_t *info,
                     cudaStream_t stream, int kind, uint64_t seed, int zero_rank, const char *label) {
  const int W = info->world, me = info->rank, fp16 = c->dtype == COMET_DTYPE_FP16;
  world_data_t d;
  make_world(&d, c, W, kind, seed, zero_rank);
  comet_plan_t plan;
  CHECK_OK(comet_ref_plan(&plan, c, d.ref));
  uint16_t *ref_out[8], *ref_h[8];
  for (int r = 0; r < W; ++r) {
    ref_out[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)d.tokens[r] * c->hidden + 1));
    ref_h[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)plan.ranks[r].rows * (c->ffn / c->tp) + 1));
  }
  CHECK_OK(comet_ref_forward(c, d.ref, ref_out, ref_h, NULL));
  const int T = d.tokens[me];
  const int64_t rows = plan.ranks[me].rows;
  dev_in_t g = upload_rank(&d, c, me, comet_config_row_capacity(c));
  const size_t out_n = (size_t)T * c->hidden, h_n = (size_t)rows * (c->ffn / c->tp);
  uint16_t *got = (uint16_t *)malloc(sizeof(uint16_t) * (out_n + 1));
  uint16_t *got2 = (uint16_t *)malloc(sizeof(uint16_t) * (out_n + 1));
  uint16_t *got_h = (uint16_t *)malloc(sizeof(uint16_t) * (h_n + 1));

  /* the ranks meet after their CPU references and uploads: a rank's
   * first wait must not run out while a peer still computes or copies */
  test_barrier(L->ctx, stream);
  /* 1. the whole forward */
  test_fill(g.out, 0xff, sizeof(uint16_t) * (out_n ? out_n : 1), stream);
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1; a.w2 = g.w2;
  a.out = g.out;
  CHECK_OK(comet_moe_forward(L, &a, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
  const double e_out = rel_err(got, ref_out[me], out_n, fp16);
  CHECK_MSG(e_out < 1e-2, "[rank %d] %s: forward rel err %.3g vs the CPU reference", me, label, e_out);

  /* 2. the two halves, h into the caller's buffer: h equals the reference's
   * rows (same row order), out equals the forward's bits */
  test_fill(g.out, 0xff, sizeof(uint16_t) * (out_n ? out_n : 1), stream);
  test_fill(g.h, 0xff, sizeof(uint16_t) * (h_n ? h_n : 1), stream);
  comet_dispatch_gemm_args_t d0 = COMET_DISPATCH_GEMM_ARGS_INITIALIZER;
  d0.num_tokens = T; d0.x = g.x; d0.topk_ids = g.ids; d0.w1 = g.w1; d0.h = g.h;
  CHECK_OK(comet_dispatch_gemm(L, &d0, stream));
  comet_gemm_combine_args_t d1 = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
  d1.num_tokens = T; d1.topk_weights = g.wt; d1.w2 = g.w2; d1.out = g.out;
  CHECK_OK(comet_gemm_combine(L, &d1, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got2, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(got_h, g.h, sizeof(uint16_t) * h_n, cudaMemcpyDeviceToHost));
  CHECK_MSG(memcmp(got, got2, sizeof(uint16_t) * out_n) == 0,
            "[rank %d] %s: the two halves differ from the forward's bits", me, label);
  const double e_h = rel_err(got_h, ref_h[me], h_n, fp16);
  CHECK_MSG(e_h < 1e-2, "[rank %d] %s: layer0 h rel err %.3g vs the CPU reference (%lld rows)",
            me, label, e_h, (long long)rows);

  /* 3. the halves on two streams, no host sync between them: the second call
   * waits for the first on the device (comet orders calls on one layer) */
  /* the second stream is the context's own setup stream (idle during
   * calls): one made for the test would take one more of the hardware
   * queues that the loopback ranks share; one made per case had moved the
   * queue assignment until a rank's combine queued behind a peer's kernel
   * spinning for it (the likely cause of docs/status.md's Known gaps 14:
   * its bits were the poison left by that wait's timeout) */
  cudaStream_t s2 = L->ctx->stream;
  test_fill(g.out, 0xff, sizeof(uint16_t) * (out_n ? out_n : 1), stream);
  test_fill(g.h, 0xff, sizeof(uint16_t) * (h_n ? h_n : 1), stream);
  CHECK_OK(comet_dispatch_gemm(L, &d0, stream));
  CHECK_OK(comet_gemm_combine(L, &d1, s2));
  CUDA_OK(cudaStreamSynchronize(s2));
  CUDA_OK(cudaMemcpy(got2, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
  CHECK_MSG(memcmp(got, got2, sizeof(uint16_t) * out_n) == 0,
            "[rank %d] %s: the halves on two streams differ from the forward's bits", me, label);

  /* 4. the fused layer0 with A gathered and copied, with other mover
   * counts, and the composed layer0 (every rank switches the same way): the
   * forward's bits */
  const int budget = comet_context_sm_budget(L->ctx);
  const int n_comms[] = {1, 2, 8, 24, budget - 1};
  for (int i = 0; i < 11 && comet_layer_layer0_fused(L); ++i) {
    const int n = i < 10 ? n_comms[i % 5] : 0;
    if (i < 10 && (n < 1 || n >= budget)) continue;
    if (i < 10) {
      CHECK_OK(comet_layer_set_layer0_gather(L, i / 5));
      CHECK_OK(comet_layer_set_n_comm(L, n));
    } else {
      CHECK_OK(comet_layer_set_layer0_path(L, COMET_LAYER0_COMPOSED));
    }
    CHECK_MSG(forward_matches(L, &a, stream, out_n, got, got2),
              "[rank %d] %s: %s (n_comm %d) differs from the default fused forward's bits", me,
              label, i < 5 ? "the fused layer0, A copied" : i < 10 ? "the fused layer0, A gathered"
                                                              : "the composed layer0", n);
  }
  if (!comet_layer_layer0_fused(L)) CHECK_OK(comet_layer_set_layer0_path(L, COMET_LAYER0_FUSED));
  /* the fused layer0 with static tiles (each GEMM CTA its share, the
   * movers move only; the default is dynamic), A copied and gathered, few
   * and many movers: the same bits */
  CHECK_OK(comet_layer_set_layer0_dynamic(L, 0));
  const int few_many[] = {1, 8, budget - 1}, ends[] = {1, budget - 1};
  layer0_sweep(L, &a, stream, out_n, got, got2, few_many, 3, budget, me, label, "with static tiles");
  CHECK_OK(comet_layer_set_layer0_dynamic(L, 1));
  /* the fused layer0's 3-stage ring (4 the default; wide tiles forced, so
   * that the 4 applied), A copied and gathered: the same bits */
  CHECK_OK(comet_layer_set_layer0_tile(L, 1));
  layer0_sweep(L, &a, stream, out_n, got, got2, ends, 2, budget, me, label, "with wide tiles");
  CHECK_OK(comet_layer_set_layer0_stages(L, 3));
  layer0_sweep(L, &a, stream, out_n, got, got2, ends, 2, budget, me, label, "with 3 stages");
  CHECK_OK(comet_layer_set_layer0_stages(L, 4));
  CHECK_OK(comet_layer_set_layer0_tile(L, -1));
  CHECK_OK(comet_layer_set_layer0_gather(L, -1));

  /* 5. the fused layer1 (opt-in) with several mover counts, the forward and
   * the halves: the composed layer1's bits */
  CHECK_OK(comet_layer_set_layer1_path(L, COMET_LAYER1_FUSED));
  for (int i = 0; i < 5; ++i) {
    const int n = i < 4 ? n_comms[i == 3 ? 4 : i] : 8;
    if (n < 1 || n >= budget) continue;
    CHECK_OK(comet_layer_set_n_comm(L, n));
    test_fill(g.out, 0xff, sizeof(uint16_t) * (out_n ? out_n : 1), stream);
    if (i < 4) {
      CHECK_OK(comet_moe_forward(L, &a, stream));
    } else {
      CHECK_OK(comet_dispatch_gemm(L, &d0, stream));
      CHECK_OK(comet_gemm_combine(L, &d1, stream));
    }
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(got2, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
    CHECK_MSG(memcmp(got, got2, sizeof(uint16_t) * out_n) == 0,
              "[rank %d] %s: the fused layer1 (%s, n_comm %d) differs from the composed bits", me,
              label, i < 4 ? "forward" : "halves", n);
  }
  CHECK_OK(comet_layer_set_layer1_path(L, COMET_LAYER1_COMPOSED));
  CHECK_OK(comet_layer_set_n_comm(L, 0));
  if (me == 0)
    printf("  %-44s out %.2e  h %.2e  %s\n", label, e_out, e_h,
           e_out < 1e-2 && e_h < 1e-2 ? "ok" : "FAILED");
  free(got); free(got2); free(got_h);
  free_dev(&g);
  for (int r = 0; r < W; ++r) { free(ref_out[r]); free(ref_h[r]); }
  comet_plan_free(&plan);
  free_world(&d);
}

typedef struct run_args {
  uint64_t seed;
  int quick;
} run_args_t;

/* calls out of order on a fresh layer (local: no rank is involved yet) */
static void out_of_order(comet_layer_t L, cudaStream_t stream) {
  comet_gemm_combine_args_t d1 = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
  d1.w2 = (void *)16;
  CHECK_ERR(comet_gemm_combine(L, &d1, stream), COMET_ERR_INVALID_ARGUMENT,
            "no comet_dispatch_gemm has run");
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const run_args_t *ra = (const run_args_t *)arg;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  const tshape_t quick = {8, 2, 128, 256, 24, COMET_DTYPE_BF16, COMET_ACT_SWIGLU};
  run_matrix(info, ctx, ra->seed, ra->quick, &quick,
             (1u << ROUTE_UNIFORM) | (1u << ROUTE_DROPPED), out_of_order, run_case);
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a;
  a.seed = test_seed(TEST);
  a.quick = w.quick;
  return test_run_worlds(TEST, &w, rank_body, &a, 900.0);
}
