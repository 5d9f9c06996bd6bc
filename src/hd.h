/* SPDX-License-Identifier: Apache-2.0 */
/* hd.h — COMET_HD marks plain-C logic that is compiled for host and device
 * (routing plan, tile schedules): the same source runs on the CPU oracle
 * and inside kernels. */
#ifndef COMET_HD_H
#define COMET_HD_H
#if defined(__CUDACC__)
#define COMET_HD __host__ __device__ static inline
#else
#define COMET_HD static inline
#endif
#endif
