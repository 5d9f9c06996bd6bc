/* SPDX-License-Identifier: Apache-2.0 */
/* kernel_anchors.h — one kernel of each CUDA translation unit of the
 * library. Each unit's device code is its own CUDA library; a kernel of it
 * leads to the library (cuKernelGetLibrary) and so to all of the unit's
 * kernels, template instances included: transport/kernel_preload.c loads
 * them all into a loopback rank's context before the rank's first call. */
#ifndef COMET_KERNEL_ANCHORS_H
#define COMET_KERNEL_ANCHORS_H

#ifdef __cplusplus
extern "C" {
#endif

const void *comet_anchor_plan(void);
const void *comet_anchor_dispatch(void);
const void *comet_anchor_combine(void);
const void *comet_anchor_forward(void);
const void *comet_anchor_backward(void);
const void *comet_anchor_gemm(void);
const void *comet_anchor_tiles(void);
const void *comet_anchor_layer0(void);
const void *comet_anchor_layer1(void);

#ifdef __cplusplus
}
#endif

#endif /* COMET_KERNEL_ANCHORS_H */
