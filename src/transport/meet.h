/* SPDX-License-Identifier: Apache-2.0 */
/* meet.h — a rendezvous of W host threads or processes with a bounded wait,
 * the host collectives' one primitive in the loopback and ipc transports.
 * A rank that times out breaks the rendezvous (every later meeting fails at
 * once, naming it), since the others can no longer tell which collective it
 * is in. Process-shared when it lives in memory shared across fork. */
#ifndef COMET_MEET_H
#define COMET_MEET_H

#include <pthread.h>

#include "comet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comet_meet {
  int W;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int arrived;
  unsigned long generation;
  int broken;
  char broken_msg[256];
} comet_meet_t;

/* process_shared: 1 when m lives in memory shared by W processes. */
void comet_meet_init(comet_meet_t *m, int W, int process_shared);
void comet_meet_destroy(comet_meet_t *m);
/* Returns once all W ranks arrived, or COMET_ERR_TIMEOUT after timeout_s
 * (what names the collective in the message). */
comet_status_t comet_meet(comet_meet_t *m, int rank, const char *what, double timeout_s);

#ifdef __cplusplus
}
#endif
#endif
