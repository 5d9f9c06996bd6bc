/* SPDX-License-Identifier: Apache-2.0 */
/* launch.c — one process per GPU: fork-based local launch with the NCCL
 * unique id handed over in shared memory, and rendezvous through a file for
 * ranks started by an external launcher; the loopback world as threads of
 * one child. The parent watches its children: the first failure or the
 * deadline ends the whole run. */
#define _GNU_SOURCE
#include "launch.h"

#include <errno.h>
#include <pthread.h>
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

#include "transport/ipc.h"
#include "transport/transport.h"

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

/* Forks n children running child(i) and watches them: the first failure or
 * the deadline stops the others. Returns 0 if all exited 0. */
typedef int (*child_fn)(int i, void *ctx);
static int run_children(int n, double timeout_s, child_fn child, void *ctx, const char *what) {
  pid_t *pids = calloc((size_t)n, sizeof(pid_t));
  if (!pids) return 1;
  const double deadline = now_s() + timeout_s;
  int rc = 0;
  fflush(NULL);
  for (int r = 0; r < n; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "comet launch: fork of %s %d failed: %s\n", what, r, strerror(errno));
      stop_children(pids, r, 5.0);
      free(pids);
      return 1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the launcher */
      int crc = child(r, ctx);
      fflush(NULL);
      _exit(crc == 0 ? 0 : 1);
    }
    pids[r] = pid;
  }
  for (int running = n; running > 0;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int r = 0;
      while (r < n && pids[r] != pid) ++r;
      if (r == n) continue; /* not ours */
      pids[r] = -1;
      running--;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char msg[160];
        describe(r, status, msg, sizeof msg);
        fprintf(stderr, "comet launch: %s %s; stopping the others\n", what, msg);
        stop_children(pids, n, 5.0);
        rc = 1;
        break;
      }
      continue;
    }
    if (now_s() > deadline) {
      fprintf(stderr, "comet launch: timed out after %.0f s with %d %s(s) still running:", timeout_s,
              running, what);
      for (int r = 0; r < n; ++r)
        if (pids[r] > 0) fprintf(stderr, " %d", r);
      fprintf(stderr, "; stopping them\n");
      stop_children(pids, n, 5.0);
      rc = 1;
      break;
    }
    sleep_ms(5);
  }
  free(pids);
  return rc;
}

typedef struct local_ctx {
  launch_shared_t *sh;
  int gpus;
  double deadline;
  comet_rank_fn fn;
  void *arg;
} local_ctx_t;

static int local_child(int r, void *p) {
  local_ctx_t *c = (local_ctx_t *)p;
  return child_main(c->sh, r, c->gpus, c->deadline, c->fn, c->arg);
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
  local_ctx_t c = {sh, gpus, now_s() + timeout_s, fn, arg};
  const int rc = run_children(gpus, timeout_s, local_child, &c, "rank");
  munmap(sh, sizeof *sh);
  return rc;
}

/* ---- the loopback world: threads of one child ---- */

typedef struct loop_ctx {
  int world, device;
  comet_rank_fn fn;
  void *arg;
} loop_ctx_t;

typedef struct loop_thread {
  comet_rank_info_t info;
  comet_rank_fn fn;
  void *arg;
  int rc;
} loop_thread_t;

static void *loop_rank(void *p) {
  loop_thread_t *t = (loop_thread_t *)p;
  t->rc = t->fn(&t->info, t->arg);
  if (t->rc) fprintf(stderr, "[loopback rank %d] failed\n", t->info.rank);
  return NULL;
}

static int loop_child(int i, void *p) {
  (void)i;
  loop_ctx_t *c = (loop_ctx_t *)p;
  /* before CUDA starts here: see comet_loopback_create */
  setenv("CUDA_MODULE_LOADING", "EAGER", 1);
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 1);
  comet_loopback_t w = NULL;
  if (comet_loopback_create(&w, c->world, c->device) != COMET_OK) {
    fprintf(stderr, "comet launch: loopback world of %d on device %d: %s\n", c->world, c->device,
            comet_last_error());
    return 1;
  }
  loop_thread_t *t = calloc((size_t)c->world, sizeof *t);
  pthread_t *th = calloc((size_t)c->world, sizeof *th);
  if (!t || !th) return 1;
  int rc = 0, started = 0;
  for (int r = 0; r < c->world; ++r) {
    t[r].info.rank = r;
    t[r].info.world = c->world;
    t[r].info.local_rank = r;
    t[r].info.device = c->device;
    t[r].info.loopback = w;
    t[r].fn = c->fn;
    t[r].arg = c->arg;
    if (pthread_create(&th[r], NULL, loop_rank, &t[r]) != 0) {
      fprintf(stderr, "comet launch: thread of loopback rank %d: %s\n", r, strerror(errno));
      rc = 1;
      break;
    }
    started++;
  }
  for (int r = 0; r < started; ++r) {
    pthread_join(th[r], NULL);
    rc |= t[r].rc != 0;
  }
  if (comet_loopback_destroy(w) != COMET_OK) {
    fprintf(stderr, "comet launch: loopback destroy: %s\n", comet_last_error());
    rc = 1;
  }
  free(t);
  free(th);
  return rc;
}

int comet_launch_loopback(int world, int device, double timeout_s, comet_rank_fn fn, void *arg) {
  if (world < 1 || !fn || timeout_s <= 0) {
    fprintf(stderr, "comet_launch_loopback: world = %d must be >= 1, fn non-NULL, timeout_s = %g > 0\n",
            world, timeout_s);
    return 1;
  }
  loop_ctx_t c = {world, device, fn, arg};
  return run_children(1, timeout_s, loop_child, &c, "loopback world");
}

/* ---- the ipc world: processes on one GPU ---- */

typedef struct ipc_ctx {
  comet_ipc_world_t *w;
  int world, device;
  comet_rank_fn fn;
  void *arg;
} ipc_ctx_t;

static int ipc_child(int r, void *p) {
  ipc_ctx_t *c = (ipc_ctx_t *)p;
  comet_rank_info_t info;
  memset(&info, 0, sizeof info);
  info.rank = r;
  info.world = c->world;
  info.local_rank = r;
  info.device = c->device;
  info.ipc = (struct comet_ipc_world *)c->w;
  return c->fn(&info, c->arg);
}

int comet_launch_ipc(int world, int device, double timeout_s, comet_rank_fn fn, void *arg) {
  if (world < 1 || world > COMET_MAX_WORLD || !fn || timeout_s <= 0) {
    fprintf(stderr, "comet_launch_ipc: world = %d must be in 1..%d, fn non-NULL, timeout_s = %g > 0\n",
            world, COMET_MAX_WORLD, timeout_s);
    return 1;
  }
  const size_t bytes = comet_ipc_world_bytes();
  comet_ipc_world_t *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (w == MAP_FAILED) {
    fprintf(stderr, "comet_launch_ipc: mmap failed: %s\n", strerror(errno));
    return 1;
  }
  comet_ipc_world_init(w, world, device);
  ipc_ctx_t c = {w, world, device, fn, arg};
  const int rc = run_children(world, timeout_s, ipc_child, &c, "ipc rank");
  munmap(w, bytes);
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
