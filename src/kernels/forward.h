/* SPDX-License-Identifier: Apache-2.0 */
/* forward.h — the small kernels that join the communication steps and the
 * grouped GEMMs into comet's forward (src/forward.c). */
#ifndef COMET_KERNELS_FORWARD_H
#define COMET_KERNELS_FORWARD_H

#include <stdint.h>

#include "comet.h"
#include "kernels/comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Waits (one CTA) until every dispatch block flag (el, j) of this rank has
 * reached the call's epoch: all rows routed here have arrived. When the plan
 * failed (no flags are published then) or a wait gave up, it empties the
 * plan's experts instead, so the GEMMs that follow touch no rows. */
comet_status_t comet_wait_dispatch_launch(const comet_comm_view_t *view,
                                          struct CUstream_st *stream);

/* When the plan failed (view->status), fills out [num_tokens, H] with NaN so
 * that a result that was not computed can't pass for one. */
comet_status_t comet_poison_on_error_launch(const comet_comm_view_t *view, void *out,
                                            int num_tokens, struct CUstream_st *stream);
/* The same for any buffer of elems dtype values (a multiple of 8). */
comet_status_t comet_poison_elems_on_error_launch(const comet_comm_view_t *view, void *out,
                                                  int64_t elems, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
