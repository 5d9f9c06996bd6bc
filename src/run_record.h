/* SPDX-License-Identifier: Apache-2.0 */
/* run_record.h — what every JSON row of a measurement or test carries besides
 * its numbers (bench/results' rule): the command line that made it and when.
 * Internal: the `comet` command and the GPU tests set it from their main. */
#ifndef COMET_RUN_RECORD_H
#define COMET_RUN_RECORD_H

#ifdef __cplusplus
extern "C" {
#endif

/* Keeps argv joined by spaces (JSON-escaped) and the UTC time, once. */
void comet_run_record_init(int argc, char **argv);
/* The command line, JSON-escaped ("" before init). */
const char *comet_run_command(void);
/* The init time, ISO 8601 UTC ("" before init). */
const char *comet_run_date(void);

#ifdef __cplusplus
}
#endif
#endif
