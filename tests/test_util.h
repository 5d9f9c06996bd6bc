/* SPDX-License-Identifier: Apache-2.0 */
/* test_util.h — tiny assertion helpers shared by the tests: every check
 * counts, a failure prints file:line and the test exits non-zero. */
#ifndef COMET_TEST_UTIL_H
#define COMET_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per thread: the loopback world runs one rank per thread, each counting
 * its own checks. */
#ifdef __cplusplus
#define TEST_TLS thread_local
#else
#define TEST_TLS _Thread_local
#endif
extern TEST_TLS int test_failures;
extern TEST_TLS int test_checks;

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE in CMakeLists.txt). */
#define TEST_SKIP_CODE 77

/* Deterministic RNG (splitmix64) so failures reproduce from the seed printed. */
uint64_t test_rand_u64(uint64_t *state);
float test_rand_uniform(uint64_t *state, float lo, float hi); /* [lo, hi) */
int test_rand_int(uint64_t *state, int lo, int hi);           /* [lo, hi] */
/* Seed from COMET_TEST_SEED or the clock; printed so a failure can be rerun. */
uint64_t test_seed(const char *test_name);
/* Ends a test: prints the summary, returns the process exit code. */
int test_finish(const char *test_name);
/* Loudly skip (no GPU, too few GPUs): prints why and returns TEST_SKIP_CODE. */
int test_skip(const char *test_name, const char *why);
/* A call returned a timeout or an abort it was not meant to: the layer (and
 * its world) is stuck, and every later check would wait out its timeout
 * again (a hung loopback test ran 285 s): ends the process with a failure.
 * Each world of the multi-rank tests is a child process of its own
 * (comet_launch_*), so the other worlds still run. */
void test_stop_if_stuck(comet_status_t got, comet_status_t wanted);

#ifdef __cplusplus
}
#endif

#define CHECK(cond)                                                           \
  do {                                                                        \
    test_checks++;                                                            \
    if (!(cond)) {                                                            \
      test_failures++;                                                        \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
    }                                                                         \
  } while (0)

#define CHECK_MSG(cond, ...)                                                  \
  do {                                                                        \
    test_checks++;                                                            \
    if (!(cond)) {                                                            \
      test_failures++;                                                        \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
    }                                                                         \
  } while (0)

/* A call must fail with `status` and its message must contain `needle`. */
#define CHECK_ERR(call, status, needle)                                       \
  do {                                                                        \
    comet_status_t s_ = (call);                                               \
    CHECK_MSG(s_ == (status), "%s returned %s (%s), wanted %s", #call,        \
              comet_status_string(s_), comet_last_error(),                    \
              comet_status_string(status));                                   \
    CHECK_MSG(strstr(comet_last_error(), (needle)) != NULL,                   \
              "message \"%s\" lacks \"%s\"", comet_last_error(), (needle));   \
    test_stop_if_stuck(s_, (status));                                         \
  } while (0)

#define CHECK_OK(call)                                                        \
  do {                                                                        \
    comet_status_t s_ = (call);                                               \
    CHECK_MSG(s_ == COMET_OK, "%s returned %s: %s", #call,                    \
              comet_status_string(s_), comet_last_error());                   \
    test_stop_if_stuck(s_, COMET_OK);                                         \
  } while (0)

#endif /* COMET_TEST_UTIL_H */
