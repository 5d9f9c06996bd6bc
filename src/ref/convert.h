/* SPDX-License-Identifier: Apache-2.0 */
/* convert.h — bf16/fp16 <-> fp32 conversions on the host, round to nearest
 * even (NaN kept quiet), the rounding the GPU's cvt.rn instructions do.
 * Header-only so tests and tools use the same bits as the reference. */
#ifndef COMET_CONVERT_H
#define COMET_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "comet.h"

static inline float comet_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t comet_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float comet_fp16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalize */
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) { man <<= 1; exp--; }
      u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t comet_f32_to_fp16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
  if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* overflow -> inf */
  if (absu < 0x38800000u) {                                          /* subnormal or zero */
    if (absu < 0x33000000u) return (uint16_t)sign;                   /* < half the smallest */
    uint32_t exp = absu >> 23, man = (absu & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp; /* value / 2^-24 = man * 2^(exp - 126) */
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u) - ((127 - 15) << 23);
  return (uint16_t)(sign | (r >> 13));
}

/* Element i of a bf16/fp16 array as float, and the store back (rounded). */
static inline float comet_load_f32(const void *p, size_t i, comet_dtype_t dt) {
  uint16_t h = ((const uint16_t *)p)[i];
  return dt == COMET_DTYPE_FP16 ? comet_fp16_to_f32(h) : comet_bf16_to_f32(h);
}
static inline void comet_store_f32(void *p, size_t i, float v, comet_dtype_t dt) {
  ((uint16_t *)p)[i] = dt == COMET_DTYPE_FP16 ? comet_f32_to_fp16(v) : comet_f32_to_bf16(v);
}
/* The value v rounds to in dtype (what a store then a load gives). */
static inline float comet_round_f32(float v, comet_dtype_t dt) {
  return dt == COMET_DTYPE_FP16 ? comet_fp16_to_f32(comet_f32_to_fp16(v))
                                : comet_bf16_to_f32(comet_f32_to_bf16(v));
}

#endif /* COMET_CONVERT_H */
