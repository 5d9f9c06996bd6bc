/* SPDX-License-Identifier: Apache-2.0 */
/* ref_math.c — the reference's GEMM (cache-blocked i-k-j over row-major
 * operands, so the inner loop is a contiguous axpy that vectorizes) and a
 * transpose. Accumulation order is fixed: k ascending for every element.
 * The dtype path runs on fp32 lanes: about 7 GFLOP/s on one x86-64 core
 * (SSE2), e.g. 2 s for a forward with H 1024, F 2048, 2x2 ranks, 256 tokens
 * each, top-2. */
#include <stdlib.h>
#include <string.h>

#include "ref_internal.h"

/* A block of MB rows x NB columns of C (32 KiB of floats, 64 KiB of doubles)
 * stays in L1/L2 while B's rows stream past once per MB rows of A. */
enum { REF_GEMM_MB = 16, REF_GEMM_NB = 512 };

/* The fp32 path on floats: every operand of an emulated GEMM is a dtype value,
 * so it and every product are exact in float and `c += a * b` in float is
 * exactly the emulated step, 4 lanes at a time and with no conversions in the
 * inner loop. Bf is B as floats, [K, N] contiguous. */
static void gemm_f32(int64_t M, int64_t N, int64_t K, const double *A, int64_t ars, int64_t acs,
                     const float *Bf, double *C, int64_t ldc) {
  float cb[REF_GEMM_MB][REF_GEMM_NB];
  for (int64_t i0 = 0; i0 < M; i0 += REF_GEMM_MB) {
    const int64_t mb = M - i0 < REF_GEMM_MB ? M - i0 : REF_GEMM_MB;
    for (int64_t j0 = 0; j0 < N; j0 += REF_GEMM_NB) {
      const int64_t nb = N - j0 < REF_GEMM_NB ? N - j0 : REF_GEMM_NB;
      memset(cb, 0, sizeof cb);
      for (int64_t k = 0; k < K; ++k) {
        const float *restrict b = Bf + k * N + j0;
        for (int64_t i = 0; i < mb; ++i) {
          const float a = (float)A[(i0 + i) * ars + k * acs];
          float *restrict c = cb[i];
          for (int64_t j = 0; j < nb; ++j) c[j] += a * b[j];
        }
      }
      for (int64_t i = 0; i < mb; ++i)
        for (int64_t j = 0; j < nb; ++j) C[(i0 + i) * ldc + j0 + j] = cb[i][j];
    }
  }
}

void comet_refi_gemm(int64_t M, int64_t N, int64_t K, const double *A, int64_t ars, int64_t acs,
                     const double *B, int64_t ldb, double *C, int64_t ldc, int fp32) {
  float *Bf = fp32 && M > 0 && N > 0 && K > 0 ? malloc(sizeof(float) * (size_t)(K * N)) : NULL;
  if (Bf) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) Bf[k * N + j] = (float)B[k * ldb + j];
    gemm_f32(M, N, K, A, ars, acs, Bf, C, ldc);
    free(Bf);
    return;
  }
  /* fp64, or no memory for Bf: the same steps in double (rounded to fp32 if fp32). */
  for (int64_t i0 = 0; i0 < M; i0 += REF_GEMM_MB) {
    const int64_t i1 = i0 + REF_GEMM_MB < M ? i0 + REF_GEMM_MB : M;
    for (int64_t j0 = 0; j0 < N; j0 += REF_GEMM_NB) {
      const int64_t nb = N - j0 < REF_GEMM_NB ? N - j0 : REF_GEMM_NB;
      for (int64_t i = i0; i < i1; ++i) memset(C + i * ldc + j0, 0, sizeof(double) * (size_t)nb);
      for (int64_t k = 0; k < K; ++k) {
        const double *b = B + k * ldb + j0;
        for (int64_t i = i0; i < i1; ++i)
          ref_axpy(C + i * ldc + j0, A[i * ars + k * acs], b, nb, fp32);
      }
    }
  }
}

void comet_refi_transpose(const double *src, int64_t rows, int64_t cols, double *dst) {
  enum { TB = 32 }; /* tiles, so neither side walks memory with a large stride alone */
  for (int64_t r0 = 0; r0 < rows; r0 += TB)
    for (int64_t c0 = 0; c0 < cols; c0 += TB)
      for (int64_t r = r0; r < r0 + TB && r < rows; ++r)
        for (int64_t c = c0; c < c0 + TB && c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}
