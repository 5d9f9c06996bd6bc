/* SPDX-License-Identifier: Apache-2.0 */
/* test_workspace.c — comet_layer_workspace_bytes: what a config costs before
 * creating it. The README's formula gives the same bytes (to within the
 * 256-byte rounding of each region); the rows and y share one region; the
 * regions only the pull dispatch (x) and the push combine (ret) use are
 * only counted under those protocols; DeepSeek-V3 (H 7168, E 256, K 8) at
 * 8192 tokens per rank with EP 8 fits an H200 at the default capacity. */
#include <math.h>
#include <stdlib.h>

#include "comet.h"
#include "test_util.h"

/* The README's formula (without the per-region rounding). */
static double formula(const comet_layer_config_t *c, int W, int pull, int push) {
  const double T = c->max_tokens_per_rank, K = c->topk, E = c->num_experts, El = E / c->ep;
  const double tp = c->tp, b = 2, H = c->hidden, Fl = c->ffn / c->tp;
  const double cap = (double)comet_config_row_capacity(c);
  const double blocks = ceil(H / 256);
  double bytes = cap * (H * b + Fl * b + 20) + (cap / 128 + El) * (48 + 8 * blocks) +
                 T * K * (8 + 4 * tp) + 4 * E * (T / 256 + 3 * W + 5 + tp) + 8 * El * (2 * W + 1) +
                 68 * W + 264.0 * (128 * 256 * 4 + 8);
  if (pull) bytes += T * H * b;
  if (push) bytes += T * K * tp * H * b;
  return bytes;
}

int main(void) {
  comet_layer_config_t c = COMET_LAYER_CONFIG_INITIALIZER;
  CHECK(comet_config_from_preset(&c, "deepseek-v3") == COMET_OK);
  c.ep = 8; c.tp = 1; c.max_tokens_per_rank = 8192;
  size_t bytes = 0;
  unsetenv("COMET_DISPATCH_MODE");
  unsetenv("COMET_COMBINE_MODE");
  CHECK_OK(comet_layer_workspace_bytes(&c, 8, &bytes));
  const double want = formula(&c, 8, 0, 0);
  printf("deepseek-v3, EP 8, 8192 tokens/rank: %.2f GB per rank (formula %.2f GB)\n", bytes / 1e9,
         want / 1e9);
  CHECK_MSG(bytes < 141e9 * 0.5, "DeepSeek-V3 EP 8 at 8192 tokens needs %.1f GB of an H200's 141",
            bytes / 1e9);
  CHECK_MSG(bytes >= want * 0.999 && bytes < want * 1.001 + 64 * 1024, "workspace %zu vs formula %.0f", bytes, want);
  /* rows and y share memory: less than two copies of the rows */
  const double rows = (double)comet_config_row_capacity(&c) * c.hidden * 2;
  CHECK(bytes < 2 * rows);
  /* save mode's z: every row of the capacity, fc1's width (2F/tp for
   * SwiGLU), and one row more for the forward's stamp (32 bytes) */
  CHECK(comet_config_saved_z_bytes(&c) ==
        (size_t)(comet_config_row_capacity(&c) + 1) * comet_config_w1_rows(&c) * 2);
  /* the narrowest rows (8 elements: 16 bytes) need two for the stamp */
  comet_layer_config_t narrow = c;
  narrow.activation = COMET_ACT_NONE;
  narrow.ffn = 8 * narrow.tp;
  CHECK(comet_config_saved_z_bytes(&narrow) == (size_t)(comet_config_row_capacity(&narrow) + 2) * 16);

  /* the protocol regions are counted only when chosen */
  setenv("COMET_DISPATCH_MODE", "pull", 1);
  size_t pull = 0;
  CHECK_OK(comet_layer_workspace_bytes(&c, 8, &pull));
  CHECK_MSG(pull >= bytes + (size_t)c.max_tokens_per_rank * c.hidden * 2, "pull %zu vs push %zu", pull, bytes);
  unsetenv("COMET_DISPATCH_MODE");
  setenv("COMET_COMBINE_MODE", "push", 1);
  size_t push = 0;
  CHECK_OK(comet_layer_workspace_bytes(&c, 8, &push));
  CHECK_MSG(push >= bytes + (size_t)c.max_tokens_per_rank * c.topk * c.hidden * 2, "push %zu", push);
  CHECK(push < formula(&c, 8, 0, 1) * 1.001 + 64 * 1024);
  unsetenv("COMET_COMBINE_MODE");

  /* a smaller row capacity costs less; bad arguments are refused */
  comet_layer_config_t c2 = c;
  c2.max_rows_per_rank = 100000;
  size_t small = 0;
  CHECK_OK(comet_layer_workspace_bytes(&c2, 8, &small));
  CHECK(small < bytes / 4);
  CHECK_ERR(comet_layer_workspace_bytes(&c, 4, &bytes), COMET_ERR_INVALID_ARGUMENT, "world_size = 4");
  CHECK_ERR(comet_layer_workspace_bytes(&c, 8, NULL), COMET_ERR_INVALID_ARGUMENT, "bytes is NULL");
  CHECK_ERR(comet_layer_workspace_bytes(NULL, 8, &bytes), COMET_ERR_INVALID_ARGUMENT, "config is NULL");
  return test_finish("test_workspace");
}
