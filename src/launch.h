/* SPDX-License-Identifier: Apache-2.0 */
/* launch.h — starting one process per GPU. comet_launch_local forks one
 * child per local GPU and hands them the NCCL unique id itself;
 * comet_launch_external joins a run started by torchrun/mpirun-style
 * launchers (env RANK, WORLD_SIZE, LOCAL_RANK) through a rendezvous file.
 * comet_launch_loopback runs W ranks as threads of one forked child on one
 * GPU (the loopback world, comet.h). A child that fails or hangs fails the
 * whole run with its message. */
#ifndef COMET_LAUNCH_H
#define COMET_LAUNCH_H

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comet_rank_info {
  int rank;       /* global rank */
  int world;      /* number of ranks */
  int local_rank; /* index among this host's ranks */
  int device;     /* CUDA device to use (= local_rank) */
  comet_unique_id_t id; /* NCCL unique id shared by all ranks */
  comet_loopback_t loopback; /* the loopback world, or NULL (NCCL ranks) */
  struct comet_ipc_world *ipc; /* the ipc world (processes on one GPU), or NULL */
} comet_rank_info_t;

/* Body of one rank. Returns 0 on success; on failure prints its message
 * (prefixed with the rank) to stderr and returns non-zero. */
typedef int (*comet_rank_fn)(const comet_rank_info_t *info, void *arg);

/* Number of CUDA devices, counted in a short-lived child process so that the
 * caller never initializes CUDA (a process that did cannot fork CUDA users).
 * 0 if there is no GPU or no driver. Call this, not cudaGetDeviceCount, in a
 * process that will call comet_launch_local. */
int comet_launch_gpu_count(void);

/* Runs fn in `gpus` forked children (rank i on device i). Returns 0 if every
 * child returned 0; else kills the others and returns 1 after printing which
 * rank failed and how. timeout_s (> 0) bounds the whole run. The caller must
 * not have initialized CUDA (see comet_launch_gpu_count). */
int comet_launch_local(int gpus, double timeout_s, comet_rank_fn fn, void *arg);

/* Runs fn in `world` threads of one forked child, rank r in the loopback
 * world's partition r of `device` (info.loopback set; create the context
 * with comet_context_create_loopback). Returns 0 if every rank returned 0.
 * timeout_s bounds the whole run (the child is killed past it). */
int comet_launch_loopback(int world, int device, double timeout_s, comet_rank_fn fn, void *arg);

/* Runs fn in `world` forked processes on one GPU (info.ipc set; create the
 * context with comet_context_create_ipc, context.h): the multi-rank tests
 * under compute-sanitizer, which cannot run the loopback world. */
int comet_launch_ipc(int world, int device, double timeout_s, comet_rank_fn fn, void *arg);

/* Runs fn once in this process as the rank named by RANK / WORLD_SIZE /
 * LOCAL_RANK; rank 0 writes the unique id to rendezvous_path, the others
 * wait for it (up to timeout_s). */
int comet_launch_external(const char *rendezvous_path, double timeout_s, comet_rank_fn fn,
                          void *arg);

#ifdef __cplusplus
}
#endif
#endif /* COMET_LAUNCH_H */
