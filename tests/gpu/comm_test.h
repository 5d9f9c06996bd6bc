/* comm_test.h — shared by the communication GPU tests: routings every rank
 * can regenerate for every other rank (seeded by run seed, case and rank),
 * layer setup inside a launched rank, small CUDA checks. */
#ifndef COMET_COMM_TEST_H
#define COMET_COMM_TEST_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comet.h"
#include "launch.h"
#include "layer.h"
#include "plan.h"
#include "test_util.h"

#define CUDA_OK(call)                                                                  \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
              cudaGetErrorString(e_));                                                 \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* Routing kinds. */
enum { ROUTE_UNIFORM, ROUTE_SKEW, ROUTE_EMPTY_EXPERTS, ROUTE_DROPPED, ROUTE_KINDS };
static const char *const route_names[ROUTE_KINDS] = {"uniform", "skewed", "empty-experts",
                                                     "dropped"};

static inline uint64_t mix_seed(uint64_t seed, int a, int b, int c) {
  uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(a + 1)) ^
               (0xbf58476d1ce4e5b9ull * (uint64_t)(b + 7)) ^ (0x94d049bb133111ebull * (uint64_t)(c + 13));
  test_rand_u64(&s);
  return s;
}

/* Fills ids [T, K] of one rank: distinct experts per token (or -1). */
static inline void gen_ids(int kind, uint64_t seed, int E, int K, int T, int32_t *ids) {
  uint64_t s = seed;
  /* empty-experts: only experts i*(E/P), P = max(K, E/4): whole ranks may get nothing */
  const int P = K > E / 4 ? K : E / 4;
  for (int t = 0; t < T; ++t) {
    int32_t *row = ids + (size_t)t * K;
    const int drop_all = kind == ROUTE_DROPPED && test_rand_int(&s, 0, 9) == 0;
    for (int k = 0; k < K; ++k) {
      int e, dup;
      do {
        switch (kind) {
          case ROUTE_SKEW: /* experts 0 and 1 take most of the load */
            e = test_rand_int(&s, 0, 9) < 6 ? test_rand_int(&s, 0, 1) : test_rand_int(&s, 0, E - 1);
            break;
          case ROUTE_EMPTY_EXPERTS: e = test_rand_int(&s, 0, P - 1) * (E / P); break;
          default: e = test_rand_int(&s, 0, E - 1);
        }
        dup = 0;
        for (int k2 = 0; k2 < k; ++k2) dup |= row[k2] == e;
      } while (dup);
      row[k] = e;
    }
    if (kind == ROUTE_DROPPED)
      for (int k = 0; k < K; ++k)
        if (drop_all || test_rand_int(&s, 0, 3) == 0) row[k] = -1;
  }
}

static inline void gen_bits16(uint64_t seed, size_t n, uint16_t *out, int fp16) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    float f = test_rand_uniform(&s, -2.0f, 2.0f);
    uint32_t u;
    memcpy(&u, &f, 4);
    /* bf16: top 16 bits; fp16: a value in range, built from a small float */
    out[i] = fp16 ? (uint16_t)(((u >> 16) & 0x8000u) | (0x3800u + (uint16_t)(test_rand_u64(&s) & 0x7ffu)))
                  : (uint16_t)(u >> 16);
  }
}

#endif /* COMET_COMM_TEST_H */
