/* SPDX-License-Identifier: Apache-2.0 */
/* test_launch.c — the process launcher: every rank runs and sees the same
 * unique id; a failing, crashing or hanging rank fails the whole run in
 * bounded time; the external rendezvous hands rank 0's id to the others.
 * Needs no GPU (ncclGetUniqueId only touches the host network). */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"
#include "test_util.h"

typedef struct shared_ids {
  int seen[8];
  comet_unique_id_t ids[8];
} shared_ids_t;

static int record_rank(const comet_rank_info_t *info, void *arg) {
  shared_ids_t *sh = arg;
  sh->ids[info->rank] = info->id;
  sh->seen[info->rank] = 1 + info->world * 100 + info->device * 10;
  return 0;
}

static int fail_rank2(const comet_rank_info_t *info, void *arg) {
  (void)arg;
  if (info->rank == 2) return 1;
  sleep(30); /* the others would hang: the launcher must stop them */
  return 0;
}

static int crash_rank1(const comet_rank_info_t *info, void *arg) {
  (void)arg;
  if (info->rank == 1) raise(SIGSEGV);
  sleep(30);
  return 0;
}

static int hang_all(const comet_rank_info_t *info, void *arg) {
  (void)info;
  (void)arg;
  sleep(30);
  return 0;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(void) {
  shared_ids_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sh != MAP_FAILED);
  memset(sh, 0, sizeof *sh);

  CHECK(comet_launch_local(4, 60, record_rank, sh) == 0);
  for (int r = 0; r < 4; ++r) {
    CHECK_MSG(sh->seen[r] == 1 + 400 + r * 10, "rank %d saw %d", r, sh->seen[r]);
    CHECK(memcmp(&sh->ids[r], &sh->ids[0], sizeof sh->ids[0]) == 0);
  }
  static const comet_unique_id_t zero;
  CHECK(memcmp(&sh->ids[0], &zero, sizeof zero) != 0);

  double t0 = seconds();
  CHECK(comet_launch_local(4, 60, fail_rank2, NULL) != 0);
  CHECK_MSG(seconds() - t0 < 15, "a failing rank took %.1f s to end the run", seconds() - t0);

  t0 = seconds();
  CHECK(comet_launch_local(3, 60, crash_rank1, NULL) != 0);
  CHECK_MSG(seconds() - t0 < 15, "a crashing rank took %.1f s to end the run", seconds() - t0);

  t0 = seconds();
  CHECK(comet_launch_local(2, 1.0, hang_all, NULL) != 0);
  CHECK_MSG(seconds() - t0 < 10, "the timeout took %.1f s", seconds() - t0);

  CHECK(comet_launch_local(0, 10, record_rank, sh) != 0);

  /* External rendezvous: rank 0 and rank 1 as two processes of this test. */
  char path[] = "/tmp/comet_rdzv_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  unlink(path);
  memset(sh, 0, sizeof *sh);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("RANK", "1", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("LOCAL_RANK", "1", 1);
    _exit(comet_launch_external(path, 30, record_rank, sh));
  }
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "2", 1);
  unsetenv("LOCAL_RANK");
  CHECK(comet_launch_external(path, 30, record_rank, sh) == 0);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(sh->seen[0] == 1 + 200 && sh->seen[1] == 1 + 200 + 10);
  CHECK(memcmp(&sh->ids[0], &sh->ids[1], sizeof sh->ids[0]) == 0);
  unlink(path);

  /* A rank that finds no rendezvous file gives up after its timeout. */
  setenv("RANK", "1", 1);
  t0 = seconds();
  CHECK(comet_launch_external(path, 0.5, record_rank, sh) != 0);
  CHECK(seconds() - t0 < 5);
  /* Bad environment. */
  setenv("RANK", "5", 1);
  CHECK(comet_launch_external(path, 1, record_rank, sh) != 0);
  munmap(sh, sizeof *sh);
  return test_finish("test_launch");
}
