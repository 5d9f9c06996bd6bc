/* SPDX-License-Identifier: Apache-2.0 */
/* fill.h — byte fills and copies in device memory as kernels on the
 * caller's stream, where the library would otherwise put copy-engine work
 * (cudaMemsetAsync, cudaMemcpyAsync) between the kernels of a call. In the
 * loopback world a rank's copy-engine work is suspected, not shown, of
 * stalling while a peer's kernel spins waiting for that rank
 * (docs/status.md, Known gaps 11: session 8's deterministic hang turned
 * out to be a cudaFree); a kernel runs on the rank's own green context. */
#ifndef COMET_KERNELS_FILL_H
#define COMET_KERNELS_FILL_H

#include <stddef.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* p[0..n) = byte. */
comet_status_t comet_fill_bytes_launch(void *p, int byte, size_t n, struct CUstream_st *s);
/* dst[0..n) = src[0..n) (no overlap). */
comet_status_t comet_copy_bytes_launch(void *dst, const void *src, size_t n, struct CUstream_st *s);

#ifdef __cplusplus
}
#endif

#endif /* COMET_KERNELS_FILL_H */
