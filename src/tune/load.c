/* SPDX-License-Identifier: Apache-2.0 */
/* load.c — which tuning table a context reads: the path the caller gives
 * (comet_context_set_tuning_table), else $COMET_TUNING_TABLE, else the
 * table shipped with the library: comet-tuning.txt next to libcomet (the
 * Python package), in <prefix>/share/comet/ (an install), or in the source
 * tree's tuning/ (a build tree). A table that is missing or malformed is a
 * warning on stderr, and the cost model chooses: never a failure. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "error.h"
#include "tune/table.h"

#define TABLE_NAME "comet-tuning.txt"

static void warn(const comet_context_t ctx, const char *what) {
  fprintf(stderr, "comet [rank %d]: warning: %s; the cost model chooses the fused kernels' "
          "mover CTAs instead\n", ctx->rank, what);
}

/* The shipped table's path, or 0 if none is found. */
static int shipped_path(char *out, size_t len) {
  Dl_info info;
  if (dladdr((void *)&comet_context_set_tuning_table, &info) && info.dli_fname) {
    char dir[3800];
    snprintf(dir, sizeof dir, "%.3799s", info.dli_fname);
    char *slash = strrchr(dir, '/');
    if (slash) {
      *slash = 0;
      snprintf(out, len, "%s/" TABLE_NAME, dir);
      if (access(out, R_OK) == 0) return 1;
      snprintf(out, len, "%s/../share/comet/" TABLE_NAME, dir);
      if (access(out, R_OK) == 0) return 1;
    }
  }
#ifdef COMET_SOURCE_DIR
  snprintf(out, len, "%s/tuning/" TABLE_NAME, COMET_SOURCE_DIR);
  if (access(out, R_OK) == 0) return 1;
#endif
  return 0;
}

static void load(comet_context_t ctx, const char *path) {
  comet_tune_table_free(&ctx->tuning);
  snprintf(ctx->tuning_path, sizeof ctx->tuning_path, "%.4095s", path ? path : "");
  if (!path) return;
  char msg[1024];
  if (comet_tune_table_load(&ctx->tuning, path) != COMET_OK) {
    snprintf(msg, sizeof msg, "%s", comet_last_error());
    warn(ctx, msg);
    ctx->tuning_path[0] = 0;
  }
}

void comet_context_load_tuning(comet_context_t ctx) {
  const char *env = getenv("COMET_TUNING_TABLE");
  if (env && env[0]) {
    load(ctx, env);
    return;
  }
  char path[4096];
  if (shipped_path(path, sizeof path)) load(ctx, path);
  else warn(ctx, "no tuning table shipped with this library (" TABLE_NAME ") was found");
}

comet_status_t comet_context_set_tuning_table(comet_context_t ctx, const char *path) {
  COMET_ARG(ctx != NULL, "comet_context_set_tuning_table: ctx is NULL");
  if (path) load(ctx, path);
  else comet_context_load_tuning(ctx);
  return COMET_OK;
}
