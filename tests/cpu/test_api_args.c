/* SPDX-License-Identifier: Apache-2.0 */
/* test_api_args.c — the public functions refuse bad arguments before they
 * touch a GPU or a communicator: each case asserts the status and that the
 * message names the argument. Runs without a GPU. */
#include <cuda_runtime.h>

#include "test_util.h"

int main(void) {
  comet_unique_id_t id;
  memset(&id, 0, sizeof id);
  comet_context_t ctx = (comet_context_t)0;
  CHECK_ERR(comet_get_unique_id(NULL), COMET_ERR_INVALID_ARGUMENT, "id is NULL");
  CHECK_ERR(comet_context_create(NULL, 0, 1, &id, 0), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_ERR(comet_context_create(&ctx, 0, 1, NULL, 0), COMET_ERR_INVALID_ARGUMENT, "id is NULL");
  CHECK_ERR(comet_context_create(&ctx, 0, 0, &id, 0), COMET_ERR_INVALID_ARGUMENT, "world_size = 0");
  CHECK_ERR(comet_context_create(&ctx, 4, 4, &id, 0), COMET_ERR_INVALID_ARGUMENT,
            "rank = 4 is outside 0..world_size-1 (3)");
  CHECK_ERR(comet_context_create(&ctx, -1, 4, &id, 0), COMET_ERR_INVALID_ARGUMENT, "rank = -1");
  CHECK(ctx == NULL);
  CHECK_ERR(comet_context_create_from_comm(NULL, NULL, 0), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_ERR(comet_context_create_from_comm(&ctx, NULL, 0), COMET_ERR_INVALID_ARGUMENT, "comm is NULL");
  CHECK_OK(comet_context_destroy(NULL)); /* like free(NULL) */

  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  cfg.hidden = 1024; cfg.ffn = 2048; cfg.num_experts = 8; cfg.topk = 2; cfg.max_tokens_per_rank = 64;
  comet_layer_t layer = (comet_layer_t)0;
  CHECK_ERR(comet_layer_create(NULL, NULL, &cfg), COMET_ERR_INVALID_ARGUMENT, "layer is NULL");
  CHECK_ERR(comet_layer_create(&layer, NULL, &cfg), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK(layer == NULL);
  CHECK_OK(comet_layer_destroy(NULL));

  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  CHECK_ERR(comet_moe_forward(NULL, &a, NULL), COMET_ERR_INVALID_ARGUMENT, "comet_moe_forward: layer is NULL");
  comet_dispatch_gemm_args_t d0 = COMET_DISPATCH_GEMM_ARGS_INITIALIZER;
  CHECK_ERR(comet_dispatch_gemm(NULL, &d0, NULL), COMET_ERR_INVALID_ARGUMENT, "comet_dispatch_gemm: layer is NULL");
  comet_gemm_combine_args_t d1 = COMET_GEMM_COMBINE_ARGS_INITIALIZER;
  CHECK_ERR(comet_gemm_combine(NULL, &d1, NULL), COMET_ERR_INVALID_ARGUMENT, "comet_gemm_combine: layer is NULL");
  CHECK_ERR(comet_layer_set_graph_mode(NULL, 1), COMET_ERR_INVALID_ARGUMENT, "layer is NULL");
  CHECK_ERR(comet_layer_check(NULL, NULL), COMET_ERR_INVALID_ARGUMENT, "layer is NULL");
  CHECK(comet_context_rank(NULL) == -1 && comet_context_world_size(NULL) == -1);
  CHECK(comet_context_sm_budget(NULL) == 0 && comet_context_stream(NULL) == NULL);
  CHECK_ERR(comet_context_set_timeout(NULL, 1.0), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_ERR(comet_context_abort(NULL), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_ERR(comet_context_make_current(NULL), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");

  /* the loopback world */
  comet_loopback_t w = (comet_loopback_t)0;
  CHECK_ERR(comet_loopback_create(NULL, 2, 0), COMET_ERR_INVALID_ARGUMENT, "world is NULL");
  CHECK_ERR(comet_loopback_create(&w, 0, 0), COMET_ERR_INVALID_ARGUMENT, "world_size = 0");
  CHECK_ERR(comet_loopback_create(&w, 65, 0), COMET_ERR_INVALID_ARGUMENT, "world_size = 65");
  CHECK_ERR(comet_context_create_loopback(&ctx, NULL, 0), COMET_ERR_INVALID_ARGUMENT, "world is NULL");
  CHECK_ERR(comet_context_create_loopback(NULL, NULL, 0), COMET_ERR_INVALID_ARGUMENT, "ctx is NULL");
  CHECK_OK(comet_loopback_destroy(NULL));
  CHECK(comet_loopback_sm_per_rank(NULL) == 0);
  /* Without a driver (as in CI) a context fails with a plain message, never
   * the runtime's "driver version is insufficient" (only then: on a GPU
   * machine this zeroed id would be handed to NCCL). */
  int drv = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
    CHECK_ERR(comet_context_create(&ctx, 0, 1, &id, 0), COMET_ERR_UNSUPPORTED,
              "no CUDA driver is installed");
    CHECK(strstr(comet_last_error(), "insufficient") == NULL);
    printf("context without a driver: %s\n", comet_last_error());
  }
  /* Without a GPU (as in CI) a loopback world fails with a plain message, never
   * the runtime's "driver version is insufficient". */
  comet_status_t st = comet_loopback_create(&w, 2, 0);
  if (st == COMET_OK) {
    CHECK_OK(comet_loopback_destroy(w));
  } else {
    CHECK_MSG(strstr(comet_last_error(), "insufficient") == NULL, "message: %s", comet_last_error());
    CHECK_MSG(strstr(comet_last_error(), "driver") || strstr(comet_last_error(), "GPU") ||
                  strstr(comet_last_error(), "CUDA_"),
              "message: %s", comet_last_error());
    printf("loopback world without a usable GPU: %s\n", comet_last_error());
  }
  return test_finish("test_api_args");
}
