/* ref_math.c — the reference's GEMM (cache-blocked i-k-j over row-major
 * operands, so the inner loop is a contiguous axpy that vectorizes) and a
 * transpose. Accumulation order is fixed: k ascending for every element. */
#include <string.h>

#include "ref_internal.h"

/* A block of MB rows x NB columns of C (MB*NB doubles, 32 KiB) stays in L1/L2
 * while B's rows stream past once per MB rows of A. */
enum { REF_GEMM_MB = 8, REF_GEMM_NB = 512 };

void comet_refi_gemm(int64_t M, int64_t N, int64_t K, const double *A, int64_t ars, int64_t acs,
              const double *B, int64_t ldb, double *C, int64_t ldc, int fp32) {
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
