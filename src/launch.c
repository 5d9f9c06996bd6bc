/* launch.c — one process per GPU: fork-based local launch with the NCCL
 * unique id handed over in shared memory, and rendezvous through a file for
 * ranks started by an external launcher. The parent watches its children:
 * the first failure or the deadline ends the whole run. */
#define _GNU_SOURCE
#include "launch.h"

#include <errno.h>
#include <nccl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

_Static_assert(sizeof(ncclUniqueId) == COMET_UNIQUE_ID_BYTES, "comet_unique_id_t must hold an ncclUniqueId");

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int comet_launch_gpu_count(void) {
  int fds[2];
  if (pipe(fds) != 0) return 0;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  if (pid == 0) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    ssize_t w = write(fds[1], &n, sizeof n);
    _exit(w == (ssize_t)sizeof n ? 0 : 1);
  }
  close(fds[1]);
  int n = 0;
  if (read(fds[0], &n, sizeof n) != (ssize_t)sizeof n) n = 0;
  close(fds[0]);
  waitpid(pid, NULL, 0);
  return n;
}

/* Shared between the parent and its children (MAP_SHARED before fork). */
typedef struct launch_shared {
  volatile int id_state; /* 0 pending, 1 ready, -1 rank 0 failed to make it */
  comet_unique_id_t id;
} launch_shared_t;

static int child_main(launch_shared_t *sh, int rank, int world, double deadline, comet_rank_fn fn,
                      void *arg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the launcher */
  comet_rank_info_t info;
  memset(&info, 0, sizeof info);
  info.rank = rank;
  info.world = world;
  info.local_rank = rank;
  info.device = rank;
  if (rank == 0) {
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      fprintf(stderr, "[rank 0] ncclGetUniqueId failed: %s\n", ncclGetErrorString(r));
      __atomic_store_n(&sh->id_state, -1, __ATOMIC_RELEASE);
      return 1;
    }
    memcpy(sh->id.internal, &id, sizeof id);
    __atomic_store_n(&sh->id_state, 1, __ATOMIC_RELEASE);
  } else {
    int state;
    while ((state = __atomic_load_n(&sh->id_state, __ATOMIC_ACQUIRE)) == 0) {
      if (now_s() > deadline) {
        fprintf(stderr, "[rank %d] timed out waiting for rank 0's NCCL unique id\n", rank);
        return 1;
      }
      sleep_ms(1);
    }
    if (state < 0) return 1;
  }
  info.id = sh->id;
  return fn(&info, arg);
}

static void describe(int rank, int status, char *buf, size_t n) {
  if (WIFEXITED(status))
    snprintf(buf, n, "rank %d exited with code %d", rank, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, n, "rank %d was killed by signal %d (%s)", rank, WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(buf, n, "rank %d ended with status 0x%x", rank, status);
}

/* Sends sig to the children still running, then reaps them within grace_s,
 * escalating to SIGKILL. */
static void stop_children(pid_t *pids, int n, double grace_s) {
  for (int i = 0; i < n; ++i)
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  double until = now_s() + grace_s;
  for (;;) {
    int alive = 0;
    for (int i = 0; i < n; ++i) {
      if (pids[i] <= 0) continue;
      if (waitpid(pids[i], NULL, WNOHANG) == pids[i]) pids[i] = -1;
      else alive++;
    }
    if (!alive) return;
    if (now_s() > until) break;
    sleep_ms(10);
  }
  for (int i = 0; i < n; ++i)
    if (pids[i] > 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], NULL, 0);
      pids[i] = -1;
    }
}

int comet_launch_local(int gpus, double timeout_s, comet_rank_fn fn, void *arg) {
  if (gpus < 1 || !fn || timeout_s <= 0) {
    fprintf(stderr, "comet_launch_local: gpus = %d must be >= 1, fn non-NULL, timeout_s = %g > 0\n",
            gpus, timeout_s);
    return 1;
  }
  launch_shared_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) {
    fprintf(stderr, "comet_launch_local: mmap failed: %s\n", strerror(errno));
    return 1;
  }
  memset(sh, 0, sizeof *sh);
  pid_t *pids = calloc((size_t)gpus, sizeof(pid_t));
  if (!pids) {
    munmap(sh, sizeof *sh);
    return 1;
  }
  const double deadline = now_s() + timeout_s;
  int rc = 0;
  fflush(NULL);
  for (int r = 0; r < gpus; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "comet_launch_local: fork of rank %d failed: %s\n", r, strerror(errno));
      stop_children(pids, r, 5.0);
      rc = 1;
      goto done;
    }
    if (pid == 0) {
      int crc = child_main(sh, r, gpus, deadline, fn, arg);
      fflush(NULL);
      _exit(crc == 0 ? 0 : 1);
    }
    pids[r] = pid;
  }
  for (int running = gpus; running > 0;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int r = 0;
      while (r < gpus && pids[r] != pid) ++r;
      if (r == gpus) continue; /* not ours */
      pids[r] = -1;
      running--;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char msg[160];
        describe(r, status, msg, sizeof msg);
        fprintf(stderr, "comet launch: %s; stopping the other ranks\n", msg);
        stop_children(pids, gpus, 5.0);
        rc = 1;
        goto done;
      }
      continue;
    }
    if (now_s() > deadline) {
      fprintf(stderr, "comet launch: timed out after %.0f s with %d rank(s) still running:", timeout_s,
              running);
      for (int r = 0; r < gpus; ++r)
        if (pids[r] > 0) fprintf(stderr, " %d", r);
      fprintf(stderr, "; stopping them\n");
      stop_children(pids, gpus, 5.0);
      rc = 1;
      goto done;
    }
    sleep_ms(5);
  }
done:
  free(pids);
  munmap(sh, sizeof *sh);
  return rc;
}

static int env_int(const char *name, int fallback) {
  const char *v = getenv(name);
  if (!v || !*v) return fallback;
  char *end = NULL;
  long x = strtol(v, &end, 10);
  return (end && *end == '\0' && x >= 0 && x < (1 << 30)) ? (int)x : -1;
}

int comet_launch_external(const char *path, double timeout_s, comet_rank_fn fn, void *arg) {
  comet_rank_info_t info;
  memset(&info, 0, sizeof info);
  info.rank = env_int("RANK", -2);
  info.world = env_int("WORLD_SIZE", -2);
  info.local_rank = env_int("LOCAL_RANK", info.rank);
  if (!path || !fn || info.rank < 0 || info.world < 1 || info.rank >= info.world ||
      info.local_rank < 0) {
    fprintf(stderr,
            "comet_launch_external: needs a rendezvous path and env RANK (0..WORLD_SIZE-1), "
            "WORLD_SIZE (>= 1), optional LOCAL_RANK; got path=%s RANK=%s WORLD_SIZE=%s LOCAL_RANK=%s\n",
            path ? path : "(null)", getenv("RANK") ? getenv("RANK") : "(unset)",
            getenv("WORLD_SIZE") ? getenv("WORLD_SIZE") : "(unset)",
            getenv("LOCAL_RANK") ? getenv("LOCAL_RANK") : "(unset)");
    return 1;
  }
  info.device = info.local_rank;
  const double start = now_s();
  const time_t wall_start = time(NULL);
  if (info.rank == 0) {
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      fprintf(stderr, "[rank 0] ncclGetUniqueId failed: %s\n", ncclGetErrorString(r));
      return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(&id, sizeof id, 1, f) != 1 || fclose(f) != 0 || rename(tmp, path) != 0) {
      fprintf(stderr, "[rank 0] cannot write rendezvous file %s: %s\n", path, strerror(errno));
      return 1;
    }
    memcpy(info.id.internal, &id, sizeof id);
  } else {
    /* Accept only a file written around or after this run's start: a file
     * older than a minute is a previous run's. */
    for (;;) {
      struct stat stt;
      if (stat(path, &stt) == 0 && stt.st_size == (off_t)sizeof(ncclUniqueId) &&
          stt.st_mtime >= wall_start - 60) {
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(info.id.internal, sizeof(ncclUniqueId), 1, f) : 0;
        if (f) fclose(f);
        if (got == 1) break;
      }
      if (now_s() - start > timeout_s) {
        fprintf(stderr, "[rank %d] timed out after %.1f s waiting for rank 0's rendezvous file %s\n",
                info.rank, timeout_s, path);
        return 1;
      }
      sleep_ms(20);
    }
  }
  return fn(&info, arg);
}
