/* SPDX-License-Identifier: Apache-2.0 */
/* cta_scan.cuh — exclusive prefix sums across one CTA (blockDim.x a
 * multiple of 32, at most 1024 threads), for the device plan and the M-tile
 * lists: of one value per thread, and of an array that the CTA shares. */
#ifndef COMET_CTA_SCAN_CUH
#define COMET_CTA_SCAN_CUH

#include <stdint.h>

/* Exclusive prefix sum of x over the CTA's threads; *total gets the sum.
 * warp_sums: 32 shared values. Every thread must call it. */
template <typename T>
static __device__ __forceinline__ T cta_exclusive_scan(T x, T *total, T *warp_sums) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  T incl = x;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const T y = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += y;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    T w = lane < nwarps ? warp_sums[lane] : (T)0;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const T y = __shfl_up_sync(0xffffffffu, w, d);
      if (lane >= d) w += y;
    }
    warp_sums[lane] = w; /* inclusive */
  }
  __syncthreads();
  const T before = warp > 0 ? warp_sums[warp - 1] : (T)0;
  *total = warp_sums[nwarps - 1];
  __syncthreads(); /* warp_sums is reused by the next scan */
  return before + incl - x;
}

/* out[i] = f(0) + ... + f(i - 1) for i < n, and out[n] = the sum when
 * with_total: each thread sums a contiguous run of i, one CTA scan places
 * the runs. f reads what the CTA shares (visible before the call); out may
 * be shared or global memory. Every thread must call it. */
template <typename T, typename F>
static __device__ __forceinline__ void cta_scan_array(int n, F f, T *out, bool with_total,
                                                      T *warp_sums) {
  const int chunk = (n + (int)blockDim.x - 1) / (int)blockDim.x;
  const int i0 = min(n, (int)threadIdx.x * chunk), i1 = min(n, i0 + chunk);
  T mine = 0;
  for (int i = i0; i < i1; ++i) mine += f(i);
  T total;
  T acc = cta_exclusive_scan<T>(mine, &total, warp_sums);
  for (int i = i0; i < i1; ++i) {
    const T x = f(i);
    out[i] = acc;
    acc += x;
  }
  if (with_total && threadIdx.x == 0) out[n] = total;
}

/* In place: a[0..n) becomes its exclusive prefix sums and a[n] the sum,
 * by one warp (the calling threads must be exactly lanes 0-31 of a warp)
 * walking a in runs of 32; for short arrays in shared memory that the
 * caller has filled and synchronized. */
template <typename T>
static __device__ __forceinline__ void warp_scan_shared(T *a, int n) {
  const int lane = threadIdx.x % 32;
  T carry = 0;
  for (int base = 0; base < n; base += 32) {
    const int i = base + lane;
    const T x = i < n ? a[i] : (T)0;
    T incl = x;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const T y = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += y;
    }
    if (i < n) a[i] = carry + incl - x;
    carry += __shfl_sync(0xffffffffu, incl, 31);
  }
  if (lane == 0) a[n] = carry;
}

#endif /* COMET_CTA_SCAN_CUH */
