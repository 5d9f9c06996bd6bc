/* SPDX-License-Identifier: Apache-2.0 */
/* ref_gemm.c — CPU reference of the grouped GEMM (ref_gemm.h). */
#include "ref/ref_gemm.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "ref/convert.h"

static float *to_f32(const void *p, size_t count, comet_dtype_t dt) {
  float *f = (float *)malloc((count ? count : 1) * sizeof(float));
  if (f)
    for (size_t i = 0; i < count; ++i) f[i] = comet_load_f32(p, i, dt);
  return f;
}

static double dot(const float *x, const float *y, int k) {
  double s = 0;
  for (int i = 0; i < k; ++i) s += (double)x[i] * y[i];
  return s;
}

comet_status_t comet_ref_gemm_grouped(comet_dtype_t dtype, int groups, int n, int k,
                                      const int32_t *off, const void *a, const void *b,
                                      int swiglu, const float *row_scale, float *out) {
  COMET_ARG(dtype == COMET_DTYPE_BF16 || dtype == COMET_DTYPE_FP16,
            "ref gemm: dtype %d unsupported", (int)dtype);
  COMET_ARG(groups >= 1 && n >= 1 && k >= 1, "ref gemm: groups %d, n %d, k %d must be >= 1",
            groups, n, k);
  COMET_ARG(off && a && b && out, "ref gemm: NULL pointer argument");
  for (int g = 0; g < groups; ++g)
    COMET_ARG(off[g] >= 0 && off[g + 1] >= off[g], "ref gemm: group_offset[%d..%d] = %d, %d",
              g, g + 1, off[g], off[g + 1]);
  const size_t nb = (size_t)(swiglu ? 2 : 1) * n;
  float *af = to_f32((const char *)a, (size_t)off[groups] * k, dtype);
  float *bf = to_f32(b, (size_t)groups * nb * k, dtype);
  if (!af || !bf) {
    free(af);
    free(bf);
    return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "ref gemm: out of host memory");
  }
  for (int g = 0; g < groups; ++g) {
    const float *bg = bf + (size_t)g * nb * k;
    for (int r = off[g]; r < off[g + 1]; ++r) {
      const float *ar = af + (size_t)r * k;
      const double s = row_scale ? row_scale[r] : 1.0;
      for (int j = 0; j < n; ++j) {
        double v = dot(ar, bg + (size_t)j * k, k);
        if (swiglu) {
          const double up = dot(ar, bg + (size_t)(n + j) * k, k);
          v = v / (1.0 + exp(-v)) * up;
        }
        out[(size_t)r * n + j] = (float)(v * s);
      }
    }
  }
  free(af);
  free(bf);
  return COMET_OK;
}
