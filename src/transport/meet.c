/* SPDX-License-Identifier: Apache-2.0 */
/* meet.c — the bounded rendezvous of meet.h. */
#include "transport/meet.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "error.h"

void comet_meet_init(comet_meet_t *m, int W, int process_shared) {
  memset(m, 0, sizeof *m);
  m->W = W;
  pthread_mutexattr_t ma;
  pthread_condattr_t ca;
  pthread_mutexattr_init(&ma);
  pthread_condattr_init(&ca);
  if (process_shared) {
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  }
  pthread_mutex_init(&m->mu, &ma);
  pthread_cond_init(&m->cv, &ca);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_destroy(&ca);
}

void comet_meet_destroy(comet_meet_t *m) {
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
}

comet_status_t comet_meet(comet_meet_t *m, int rank, const char *what, double timeout_s) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)timeout_s;
  dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
  if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&m->mu);
  if (m->broken) {
    pthread_mutex_unlock(&m->mu);
    return comet_set_error(COMET_ERR_TIMEOUT, "rank %d: %s: the world is broken: %s", rank, what,
                           m->broken_msg);
  }
  const unsigned long gen = m->generation;
  if (++m->arrived == m->W) {
    m->arrived = 0;
    m->generation++;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return COMET_OK;
  }
  int rc = 0;
  while (m->generation == gen && !m->broken && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&m->cv, &m->mu, &dl);
  comet_status_t st = COMET_OK;
  if (m->generation == gen) {
    if (!m->broken) {
      m->broken = 1;
      snprintf(m->broken_msg, sizeof m->broken_msg,
               "rank %d waited %.3g s in a %s for the other ranks (%d of %d arrived)", rank,
               timeout_s, what, m->arrived, m->W);
      pthread_cond_broadcast(&m->cv);
    }
    st = comet_set_error(COMET_ERR_TIMEOUT, "rank %d: %s: %s", rank, what, m->broken_msg);
  }
  pthread_mutex_unlock(&m->mu);
  return st;
}
