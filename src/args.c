/* args.c — per-call argument checks: struct size, token count within the
 * layer's capacity, and every pointer the call will read or write. Device
 * pointers can't be dereferenced here; their alignment to 16 bytes (the
 * kernels' vector width) is checked instead. */
#include "args.h"

#include <stdint.h>

#include "error.h"

static comet_status_t check_tokens(const comet_layer_config_t *cfg, const char *op, int n) {
  COMET_ARG(n >= 0 && n <= cfg->max_tokens_per_rank,
            "%s: num_tokens = %d outside 0..max_tokens_per_rank (%d) of the layer", op, n,
            cfg->max_tokens_per_rank);
  return COMET_OK;
}

/* p must be non-NULL (when the call has tokens or always) and 16-byte aligned. */
static comet_status_t check_ptr(const char *op, const char *name, const void *p, int required) {
  COMET_ARG(p != NULL || !required, "%s: %s is NULL", op, name);
  COMET_ARG(((uintptr_t)p & 15u) == 0, "%s: %s = %p is not 16-byte aligned", op, name, p);
  return COMET_OK;
}

comet_status_t comet_moe_args_check(const comet_layer_config_t *cfg, const comet_moe_args_t *a) {
  const char *op = "comet_moe_forward";
  COMET_ARG(a != NULL, "%s: args is NULL", op);
  COMET_ARG(a->size == sizeof(comet_moe_args_t),
            "%s: args.size = %zu, expected %zu (use COMET_MOE_ARGS_INITIALIZER)", op, a->size,
            sizeof(comet_moe_args_t));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, "x", a->x, t));
  COMET_CHECK(check_ptr(op, "out", a->out, t));
  COMET_ARG(a->topk_ids != NULL || !t, "%s: topk_ids is NULL", op);
  COMET_ARG(a->topk_weights != NULL || !t, "%s: topk_weights is NULL", op);
  COMET_CHECK(check_ptr(op, "w1", a->w1, 1));
  COMET_CHECK(check_ptr(op, "w2", a->w2, 1));
  return COMET_OK;
}

comet_status_t comet_dispatch_gemm_args_check(const comet_layer_config_t *cfg,
                                              const comet_dispatch_gemm_args_t *a) {
  const char *op = "comet_dispatch_gemm";
  COMET_ARG(a != NULL, "%s: args is NULL", op);
  COMET_ARG(a->size == sizeof(comet_dispatch_gemm_args_t),
            "%s: args.size = %zu, expected %zu (use COMET_DISPATCH_GEMM_ARGS_INITIALIZER)", op,
            a->size, sizeof(comet_dispatch_gemm_args_t));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, "x", a->x, t));
  COMET_ARG(a->topk_ids != NULL || !t, "%s: topk_ids is NULL", op);
  COMET_CHECK(check_ptr(op, "w1", a->w1, 1));
  COMET_CHECK(check_ptr(op, "h", a->h, 0));
  return COMET_OK;
}

comet_status_t comet_gemm_combine_args_check(const comet_layer_config_t *cfg,
                                             const comet_gemm_combine_args_t *a) {
  const char *op = "comet_gemm_combine";
  COMET_ARG(a != NULL, "%s: args is NULL", op);
  COMET_ARG(a->size == sizeof(comet_gemm_combine_args_t),
            "%s: args.size = %zu, expected %zu (use COMET_GEMM_COMBINE_ARGS_INITIALIZER)", op,
            a->size, sizeof(comet_gemm_combine_args_t));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens));
  const int t = a->num_tokens > 0;
  COMET_ARG(a->topk_ids != NULL || !t, "%s: topk_ids is NULL", op);
  COMET_ARG(a->topk_weights != NULL || !t, "%s: topk_weights is NULL", op);
  COMET_CHECK(check_ptr(op, "h", a->h, 0));
  COMET_CHECK(check_ptr(op, "w2", a->w2, 1));
  COMET_CHECK(check_ptr(op, "out", a->out, t));
  return COMET_OK;
}
