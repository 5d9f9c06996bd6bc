/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_window.h — device-API helpers of the nccl transport (nccl_window.cu). */
#ifndef COMET_NCCL_WINDOW_H
#define COMET_NCCL_WINDOW_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* peers[p] = base of rank p's copy of window win (an ncclWindow_t), p < world. */
comet_status_t comet_nccl_peer_table(void *win, int world, char **peers, cudaStream_t stream);
/* COMET_ERR_UNSUPPORTED unless every rank of comm is load/store reachable
 * (one NVLink domain). Collective. */
comet_status_t comet_nccl_check_lsa(struct ncclComm *comm);

#ifdef __cplusplus
}
#endif
#endif
