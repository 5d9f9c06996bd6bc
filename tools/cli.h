/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h — what the `comet` subcommands parse, check and report the same
 * way: numbers, the --json file, the ep x tp layout, and why there is no
 * GPU. Header-only (static inline), so that the standalone bench builds of
 * scripts/gpu_gemm.sh and scripts/gpu_comm.sh need no further sources; a
 * function a file does not call is not emitted there. */
#ifndef COMET_TOOLS_CLI_H
#define COMET_TOOLS_CLI_H

#include <cuda_runtime.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comet.h"
#include "launch.h"

/* The largest count an option takes, and the largest rank count (ep, tp,
 * ranks; their products stay ints: the validator then names the real limit). */
enum { CLI_MAX_COUNT = 1 << 24, CLI_MAX_RANKS = 1 << 12 };

/* The command the parse messages name ("comet bench" unless a parser
 * sets it, e.g. to "comet tune"). */
static inline const char **cli_prog(void) {
  static const char *prog = "comet bench";
  return &prog;
}

/* In an option loop over argv with locals `a` (the option), `v` (the next
 * argument or NULL) and `i`: take v as a's value, or fail the parse (-1). */
#define CLI_NEED()                                                   \
  do {                                                               \
    if (!v) {                                                        \
      fprintf(stderr, "%s: %s needs a value\n", *cli_prog(), a);     \
      return -1;                                                     \
    }                                                                \
    ++i;                                                             \
  } while (0)
/* The value v of option a is bad: fail the parse (-1). */
#define CLI_BAD()                                                    \
  do {                                                               \
    fprintf(stderr, "%s: bad value '%s' for %s\n", *cli_prog(), v, a); \
    return -1;                                                       \
  } while (0)

/* s as an int in lo..hi into *v: 0, or -1 (empty, not a number, trailing
 * characters, out of range). */
static inline int cli_int(const char *s, int lo, int hi, int *v) {
  char *end = NULL;
  errno = 0;
  const long x = strtol(s, &end, 10);
  if (end == s || *end || errno || x < lo || x > hi) return -1;
  *v = (int)x;
  return 0;
}

/* A comma-separated list of ints in lo..hi into out[max]: how many, or -1
 * (a bad or empty item, more than max). */
static inline int cli_int_list(const char *s, int lo, int hi, int *out, int max) {
  int n = 0;
  for (const char *p = s;; ++p) {
    char *end = NULL;
    errno = 0;
    const long x = strtol(p, &end, 10);
    if (end == p || errno || x < lo || x > hi || n == max) return -1;
    out[n++] = (int)x;
    if (*end == '\0') return n;
    if (*end != ',') return -1;
    p = end;
  }
}

/* The file of option opt can be appended to: checked with the other
 * options, not after the run it would record. 0, or -1 with a message. */
static inline int cli_append_ok(const char *cmd, const char *opt, const char *path) {
  FILE *f = fopen(path, "a");
  if (!f) {
    fprintf(stderr, "%s: cannot open %s file '%s': %s\n", cmd, opt, path, strerror(errno));
    return -1;
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "%s: cannot write %s file '%s': %s\n", cmd, opt, path, strerror(errno));
    return -1;
  }
  return 0;
}

static inline int cli_json_ok(const char *cmd, const char *path) {
  return cli_append_ok(cmd, "--json", path);
}

/* The world size an external launcher gives (env WORLD_SIZE) for
 * --rendezvous: 0, or -1 after saying what is wrong. */
static inline int cli_rendezvous_world(int *W) {
  const char *ws = getenv("WORLD_SIZE");
  if (!ws || cli_int(ws, 1, CLI_MAX_RANKS, W)) {
    fprintf(stderr, "comet bench: --rendezvous needs the launcher's env WORLD_SIZE (a rank count), "
                    "got '%s'\n", ws ? ws : "(unset)");
    return -1;
  }
  return 0;
}

/* The world the options give, before any GPU is counted: WORLD_SIZE with
 * --rendezvous, else --gpus, or ep * tp when both are given (then also the
 * ranks to fork: *gpus is set). 0 when only the GPU count will tell. *what
 * names where it came from. 0, or -1 after saying what is wrong. */
static inline int cli_option_world(int *gpus, const char *rendezvous, int ep, int tp, int *W,
                                   const char **what) {
  if (*gpus && rendezvous) {
    fprintf(stderr, "comet bench: --rendezvous takes its ranks from the launcher (WORLD_SIZE): "
                    "give it without --gpus\n");
    return -1;
  }
  if (rendezvous) {
    *what = "WORLD_SIZE";
    return cli_rendezvous_world(W);
  }
  if (!*gpus && ep && tp) *gpus = ep * tp; /* the ranks they make */
  *W = *gpus;
  *what = "--gpus";
  return 0;
}

/* ep and tp (0 = not given) for a world of W ranks: default ep = W, tp = 1;
 * the one given makes up the other. 0, or -1 with a message naming what W
 * is (e.g. "--gpus") when they don't make it. */
static inline int cli_layout(const char *cmd, int W, const char *what, int *ep, int *tp) {
  if (*ep && *tp && *ep * *tp != W) {
    fprintf(stderr, "%s: --ep %d x --tp %d = %d ranks, but %s is %d\n", cmd, *ep, *tp, *ep * *tp,
            what, W);
    return -1;
  }
  if ((*ep && W % *ep) || (*tp && W % *tp)) {
    fprintf(stderr, "%s: %s %d does not divide %s %d\n", cmd, *ep ? "--ep" : "--tp", *ep ? *ep : *tp,
            what, W);
    return -1;
  }
  if (!*ep && !*tp) *ep = W;
  if (!*ep) *ep = W / *tp;
  if (!*tp) *tp = W / *ep;
  return 0;
}

/* The config of `model` (cfg: shape and tokens set; ep and tp as given, 0 =
 * not given) through comet_config_validate before any GPU is counted: for
 * the world W when it is known (W > 0, ep and tp then set); else with 1 for
 * a factor not given, counting only its argument errors, which the real
 * factor has too (1 divides everything, the worst-case rows grow with ep
 * and tp). Its limits wait for the world: more ranks mean fewer local
 * experts. 0, or -1 with the validator's message. */
static inline int cli_config_ok(const char *cmd, const char *model, comet_layer_config_t cfg, int W) {
  char layout[48] = "";
  if (W) snprintf(layout, sizeof layout, ", ep %d x tp %d", cfg.ep, cfg.tp);
  if (!cfg.ep) cfg.ep = 1;
  if (!cfg.tp) cfg.tp = 1;
  const comet_status_t s = comet_config_validate(&cfg, W ? W : cfg.ep * cfg.tp);
  if (s == COMET_OK || (!W && s != COMET_ERR_INVALID_ARGUMENT)) return 0;
  fprintf(stderr, "%s: model %s, %d tokens/rank%s: %s\n", cmd, model, cfg.max_tokens_per_rank,
          layout, comet_last_error());
  return -1;
}

/* The CUDA devices this process sees: > 0, or 0 with why there is none as a
 * plain sentence in why[n] (the reason, never CUDA's error string, which
 * says "insufficient driver" when there is no driver at all). Initializes
 * CUDA: a process that forks ranks must use cli_fork_gpu_count instead. */
static inline int cli_gpu_count(char *why, size_t n) {
  int drv = 0, rt = 0, count = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
    snprintf(why, n, "no NVIDIA driver on this machine");
    return 0;
  }
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count > 0) return count;
  const char *vis = getenv("CUDA_VISIBLE_DEVICES");
  if (e == cudaSuccess || e == cudaErrorNoDevice)
    snprintf(why, n, "the NVIDIA driver sees no GPU%s%s", vis ? "; CUDA_VISIBLE_DEVICES=" : "",
             vis ? vis : "");
  else if (e == cudaErrorInsufficientDriver && cudaRuntimeGetVersion(&rt) == cudaSuccess)
    snprintf(why, n, "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d comet was "
             "built with", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  else if (e == cudaErrorDevicesUnavailable)
    snprintf(why, n, "the GPUs are busy or unavailable (exclusive compute mode?)");
  else
    snprintf(why, n, "CUDA could not start: %s", cudaGetErrorName(e));
  return 0;
}

/* The GPU count for a process that forks ranks later: counted in a child
 * (comet_launch_gpu_count, src/launch.h), so CUDA stays uninitialized here.
 * > 0, or 0 after printing "cmd: no CUDA GPU found (why)"; only then does
 * it ask CUDA itself why, as the process exits anyway. */
static inline int cli_fork_gpu_count(const char *cmd) {
  const int n = comet_launch_gpu_count();
  if (n > 0) return n;
  char why[192];
  if (cli_gpu_count(why, sizeof why) > 0)
    snprintf(why, sizeof why, "counting them in a child process failed");
  fprintf(stderr, "%s: no CUDA GPU found (%s)\n", cmd, why);
  return 0;
}

#endif /* COMET_TOOLS_CLI_H */
