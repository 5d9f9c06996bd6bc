/* SPDX-License-Identifier: Apache-2.0 */
/* test_faults — one rank's failure is every rank's error, and no rank hangs:
 *   bad ids on one rank            -> COMET_ERR_ROUTING on every rank; in
 *                                     graph mode NaN out + comet_layer_check
 *   num_tokens > max on one rank   -> that rank's own message, the others
 *   NULL x on one rank                INVALID_ARGUMENT naming it
 *   NULL out in comet_gemm_combine
 *   a second comet_gemm_combine    -> refused on every rank (all repeat it)
 *   a config differing on one rank -> layer create fails on every rank
 *   a NULL config on one rank
 *   a failed allocation on one rank (injected)
 *   a stalled rank                 -> the others give up within the timeout
 *                                     (COMET_ERR_TIMEOUT naming the barrier
 *                                     and the rank), the layer stays failed
 *   comet_context_abort on one rank -> ABORTED there, TIMEOUT elsewhere
 * and after each (but the last two, which end a layer) the next good call
 * gives the CPU reference's answer. W = 1 real, 2, 4, 8 loopback, NCCL on the
 * GPUs present. Exit 77 if no GPU. */
#include <time.h>

#include "forward_test.h"

static const char *TEST = "test_faults";

typedef struct run_args { uint64_t seed; } run_args_t;

static const tshape_t SHAPE = {8, 2, 128, 256, 32, COMET_DTYPE_BF16, COMET_ACT_SWIGLU};

/* A good forward on fresh data equals the CPU reference. */
static void good_call(comet_layer_t L, const comet_layer_config_t *c, const comet_rank_info_t *info,
                      cudaStream_t stream, uint64_t seed, const char *after) {
  const int W = info->world, me = info->rank;
  world_data_t d;
  make_world(&d, c, W, ROUTE_SKEW, seed, -1);
  uint16_t *ref_out[8] = {0};
  for (int r = 0; r < W; ++r) ref_out[r] = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)d.tokens[r] * c->hidden + 1));
  CHECK_OK(comet_ref_forward(c, d.ref, ref_out, NULL, NULL));
  dev_in_t g = upload_rank(&d, c, me, comet_config_row_capacity(c));
  const size_t n = (size_t)d.tokens[me] * c->hidden;
  test_fill(g.out, 0xff, sizeof(uint16_t) * (n + 1), stream);
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = d.tokens[me]; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1;
  a.w2 = g.w2; a.out = g.out;
  CHECK_OK(comet_moe_forward(L, &a, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  uint16_t *got = (uint16_t *)malloc(sizeof(uint16_t) * (n + 1));
  CUDA_OK(cudaMemcpy(got, g.out, sizeof(uint16_t) * n, cudaMemcpyDeviceToHost));
  const double e = rel_err(got, ref_out[me], n, 0);
  CHECK_MSG(e < 1e-2, "[rank %d] the good call after %s: rel err %.3g", me, after, e);
  free(got);
  free_dev(&g);
  for (int r = 0; r < W; ++r) free(ref_out[r]);
  free_world(&d);
}

/* The forward's arguments with one thing broken on rank `bad`. */
enum { BREAK_IDS, BREAK_TOKENS, BREAK_X, BREAK_COMBINE_OUT, BREAK_REPEAT };
static const char *const break_names[] = {"ids out of range", "num_tokens > max", "x NULL",
                                          "gemm_combine out NULL",
                                          "a second gemm_combine (on every rank)"};

static void one_rank_bad(comet_layer_t L, const comet_layer_config_t *c, const comet_rank_info_t *info,
                         cudaStream_t stream, uint64_t seed, int what, int bad) {
  const int W = info->world, me = info->rank;
  world_data_t d;
  make_world(&d, c, W, ROUTE_UNIFORM, seed, -1);
  if (what == BREAK_IDS && me == bad) d.ids[me][3 * c->topk + 1] = c->num_experts + 5;
  dev_in_t g = upload_rank(&d, c, me, comet_config_row_capacity(c));
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = d.tokens[me]; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1;
  a.w2 = g.w2; a.out = g.out;
  char needle[128];
  comet_status_t want = COMET_ERR_INVALID_ARGUMENT;
  if (what == BREAK_IDS) {
    snprintf(needle, sizeof needle, "topk_ids[3][1] = %d on rank %d", c->num_experts + 5, bad);
    want = COMET_ERR_ROUTING;
    CHECK_ERR(comet_moe_forward(L, &a, stream), want, needle);
    /* graph mode: no host sync; NaN out, comet_layer_check reports it */
    CHECK_OK(comet_layer_set_graph_mode(L, 1));
    test_fill(g.out, 0, sizeof(uint16_t) * (size_t)d.tokens[me] * c->hidden, stream);
    CHECK_OK(comet_moe_forward(L, &a, stream));
    CHECK_ERR(comet_layer_check(L, stream), want, needle);
    uint16_t first = 0;
    CUDA_OK(cudaMemcpy(&first, g.out, sizeof first, cudaMemcpyDeviceToHost));
    CHECK_MSG(isnan(comet_bf16_to_f32(first)), "[rank %d] graph mode: a refused routing left out[0] = 0x%04x",
              me, first);
    CHECK_OK(comet_layer_set_graph_mode(L, 0));
  } else if (what == BREAK_TOKENS || what == BREAK_X) {
    if (me == bad) {
      if (what == BREAK_TOKENS) a.num_tokens = c->max_tokens_per_rank + 1;
      else a.x = NULL;
      CHECK_ERR(comet_moe_forward(L, &a, stream), want, what == BREAK_TOKENS ? "num_tokens" : "x is NULL");
    } else {
      snprintf(needle, sizeof needle, what == BREAK_TOKENS ? "rank %d's call was refused: its num_tokens"
                                                           : "rank %d's call was refused: its x is NULL", bad);
      CHECK_ERR(comet_moe_forward(L, &a, stream), want, needle);
    }
  } else {
    comet_dispatch_gemm_args_t d0 = COMET_DISPATCH_GEMM_ARGS_INITIALIZER;
    d0.num_tokens = a.num_tokens; d0.x = g.x; d0.topk_ids = g.ids; d0.w1 = g.w1;
    CHECK_OK(comet_dispatch_gemm(L, &d0, stream));
    comet_gemm_combine_args_t d1 = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
    d1.num_tokens = a.num_tokens; d1.topk_weights = g.wt; d1.w2 = g.w2; d1.out = g.out;
    if (what == BREAK_REPEAT) {
      CHECK_OK(comet_gemm_combine(L, &d1, stream));
      snprintf(needle, sizeof needle, "second comet_gemm_combine");
      CHECK_ERR(comet_gemm_combine(L, &d1, stream), want, needle);
    } else if (me == bad) {
      d1.out = NULL;
      CHECK_ERR(comet_gemm_combine(L, &d1, stream), want, "out is NULL");
    } else {
      snprintf(needle, sizeof needle, "rank %d's call was refused: its out is NULL", bad);
      CHECK_ERR(comet_gemm_combine(L, &d1, stream), want, needle);
    }
  }
  if (me == 0) printf("  %s on rank %d -> rank 0: %s\n", break_names[what], bad, comet_last_error());
  CUDA_OK(cudaStreamSynchronize(stream));
  free_dev(&g);
  free_world(&d);
  char after[64];
  snprintf(after, sizeof after, "%s on rank %d", break_names[what], bad);
  good_call(L, c, info, stream, mix_seed(seed, 7, what, bad), after);
}

/* Layer creation with one rank's config (or allocation) broken. */
static void create_faults(comet_context_t ctx, const comet_rank_info_t *info) {
  const int W = info->world, me = info->rank, bad = W - 1;
  comet_layer_config_t c = make_cfg(&SHAPE, W, 1);
  comet_layer_t L = NULL;
  char needle[96];
  if (W >= 2) {
    comet_layer_config_t c2 = c;
    if (me == bad) c2.max_tokens_per_rank = 64;
    snprintf(needle, sizeof needle, "rank %d has max_tokens_per_rank = 64", bad);
    CHECK_ERR(comet_layer_create(&L, ctx, &c2), COMET_ERR_INVALID_ARGUMENT, needle);
    CHECK(L == NULL);
    if (me == 0) printf("  a config differing on rank %d -> %s\n", bad, comet_last_error());
  }
  snprintf(needle, sizeof needle, "rank %d's config is refused: config is NULL", bad);
  CHECK_ERR(comet_layer_create(&L, ctx, me == bad ? NULL : &c), COMET_ERR_INVALID_ARGUMENT, needle);
  if (me == 0) printf("  a NULL config on rank %d -> %s\n", bad, comet_last_error());
  comet_layer_config_t c3 = c;
  if (me == bad) c3.hidden = 100;
  snprintf(needle, sizeof needle, "rank %d's config is refused: config.hidden = 100", bad);
  CHECK_ERR(comet_layer_create(&L, ctx, &c3), COMET_ERR_INVALID_ARGUMENT, needle);
  if (me == bad) ctx->inject = COMET_INJECT_ALLOC;
  snprintf(needle, sizeof needle, "failed on rank %d", bad);
  CHECK_ERR(comet_layer_create(&L, ctx, &c), COMET_ERR_OUT_OF_MEMORY, needle);
  if (me == 0) printf("  an allocation failing on rank %d -> %s\n", bad, comet_last_error());
  ctx->inject = 0;
  CHECK_OK(comet_layer_create(&L, ctx, &c)); /* and then it works */
  CHECK_OK(comet_layer_destroy(L));
}

/* Rank W-1 skips a call (stall) or aborts: the others give up in time. */
static void stall(comet_context_t ctx, const comet_rank_info_t *info, cudaStream_t stream,
                  uint64_t seed, int abort_it) {
  const int W = info->world, me = info->rank, bad = W - 1;
  const double timeout = 2.0;
  comet_layer_config_t c = make_cfg(&SHAPE, W, 1);
  CHECK_OK(comet_context_set_timeout(ctx, timeout));
  comet_layer_t L = NULL;
  CHECK_OK(comet_layer_create(&L, ctx, &c));
  CHECK_OK(comet_context_set_timeout(ctx, 10.0));
  if (!L) return;
  world_data_t d;
  make_world(&d, &c, W, ROUTE_UNIFORM, seed, -1);
  dev_in_t g = upload_rank(&d, &c, me, comet_config_row_capacity(&c));
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = d.tokens[me]; a.x = g.x; a.topk_ids = g.ids; a.topk_weights = g.wt; a.w1 = g.w1;
  a.w2 = g.w2; a.out = g.out;
  test_barrier(ctx, stream);
  const double t0 = test_now_s();
  char needle[96];
  if (me == bad && !abort_it) {
    struct timespec ts = {(time_t)timeout + 1, 0};
    nanosleep(&ts, NULL); /* never makes the call the others wait for */
  } else if (me == bad) {
    CHECK_OK(comet_context_abort(ctx));
    CHECK_ERR(comet_moe_forward(L, &a, stream), COMET_ERR_ABORTED, "comet_context_abort");
  } else {
    /* the first to give up names the rank that never came; the others may
     * stop on its word instead: both name the plan's barrier */
    snprintf(needle, sizeof needle, abort_it ? "rank %d reported" : "waiting at the barrier of the plan", bad);
    CHECK_ERR(comet_moe_forward(L, &a, stream), COMET_ERR_TIMEOUT, needle);
    const double dt = test_now_s() - t0;
    CHECK_MSG(dt < timeout + 3.0, "[rank %d] gave up after %.1f s (timeout %.1f s)", me, dt, timeout);
    if (me == 0) printf("  %s on rank %d -> rank 0 after %.2f s: %s\n", abort_it ? "abort" : "a stall",
                        bad, dt, comet_last_error());
    /* later calls on the layer fail at once with the same error */
    CHECK_ERR(comet_moe_forward(L, &a, stream), COMET_ERR_TIMEOUT, needle);
  }
  if (me == bad && !abort_it) { /* its own next call cannot succeed either */
    comet_status_t s = comet_moe_forward(L, &a, stream);
    if (s == COMET_OK) s = comet_layer_check(L, stream);
    CHECK_MSG(s == COMET_ERR_TIMEOUT, "[rank %d] after stalling: %s (%s)", me, comet_status_string(s),
              comet_last_error());
  }
  CUDA_OK(cudaStreamSynchronize(stream));
  free_dev(&g);
  free_world(&d);
  CHECK_OK(comet_layer_destroy(L));
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const run_args_t *ra = (const run_args_t *)arg;
  const int W = info->world;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  cudaStream_t stream = comet_context_stream(ctx);
  create_faults(ctx, info);
  comet_layer_config_t c = make_cfg(&SHAPE, W, 1);
  comet_layer_t L = NULL;
  CHECK_OK(comet_layer_create(&L, ctx, &c));
  if (!L) return 1;
  for (int what = BREAK_IDS; what <= BREAK_REPEAT; ++what) /* the last rank, then rank 0 */
    for (int b = 0; b < (W > 1 && what != BREAK_REPEAT ? 2 : 1); ++b)
      one_rank_bad(L, &c, info, stream, mix_seed(ra->seed, what, b, 1), what, b ? 0 : W - 1);
  CHECK_OK(comet_layer_destroy(L));
  if (W > 1) {
    stall(ctx, info, stream, mix_seed(ra->seed, 50, 0, 0), 0);
    stall(ctx, info, stream, mix_seed(ra->seed, 51, 0, 0), 1); /* the context stays aborted */
  }
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a;
  a.seed = test_seed(TEST);
  return test_run_worlds(TEST, &w, rank_body, &a, 900.0);
}
