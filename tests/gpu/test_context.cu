/* SPDX-License-Identifier: Apache-2.0 */
/* test_context — the context's bad-input paths that need a GPU, and the
 * tuning table on a real call:
 *  - comet_context_set_timeout refuses 0, negative and huge values;
 *  - loopback: a second context for a rank and destroying the world while a
 *    context lives are refused (and change nothing);
 *  - comet_context_set_tuning_table: a missing or malformed table is a
 *    warning (COMET_OK) and the cost model chooses; a table with an entry
 *    for the call's shape and tokens sets the fused layer0's movers (from =
 *    table), an override wins over it, and the output has the same bits
 *    whichever chose, equal to the CPU reference within bf16 rounding.
 * Exit 77 if no GPU. */
#include <stdio.h>
#include <unistd.h>

#include "forward_test.h"
#include "layer.h"

static const char *TEST = "test_context";

static void timeout_cases(comet_context_t ctx) {
  CHECK_ERR(comet_context_set_timeout(ctx, 0), COMET_ERR_INVALID_ARGUMENT, "must be in (0, 1e6)");
  CHECK_ERR(comet_context_set_timeout(ctx, -2), COMET_ERR_INVALID_ARGUMENT, "must be in (0, 1e6)");
  CHECK_ERR(comet_context_set_timeout(ctx, 1e7), COMET_ERR_INVALID_ARGUMENT, "must be in (0, 1e6)");
  CHECK_ERR(comet_context_set_timeout(NULL, 5), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_OK(comet_context_set_timeout(ctx, 10));
  CHECK_ERR(comet_context_set_tuning_table(NULL, "x"), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
}

static void loopback_cases(const comet_rank_info_t *info) {
  if (!info->loopback) return;
  comet_context_t second = NULL;
  CHECK_ERR(comet_context_create_loopback(&second, info->loopback, info->rank),
            COMET_ERR_INVALID_ARGUMENT, "already has a context");
  CHECK(second == NULL);
  if (info->rank == 0)
    CHECK_ERR(comet_loopback_destroy(info->loopback), COMET_ERR_INVALID_ARGUMENT,
              "still has a context");
}

/* One W = 1 forward; its output in got (host). */
static void forward_once(comet_layer_t L, const dev_in_t *g, int T, const comet_layer_config_t *c,
                         cudaStream_t stream, uint16_t *got) {
  const size_t n = (size_t)T * c->hidden;
  test_fill(g->out, 0xff, sizeof(uint16_t) * (n ? n : 1), stream);
  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = g->x; a.topk_ids = g->ids; a.topk_weights = g->wt; a.w1 = g->w1;
  a.w2 = g->w2; a.out = g->out;
  CHECK_OK(comet_moe_forward(L, &a, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got, g->out, sizeof(uint16_t) * n, cudaMemcpyDeviceToHost));
}

static void tuning_cases(comet_context_t ctx, const comet_rank_info_t *info, uint64_t seed) {
  if (info->world != 1) return;
  cudaStream_t stream = comet_context_stream(ctx);
  /* A forced copied (layer0 has movers at W = 1) on a small shape */
  const tshape_t sh = {8, 2, 256, 512, 96, COMET_DTYPE_BF16, COMET_ACT_SWIGLU};
  const comet_layer_config_t c = make_cfg(&sh, 1, 1);
  world_data_t d;
  make_world(&d, &c, 1, ROUTE_UNIFORM, seed, -1);
  const int T = d.tokens[0];
  uint16_t *ref = (uint16_t *)malloc(sizeof(uint16_t) * ((size_t)T * c.hidden + 1));
  uint16_t *refs[1] = {ref};
  CHECK_OK(comet_ref_forward(&c, d.ref, refs, NULL, NULL));
  const dev_in_t g = upload_rank(&d, &c, 0, comet_config_row_capacity(&c));
  const size_t n = (size_t)T * c.hidden;
  uint16_t *by_model = (uint16_t *)malloc(sizeof(uint16_t) * (n + 1));
  uint16_t *by_table = (uint16_t *)malloc(sizeof(uint16_t) * (n + 1));

  /* a malformed table: a warning, the model chooses */
  char bad[] = "/tmp/comet_test_context_bad_XXXXXX", good[] = "/tmp/comet_test_context_XXXXXX";
  const int fb = mkstemp(bad), fg = mkstemp(good);
  CHECK(fb >= 0 && fg >= 0);
  FILE *f = fdopen(fb, "w");
  fprintf(f, "comet-tuning-table 1\n\"%s\" 1 1 1 256 512 8 2 96 layer0 three auto copied 1\n",
          ctx->device_name);
  fclose(f);
  CHECK_OK(comet_context_set_tuning_table(ctx, bad));
  CHECK(ctx->tuning.n == 0);
  comet_layer_t L = NULL;
  CHECK_OK(comet_layer_create(&L, ctx, &c));
  CHECK_OK(comet_layer_set_layer0_gather(L, 0));
  forward_once(L, &g, T, &c, stream, by_model);
  CHECK_MSG(comet_layer_layer0_from(L) == COMET_FROM_MODEL, "a malformed table: from %d", L->c0.from);
  CHECK_OK(comet_layer_destroy(L));
  CHECK_OK(comet_context_set_tuning_table(ctx, "/nonexistent/comet-tuning.txt")); /* missing */
  CHECK(ctx->tuning.n == 0);

  /* a good one with this shape at 64 tokens (the nearest bucket to T) */
  f = fdopen(fg, "w");
  fprintf(f, "comet-tuning-table 1\n\"%s\" 1 1 1 256 512 8 2 64 layer0 3 auto copied 1.0\n",
          ctx->device_name);
  fclose(f);
  CHECK_OK(comet_context_set_tuning_table(ctx, good));
  CHECK(ctx->tuning.n == 1);
  CHECK_OK(comet_layer_create(&L, ctx, &c));
  CHECK_OK(comet_layer_set_layer0_gather(L, 0));
  CHECK_ERR(comet_layer_set_layer0_dynamic(L, 2), COMET_ERR_INVALID_ARGUMENT, "2 is not 0 or 1");
  CHECK_ERR(comet_layer_set_layer0_dynamic(NULL, 1), COMET_ERR_INVALID_ARGUMENT, "layer is NULL");
  CHECK_ERR(comet_layer_set_layer0_stages(L, 5), COMET_ERR_INVALID_ARGUMENT, "5 is not 3 or 4");
  forward_once(L, &g, T, &c, stream, by_table);
  CHECK_MSG(comet_layer_layer0_from(L) == COMET_FROM_TABLE && comet_layer_layer0_n_comm(L) == 3 &&
                !comet_layer_layer0_gather(L),
            "the table's entry: from %d, n_comm %d, gather %d", L->c0.from, L->c0.n_comm,
            comet_layer_layer0_gather(L));
  CHECK_MSG(!memcmp(by_model, by_table, sizeof(uint16_t) * n),
            "the model's and the table's choices give different bits");
  CHECK_OK(comet_layer_set_n_comm(L, 5)); /* an override wins */
  forward_once(L, &g, T, &c, stream, by_table);
  CHECK(comet_layer_layer0_from(L) == COMET_FROM_OVERRIDE && comet_layer_layer0_n_comm(L) == 5);
  CHECK(!memcmp(by_model, by_table, sizeof(uint16_t) * n));
  const double e = rel_err(by_table, ref, n, 0);
  CHECK_MSG(e < 1e-2, "rel err %.3g vs the CPU reference", e);
  CHECK_OK(comet_layer_destroy(L));
  CHECK_OK(comet_context_set_tuning_table(ctx, NULL)); /* back to the shipped one */
  printf("  tuning table: malformed and missing -> model; entry -> n_comm 3 from the table; "
         "override 5; bits equal; rel err %.2e\n", e);
  unlink(bad);
  unlink(good);
  free(by_model);
  free(by_table);
  free(ref);
  dev_in_t gg = g;
  free_dev(&gg);
  free_world(&d);
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const uint64_t seed = *(const uint64_t *)arg;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  timeout_cases(ctx);
  loopback_cases(info);
  tuning_cases(ctx, info, seed);
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  test_worlds_t w = test_parse_worlds(argc, argv);
  uint64_t seed = test_seed(TEST);
  return test_run_worlds(TEST, &w, rank_body, &seed, 300.0);
}
