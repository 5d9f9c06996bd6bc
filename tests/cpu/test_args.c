/* SPDX-License-Identifier: Apache-2.0 */
/* test_args.c — per-call argument checks of the forward and the fused ops:
 * each bad argument gets INVALID_ARGUMENT with a message naming it, and the
 * fault record the plan sends to the other ranks says the same. */
#include "args.h"
#include "kernels/fill.h"
#include "test_util.h"

int main(void) {
  comet_layer_config_t c = COMET_LAYER_CONFIG_INITIALIZER;
  c.hidden = 1024; c.ffn = 2048; c.num_experts = 8; c.topk = 2; c.ep = 2; c.tp = 1;
  c.max_tokens_per_rank = 128;
  static _Alignas(16) char buf[4][64];
  const int32_t ids[4] = {0};
  (void)ids;
  const float w[4] = {0};
  comet_arg_fault_t f;

  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = 2; a.x = buf[0]; a.topk_ids = ids; a.topk_weights = w; a.w1 = buf[1];
  a.w2 = buf[2]; a.out = buf[3];
  CHECK_OK(comet_moe_args_check(&c, &a, &f));
  comet_moe_args_t b = a; b.num_tokens = 129;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "num_tokens = 129 outside 0..max_tokens_per_rank (128)");
  b = a; b.num_tokens = -1;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "num_tokens = -1");
  CHECK(f.kind == COMET_ARG_TOKENS && f.value == -1);
  b = a; b.x = NULL;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "comet_moe_forward: x is NULL");
  CHECK(f.kind == COMET_ARG_NULL && f.field == COMET_FIELD_X);
  b = a; b.out = buf[3] + 2;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "out = ");
  CHECK(strstr(comet_last_error(), "not 16-byte aligned") != NULL);
  CHECK(f.kind == COMET_ARG_ALIGN && f.field == COMET_FIELD_OUT);
  b = a; b.saved_z = buf[1]; /* save mode: optional, aligned */
  CHECK_OK(comet_moe_args_check(&c, &b, &f));
  b.saved_z = buf[1] + 2;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "comet_moe_forward: saved_z = ");
  CHECK(f.kind == COMET_ARG_ALIGN && f.field == COMET_FIELD_SAVED_Z);
  b = a; b.topk_ids = NULL;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "topk_ids is NULL");
  b = a; b.topk_weights = NULL;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "topk_weights is NULL");
  b = a; b.w1 = NULL;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "w1 is NULL");
  b = a; b.w2 = NULL;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "w2 is NULL");
  b = a; b.size = 8;
  CHECK_ERR(comet_moe_args_check(&c, &b, &f), COMET_ERR_INVALID_ARGUMENT, "args.size = 8");
  CHECK_ERR(comet_moe_args_check(&c, NULL, &f), COMET_ERR_INVALID_ARGUMENT, "args is NULL");
  CHECK(f.kind == COMET_ARG_STRUCT);
  /* A rank with no tokens may pass NULL token pointers; it still needs weights
   * (it computes the experts for the other ranks' tokens). */
  b = a; b.num_tokens = 0; b.x = NULL; b.out = NULL; b.topk_ids = NULL; b.topk_weights = NULL;
  CHECK_OK(comet_moe_args_check(&c, &b, &f));
  CHECK(f.kind == COMET_ARG_NONE);

  comet_dispatch_gemm_args_t d = COMET_DISPATCH_GEMM_ARGS_INITIALIZER;
  d.num_tokens = 2; d.x = buf[0]; d.topk_ids = ids; d.w1 = buf[1];
  CHECK_OK(comet_dispatch_gemm_args_check(&c, &d, &f));
  comet_dispatch_gemm_args_t d2 = d; d2.w1 = NULL;
  CHECK_ERR(comet_dispatch_gemm_args_check(&c, &d2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_dispatch_gemm: w1 is NULL");
  d2 = d; d2.h = buf[2] + 4;
  CHECK_ERR(comet_dispatch_gemm_args_check(&c, &d2, &f), COMET_ERR_INVALID_ARGUMENT, "h = ");
  d2 = d; d2.num_tokens = 500;
  CHECK_ERR(comet_dispatch_gemm_args_check(&c, &d2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_dispatch_gemm: num_tokens = 500");

  comet_gemm_combine_args_t g = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
  g.num_tokens = 2; g.topk_weights = w; g.w2 = buf[2]; g.out = buf[3];
  CHECK_OK(comet_gemm_combine_args_check(&c, &g, &f));
  comet_gemm_combine_args_t g2 = g; g2.out = NULL;
  CHECK_ERR(comet_gemm_combine_args_check(&c, &g2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_gemm_combine: out is NULL");
  g2 = g; g2.topk_weights = NULL;
  CHECK_ERR(comet_gemm_combine_args_check(&c, &g2, &f), COMET_ERR_INVALID_ARGUMENT, "topk_weights is NULL");
  g2 = g; g2.size = 0;
  CHECK_ERR(comet_gemm_combine_args_check(&c, &g2, &f), COMET_ERR_INVALID_ARGUMENT, "args.size = 0");
  comet_moe_backward_args_t k = COMET_MOE_BACKWARD_ARGS_INITIALIZER;
  k.num_tokens = 2; k.x = buf[0]; k.topk_ids = ids; k.topk_weights = w; k.w1 = buf[1];
  k.w2 = buf[2]; k.dout = buf[3]; k.dx = buf[0];
  CHECK_OK(comet_moe_backward_args_check(&c, &k, &f));
  comet_moe_backward_args_t k2 = k; k2.dout = NULL;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_moe_backward: dout is NULL");
  CHECK(f.kind == COMET_ARG_NULL && f.field == COMET_FIELD_DOUT);
  k2 = k; k2.dx = buf[0] + 2;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT, "dx = ");
  CHECK(strstr(comet_last_error(), "not 16-byte aligned") != NULL);
  CHECK(f.kind == COMET_ARG_ALIGN);
  k2 = k; k2.saved_z = buf[1] + 2;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_moe_backward: saved_z = ");
  CHECK(f.kind == COMET_ARG_ALIGN && f.field == COMET_FIELD_SAVED_Z);
  k2 = k; k2.dx = NULL;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT,
            "dx, dw1, dw2 and dtopk_weights are all NULL: nothing to compute");
  CHECK(f.kind == COMET_ARG_NULL && f.field == COMET_FIELD_GRADS);
  k2 = k; k2.dx = NULL; k2.dw2 = buf[2]; /* any one gradient is enough */
  CHECK_OK(comet_moe_backward_args_check(&c, &k2, &f));
  k2 = k; k2.num_tokens = 129;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT, "comet_moe_backward: num_tokens = 129");
  CHECK(f.kind == COMET_ARG_TOKENS);
  k2 = k; k2.size = 16;
  CHECK_ERR(comet_moe_backward_args_check(&c, &k2, &f), COMET_ERR_INVALID_ARGUMENT, "args.size = 16");
  /* a rank with no tokens: NULL token pointers, dout included */
  k2 = k; k2.num_tokens = 0; k2.x = NULL; k2.topk_ids = NULL; k2.topk_weights = NULL; k2.dout = NULL;
  k2.dx = NULL; k2.dw1 = buf[1];
  CHECK_OK(comet_moe_backward_args_check(&c, &k2, &f));
  /* the device fills and copies refuse NULL before any launch; nothing to do for 0 bytes */
  CHECK_ERR(comet_fill_bytes_launch(NULL, 0, 16, NULL), COMET_ERR_INVALID_ARGUMENT,
            "fill of 16 bytes: pointer is NULL");
  CHECK_ERR(comet_copy_bytes_launch(buf[0], NULL, 16, NULL), COMET_ERR_INVALID_ARGUMENT,
            "copy of 16 bytes: a pointer is NULL");
  CHECK_OK(comet_fill_bytes_launch(NULL, 0, 0, NULL));
  return test_finish("test_args");
}
