/* SPDX-License-Identifier: Apache-2.0 */
/* error.h — internal error reporting: set the per-thread message and return
 * a status; CHECK macros that return early with file:line appended. */
#ifndef COMET_ERROR_H
#define COMET_ERROR_H

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Formats the per-thread last-error message and returns status. */
comet_status_t comet_set_error(comet_status_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends " (at file:line)" to the current message: a backtrace as errors travel up. */
comet_status_t comet_trace_error(comet_status_t status, const char *file, int line);
void comet_clear_error(void);

#ifdef __cplusplus
}
#endif

/* Return early on failure, adding this call site to the message. */
#define COMET_CHECK(expr)                                                     \
  do {                                                                        \
    comet_status_t comet_check_s_ = (expr);                                   \
    if (comet_check_s_ != COMET_OK)                                           \
      return comet_trace_error(comet_check_s_, __FILE__, __LINE__);           \
  } while (0)

/* Same, but jump to a cleanup label with the status stored in `st`. */
#define COMET_CHECK_GOTO(expr, st, label)                                     \
  do {                                                                        \
    (st) = (expr);                                                            \
    if ((st) != COMET_OK) {                                                   \
      comet_trace_error((st), __FILE__, __LINE__);                            \
      goto label;                                                             \
    }                                                                         \
  } while (0)

/* Argument check: `cond` must hold, else INVALID_ARGUMENT with a message. */
#define COMET_ARG(cond, ...)                                                  \
  do {                                                                        \
    if (!(cond)) return comet_set_error(COMET_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

#endif /* COMET_ERROR_H */
