/* SPDX-License-Identifier: Apache-2.0 */
/* run_record.c — the command line and date of a run's JSON rows (run_record.h). */
#include "run_record.h"

#include <stddef.h>
#include <time.h>

static char g_command[2048], g_date[32];

void comet_run_record_init(int argc, char **argv) {
  size_t n = 0;
  for (int i = 0; i < argc && n + 3 < sizeof g_command; ++i) {
    if (i > 0) g_command[n++] = ' ';
    for (const char *c = argv[i]; *c && n + 3 < sizeof g_command; ++c) {
      if (*c == '"' || *c == '\\') g_command[n++] = '\\';
      g_command[n++] = (unsigned char)*c < 0x20 ? ' ' : *c; /* no control characters in JSON */
    }
  }
  g_command[n] = '\0';
  const time_t now = time(NULL);
  strftime(g_date, sizeof g_date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

const char *comet_run_command(void) { return g_command; }
const char *comet_run_date(void) { return g_date; }
