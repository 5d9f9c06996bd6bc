/* SPDX-License-Identifier: Apache-2.0 */
/* dispatch_push.cuh — the push dispatch's work, shared by the standalone
 * dispatch kernel (dispatch.cu) and the movers of the fused layer0
 * (kernels/fused/layer0.cu): the plan's send list (own rows by expert, then
 * token) cut into tasks of up to ROWS_PER_TASK rows of one expert, and a
 * warp's copy of one task's rows into every receiver of the expert's group.
 *
 * Experts are visited starting with the EP group after ours, so the ranks
 * start out sending to different receivers, as a ring all-to-all does.
 * Tasks are taken grid-stride by warps, so the first tasks complete first. */
#ifndef COMET_DISPATCH_PUSH_CUH
#define COMET_DISPATCH_PUSH_CUH

#include <stdint.h>

#include "kernels/comm/comm.h"
#include "kernels/comm/sync.cuh"

#define ROWS_PER_TASK 4 /* push_rows finds a vector's row with ROWS_PER_TASK - 1 compares */

/* One task: rows [r0, r0 + nr) of this rank's rows for expert e (EP group g). */
typedef struct push_task {
  int e, g;
  int32_t r0, nr;
} push_task_t;

/* One thread: task_prefix[i] = first task of the i-th expert visited, [E] =
 * the task count. */
__device__ __forceinline__ void push_task_prefix(const comet_comm_view_t &v, int32_t *task_prefix) {
  const int E = v.num_experts, El = E / v.ep;
  const int rot = ((v.rank / v.tp + 1) % v.ep) * El; /* first expert visited */
  int32_t acc = 0;
  for (int i = 0; i < E; ++i) {
    task_prefix[i] = acc;
    const int e = (i + rot) % E;
    const int n = v.send_offset[e + 1] - v.send_offset[e];
    acc += (n + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
  }
  task_prefix[E] = acc;
}

__device__ __forceinline__ push_task_t push_task(const comet_comm_view_t &v,
                                                 const int32_t *task_prefix, int task) {
  const int E = v.num_experts, El = E / v.ep;
  const int rot = ((v.rank / v.tp + 1) % v.ep) * El;
  int lo = 0, hi = E - 1; /* last i with task_prefix[i] <= task */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (task_prefix[mid] <= task) lo = mid;
    else hi = mid - 1;
  }
  push_task_t t;
  t.e = (lo + rot) % E;
  t.g = t.e / El;
  const int32_t n_e = v.send_offset[t.e + 1] - v.send_offset[t.e];
  t.r0 = (task - task_prefix[lo]) * ROWS_PER_TASK;
  t.nr = min(ROWS_PER_TASK, n_e - t.r0);
  return t;
}

/* A warp: the task's rows x[t] into rows send_base + idx of each of the
 * expert group's tp ranks (through their window pointers), but rank skip
 * (-1: none; the fused layer0 may read its own rows in place). The task's
 * rows are one stream of 16-byte vectors: each lane loads U of them before
 * it stores them, so a warp keeps U * 512 bytes in flight whatever the row
 * length (a copy is latency-bound: bytes in flight per SM set its rate). */
template <int U>
__device__ __forceinline__ void push_rows(const comet_comm_view_t &v, const char *__restrict__ x,
                                          const push_task_t &t, int lane, int skip) {
  const int K = v.topk, tp = v.tp;
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const int n16 = (int)(row_bytes / 16), total = t.nr * n16;
  const int32_t soff = v.send_offset[t.e];
  const char *src[ROWS_PER_TASK];
#pragma unroll
  for (int rr = 0; rr < ROWS_PER_TASK; ++rr)
    src[rr] = rr < t.nr ? x + (size_t)(v.send_list[soff + t.r0 + rr] / K) * row_bytes : x;
  char *dst[8];
  for (int i0 = 0; i0 < tp; i0 += 8) { /* destinations in groups of 8 (tp > 8 is rare) */
    int nd = 0;
    for (int i = i0; i < tp && i < i0 + 8; ++i)
      if (t.g * tp + i != skip)
        dst[nd++] = v.peer[t.g * tp + i] + v.off_rows +
                    (size_t)(v.send_base[t.e * tp + i] + t.r0) * row_bytes;
    if (nd == 0) continue;
    for (int base = 0; base < total; base += 32 * U) {
      uint4 val[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = base + u * 32 + lane;
        if (j < total) {
          const int rr = (j >= n16) + (j >= 2 * n16) + (j >= 3 * n16);
          val[u] = ld_nc_na_v4(src[rr] + (size_t)(j - rr * n16) * 16);
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = base + u * 32 + lane;
        if (j < total) /* rows are consecutive at every destination */
          for (int i = 0; i < nd; ++i) st_na_v4(dst[i] + (size_t)j * 16, val[u]);
      }
    }
  }
}

#endif /* COMET_DISPATCH_PUSH_CUH */
