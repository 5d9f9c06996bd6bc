/* SPDX-License-Identifier: Apache-2.0 */
/* test_run_record.c — the command line and date every JSON row carries
 * (src/run_record.c): arguments joined by spaces, quotes and backslashes
 * escaped, control characters blanked (a valid JSON string), the date in
 * ISO 8601 UTC. */
#include <string.h>

#include "run_record.h"
#include "test_util.h"

int main(void) {
  CHECK(strcmp(comet_run_command(), "") == 0 && strcmp(comet_run_date(), "") == 0);
  char a0[] = "comet", a1[] = "bench", a2[] = "--model", a3[] = "a\"b\\c\td";
  char *argv[] = {a0, a1, a2, a3};
  comet_run_record_init(4, argv);
  CHECK_MSG(strcmp(comet_run_command(), "comet bench --model a\\\"b\\\\c d") == 0, "command: %s",
            comet_run_command());
  const char *d = comet_run_date();
  CHECK_MSG(strlen(d) == 20 && d[4] == '-' && d[10] == 'T' && d[19] == 'Z', "date: %s", d);
  return test_finish("test_run_record");
}
