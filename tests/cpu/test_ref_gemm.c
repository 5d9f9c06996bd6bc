/* SPDX-License-Identifier: Apache-2.0 */
/* test_ref_gemm.c — the grouped GEMM's CPU oracle (src/ref/ref_gemm.c) on
 * hand-computed cases: group boundaries (incl. empty groups), rows outside
 * the groups untouched, SwiGLU and row scales, fp16, argument errors. */
#include <math.h>
#include <stdint.h>

#include "ref/convert.h"
#include "ref/ref_gemm.h"
#include "test_util.h"

static int near(float a, float b) { return fabsf(a - b) <= 1e-5f * (1.f + fabsf(b)); }

int main(void) {
  const char *name = "test_ref_gemm";
  /* 3 groups: rows [0,1) g0, [1,1) empty g1, [1,3) g2; n = 2, k = 3; row 3 outside. */
  const int32_t off[4] = {0, 1, 1, 3};
  const float af[4 * 3] = {1, 2, 3, -1, 0, 1, 0.5f, 0.5f, 0, 9, 9, 9};
  const float bf[3 * 4 * 3] = {/* g0: rows gate0, gate1, up0, up1 */
                               1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1,
                               /* g1 */ 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                               /* g2 */ 1, 1, 1, 2, 0, 0, 0, 0, 2, 1, 0, 1};
  uint16_t a[12], b[36], a16[12], b16[36];
  for (int i = 0; i < 12; ++i) a[i] = comet_f32_to_bf16(af[i]), a16[i] = comet_f32_to_fp16(af[i]);
  for (int i = 0; i < 36; ++i) b[i] = comet_f32_to_bf16(bf[i]), b16[i] = comet_f32_to_fp16(bf[i]);
  float out[8];
  for (int i = 0; i < 8; ++i) out[i] = -99.f;

  /* plain, b as [G, n=4, k] (n = 4 here: all four rows are outputs) */
  float out4[16];
  for (int i = 0; i < 16; ++i) out4[i] = -99.f;
  CHECK_OK(comet_ref_gemm_grouped(COMET_DTYPE_BF16, 3, 4, 3, off, a, b, 0, NULL, out4));
  const float want4[12] = {1, 2, 3, 6, /* row 1, g2 */ 0, -2, 2, 0, /* row 2 */ 1, 1, 0, 0.5f};
  for (int i = 0; i < 12; ++i) CHECK_MSG(near(out4[i], want4[i]), "plain [%d] = %g, want %g", i, out4[i], want4[i]);
  for (int i = 12; i < 16; ++i) CHECK_MSG(out4[i] == -99.f, "row outside the groups written");

  /* swiglu: gate rows 0..1, up rows 2..3; row scale */
  const float scale[4] = {2.f, 0.5f, 1.f, 1.f};
  CHECK_OK(comet_ref_gemm_grouped(COMET_DTYPE_FP16, 3, 2, 3, off, a16, b16, 1, scale, out));
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 2; ++j) {
      const float g = want4[r * 4 + j], u = want4[r * 4 + 2 + j];
      const float want = g / (1.f + expf(-g)) * u * scale[r];
      CHECK_MSG(near(out[r * 2 + j], want), "swiglu [%d,%d] = %g, want %g", r, j, out[r * 2 + j], want);
    }
  CHECK(out[6] == -99.f && out[7] == -99.f);

  const int32_t bad[3] = {0, 2, 1};
  CHECK_ERR(comet_ref_gemm_grouped(COMET_DTYPE_BF16, 2, 2, 3, bad, a, b, 0, NULL, out),
            COMET_ERR_INVALID_ARGUMENT, "group_offset[1..2]");
  CHECK_ERR(comet_ref_gemm_grouped(COMET_DTYPE_FP8_E4M3, 1, 2, 3, off, a, b, 0, NULL, out),
            COMET_ERR_INVALID_ARGUMENT, "dtype");
  return test_finish(name);
}
