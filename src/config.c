/* SPDX-License-Identifier: Apache-2.0 */
/* config.c — layer config validation, dtype/activation names, version. */
#include <stdint.h>

#include "error.h"
#include "kernels/comm/comm.h"
#include "kernels/gemm/gemm.h"
#include "kernels/saved_z.h"
#include "plan_core.h"
#include "transport/transport.h"

/* Shared memory one CTA may have on Hopper (227 KiB). */
#define SMEM_MAX (227 * 1024)

int comet_version(void) { return COMET_VERSION_CODE; }

const char *comet_dtype_name(comet_dtype_t dtype) {
  switch (dtype) {
    case COMET_DTYPE_BF16: return "bf16";
    case COMET_DTYPE_FP16: return "fp16";
    case COMET_DTYPE_FP8_E4M3: return "fp8_e4m3";
  }
  return "unknown";
}

const char *comet_activation_name(comet_activation_t act) {
  switch (act) {
    case COMET_ACT_SWIGLU: return "swiglu";
    case COMET_ACT_GELU: return "gelu";
    case COMET_ACT_NONE: return "none";
  }
  return "unknown";
}

size_t comet_dtype_size(comet_dtype_t dtype) {
  switch (dtype) {
    case COMET_DTYPE_BF16:
    case COMET_DTYPE_FP16: return 2;
    case COMET_DTYPE_FP8_E4M3: return 1;
  }
  return 0;
}

static comet_status_t comet_config_limits_check(const comet_layer_config_t *c, int W);

comet_status_t comet_config_validate(const comet_layer_config_t *c, int world_size) {
  COMET_ARG(c != NULL, "config is NULL");
  COMET_ARG(c->size == sizeof(comet_layer_config_t),
            "config.size = %zu, expected %zu (initialize with COMET_LAYER_CONFIG_INITIALIZER)",
            c->size, sizeof(comet_layer_config_t));
  COMET_ARG(c->hidden > 0 && c->hidden % 8 == 0,
            "config.hidden = %d must be a positive multiple of 8", c->hidden);
  COMET_ARG(c->ep >= 1, "config.ep = %d must be >= 1", c->ep);
  COMET_ARG(c->tp >= 1, "config.tp = %d must be >= 1", c->tp);
  COMET_ARG(c->ffn > 0 && c->ffn % c->tp == 0,
            "config.ffn = %d is not a positive multiple of config.tp = %d", c->ffn, c->tp);
  COMET_ARG((c->ffn / c->tp) % 8 == 0, "config.ffn / config.tp = %d must be a multiple of 8",
            c->ffn / c->tp);
  COMET_ARG(c->num_experts >= 1, "config.num_experts = %d must be >= 1", c->num_experts);
  COMET_ARG(c->num_experts % c->ep == 0,
            "config.num_experts = %d is not a multiple of config.ep = %d", c->num_experts, c->ep);
  COMET_ARG(c->topk >= 1 && c->topk <= c->num_experts,
            "config.topk = %d must be in 1..num_experts (%d)", c->topk, c->num_experts);
  COMET_ARG(c->max_tokens_per_rank >= 1, "config.max_tokens_per_rank = %d must be >= 1",
            c->max_tokens_per_rank);
  COMET_ARG(c->max_rows_per_rank >= 0, "config.max_rows_per_rank = %d must be >= 0 (0 = worst case)",
            c->max_rows_per_rank);
  COMET_ARG(c->dtype == COMET_DTYPE_BF16 || c->dtype == COMET_DTYPE_FP16 ||
                c->dtype == COMET_DTYPE_FP8_E4M3,
            "config.dtype = %d is not a comet_dtype_t", (int)c->dtype);
  if (c->dtype == COMET_DTYPE_FP8_E4M3)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "config.dtype = fp8_e4m3 is not supported yet");
  COMET_ARG(c->activation == COMET_ACT_SWIGLU || c->activation == COMET_ACT_GELU ||
                c->activation == COMET_ACT_NONE,
            "config.activation = %d is not a comet_activation_t", (int)c->activation);
  COMET_ARG(world_size >= 1, "world_size = %d must be >= 1", world_size);
  COMET_ARG((int64_t)c->ep * c->tp == world_size,
            "config.ep * config.tp = %d * %d = %lld differs from world_size = %d", c->ep, c->tp,
            (long long)c->ep * c->tp, world_size);
  comet_plan_dims_t d = {c->num_experts, c->topk, c->ep, c->tp};
  int64_t worst = comet_plan_worst_rows(d, c->max_tokens_per_rank);
  COMET_ARG(worst <= INT32_MAX || (c->max_rows_per_rank > 0),
            "worst-case rows per rank %lld overflow 32-bit row indices: set config.max_rows_per_rank",
            (long long)worst);
  return comet_config_limits_check(c, world_size);
}

/* What the kernels accept, by the formulas their launchers use: a config
 * that validates runs. */
static comet_status_t comet_config_limits_check(const comet_layer_config_t *c, int W) {
  const int E = c->num_experts, K = c->topk, El = c->num_experts / c->ep;
  if (W > COMET_MAX_WORLD)
    return comet_set_error(COMET_ERR_UNSUPPORTED, "world_size = %d: comet supports up to %d ranks",
                           W, COMET_MAX_WORLD);
  if (El > COMET_GEMM_MAX_GROUPS)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "num_experts / ep = %d local experts: the grouped GEMM takes up to %d",
                           El, COMET_GEMM_MAX_GROUPS);
  if ((int64_t)c->max_tokens_per_rank * K * c->tp > INT32_MAX)
    return comet_set_error(COMET_ERR_UNSUPPORTED,
                           "max_tokens_per_rank * topk * tp = %lld overflows 32-bit slot indices",
                           (long long)c->max_tokens_per_rank * K * c->tp);
  const struct { const char *what; size_t bytes, limit; } need[] = {
      {"the plan's count kernel (4 bytes per expert)", comet_plan_count_smem(E), SMEM_MAX},
      {"the plan's exchange kernel (4 bytes per expert and rank, 20 per expert)", comet_plan_exchange_smem(E, W), SMEM_MAX},
      {"the plan's row kernel (1 KiB per topk slot)", comet_plan_rows_smem(K), SMEM_MAX},
      {"the push dispatch", comet_dispatch_smem(COMET_DISPATCH_PUSH, E, El, W), SMEM_MAX},
      {"the pull dispatch", comet_dispatch_smem(COMET_DISPATCH_PULL, E, El, W), SMEM_MAX},
      {"the bulk-copy dispatch", comet_dispatch_smem(COMET_DISPATCH_TMA, E, El, W), SMEM_MAX},
      {"the push combine", comet_combine_smem(COMET_COMBINE_PUSH, El, W), 48 * 1024},
  };
  for (size_t i = 0; i < sizeof need / sizeof need[0]; ++i)
    if (need[i].bytes > need[i].limit)
      return comet_set_error(COMET_ERR_UNSUPPORTED,
                             "num_experts = %d, topk = %d on %d ranks: %s needs %zu bytes of shared "
                             "memory, more than the %zu a CTA has",
                             E, K, W, need[i].what, need[i].bytes, need[i].limit);
  return COMET_OK;
}

int comet_config_w1_rows(const comet_layer_config_t *c) {
  int f = c->ffn / c->tp;
  return c->activation == COMET_ACT_SWIGLU ? 2 * f : f;
}

int64_t comet_config_row_capacity(const comet_layer_config_t *c) {
  comet_plan_dims_t d = {c->num_experts, c->topk, c->ep, c->tp};
  int64_t worst = comet_plan_worst_rows(d, c->max_tokens_per_rank);
  if (c->max_rows_per_rank > 0 && c->max_rows_per_rank < worst) return c->max_rows_per_rank;
  return worst;
}

size_t comet_config_saved_z_bytes(const comet_layer_config_t *c) {
  /* the z rows, then the rows of the forward's stamp (kernels/saved_z.h) */
  const size_t row_bytes = comet_saved_row_bytes(c);
  return (size_t)(comet_config_row_capacity(c) + comet_saved_trailer_rows(row_bytes)) * row_bytes;
}
