/* SPDX-License-Identifier: Apache-2.0 */
/* test_graph_replay — a forward captured once in a CUDA graph (graph mode)
 * and replayed 100 times, with fresh x, routing, top-k weights and expert
 * weights uploaded before each replay (uniform, skewed onto two experts,
 * empty experts, dropped slots: tokens move between ranks differently each
 * time), every 10th replay interleaved with an eager forward on the same
 * data; each replay checked against the CPU reference, the eager and the
 * replayed bits equal, comet_layer_check OK. EP, and EP x TP where W >= 4.
 * The epoch lives on the device, so replays need no host. W = 1 real,
 * 2, 4, 8 loopback, NCCL on the GPUs present. Exit 77 if no GPU. */
#include "forward_test.h"

static const char *TEST = "test_graph_replay";

typedef struct run_args {
  uint64_t seed;
  int replays;
} run_args_t;

/* Fresh data for one replay into the captured buffers; returns the CPU
 * reference of this rank's output. */
static uint16_t *load_replay(const comet_layer_config_t *c, const comet_rank_info_t *info,
                             cudaStream_t stream, const dev_in_t *g, uint64_t seed, int kind) {
  const int W = info->world, me = info->rank;
  world_data_t d;
  make_world(&d, c, W, kind, seed, -1);
  const int T = d.tokens[me], El = c->num_experts / c->ep;
  uint16_t *ref_out[8] = {0};
  for (int r = 0; r < W; ++r)
    ref_out[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)d.tokens[r] * c->hidden + 1));
  CHECK_OK(comet_ref_forward(c, d.ref, ref_out, NULL, NULL));
  CUDA_OK(cudaMemcpyAsync(g->x, d.x[me], sizeof(uint16_t) * (size_t)T * c->hidden, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(g->ids, d.ids[me], sizeof(int32_t) * (size_t)T * c->topk, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(g->wt, d.wt[me], sizeof(float) * (size_t)T * c->topk, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(g->w1, d.w1[me], sizeof(uint16_t) * (size_t)El * comet_config_w1_rows(c) * c->hidden,
                          cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(g->w2, d.w2[me], sizeof(uint16_t) * (size_t)El * c->hidden * (c->ffn / c->tp),
                          cudaMemcpyHostToDevice, stream));
  test_fill(g->out, 0xff, sizeof(uint16_t) * ((size_t)T * c->hidden + 1), stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  uint16_t *mine = ref_out[me];
  for (int r = 0; r < W; ++r)
    if (r != me) free(ref_out[r]);
  free_world(&d);
  return mine;
}

static void run_layout(comet_context_t ctx, const comet_rank_info_t *info, const run_args_t *ra,
                       int ep, int tp, int replays, int fused1) {
  const int W = info->world, me = info->rank;
  cudaStream_t stream = comet_context_stream(ctx);
  const tshape_t sh = {8, 2, 128, 256, 40, COMET_DTYPE_BF16, COMET_ACT_SWIGLU};
  comet_layer_config_t c = make_cfg(&sh, ep, tp);
  comet_layer_t L = NULL;
  CHECK_OK(comet_layer_create(&L, ctx, &c));
  if (!L) return;
  if (fused1) CHECK_OK(comet_layer_set_layer1_path(L, COMET_LAYER1_FUSED));
  world_data_t d0;
  make_world(&d0, &c, W, ROUTE_UNIFORM, ra->seed, -1);
  const int T = d0.tokens[me];
  dev_in_t g = upload_rank(&d0, &c, me, comet_config_row_capacity(&c));
  free_world(&d0);
  const size_t out_n = (size_t)T * c.hidden;
  uint16_t *got = (uint16_t *)malloc(sizeof(uint16_t) * (out_n + 1));
  uint16_t *eager = (uint16_t *)malloc(sizeof(uint16_t) * (out_n + 1));
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1; a.w2 = g.w2;
  a.out = g.out;

  CHECK_OK(comet_layer_set_graph_mode(L, 1));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  CHECK_OK(comet_moe_forward(L, &a, stream));
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  int bad = 0;
  double worst = 0;
  for (int rep = 0; rep < replays; ++rep) {
    const int kind = rep % ROUTE_KINDS;
    const uint64_t seed = mix_seed(ra->seed, 100 + ep, rep, tp);
    uint16_t *ref = load_replay(&c, info, stream, &g, seed, kind);
    const int interleave = rep % 10 == 5;
    if (interleave) { /* an eager call between replays, on the same data */
      CHECK_OK(comet_moe_forward(L, &a, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      CUDA_OK(cudaMemcpy(eager, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
      test_fill(g.out, 0xff, sizeof(uint16_t) * (out_n + 1), stream);
    }
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CHECK_OK(comet_layer_check(L, stream));
    CUDA_OK(cudaMemcpy(got, g.out, sizeof(uint16_t) * out_n, cudaMemcpyDeviceToHost));
    const double e = rel_err(got, ref, out_n, 0);
    if (e > worst) worst = e;
    if (!(e < 1e-2)) bad++;
    CHECK_MSG(e < 1e-2, "[rank %d] ep %d tp %d replay %d (%s): rel err %.3g vs the CPU reference", me,
              ep, tp, rep, route_names[kind], e);
    if (interleave)
      CHECK_MSG(!memcmp(got, eager, sizeof(uint16_t) * out_n),
                "[rank %d] ep %d tp %d replay %d: the replay's bits differ from the eager call's", me,
                ep, tp, rep);
    free(ref);
  }
  if (me == 0)
    printf("  W%d ep%d tp%d layer1 %s: %d replays (each with fresh data, eager calls between), "
           "worst rel err %.2e: %s\n", W, ep, tp, fused1 ? "fused" : "composed", replays, worst,
           bad ? "FAILED" : "ok");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  free(got);
  free(eager);
  free_dev(&g);
  CHECK_OK(comet_layer_destroy(L));
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const run_args_t *ra = (const run_args_t *)arg;
  const int W = info->world;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  run_layout(ctx, info, ra, W, 1, ra->replays, 0);
  run_layout(ctx, info, ra, W, 1, ra->replays / 5, 1); /* the fused layer1 (opt-in) */
  if (W >= 4) run_layout(ctx, info, ra, W / 2, 2, 20, 0);
  if (W >= 4) run_layout(ctx, info, ra, W / 2, 2, 10, 1);
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a;
  a.seed = test_seed(TEST);
  a.replays = w.quick ? 10 : 100;
  return test_run_worlds(TEST, &w, rank_body, &a, 900.0);
}
