/* SPDX-License-Identifier: Apache-2.0 */
/* args.h — validation of the per-call arguments of the forward and the two
 * fused ops against a layer's config, before anything is launched. On
 * failure the message names the argument, and *fault (never NULL) says what
 * was wrong in the form the device plan sends to the other ranks. */
#ifndef COMET_ARGS_H
#define COMET_ARGS_H

#include "comet.h"
#include "kernels/comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

comet_status_t comet_moe_args_check(const comet_layer_config_t *cfg, const comet_moe_args_t *a,
                                    comet_arg_fault_t *fault);
comet_status_t comet_dispatch_gemm_args_check(const comet_layer_config_t *cfg,
                                              const comet_dispatch_gemm_args_t *a,
                                              comet_arg_fault_t *fault);
comet_status_t comet_gemm_combine_args_check(const comet_layer_config_t *cfg,
                                             const comet_gemm_combine_args_t *a,
                                             comet_arg_fault_t *fault);
comet_status_t comet_moe_backward_args_check(const comet_layer_config_t *cfg,
                                             const comet_moe_backward_args_t *a,
                                             comet_arg_fault_t *fault);

#ifdef __cplusplus
}
#endif
#endif
