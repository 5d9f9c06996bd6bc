/* SPDX-License-Identifier: Apache-2.0 */
/* test_meet.c — the host rendezvous of the loopback and ipc transports
 * (src/transport/meet.c): W threads meet many times in a row; a rank that
 * never arrives makes the others fail after the timeout with a message
 * naming the collective and who arrived, and every later meeting fails at
 * once (the world is broken); a process-shared rendezvous works across
 * fork. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "transport/meet.h"

enum { W = 6, ROUNDS = 200 };

typedef struct arg {
  comet_meet_t *m;
  int rank, skip_from; /* stop arriving at meeting skip_from (-1: never) */
  int *counter;        /* shared: incremented by every rank before each meeting */
  int ok, bad_round;   /* results */
  comet_status_t last;
  char msg[512];
} arg_t;

static void *rank_main(void *p) {
  arg_t *a = (arg_t *)p;
  a->ok = 1;
  for (int r = 0; r < ROUNDS; ++r) {
    if (a->skip_from >= 0 && r >= a->skip_from) return NULL;
    __atomic_add_fetch(a->counter, 1, __ATOMIC_SEQ_CST);
    a->last = comet_meet(a->m, a->rank, "barrier", 0.5);
    if (a->last != COMET_OK) {
      snprintf(a->msg, sizeof a->msg, "%s", comet_last_error());
      a->bad_round = r;
      a->ok = 0;
      return NULL;
    }
    /* after meeting r every rank has counted r + 1 times */
    if (__atomic_load_n(a->counter, __ATOMIC_SEQ_CST) < (r + 1) * W) a->ok = 0;
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  /* 1. many meetings, all arrive */
  comet_meet_t m;
  comet_meet_init(&m, W, 0);
  int counter = 0;
  pthread_t th[W];
  arg_t a[W];
  for (int i = 0; i < W; ++i) {
    a[i] = (arg_t){&m, i, -1, &counter, 0, -1, COMET_OK, ""};
    pthread_create(&th[i], NULL, rank_main, &a[i]);
  }
  for (int i = 0; i < W; ++i) pthread_join(th[i], NULL);
  for (int i = 0; i < W; ++i) CHECK_MSG(a[i].ok, "rank %d: round %d: %s", i, a[i].bad_round, a[i].msg);
  comet_meet_destroy(&m);

  /* 2. rank 2 stops arriving at meeting 10: the others time out there */
  comet_meet_init(&m, W, 0);
  counter = 0;
  const double t0 = now_s();
  for (int i = 0; i < W; ++i) {
    a[i] = (arg_t){&m, i, i == 2 ? 10 : -1, &counter, 0, -1, COMET_OK, ""};
    pthread_create(&th[i], NULL, rank_main, &a[i]);
  }
  for (int i = 0; i < W; ++i) pthread_join(th[i], NULL);
  const double dt = now_s() - t0;
  CHECK_MSG(dt < 5.0, "the others gave up after %.1f s (timeout 0.5 s)", dt);
  for (int i = 0; i < W; ++i) {
    if (i == 2) continue;
    CHECK_MSG(a[i].last == COMET_ERR_TIMEOUT && a[i].bad_round == 10, "rank %d: %s at round %d", i,
              comet_status_string(a[i].last), a[i].bad_round);
    CHECK_MSG(strstr(a[i].msg, "barrier") && strstr(a[i].msg, "5 of 6 arrived"), "rank %d: %s", i, a[i].msg);
  }
  printf("a rank that never arrives -> %s\n", a[0].msg);
  /* the world stays broken: the next meeting fails at once */
  const double t1 = now_s();
  CHECK_ERR(comet_meet(&m, 0, "allgather", 5.0), COMET_ERR_TIMEOUT, "the world is broken");
  CHECK(now_s() - t1 < 1.0);
  comet_meet_destroy(&m);

  /* 3. process-shared: a parent and a forked child meet 100 times */
  comet_meet_t *sm = mmap(NULL, sizeof *sm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sm != MAP_FAILED);
  comet_meet_init(sm, 2, 1);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    for (int r = 0; r < 100; ++r)
      if (comet_meet(sm, 1, "barrier", 10.0) != COMET_OK) _exit(1);
    _exit(0);
  }
  int fails = 0;
  for (int r = 0; r < 100; ++r) fails += comet_meet(sm, 0, "barrier", 10.0) != COMET_OK;
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK_MSG(fails == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "process-shared meetings: %d failed here, child status %d", fails, status);
  comet_meet_destroy(sm);
  munmap(sm, sizeof *sm);
  return test_finish("test_meet");
}
