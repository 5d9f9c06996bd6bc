/* SPDX-License-Identifier: Apache-2.0 */
/* ipc.h — the ipc transport (ipc.c): W processes on one GPU sharing windows
 * through CUDA IPC, for the sanitizers. Internal: the launcher
 * (comet_launch_ipc) makes the world in memory shared across fork, each
 * rank's process makes its context with comet_context_create_ipc. */
#ifndef COMET_IPC_H
#define COMET_IPC_H

#include <stddef.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes one rank may bring to an allgather. */
#define COMET_IPC_SLOT (64 * 1024)

typedef struct comet_ipc_world comet_ipc_world_t;
size_t comet_ipc_world_bytes(void);
/* In memory shared by the W processes (MAP_SHARED), before they fork. */
void comet_ipc_world_init(comet_ipc_world_t *w, int W, int device);

#ifdef __cplusplus
}
#endif
#endif
