/* args.h — validation of the per-call arguments of the forward and the two
 * fused ops against a layer's config, before anything is launched. */
#ifndef COMET_ARGS_H
#define COMET_ARGS_H

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

comet_status_t comet_moe_args_check(const comet_layer_config_t *cfg, const comet_moe_args_t *a);
comet_status_t comet_dispatch_gemm_args_check(const comet_layer_config_t *cfg,
                                              const comet_dispatch_gemm_args_t *a);
comet_status_t comet_gemm_combine_args_check(const comet_layer_config_t *cfg,
                                             const comet_gemm_combine_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
