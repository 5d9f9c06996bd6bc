/* SPDX-License-Identifier: Apache-2.0 */
/* saved_z.h — the save mode's trailer (saved_z.cu): the forward stamps its
 * saved_z with the layer and a hash of its routing plan's row tables; the
 * backward checks the stamp against its own plan before it trusts z, and a
 * mismatch is this rank's bad argument (COMET_ARG_SAVED_Z), reported by the
 * backward's next plan on every rank. The trailer sits after the z rows,
 * in the rows comet_config_saved_z_bytes adds for it. */
#ifndef COMET_KERNELS_SAVED_Z_H
#define COMET_KERNELS_SAVED_Z_H

#include <stddef.h>
#include <stdint.h>

#include "comet.h"
#include "kernels/comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Why a saved_z was refused (comet_arg_fault_t.value). */
enum {
  COMET_SAVED_NOT_FILLED = 1,  /* no forward in save mode stamped it */
  COMET_SAVED_OTHER_LAYER = 2, /* another layer's forward did */
  COMET_SAVED_OTHER_PLAN = 3   /* this layer's forward of other routing or token counts */
};

typedef struct comet_saved_trailer {
  uint64_t magic;  /* COMET_SAVED_MAGIC once stamped by a forward whose plan was accepted */
  uint64_t layer;  /* the layer's id (comet_layer_t.uid) */
  uint64_t hash;   /* of the plan's rows: their count, each row's source, token and slot */
  uint64_t rows;
} comet_saved_trailer_t;
#define COMET_SAVED_MAGIC 0x636f6d65745f7a31ull /* any constant a fresh buffer is unlikely to hold */

/* The trailer of saved_z z: after its capacity rows of row_bytes (so
 * 16-byte aligned: the rows are); and the rows it takes. */
static inline comet_saved_trailer_t *comet_saved_trailer_of(const void *z, int64_t capacity,
                                                            size_t row_bytes) {
  return (comet_saved_trailer_t *)((char *)z + (size_t)capacity * row_bytes);
}
/* Bytes of one row of a layer's saved_z: fc1's width in the dtype. */
static inline size_t comet_saved_row_bytes(const comet_layer_config_t *c) {
  return (size_t)comet_config_w1_rows(c) * comet_dtype_size(c->dtype);
}
static inline int64_t comet_saved_trailer_rows(size_t row_bytes) {
  return (int64_t)((sizeof(comet_saved_trailer_t) + row_bytes - 1) / row_bytes);
}

/* The forward (after its plan): stamps the trailer, or clears its magic
 * when the plan was refused. */
comet_status_t comet_saved_z_stamp_launch(const comet_comm_view_t *v, comet_saved_trailer_t *t,
                                          uint64_t layer, struct CUstream_st *s);
/* The backward (after its first plan, before the next): checks the trailer
 * against this plan; a mismatch goes into v->pending for the next plan. */
comet_status_t comet_saved_z_check_launch(const comet_comm_view_t *v,
                                          const comet_saved_trailer_t *t, uint64_t layer,
                                          struct CUstream_st *s);

#ifdef __cplusplus
}
#endif
#endif
