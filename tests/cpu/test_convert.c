/* SPDX-License-Identifier: Apache-2.0 */
/* test_convert.c — bf16/fp16 <-> fp32 conversions (ref/convert.h): every
 * 16-bit pattern decodes to the value its fields say and round-trips (NaN
 * stays NaN), round-to-nearest-even ties both ways at every pattern, fp16
 * overflow to inf and subnormals, and random floats against an independent
 * nearest-value search. */
#include <math.h>

#include "ref/convert.h"
#include "test_util.h"

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Decoding straight from the fields, in double. */
static double fp16_value(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return s ? -v : v;
}
static double bf16_value(uint16_t h) {
  int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
  double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
  return s ? -v : v;
}

/* Nearest of the non-negative finite patterns 0..top (values increasing with
 * the pattern), ties to the even pattern; past the last midpoint the next
 * pattern (inf) — IEEE round-to-nearest-even by search, not by bit tricks. */
static uint16_t nearest(double a, uint16_t top, double (*value)(uint16_t)) {
  uint16_t lo = 0, hi = top;
  if (a >= value(top)) {
    double next = value(top) + (value(top) - value((uint16_t)(top - 1)));
    double mid = 0.5 * (value(top) + next);
    return a < mid || (a == mid && !(top & 1)) ? top : (uint16_t)(top + 1);
  }
  while (hi - lo > 1) { /* value(lo) <= a < value(hi) */
    uint16_t m = (uint16_t)((lo + hi) / 2);
    if (value(m) <= a) lo = m; else hi = m;
  }
  double dl = a - value(lo), dh = value(hi) - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

static void check_all_patterns(void) {
  int bad_bf = 0, bad_fp = 0, bad_dec = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint16_t h = (uint16_t)p;
    float fb = comet_bf16_to_f32(h), ff = comet_fp16_to_f32(h);
    double vb = bf16_value(h), vf = fp16_value(h);
    if (isnan(vb) ? !isnan(fb) : (double)fb != vb || !!signbit(fb) != (h >> 15)) bad_dec++;
    if (isnan(vf) ? !isnan(ff) : (double)ff != vf || !!signbit(ff) != (h >> 15)) bad_dec++;
    uint16_t rb = comet_f32_to_bf16(fb), rf = comet_f32_to_fp16(ff);
    if (isnan(fb)) {
      if (!isnan(comet_bf16_to_f32(rb))) bad_bf++;
    } else if (rb != h) {
      bad_bf++;
    }
    if (isnan(ff)) {
      if (!isnan(comet_fp16_to_f32(rf))) bad_fp++;
    } else if (rf != h) {
      bad_fp++;
    }
  }
  CHECK_MSG(bad_dec == 0, "%d patterns decode wrong", bad_dec);
  CHECK_MSG(bad_bf == 0, "%d bf16 patterns do not round-trip", bad_bf);
  CHECK_MSG(bad_fp == 0, "%d fp16 patterns do not round-trip", bad_fp);
}

/* At the midpoint of every pair of neighbours the even one wins; a hair
 * below goes down, a hair above goes up. Both signs. */
static void check_ties(void) {
  int bad_bf = 0, bad_fp = 0;
  for (uint32_t p = 0; p < 0x7f80; ++p) { /* bf16: positive finite, next may be inf */
    for (int sign = 0; sign < 2; ++sign) {
      const uint32_t s16 = sign ? 0x8000u : 0;
      uint32_t mid = (p << 16) | 0x8000u | (s16 << 16);
      uint16_t even = (uint16_t)(((p & 1) ? p + 1 : p) | s16);
      if (comet_f32_to_bf16(float_of(mid)) != even) bad_bf++;
      if (comet_f32_to_bf16(float_of(mid - 1)) != (uint16_t)(p | s16)) bad_bf++;
      if (comet_f32_to_bf16(float_of(mid + 1)) != (uint16_t)((p + 1) | s16)) bad_bf++;
    }
  }
  for (uint32_t p = 0; p < 0x7c00; ++p) { /* fp16: includes subnormals and 65504 -> inf */
    for (int sign = 0; sign < 2; ++sign) {
      const uint16_t s16 = sign ? 0x8000u : 0;
      double lo = fp16_value((uint16_t)p);
      double hi = p + 1 < 0x7c00 ? fp16_value((uint16_t)(p + 1)) : 65536.0; /* inf's slot */
      float mid = (float)(0.5 * (lo + hi));                                 /* exact */
      if (sign) mid = -mid;
      uint16_t even = (uint16_t)(((p & 1) ? p + 1 : p) | s16);
      if (comet_f32_to_fp16(mid) != even) bad_fp++;
      if (comet_f32_to_fp16(nextafterf(mid, 0.f)) != (uint16_t)(p | s16)) bad_fp++;
      if (comet_f32_to_fp16(nextafterf(mid, sign ? -INFINITY : INFINITY)) !=
          (uint16_t)((p + 1) | s16))
        bad_fp++;
    }
  }
  CHECK_MSG(bad_bf == 0, "%d bf16 tie cases wrong", bad_bf);
  CHECK_MSG(bad_fp == 0, "%d fp16 tie cases wrong", bad_fp);
}

static void check_special(void) {
  /* fp16 overflow: 65504 is the largest, 65520 the midpoint to inf. */
  CHECK(comet_f32_to_fp16(65504.f) == 0x7bff);
  CHECK(comet_f32_to_fp16(65519.996f) == 0x7bff);
  CHECK(comet_f32_to_fp16(65520.f) == 0x7c00);
  CHECK(comet_f32_to_fp16(1e30f) == 0x7c00);
  CHECK(comet_f32_to_fp16(-1e30f) == 0xfc00);
  CHECK(comet_f32_to_fp16(INFINITY) == 0x7c00);
  CHECK(comet_f32_to_fp16(-INFINITY) == 0xfc00);
  CHECK(comet_f32_to_fp16(3.4028235e38f) == 0x7c00);
  /* bf16 overflow only past the largest float's rounding: FLT_MAX -> inf (RNE). */
  CHECK(comet_f32_to_bf16(INFINITY) == 0x7f80 && comet_f32_to_bf16(-INFINITY) == 0xff80);
  CHECK(comet_f32_to_bf16(float_of(0x7f7f7fffu)) == 0x7f7f);
  CHECK(comet_f32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80);
  /* fp16 subnormals: 2^-24 is the smallest; 2^-25 ties to 0 (even), 3*2^-25 to 2. */
  CHECK(comet_f32_to_fp16(ldexpf(1, -24)) == 0x0001);
  CHECK(comet_f32_to_fp16(ldexpf(1, -25)) == 0x0000);
  CHECK(comet_f32_to_fp16(nextafterf(ldexpf(1, -25), 1)) == 0x0001);
  CHECK(comet_f32_to_fp16(ldexpf(3, -25)) == 0x0002);
  CHECK(comet_f32_to_fp16(-ldexpf(1, -24)) == 0x8001);
  CHECK(comet_f32_to_fp16(-ldexpf(1, -26)) == 0x8000); /* -0 keeps its sign */
  CHECK(comet_f32_to_fp16(ldexpf(1023, -24)) == 0x03ff); /* largest subnormal */
  CHECK(comet_f32_to_fp16(ldexpf(2047, -25)) == 0x0400); /* ties up into the normals */
  CHECK(comet_f32_to_fp16(float_of(1)) == 0x0000);     /* float subnormal */
  CHECK(comet_fp16_to_f32(0x0001) == ldexpf(1, -24));
  CHECK(comet_fp16_to_f32(0x03ff) == ldexpf(1023, -24));
  /* bf16 subnormals are float subnormals: the top 16 bits. */
  CHECK(comet_f32_to_bf16(float_of(0x00010000u)) == 0x0001);
  CHECK(comet_f32_to_bf16(float_of(0x00008000u)) == 0x0000); /* tie to even (0) */
  CHECK(comet_f32_to_bf16(float_of(0x00018000u)) == 0x0002); /* tie to even (2) */
  CHECK(comet_f32_to_bf16(float_of(0x80008001u)) == 0x8001);
  /* NaN stays NaN, even with a payload only in the bits that get dropped. */
  CHECK(isnan(comet_bf16_to_f32(comet_f32_to_bf16(float_of(0x7f800001u)))));
  CHECK(isnan(comet_bf16_to_f32(comet_f32_to_bf16(float_of(0xff800001u)))));
  CHECK(isnan(comet_fp16_to_f32(comet_f32_to_fp16(float_of(0x7f800001u)))));
  CHECK(isnan(comet_fp16_to_f32(comet_f32_to_fp16(NAN))));
  CHECK(comet_f32_to_fp16(-0.f) == 0x8000 && comet_f32_to_bf16(-0.f) == 0x8000);
  /* The array helpers and comet_round_f32 agree with the scalar ones. */
  uint16_t a[2];
  comet_store_f32(a, 0, 1.0f / 3, COMET_DTYPE_BF16);
  comet_store_f32(a, 1, 1.0f / 3, COMET_DTYPE_FP16);
  CHECK(a[0] == comet_f32_to_bf16(1.0f / 3) && a[1] == comet_f32_to_fp16(1.0f / 3));
  CHECK(comet_load_f32(a, 0, COMET_DTYPE_BF16) == comet_round_f32(1.0f / 3, COMET_DTYPE_BF16));
  CHECK(comet_load_f32(a, 1, COMET_DTYPE_FP16) == comet_round_f32(1.0f / 3, COMET_DTYPE_FP16));
}

/* Random floats (random bit patterns, and patterns with exponents in fp16's
 * range) against the search. */
static void check_random(uint64_t *rng) {
  int bad_bf = 0, bad_fp = 0;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = (uint32_t)test_rand_u64(rng);
    if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)test_rand_int(rng, 127 - 26, 127 + 16) << 23);
    float f = float_of(u);
    if (isnan(f)) continue;
    double a = fabs((double)f);
    const uint16_t sign = (u >> 31) ? 0x8000 : 0;
    uint16_t eb = (uint16_t)(nearest(a, 0x7f7f, bf16_value) | sign);
    uint16_t ef = (uint16_t)(nearest(a, 0x7bff, fp16_value) | sign);
    if (isinf(f)) { eb = (uint16_t)(0x7f80 | sign); ef = (uint16_t)(0x7c00 | sign); }
    if (comet_f32_to_bf16(f) != eb) bad_bf++;
    if (comet_f32_to_fp16(f) != ef) {
      if (bad_fp++ < 5) fprintf(stderr, "fp16(%a) = %04x, expected %04x\n", f, comet_f32_to_fp16(f), ef);
    }
  }
  CHECK_MSG(bad_bf == 0, "%d random floats round to the wrong bf16", bad_bf);
  CHECK_MSG(bad_fp == 0, "%d random floats round to the wrong fp16", bad_fp);
}

int main(void) {
  uint64_t rng = test_seed("test_convert");
  check_all_patterns();
  check_ties();
  check_special();
  check_random(&rng);
  return test_finish("test_convert");
}
