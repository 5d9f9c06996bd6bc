/* SPDX-License-Identifier: Apache-2.0 */
/* error.c — status strings and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static _Thread_local char g_last_error[1024];

const char *comet_status_string(comet_status_t status) {
  switch (status) {
    case COMET_OK: return "ok";
    case COMET_ERR_INVALID_ARGUMENT: return "invalid argument";
    case COMET_ERR_UNSUPPORTED: return "unsupported";
    case COMET_ERR_OUT_OF_MEMORY: return "out of memory";
    case COMET_ERR_CUDA: return "CUDA error";
    case COMET_ERR_NCCL: return "NCCL error";
    case COMET_ERR_ROUTING: return "routing error";
    case COMET_ERR_INTERNAL: return "internal error";
    case COMET_ERR_TIMEOUT: return "timed out";
    case COMET_ERR_ABORTED: return "aborted";
  }
  return "unknown status";
}

const char *comet_last_error(void) { return g_last_error; }

void comet_clear_error(void) { g_last_error[0] = '\0'; }

comet_status_t comet_set_error(comet_status_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
  return status;
}

comet_status_t comet_trace_error(comet_status_t status, const char *file, int line) {
  size_t n = strlen(g_last_error);
  const char *base = strrchr(file, '/');
  if (n < sizeof g_last_error - 1)
    snprintf(g_last_error + n, sizeof g_last_error - n, " (at %s:%d)", base ? base + 1 : file, line);
  return status;
}
