/* SPDX-License-Identifier: Apache-2.0 */
/* test_util.c — RNG, seeding and summary for the tests. */
#include "test_util.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

TEST_TLS int test_failures = 0;
TEST_TLS int test_checks = 0;

uint64_t test_rand_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float test_rand_uniform(uint64_t *s, float lo, float hi) {
  return lo + (hi - lo) * (float)((test_rand_u64(s) >> 40) * (1.0 / 16777216.0));
}

int test_rand_int(uint64_t *s, int lo, int hi) {
  return lo + (int)(test_rand_u64(s) % (uint64_t)(hi - lo + 1));
}

uint64_t test_seed(const char *name) {
  const char *env = getenv("COMET_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  printf("%s: seed %llu (rerun with COMET_TEST_SEED=%llu)\n", name, (unsigned long long)seed,
         (unsigned long long)seed);
  return seed;
}

int test_finish(const char *name) {
  if (test_checks == 0) {
    fprintf(stderr, "%s: FAIL: no checks ran\n", name);
    return 1;
  }
  printf("%s: %s (%d checks, %d failed)\n", name, test_failures ? "FAIL" : "PASS", test_checks,
         test_failures);
  return test_failures ? 1 : 0;
}

int test_skip(const char *name, const char *why) {
  printf("*** %s: SKIPPED: %s ***\n", name, why);
  fflush(stdout);
  return TEST_SKIP_CODE;
}

void test_stop_if_stuck(comet_status_t got, comet_status_t wanted) {
  if (got == wanted || (got != COMET_ERR_TIMEOUT && got != COMET_ERR_ABORTED)) return;
  fprintf(stderr, "STOP: an unexpected %s: the layer's world is stuck; this process ends here "
          "(%d checks, %d failed)\n", comet_status_string(got), test_checks, test_failures);
  fflush(NULL);
  _exit(1);
}
