/* SPDX-License-Identifier: Apache-2.0 */
/* ref_gemm.h — CPU reference of the grouped GEMM engine (src/kernels/gemm/gemm.h):
 * the same function in plain C, double accumulation, unrounded fp32 output. */
#ifndef COMET_REF_GEMM_H
#define COMET_REF_GEMM_H

#include <stdint.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[r, j] for r in [off[0], off[G]) (rows outside are left alone):
 *   swiglu == 0: acc(r, j) * s(r), acc(r, j) = sum_k a[r, k] * b[g, j, k]
 *   swiglu != 0: silu(acc(r, j)) * acc(r, n + j) * s(r), b is [G, 2n, k]
 * with g the group of r and s(r) = row_scale[r] (1 when row_scale is NULL).
 * a, b are bf16 or fp16 (dtype); out is fp32 [rows, n]. */
comet_status_t comet_ref_gemm_grouped(comet_dtype_t dtype, int groups, int n, int k,
                                      const int32_t *group_offset, const void *a, const void *b,
                                      int swiglu, const float *row_scale, float *out);

#ifdef __cplusplus
}
#endif
#endif /* COMET_REF_GEMM_H */
