/* SPDX-License-Identifier: Apache-2.0 */
/* args.c — per-call argument checks: struct size, token count within the
 * layer's capacity, and every pointer the call will read or write. Device
 * pointers can't be dereferenced here; their alignment to 16 bytes (the
 * kernels' vector width) is checked instead. */
#include "args.h"

#include <stdint.h>

#include "error.h"

static comet_status_t fail(comet_arg_fault_t *f, int kind, int field, int value) {
  f->kind = kind;
  f->field = field;
  f->value = value;
  return COMET_ERR_INVALID_ARGUMENT;
}

static comet_status_t check_struct(const char *op, const void *a, size_t size, size_t want,
                                   const char *init, comet_arg_fault_t *f) {
  if (!a) {
    comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: args is NULL", op);
    return fail(f, COMET_ARG_STRUCT, COMET_FIELD_ARGS, 0);
  }
  if (size != want) {
    comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: args.size = %zu, expected %zu (use %s)", op,
                    size, want, init);
    return fail(f, COMET_ARG_STRUCT, COMET_FIELD_ARGS, (int)size);
  }
  return COMET_OK;
}

static comet_status_t check_tokens(const comet_layer_config_t *cfg, const char *op, int n,
                                   comet_arg_fault_t *f) {
  if (n >= 0 && n <= cfg->max_tokens_per_rank) return COMET_OK;
  comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                  "%s: num_tokens = %d outside 0..max_tokens_per_rank (%d) of the layer", op, n,
                  cfg->max_tokens_per_rank);
  return fail(f, COMET_ARG_TOKENS, COMET_FIELD_ARGS, n);
}

/* p must be non-NULL (when required) and, for vector data, 16-byte aligned. */
static comet_status_t check_ptr(const char *op, int field, const char *name, const void *p,
                                int required, int aligned, comet_arg_fault_t *f) {
  if (!p && required) {
    comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, name);
    return fail(f, COMET_ARG_NULL, field, 0);
  }
  if (aligned && ((uintptr_t)p & 15u)) {
    comet_set_error(COMET_ERR_INVALID_ARGUMENT, "%s: %s = %p is not 16-byte aligned", op, name, p);
    return fail(f, COMET_ARG_ALIGN, field, 0);
  }
  return COMET_OK;
}

comet_status_t comet_moe_args_check(const comet_layer_config_t *cfg, const comet_moe_args_t *a,
                                    comet_arg_fault_t *f) {
  const char *op = "comet_moe_forward";
  *f = (comet_arg_fault_t){COMET_ARG_NONE, 0, 0, 0};
  COMET_CHECK(check_struct(op, a, a ? a->size : 0, sizeof *a, "COMET_MOE_ARGS_INITIALIZER", f));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens, f));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, COMET_FIELD_X, "x", a->x, t, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_OUT, "out", a->out, t, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_IDS, "topk_ids", a->topk_ids, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_WEIGHTS, "topk_weights", a->topk_weights, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W1, "w1", a->w1, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W2, "w2", a->w2, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_SAVED_Z, "saved_z", a->saved_z, 0, 1, f));
  return COMET_OK;
}

comet_status_t comet_dispatch_gemm_args_check(const comet_layer_config_t *cfg,
                                              const comet_dispatch_gemm_args_t *a,
                                              comet_arg_fault_t *f) {
  const char *op = "comet_dispatch_gemm";
  *f = (comet_arg_fault_t){COMET_ARG_NONE, 0, 0, 0};
  COMET_CHECK(check_struct(op, a, a ? a->size : 0, sizeof *a, "COMET_DISPATCH_GEMM_ARGS_INITIALIZER", f));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens, f));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, COMET_FIELD_X, "x", a->x, t, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_IDS, "topk_ids", a->topk_ids, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W1, "w1", a->w1, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_H, "h", a->h, 0, 1, f));
  return COMET_OK;
}

comet_status_t comet_gemm_combine_args_check(const comet_layer_config_t *cfg,
                                             const comet_gemm_combine_args_t *a,
                                             comet_arg_fault_t *f) {
  const char *op = "comet_gemm_combine";
  *f = (comet_arg_fault_t){COMET_ARG_NONE, 0, 0, 0};
  COMET_CHECK(check_struct(op, a, a ? a->size : 0, sizeof *a, "COMET_GEMM_COMBINE_ARGS_INITIALIZER", f));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens, f));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, COMET_FIELD_WEIGHTS, "topk_weights", a->topk_weights, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_H, "h", a->h, 0, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W2, "w2", a->w2, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_OUT, "out", a->out, t, 1, f));
  return COMET_OK;
}

comet_status_t comet_moe_backward_args_check(const comet_layer_config_t *cfg,
                                             const comet_moe_backward_args_t *a,
                                             comet_arg_fault_t *f) {
  const char *op = "comet_moe_backward";
  *f = (comet_arg_fault_t){COMET_ARG_NONE, 0, 0, 0};
  COMET_CHECK(check_struct(op, a, a ? a->size : 0, sizeof *a,
                           "COMET_MOE_BACKWARD_ARGS_INITIALIZER", f));
  COMET_CHECK(check_tokens(cfg, op, a->num_tokens, f));
  const int t = a->num_tokens > 0;
  COMET_CHECK(check_ptr(op, COMET_FIELD_X, "x", a->x, t, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_IDS, "topk_ids", a->topk_ids, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_WEIGHTS, "topk_weights", a->topk_weights, t, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W1, "w1", a->w1, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W2, "w2", a->w2, 1, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_DOUT, "dout", a->dout, t, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_OUT, "dx", a->dx, 0, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W1, "dw1", a->dw1, 0, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_W2, "dw2", a->dw2, 0, 1, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_WEIGHTS, "dtopk_weights", a->dtopk_weights, 0, 0, f));
  COMET_CHECK(check_ptr(op, COMET_FIELD_SAVED_Z, "saved_z", a->saved_z, 0, 1, f));
  if (!a->dx && !a->dw1 && !a->dw2 && !a->dtopk_weights) {
    comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                    "%s: dx, dw1, dw2 and dtopk_weights are all NULL: nothing to compute", op);
    return fail(f, COMET_ARG_NULL, COMET_FIELD_GRADS, 0);
  }
  return COMET_OK;
}
