/* SPDX-License-Identifier: Apache-2.0 */
/* table.c — the tuning table's text format, lookup and merge (table.h). */
#include "tune/table.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static const char *const op_names[] = {"layer0", "layer1"};
static const char *const tile_names[] = {"auto", "wide", "narrow"};

static int name_index(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; ++i)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

int comet_tune_key_equal(const comet_tune_key_t *a, const comet_tune_key_t *b) {
  return !strcmp(a->device, b->device) && a->world == b->world && a->ep == b->ep &&
         a->tp == b->tp && a->hidden == b->hidden && a->ffn == b->ffn &&
         a->experts == b->experts && a->topk == b->topk;
}

comet_tune_key_t comet_tune_key_for(const char *device, int world, const comet_layer_config_t *c) {
  comet_tune_key_t k;
  memset(&k, 0, sizeof k);
  snprintf(k.device, sizeof k.device, "%s", device);
  k.world = world;
  k.ep = c->ep;
  k.tp = c->tp;
  k.hidden = c->hidden;
  k.ffn = c->ffn;
  k.experts = c->num_experts;
  k.topk = c->topk;
  return k;
}

static comet_status_t grow(comet_tune_table_t *t) {
  if (t->n < t->cap) return COMET_OK;
  const int cap = t->cap ? 2 * t->cap : 64;
  comet_tune_entry_t *e = realloc(t->e, sizeof *e * (size_t)cap);
  if (!e) return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "tuning table: host allocation failed");
  t->e = e;
  t->cap = cap;
  return COMET_OK;
}

/* One entry line: "device" then 13 fields. 0 on success. */
static int parse_entry(const char *line, comet_tune_entry_t *e) {
  memset(e, 0, sizeof *e);
  const char *p = line;
  while (isspace((unsigned char)*p)) ++p;
  if (*p != '"') return 1;
  const char *q = strchr(p + 1, '"');
  if (!q || q - p - 1 <= 0 || q - p - 1 >= COMET_TUNE_DEVICE_LEN) return 1;
  memcpy(e->key.device, p + 1, (size_t)(q - p - 1));
  char op[16], tile[16], a[16];
  int used = 0;
  comet_tune_key_t *k = &e->key;
  if (sscanf(q + 1, "%d %d %d %d %d %d %d %d %15s %d %15s %15s %lf %n", &k->world, &k->ep, &k->tp,
             &k->hidden, &k->ffn, &k->experts, &k->topk, &e->tokens, op, &e->n_comm, tile, a, &e->ms,
             &used) != 13)
    return 1;
  for (const char *r = q + 1 + used; *r; ++r)
    if (!isspace((unsigned char)*r)) return 1; /* something after the last field */
  e->op = name_index(op, op_names, 2);
  e->tile = name_index(tile, tile_names, 3);
  e->a = !strcmp(a, "gathered") ? COMET_TUNE_A_GATHERED
       : !strcmp(a, "copied")   ? COMET_TUNE_A_COPIED
       : !strcmp(a, "-")        ? COMET_TUNE_A_ANY
                                : -2;
  if (e->op < 0 || e->tile < 0 || e->a == -2) return 1;
  if (k->world < 1 || k->ep < 1 || k->tp < 1 || k->ep * k->tp != k->world || k->hidden < 1 ||
      k->ffn < 1 || k->experts < 1 || k->topk < 1 || e->tokens < 1 || e->n_comm < 0 || !(e->ms >= 0))
    return 1;
  return 0;
}

comet_status_t comet_tune_table_parse(comet_tune_table_t *t, const char *text, const char *name) {
  COMET_ARG(t != NULL && text != NULL, "tuning table: NULL argument");
  const int n0 = t->n;
  int lineno = 0, version_seen = 0;
  const char *p = text;
  char line[512];
  comet_status_t st = COMET_OK;
  while (*p && st == COMET_OK) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    ++lineno;
    if (len >= sizeof line) {
      st = comet_set_error(COMET_ERR_INVALID_ARGUMENT, "tuning table %s: line %d is too long", name,
                           lineno);
      break;
    }
    memcpy(line, p, len);
    line[len] = 0;
    p = end ? end + 1 : p + len;
    const char *s = line;
    while (isspace((unsigned char)*s)) ++s;
    if (*s == 0 || *s == '#') continue;
    if (!version_seen) {
      int v = 0;
      if (sscanf(s, "comet-tuning-table %d", &v) != 1)
        st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "tuning table %s: line %d: the first line must be "
                             "\"comet-tuning-table %d\"",
                             name, lineno, COMET_TUNE_TABLE_VERSION);
      else if (v != COMET_TUNE_TABLE_VERSION)
        st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                             "tuning table %s: version %d, this comet reads version %d", name, v,
                             COMET_TUNE_TABLE_VERSION);
      version_seen = 1;
      continue;
    }
    comet_tune_entry_t e;
    if (parse_entry(s, &e) != 0) {
      st = comet_set_error(COMET_ERR_INVALID_ARGUMENT,
                           "tuning table %s: line %d is not \"device\" world ep tp hidden ffn "
                           "experts topk tokens layer0|layer1 n_comm auto|wide|narrow "
                           "gathered|copied|- ms: %.80s",
                           name, lineno, s);
      break;
    }
    st = grow(t);
    if (st == COMET_OK) t->e[t->n++] = e;
  }
  if (st == COMET_OK && !version_seen)
    st = comet_set_error(COMET_ERR_INVALID_ARGUMENT, "tuning table %s is empty (no version line)",
                         name);
  if (st != COMET_OK) t->n = n0; /* nothing of a bad text */
  return st;
}

comet_status_t comet_tune_table_load(comet_tune_table_t *t, const char *path) {
  COMET_ARG(t != NULL && path != NULL, "tuning table: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f)
    return comet_set_error(COMET_ERR_INVALID_ARGUMENT, "tuning table %s: cannot read it: %s", path,
                           strerror(errno));
  char *text = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = cap ? 2 * cap : 8192;
      char *b = realloc(text, cap);
      if (!b) {
        free(text);
        fclose(f);
        return comet_set_error(COMET_ERR_OUT_OF_MEMORY, "tuning table: host allocation failed");
      }
      text = b;
    }
    const size_t r = fread(text + n, 1, 4096, f);
    n += r;
    if (r < 4096) break;
  }
  fclose(f);
  text[n] = 0;
  comet_status_t st = comet_tune_table_parse(t, text, path);
  free(text);
  return st;
}

comet_status_t comet_tune_table_write(const comet_tune_table_t *t, FILE *f) {
  COMET_ARG(t != NULL && f != NULL, "tuning table: NULL argument");
  fprintf(f, "comet-tuning-table %d\n", COMET_TUNE_TABLE_VERSION);
  fprintf(f, "# device world ep tp hidden ffn experts topk tokens op n_comm tile a ms\n");
  for (int i = 0; i < t->n; ++i) {
    const comet_tune_entry_t *e = &t->e[i];
    const comet_tune_key_t *k = &e->key;
    fprintf(f, "\"%s\" %d %d %d %d %d %d %d %d %s %d %s %s %.4f\n", k->device, k->world, k->ep,
            k->tp, k->hidden, k->ffn, k->experts, k->topk, e->tokens, op_names[e->op], e->n_comm,
            tile_names[e->tile],
            e->a == COMET_TUNE_A_GATHERED ? "gathered" : e->a == COMET_TUNE_A_COPIED ? "copied" : "-",
            e->ms);
  }
  return ferror(f) ? comet_set_error(COMET_ERR_INVALID_ARGUMENT, "tuning table: write failed")
                   : COMET_OK;
}

comet_status_t comet_tune_table_merge(comet_tune_table_t *t, const comet_tune_entry_t *e) {
  COMET_ARG(t != NULL && e != NULL, "tuning table: NULL argument");
  for (int i = 0; i < t->n; ++i)
    if (comet_tune_key_equal(&t->e[i].key, &e->key) && t->e[i].op == e->op &&
        t->e[i].tokens == e->tokens) {
      t->e[i] = *e;
      return COMET_OK;
    }
  COMET_CHECK(grow(t));
  t->e[t->n++] = *e;
  return COMET_OK;
}

void comet_tune_table_free(comet_tune_table_t *t) {
  if (!t) return;
  free(t->e);
  t->e = NULL;
  t->n = t->cap = 0;
}

const comet_tune_entry_t *comet_tune_lookup(const comet_tune_table_t *t, const comet_tune_key_t *key,
                                            int op, int tokens) {
  if (!t || !key) return NULL;
  const comet_tune_entry_t *best = NULL;
  double best_d = 0;
  const double lt = log2(tokens > 1 ? (double)tokens : 1.0);
  for (int i = 0; i < t->n; ++i) {
    const comet_tune_entry_t *e = &t->e[i];
    if (e->op != op || !comet_tune_key_equal(&e->key, key)) continue;
    const double d = fabs(log2((double)e->tokens) - lt);
    if (!best || d < best_d - 1e-12 || (fabs(d - best_d) <= 1e-12 && e->tokens < best->tokens)) {
      best = e;
      best_d = d;
    }
  }
  return best;
}
