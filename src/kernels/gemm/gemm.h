/* SPDX-License-Identifier: Apache-2.0 */
/* gemm.h — comet's Hopper grouped GEMM engine (internal, C-callable).
 *
 * For every group g (a local expert):
 *     C[r, :] = epilogue( A[r, :] . B_g^T )   for r in [off[g], off[g+1])
 * (or A[r, :] . B_g with b_mn_major: B_g stored [k, n])
 * A [rows, K] holds the rows of all groups stacked, B [G, NB, K] is K-major
 * (nn.Linear weights), C [rows, N]; off = group_offset[G+1] lives in DEVICE
 * memory (e.g. the plan's expert_offset), so a launch needs no host sync and
 * can be captured in a CUDA graph. Inputs bf16 or fp16, fp32 accumulation,
 * output in the input dtype.
 *
 * Epilogues (applied to the fp32 accumulators, rounded once):
 *   STORE   NB = N:  C = acc * scale[r]
 *   SWIGLU  NB = 2N (gate rows [0,N) then up rows [N,2N) of each B_g):
 *           C[:, j] = silu(acc_gate[:, j]) * acc_up[:, j] * scale[r]
 *   scale[r] = row_scale[r] when row_scale is given, else 1.
 *
 * Alignment: N and K multiples of 8 (16-byte rows), a/b/c 16-byte aligned;
 * rows and group sizes arbitrary (0 allowed). Rows past off[G] are never
 * written. Kernel: TMA + wgmma (sm_90a), 1 producer + 2 consumer
 * warpgroups, persistent grid over all groups' tiles; see docs/gemm.md.
 *
 * Hooks (for the fused dispatch+GEMM and GEMM+combine kernels):
 *   mtiles      optional device list of M-tiles (schedule.h, built with
 *               tile_m <= COMET_GEMM_TILE_M) and its device count
 *               *mtile_count; tiles run in `order` over (list index, N-tile).
 *               Without a list, M-tiles are the natural (expert, row) ones.
 *   wait_count  (needs mtiles) before loading the A rows of an M-tile the
 *               producer spins (ld.acquire.sys) until
 *               wait_count[mt.index] >= mt.rows: the rows that arrived in
 *               the tile (its natural index, schedule.h); bounded (10 s,
 *               then a trap; the fused layer0 waits abort-aware instead).
 *   publish_flags  after a tile's output is stored and visible, one thread
 *               release-stores (st.release.sys, u64) publish_value at
 *               publish_flags[mtile_index * n_tiles + n_tile], mtile_index =
 *               position in the list (or natural M-tile index), n_tiles =
 *               ceil(N / tile_n) (comet_gemm_tile_shape()).
 *   tile_counter  (needs mtiles) dynamic tiles: each CTA takes the next
 *               tile from this zeroed device counter (atomicAdd) instead of
 *               cta, cta + ncta, ...; the same results, another balance.
 *   With no hook set, a kernel without any hook code runs. */
#ifndef COMET_KERNELS_GEMM_H
#define COMET_KERNELS_GEMM_H

#include <stdint.h>

#include "comet.h"
#include "schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { COMET_GEMM_TILE_M = 128, COMET_GEMM_MAX_GROUPS = 1024 };
/* The slim swapped tiles' token rows (swap_rows with tile SWAP), as an
 * initializer of 3 ints. */
#define COMET_GEMM_SLIM_ROWS {136, 176, 184}

typedef enum comet_gemm_epilogue {
  COMET_GEMM_EPI_STORE = 0,
  COMET_GEMM_EPI_SWIGLU = 1,
  /* the plain store of GELU (tanh form, kernels/act.cuh) of the result
   * rounded to the dtype: the pre-activation rounded once, as the CPU
   * reference rounds z before its activation. No row_scale. */
  COMET_GEMM_EPI_GELU = 2
} comet_gemm_epilogue_t;

/* Tile shape (output tile; SWIGLU reads twice as many B rows). */
typedef enum comet_gemm_tile {
  COMET_GEMM_TILE_AUTO = 0, /* chosen from N, group sizes and the SM count */
  COMET_GEMM_TILE_WIDE = 1, /* 128 x 256 (SWIGLU: 128 x 128 output) */
  COMET_GEMM_TILE_NARROW = 2, /* 128 x 128 (SWIGLU: 128 x 64 output) */
  /* 256 x 128 (SWIGLU: 256 x 64 output): each B tile serves 256 rows, for
   * small experts whose B bytes dominate. No hooks, no B MN-major, at most
   * 128 groups, no split tail; never chosen by AUTO (yet) */
  COMET_GEMM_TILE_TALL = 3,
  /* swapped, 136 x 256: C^T = B . A^T, 256 B rows as wgmma's M and 136
   * rows as its N, so that a routed expert of up to 544 rows takes 4
   * tiles, not 4 whole 128-row M-tiles and a ragged one (cuBLAS's
   * orientation). STORE or SWIGLU, no row_scale, no hooks, no B MN-major, at
   * most 128 groups, no split tail; opt-in (bench --ab's
   * comet_swap_tflops) */
  COMET_GEMM_TILE_SWAP = 4
} comet_gemm_tile_t;

/* Order of the tile list (with mtiles): LAYER0 = bands of M-tiles, M
 * fastest inside a band, LAYER1 = groups of column blocks in order, M-tile
 * by M-tile inside a group: schedule.h's comet_sched_layer{0,1}_tile. */
typedef enum comet_gemm_order {
  COMET_GEMM_ORDER_LAYER0 = 0,
  COMET_GEMM_ORDER_LAYER1 = 1
} comet_gemm_order_t;

/* 2-CTA clusters (pairs of M-tiles sharing B by TMA multicast, an odd
 * group's last M-tile pairs of N-tiles sharing A; no hooks, no grouped
 * reduction, wide tiles, at most 128 groups: ON with more runs single
 * CTAs). AUTO = off (gemm.cu's pair_wanted says where they win and lose);
 * COMET_GEMM_PAIRS=1 turns AUTO on for A/B timing. */
typedef enum comet_gemm_cluster {
  COMET_GEMM_CLUSTER_AUTO = 0,
  COMET_GEMM_CLUSTER_OFF = 1,
  COMET_GEMM_CLUSTER_ON = 2
} comet_gemm_cluster_t;

typedef struct comet_gemm_params {
  comet_dtype_t dtype;            /* BF16 or FP16 */
  int groups;                     /* G >= 1 (<= COMET_GEMM_MAX_GROUPS without mtiles) */
  int n;                          /* N: output columns, multiple of 8 */
  int k;                          /* K, multiple of 8 */
  int64_t max_rows;               /* row capacity of a, c and row_scale (>= off[G]) */
  const void *a;                  /* [max_rows, k] */
  const void *b;                  /* [groups, NB, k], NB = n (STORE) or 2n (SWIGLU) */
  void *c;                        /* [max_rows, n] */
  const int32_t *group_offset;    /* device [groups + 1], non-decreasing, off[0] >= 0 */
  comet_gemm_epilogue_t epilogue;
  const float *row_scale;         /* optional device [max_rows] */
  comet_gemm_tile_t tile;         /* AUTO unless tuning */
  /* With tile SWAP: 0 = the 136 x 256 tile (two m64 blocks of B rows a
   * consumer warpgroup); 136, 176 or 184 = the slim swapped tile of that
   * many rows by 128 B rows (one m64 block a warpgroup, a ring of 4-5
   * stages), STORE only: for a launch whose experts fit whole tiles of
   * that many rows (Mixtral's ~512 at T = 2048: three of 184). With tile
   * AUTO, plain stores of at most 128 groups (no row_scale) run the slim
   * tile with a token width a group (128-208 rows, on the device from the
   * group sizes: gemm_engine.cuh's fit_width; tiles of <= 136 rows in a
   * deeper ring where max_rows averages 209-272 a group); a multiple of 8 in 128..208
   * caps its tiles' rows (<= 136: its 5-stage body; A/B and tests); -1
   * keeps the wide / narrow choice of before (A/B). */
  int swap_rows;
  int num_ctas;                   /* 0: one per SM; else at most this many CTAs */
  /* hooks; all NULL = off */
  const comet_mtile_t *mtiles;    /* device list */
  const int32_t *mtile_count;     /* device scalar, with mtiles */
  comet_gemm_order_t order;
  const uint64_t *wait_count;     /* [natural M-tile] rows arrived */
  uint64_t *publish_flags;
  uint64_t publish_value;
  /* with mtiles: tiles taken from this zeroed device counter (each CTA the
   * next free one) instead of a fixed stride; it ends at the tile count */
  uint32_t *tile_counter;
  /* 0: B is [groups, NB, k] (K-major, nn.Linear weights: C = A . B_g^T);
   * 1: B is [groups, k, n] (MN-major: C = A . B_g, e.g. the backward's
   * dh = dy . w2 with w2 as it is). 1 needs the STORE epilogue, no hooks. */
  int b_mn_major;
  /* 1: the grouped reduction (the backward's weight gradients): for every
   * group g, C[g*m + i, j] = sum over its rows r of a[r, i] * b[r, j], with
   * a [rows, m], b [rows, n] row-major (rows = group_offset's), c
   * [groups * m, n]; max_rows = the rows of a and b (>= off[G]: nothing
   * at or past it is read), k is unused, an empty group's C is 0.
   * STORE epilogue, no row_scale, no hooks. */
  int k_grouped;
  int m; /* with k_grouped: the rows of each group's C, a multiple of 8 */
  /* 1: the same bits on every run, as comet's forward promises: the split
   * tail only with split_ws (its parts summed in part order), else none.
   * 0: the split tail may also use the per-stream workspace, whose fp32
   * atomics add the parts in a varying order. */
  int deterministic;
  /* A split-tail workspace the caller owns (e.g. a layer's):
   * comet_gemm_split_ws_bytes(split_slots) bytes, zeroed once before its
   * first launch (launches leave it reusable). Each split part stores its
   * fp32 partial sums into a slot of its own and the tile's last part adds
   * the slots up in part order: the same bits whichever part ends last.
   * Launches sharing one must be stream-ordered. NULL: see deterministic. */
  void *split_ws;
  int split_slots; /* slots of 128 x 256 fp32 (a wide tile), with split_ws */
  /* pairs or not (AUTO: off unless COMET_GEMM_PAIRS=1);
   * the bits do not depend on it (each tile sums K in the same order) */
  comet_gemm_cluster_t cluster;
  /* M-tiles per raster band of the natural tile order (no mtiles list):
   * 0 = COMET_SCHED_BAND (8). Wider bands re-read B from DRAM fewer times
   * on groups of many M-tiles; for A/B timing (bench --ab). */
  int band;
  /* The wide tile's ring of shared-memory stages: 0 (default) or 4: four
   * stages (half the epilogue staging, stored in turns) where they apply
   * (at most 128 groups, no hooks), else three; 3: three always (A/B:
   * bench --ab's comet_3stage_tflops). With hooks always three, but in
   * a fused kernel's GEMM (gemm_launch.cuh's prepare), where 4 asks for
   * four at most 128 groups (the fused layer0's default since session
   * 18; COMET_L0_STAGES=3 for three). The bits are the same. Four measured
   * 1.013x three over the 56 grouped rows (session 9 run 1). */
  int stages;
  /* 1: a wide plain-store M-tile of at most 64 rows runs as a half tile,
   * both consumer warpgroups on 128 of its 256 columns; 0 (default): as a
   * whole tile with one warpgroup idle. The bits are the same. Opt-in:
   * session 13 run 4 measured 0.996x the default over the 99 --ab rows
   * (+1.5-1.8% on Mixtral's ragged layer1, -3-4% on DeepSeek-V2-Lite's):
   * with the static schedule a CTA's saved half tile time rarely shortens
   * the launch (bench --ab's comet_half_tflops). */
  int half_tiles;
  /* 1: without hooks, the CTAs take tiles (and split-tail parts) from a
   * counter in the split workspace (the caller's or the stream's; none: no
   * effect) instead of cta, cta + ncta, ...: a CTA that drew cheaper tiles
   * (half tiles, ragged ones) takes more. The bits are the same. The
   * composed layer1 and `bench --op gemm`'s forward rows set it: 1.016,
   * 1.007 and 1.007x static over the 99 --ab rows (session 14 runs 1-3),
   * 1.05-1.33x on the 2048-token routed layer rows, 0.91-0.97x on the
   * K = 768-2048 ones (bench --ab's comet_static_tflops). */
  int dynamic_tiles;
  /* Diagnosis (bench --op gemm --trace): when set, each work item w <
   * trace_items (a tile, or a split tail's part) writes 4 words at trace +
   * 4w: its start (global timer, ns, once its first stage is in), its end
   * (its epilogue's stores issued), (CTA << 48 | rows << 32 | tile index)
   * and (group << 40 | M-tile << 20 | N-tile), from the first consumer
   * warpgroup. The bits
   * do not depend on it. */
  unsigned long long *trace;
  int trace_items;
} comet_gemm_params_t;

/* The output tile (rows, columns) a launch with these params uses: callers
 * build their M-tile lists with tile_m and size publish flags with
 * ceil(n / tile_n). Exact when a hook is set or tile != AUTO; with neither,
 * the kernel itself picks the shape on the device from the real group sizes
 * and this returns the host's estimate of the wide / narrow choice (AUTO
 * plain stores of <= 128 groups without row_scale run the slim swapped
 * tiles instead: see swap_rows). Validates the params. */
comet_status_t comet_gemm_tile_shape(const comet_gemm_params_t *p, int *tile_m, int *tile_n);

/* 2-CTA clusters of the pairs kernel that the current device can hold at
 * once (cudaOccupancyMaxActiveClusters); 0 if unknown. For the bench. */
int comet_gemm_pair_capacity(void);

/* Bytes of a split-tail workspace of `slots` slots (params.split_ws). */
size_t comet_gemm_split_ws_bytes(int slots);
/* The slots a caller's workspace wants for launches on `sms` SMs (ordered
 * sums: a slot per part): a last wave of wide tiles split in two
 * (plan_split), on at most 132 SMs (H100, H200; more SMs get fewer split
 * choices): 264 slots, 33 MiB, at most. */
int comet_gemm_split_slots(int sms);

/* Launches the grouped GEMM on `stream` (asynchronous; capturable). */
comet_status_t comet_gemm_grouped(const comet_gemm_params_t *p, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif /* COMET_KERNELS_GEMM_H */
