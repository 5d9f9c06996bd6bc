/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_engine.cuh — the device side of the grouped GEMM (gemm.h): one
 * persistent CTA = 1 producer warpgroup (TMA loads into a ring of STAGES
 * shared-memory stages, guarded by full/empty mbarriers) + 2 consumer
 * warpgroups (wgmma m64nBNk16, 64 rows each; epilogue through a swizzled
 * shared staging tile and TMA stores, or row-checked 16-byte stores for a
 * tile that crosses its group's end); Cfg::kTall tiles have 256 rows, two
 * 64-row blocks a consumer warpgroup. gemm_engine_run() is the whole body,
 * callable from a fused kernel that hands it a CTA index and count.
 * Cfg::kPair runs it in 2-CTA clusters that share B (or A) by TMA multicast
 * (opt-in; see "pairs").
 *
 * Reading order: Cfg (tile constants and the shared-memory map), the tile
 * scheduler, the producer, the consumer and its epilogue, gemm_engine_run. */
#ifndef COMET_GEMM_ENGINE_CUH
#define COMET_GEMM_ENGINE_CUH

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/act.cuh"
#include "kernels/comm/wait.cuh"
#include "kernels/gemm/gemm.h"
#include "kernels/ptx.cuh"
#include "plan_core.h"
#include "kernels/gemm/ptx_wgmma.cuh"

namespace comet_gemm {

constexpr int kBM = 128;         /* rows of a tile (2 consumer warpgroups x 64) */
constexpr int kBK = 64;          /* K per stage: one 128-byte swizzle row of bf16 */
constexpr int kThreads = 384;    /* producer WG + 2 consumer WGs */
constexpr int kBand = COMET_SCHED_BAND; /* M-tiles per raster band (L2 reuse of B tiles) */
constexpr int kProducerRegs = 40, kConsumerRegs = 232; /* 128*40 + 256*232 <= 64K */
constexpr int kSlabBytes = 64 * 64 * 2; /* staging: 64 rows x 64 columns, 128B-swizzled */
constexpr int kPairMaxGroups = 128;     /* groups of a pairs launch (its smaller tables) */
constexpr int kSwapRows = 136;          /* the swapped tile's rows (COMET_GEMM_TILE_SWAP) */
/* the fitted slim tile's two bodies (Cfg::kFit): tiles of at most 208 rows
 * in a 4-stage ring, or of at most 136 in a 5-stage one */
constexpr int kFitRows = 208, kFitNarrowRows = 136;
constexpr int kSmemLimit = 232448; /* dynamic shared memory a CTA, sm_90 */
constexpr int kRingAreaBytes = 96; /* the work ring (see "where a CTA's next tile comes from") */

/* Kernel arguments besides the tensor maps (by value, __grid_constant__). */
struct Args {
  const int32_t *group_offset;
  const float *row_scale;
  const comet_mtile_t *mtiles;
  const int32_t *mtile_count;
  const uint64_t *wait_count; /* [natural M-tile]: rows arrived (wait until = the tile's rows) */
  uint64_t *publish_flags;
  void *c;
  int groups, n, k, n_tiles, order;
  int band; /* M-tiles per raster band of the natural order */
  uint64_t publish_value;
  const uint64_t *publish_epoch; /* non-NULL: publish *publish_epoch (the call's device epoch) */
  uint32_t *tile_counter; /* non-NULL: dynamic tiles, see the work ring; zeroed */
  uint32_t *tile_done;    /* a plain launch's dynamic tiles: producers done; the last one
                             zeroes both counters for the next launch */
  /* the grouped reduction (Cfg::kKgroup): C_g [kg_m, n] = sum over group g's
   * rows r of kg_a[r, :]^T kg_b[r, :]; kg_a [rows, kg_m], kg_b [rows, n] */
  const char *kg_a, *kg_b;
  int kg_m, kg_mtiles;
  /* gathered A (Cfg::kGather, the fused layer0): row r of A is this rank's
   * token row_token[r] of x when row_src[r] == gather_self, else row r of
   * gather_rows (delivered by movers); block_offset [groups][world + 1]
   * tells a tile's own rows (arrival block 0) from the delivered ones */
  const char *gather_x, *gather_rows;
  const int32_t *row_src, *row_token, *block_offset;
  int gather_self, gather_world;
  /* split tail (see plan_split); split_max < 2 or no workspace: off */
  float *ws;          /* fp32 partial sums, ws_tiles slots of kBN*kBM floats (zeroed unless ordered) */
  uint32_t *ws_count; /* zeroed arrival counters, one per slot */
  int ws_tiles, split_max;
  int ws_ordered; /* a slot per part, summed in part order (deterministic) */
  int half_tiles; /* params.half_tiles: half tiles on (opt-in) */
  int gelu;       /* COMET_GEMM_EPI_GELU: the plain store of gelu(rounded result) */
  unsigned long long *trace; /* params.trace: per work item, [trace_items][4] */
  int trace_items;
  int fit_rows; /* the fitted tile (Cfg::kFit): its widest tile, <= C::kRows; 0: fit_pick's */
};

/* ---- split tail ----
 * A persistent grid of P CTAs over T tiles runs floor(T/P) full waves and a
 * last wave of rem = T % P tiles, which leaves P - rem SMs idle for a whole
 * tile time: with 2 experts and long K (Mixtral layer1, 272 tiles on 132
 * SMs) that is a third of the run. So the last m tiles (m = rem, or
 * rem + P: the last two waves) may be split along K into s parts each,
 * dealt round-robin like tiles: ceil(m*s/P) rounds of 1/s tile instead of
 * 1 or 2 whole waves; plan_split picks (m, s) by that time plus a guess of
 * the partial sums' cost. Each part adds its fp32 accumulators into the
 * tile's workspace slot (red.add.v4.f32) and counts itself in; the last to
 * arrive reads the sum back, zeroes the slot for the next launch and runs
 * the normal epilogue (no part ever waits for another). That sum's order
 * varies with the parts' arrival; with ws_ordered each part stores into a
 * slot of its own instead (s slots a tile) and the last one adds the s
 * slots up in part order: the same bits on every run. Work items: w < dp
 * are whole tiles, w >= dp is part (w-dp)%s of tile dp + (w-dp)/s. */
/* K blocks per part, at least: at 8 (run 4) the skewed K = 1408 cases of
 * Qwen2-MoE and DeepSeek-V2-Lite layer1 lost 9-16% (short tiles, where a
 * part's fixed cost is large); 16 keeps every K < 2048 launch unsplit. */
constexpr int kMinSplitIters = 16;
constexpr float kSplitCost = 0.03f; /* per round and once, in tile times (a guess) */

struct Split {
  int dp, s, items;
  float time; /* estimated, in tile times */
};

__device__ __forceinline__ Split plan_split(const Args &a, int total, int ncta, int k_iters) {
  const int full = total / ncta, rem = total % ncta;
  Split sp = {total, 1, total, (float)(full + (rem ? 1 : 0))};
  if (a.split_max < 2 || a.ws == nullptr || rem == 0) return sp;
  const int smax = min(k_iters / kMinSplitIters, a.split_max);
  for (int j = 0; j <= min(full, 1); ++j) {
    const int m = rem + j * ncta;
    if (m > a.ws_tiles) break;
    for (int s = 2; s <= smax; ++s) {
      if (a.ws_ordered && m * s > a.ws_tiles) break;
      const int rounds = (m * s + ncta - 1) / ncta;
      const float t = (float)(full - j) + rounds * (1.0f / s + kSplitCost) + kSplitCost;
      if (t < sp.time - 1e-3f) {
        sp.dp = total - m;
        sp.s = s;
        sp.items = sp.dp + m * s;
        sp.time = t;
      }
    }
  }
  return sp;
}

/* Work item w -> tile t, K blocks [kb0, kb1), split part u (-1: a whole
 * tile): part u % s of the u / s-th split tile (one int, not two, stays
 * live through the main loop: a second one spilled the consumers). */
struct Work {
  int t, kb0, kb1, u;
};

__device__ __forceinline__ Work work_item(const Split &sp, int k_iters, int w) {
  Work wk = {w, 0, k_iters, -1};
  if (w >= sp.dp) {
    const int u = w - sp.dp, part = u % sp.s;
    wk.u = u;
    wk.t = sp.dp + u / sp.s;
    wk.kb0 = part * k_iters / sp.s;
    wk.kb1 = (part + 1) * k_iters / sp.s;
  }
  return wk;
}

/* kBN: B rows per stage = wgmma N; kSwiglu: output tile is kBN/2 wide
 * (gate half, up half); kHooks: compiles the hook code in; kGather: the
 * producer warpgroup gathers A's rows with cp.async (Args' gather fields)
 * instead of one TMA box per stage (needs kHooks). */
template <int kBN_, bool kSwiglu_, bool kHooks_, bool kFp16_, bool kGather_ = false,
          bool kBmn_ = false, bool kKgroup_ = false, bool kPair_ = false, bool kDeep_ = false,
          bool kTall_ = false, int kSwapN_ = 0, bool kFit_ = false>
struct Cfg {
  /* kPair: 2-CTA clusters sharing B or A by TMA multicast (see "pairs" below) */
  static constexpr bool kPair = kPair_;
  static constexpr int kEmptyArrivals = kPair ? 4 : 2; /* consumer warpgroups per stage */
  /* kKgroup: the grouped reduction (the backward's dw1, dw2): A and B both
   * MN-major, TMA boxes of 64 columns x 64 rows (K = the group's row count;
   * the consumers zero the rows past the group in its last stage), one
   * [kg_m, n] output a group */
  static constexpr bool kKgroup = kKgroup_;
  static constexpr int kBN = kBN_;
  static constexpr bool kSwiglu = kSwiglu_, kHooks = kHooks_, kFp16 = kFp16_;
  static constexpr bool kGather = kGather_;
  /* kBmn: B is MN-major, [G][K][NB] (C = A . B_g): a stage holds kBN/64
   * chunks of 64 k-rows x 64 columns (8 KB each), read by wgmma transposed */
  static constexpr bool kBmn = kBmn_;
  static_assert(!kGather || kHooks, "the gathered A comes with the hooks");
  static_assert(!kBmn || (!kSwiglu && !kGather), "MN-major B: plain epilogue, TMA A");
  static_assert(!kKgroup || (!kSwiglu && !kGather && !kHooks && !kBmn),
                "the grouped reduction: plain epilogue, its own producer");
  static_assert(!kPair || (kBN_ == 256 && !kHooks && !kKgroup), "pairs: wide tiles, natural order");
  static constexpr int kOutN = kSwiglu ? kBN / 2 : kBN;
  /* pairs: a 4th stage against the cross-CTA latency of the multicast B
   * (3 stages ran 0.65-0.70x single CTAs; 4 run 0.70-0.81x, session 6),
   * paid for with half the epilogue staging (two slabs a warpgroup, stored
   * in turns) and group tables for kPairMaxGroups groups */
  /* kDeep: the pairs' ring depth for single wide CTAs (the default where it
   * applies; params.stages = 3 turns it off): against the latency of B from
   * DRAM, 1.013x three stages over the 56 grouped rows (session 9 run 1).
   * With hooks (the fused layer0) only when params.stages = 4 asks. */
  static constexpr bool kDeep = kDeep_;
  static_assert(!kDeep || (kBN_ == 256 && !kKgroup && !kPair), "deep: wide single CTAs");
  /* kTall: 256-row tiles of 128 B rows (a consumer warpgroup takes two
   * 64-row blocks): every B tile serves twice the rows, for experts of at
   * most 256 rows where B's bytes dominate and the launch is DRAM-bound
   * (DeepSeek-V2-Lite at 2048 tokens reads B 1.6-1.9 times with 128-row
   * tiles: session 12 run 5). No split tail, no hooks. */
  static constexpr bool kTall = kTall_;
  static_assert(!kTall || (kBN_ == 128 && !kHooks && !kKgroup && !kPair && !kBmn && !kDeep),
                "tall: 128 B rows, plain grouped launches");
  /* kSwap (kSwapN_ > 0): the swapped tile, C^T = B . A^T: a tile is 256 B
   * rows (wgmma's M: each consumer warpgroup two m64 blocks of 64 B rows)
   * by kSwapN_ A rows (wgmma's N, a multiple of 8 that can fit a routed
   * expert's rows in fewer, fuller tiles than 128-row M-tiles do: cuBLAS's
   * orientation for grouped MoE shapes, session 17). Plain store, no row
   * scale, no hooks, no split tail; the epilogue transposes (stmatrix).
   * With SwiGLU the 256 B rows are 128 gate and the 128 up rows of the
   * same columns, a warpgroup's two blocks 64 of each (silu(gate) * up in
   * its registers).
   * The slim swapped tile (kBN_ = 128, plain store only): 128 B rows, one
   * m64 block a consumer warpgroup, so one wgmma a warpgroup a k-step as in
   * the wide tile (the 256-row one issues two against the same A rows),
   * and a deeper ring in the smem the smaller stage leaves. */
  static constexpr bool kSwap = kSwapN_ > 0;
  static_assert(!kSwap || ((kBN_ == 256 || (kBN_ == 128 && !kSwiglu_)) && !kHooks_ && !kGather_ &&
                           !kBmn_ && !kKgroup_ && !kPair_ && !kDeep_ && !kTall_ && kSwapN_ % 8 == 0 &&
                           kSwapN_ >= 128 && kSwapN_ <= 256),
                "swapped: 256 B rows, or 128 with the plain store; plain grouped launches; a token tile "
                "of 8k rows in [128, 256]");
  /* kFit: the slim tile with a token width a group (fit_width): an
   * expert's rows in the fewest tiles of at most Args::fit_rows (<=
   * kSwapN_) rows, each ceil(rows / tiles) rounded up to 8 (at least 128),
   * the wgmma's N picked a tile from the widths 128, 136, ..., kSwapN_
   * (fit_tile). Two bodies: 208 rows (4 stages) and 136 (5 stages). */
  static constexpr bool kFit = kFit_;
  static_assert(!kFit || (kSwap && kBN_ == 128 && (kSwapN_ == kFitRows || kSwapN_ == kFitNarrowRows)),
                "fit: the slim tile of 208 or 136 rows");
  static constexpr int kRows = kTall ? 2 * kBM : kSwap ? kSwapN_ : kBM; /* rows of a tile */
  static constexpr int kSwapBlocks = kBN_ / 128; /* swapped: m64 blocks a consumer warpgroup */
  static constexpr int kAcc = kSwap ? kSwapBlocks * (kSwapN_ / 2) : (kRows / 128) * (kBN / 2); /* accumulators a consumer thread */
  static constexpr bool kSmallTables = kPair || kDeep || kTall || kSwap; /* group tables for 128 groups: the 4-stage ring's or the swapped staging's smem */
  /* the half tile (params.half_tiles, opt-in): a wide plain-store M-tile
   * of at most 64 rows runs as 64 x 256, each consumer warpgroup one
   * m64n128 half of the columns (see consume) */
  static constexpr bool kHalf = kBN_ == 256 && !kSwiglu_ && !kTall_ && !kKgroup_ && !kPair_ && !kSwap;
  static constexpr int kABytes = kRows * kBK * 2, kBBytes = kBN * kBK * 2;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kSlabs = kOutN / 64;               /* per consumer warpgroup */
  static constexpr int kStgSlabs = kSmallTables && kSlabs > 2 ? 2 : kSlabs; /* staged at once */
  /* swapped: the whole tile transposed, a slab of kRows rows x 64 columns
   * for every 64 B rows */
  static constexpr int kStagingBytes = kSwap ? (kBN / 64) * kRows * 128 : 2 * kStgSlabs * kSlabBytes;
  static constexpr int kMaxGroups = kSmallTables ? kPairMaxGroups : COMET_GEMM_MAX_GROUPS; /* tables */
  /* swapped: as many stages as fit beside the staging (at most 6) */
  static constexpr int kSwapStages = (kSmemLimit - 1024 - kStagingBytes - 2 * (kMaxGroups + 1) * 4 -
                                      kRingAreaBytes - 2 * 6 * 8) / kStageBytes;
  static constexpr int kStages = kSwap ? (kSwapStages < 6 ? kSwapStages : 6)
                                       : kSmallTables ? 4 : kBN == 256 ? 3 : 5;
  /* shared memory map (from a 1024-aligned base) */
  static constexpr int kOffA = 0;
  static constexpr int kOffB = kOffA + kStages * kABytes;
  static constexpr int kOffC = kOffB + kStages * kBBytes;
  static constexpr int kOffBar = kOffC + kStagingBytes;     /* full[S], empty[S] */
  static constexpr int kOffTab = kOffBar + 2 * kStages * 8; /* row_off[G+1], mstart[G+1] */
  /* with hooks (a tile list: no group tables) the area holds the gather's
   * row sources (128 pointers) and, past them, the work ring: at 4 KB, or
   * at 1 KB where the 4-stage ring leaves no more room */
  static constexpr int kHookRingOff = kSmallTables ? 1024 : 4096;
  static constexpr int kTabBytes = kHooks && kHookRingOff + kRingAreaBytes > 2 * (kMaxGroups + 1) * 4
                                       ? kHookRingOff + kRingAreaBytes
                                       : 2 * (kMaxGroups + 1) * 4 + (kFit ? 16 : 0); /* + fit's cap */
  static_assert(128 * sizeof(void *) <= kHookRingOff, "the gather's row sources fit before the ring");
  /* a plain launch's work ring (params.dynamic_tiles) follows the tables;
   * with hooks it lives inside them (unused with a list) */
  static constexpr int kSmemBytes = kOffTab + kTabBytes + (kHooks ? 0 : kRingAreaBytes) + 1024;
  static_assert(kSmemBytes <= kSmemLimit, "shared memory over the sm_90 limit");
  static_assert(!kFit || kStages == (kSwapN_ == kFitNarrowRows ? 5 : 4), "fit: the bodies' ring depths");
  static_assert(kOutN % 64 == 0, "output tile must be whole 64-column slabs");
};

struct Tile {
  int group, row0, row_end, n, mtile, src_first, src_last;
  int index;  /* natural M-tile index (the arrival counter's) */
  bool shared; /* pairs: both CTAs of the cluster need this B tile */
  bool shared_a = false; /* pairs: both CTAs need these A rows (two N-tiles of one M-tile) */
  bool nostore = false;  /* pairs: a partner past the last N-tile (loads, computes nothing) */
};

/* ---- tile scheduler: linear tile index -> (group, rows, N-tile) ---- */

/* The group of flattened M-tile q < mstart[G]: the largest g with
 * mstart[g] <= q (empty groups before it share its mstart). */
__device__ __forceinline__ int group_of(const int *mstart, int groups, int q) {
  int lo = 0, hi = groups;
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (mstart[mid] <= q) lo = mid; else hi = mid;
  }
  return lo;
}

/* Without a list: the CTA's table mstart[g] = M-tiles before group g; tile t
 * is M-tile q = t / n_tiles of the flattened list, and inside a group the
 * tiles run in bands of a.band M-tiles, M fastest, so CTAs running at the
 * same time share B tiles in L2. rows: an M-tile's (C::kRows). */
/* The fitted tile's rows for a group of `rows` rows (Cfg::kFit): the
 * fewest tiles of at most wmax rows, each ceil(rows / tiles) rounded up to
 * 8, at least 128 (the narrowest wgmma N compiled). The group's tiles are
 * still ceil(rows / wmax): w >= rows / tiles, and a clamp to 128 leaves
 * (tiles - 1) * 128 < (tiles - 1) * wmax < rows. */
__device__ __forceinline__ int fit_width(int rows, int wmax) {
  const int tiles = (rows + wmax - 1) / wmax;
  if (tiles == 0) return wmax;
  const int w = ((rows + tiles - 1) / tiles + 7) & ~7;
  return w < 128 ? 128 : w;
}

/* A fitted tile's rows in its group (valid) and its wgmma N (the rows
 * computed): valid rounded up to 8, at least 128. */
__device__ __forceinline__ int fit_valid(const int *row_off, const Tile &tl, int wmax) {
  return min(fit_width(row_off[tl.group + 1] - row_off[tl.group], wmax), tl.row_end - tl.row0);
}
__device__ __forceinline__ int fit_n(int valid) { return max(128, (valid + 7) & ~7); }

__device__ __forceinline__ Tile sched_natural(const Args &a, const int *row_off,
                                              const int *mstart, int t, int rows, bool fit = false) {
  const int q = t / a.n_tiles;
  const int g = group_of(mstart, a.groups, q), mt = mstart[g + 1] - mstart[g];
  if (fit) rows = fit_width(row_off[g + 1] - row_off[g], rows);
  const int l = t - mstart[g] * a.n_tiles;
  const int band = l / (a.band * a.n_tiles), first = band * a.band;
  const int bm = min(a.band, mt - first), rem = l - first * a.n_tiles;
  const int m = first + rem % bm;
  Tile tl;
  tl.group = g;
  tl.row0 = row_off[g] + m * rows;
  tl.row_end = row_off[g + 1];
  tl.n = rem / bm;
  tl.mtile = mstart[g] + m;
  tl.index = tl.mtile;
  tl.src_first = tl.src_last = 0;
  tl.shared = false;
  return tl;
}

/* ---- pairs (Cfg::kPair) ----
 * The two CTAs of a cluster run two tiles of one group in lockstep and
 * share an operand by TMA multicast, so its reads from L2 halve. A group's
 * M-tiles go two by two (2j, 2j + 1) with the same N-tile: each CTA loads
 * one half of the B tile and multicasts it into both (B is the larger
 * operand of a 128 x 256 tile). An odd group's last M-tile runs two
 * N-tiles at once instead, sharing its A rows the same way (64 rows
 * each); with an odd N-tile count the last such pair's second tile
 * repeats the last N-tile's loads and stores nothing (nostore). So no
 * pair straddles two groups or leaves a CTA without rows. (Sending a last
 * M-tile of <= 64 rows there too, so that no pair has one CTA's
 * warpgroup idle, ran 192-row experts at 0.68x single CTAs: it gives up
 * their B sharing; session 23 run 5.)
 * A group's pair tiles run in bands of a.band / 2 M-pairs, M fastest, as
 * sched_natural; the last band also holds the leftover M-tile, after its
 * M-pairs on each two N-tiles (swept on its own after the band, it would
 * re-read the expert's B). mstart[g] counts the pair tiles before group g
 * (build_tables). */
struct PairShape {
  int mp, left; /* M-pairs; leftover M-tiles (0 or 1), after the M-pairs */
};
__device__ __forceinline__ PairShape pair_shape(int rows) {
  const int mt = (rows + kBM - 1) / kBM;
  return PairShape{mt / 2, mt & 1};
}
__device__ __forceinline__ int pair_count(int rows, int n_tiles) {
  const PairShape ps = pair_shape(rows);
  return ps.mp * n_tiles + ps.left * ((n_tiles + 1) / 2);
}

__device__ __forceinline__ Tile sched_pair(const Args &a, const int *row_off, const int *mstart,
                                           int t, int rank) {
  const int g = group_of(mstart, a.groups, t);
  const PairShape ps = pair_shape(row_off[g + 1] - row_off[g]);
  const int pb = a.band / 2 > 0 ? a.band / 2 : 1;           /* M-pairs a band */
  const int last = ps.mp > 0 ? (ps.mp - 1) / pb * pb : 0; /* the last band's first M-pair */
  const int l = t - mstart[g];
  int pair = -1, left = -1, n; /* an M-pair with N-tile n, or leftover `left` on N-tiles 2n, 2n + 1 */
  if (l < last * a.n_tiles) { /* a full band */
    const int first = l / (pb * a.n_tiles) * pb, rem = l - first * a.n_tiles;
    pair = first + rem % pb;
    n = rem / pb;
  } else { /* the last band: per two N-tiles, its M-pairs on each, then the leftovers */
    const int bm = ps.mp - last, r = l - last * a.n_tiles, per = 2 * bm + ps.left;
    const int j = r / per, q = r - j * per;
    const bool half = 2 * j + 1 == a.n_tiles; /* an odd count's last N-tile: bm + left items */
    const int pairs_here = half ? bm : 2 * bm;
    if (q < pairs_here) {
      pair = last + q % bm;
      n = 2 * j + q / bm;
    } else {
      left = q - pairs_here;
      n = j;
    }
  }
  Tile tl;
  tl.shared = pair >= 0;
  tl.shared_a = !tl.shared;
  int m;
  if (tl.shared) {
    m = 2 * pair + rank;
  } else {
    m = 2 * ps.mp + left;
    n = 2 * n + rank;
    tl.nostore = n >= a.n_tiles;
    if (tl.nostore) n = a.n_tiles - 1;
  }
  tl.group = g;
  tl.row0 = row_off[g] + m * kBM;
  tl.row_end = row_off[g + 1];
  tl.n = n;
  tl.mtile = tl.index = t;
  tl.src_first = tl.src_last = 0;
  return tl;
}

/* Pair tiles of the launch (natural schedule, both CTAs of a cluster). */
__device__ __forceinline__ int pair_tiles(const Args &a, const int *mstart) { return mstart[a.groups]; }

/* With a list: tile t's list entry and N-tile. LAYER1 runs groups of
 * column blocks, LAYER0 bands of M-tiles, M fastest (schedule.h). Not
 * inlined: layer0's division by the band's size, inlined, made ptxas spill
 * 28-48 bytes in the fused layer0's mover code (the gathered-A kernels);
 * a call (tens of cycles, once a tile per thread) is small beside a tile's
 * microseconds. */
static __device__ __noinline__ comet_tile_t list_pos(const Args &a, int count, int t) {
  return a.order == COMET_GEMM_ORDER_LAYER1 ? comet_sched_layer1_tile(t, a.n_tiles, count)
                                            : comet_sched_layer0_tile(t, a.n_tiles, a.mtiles);
}

/* The tile of list entry li at N-tile n. */
__device__ __forceinline__ Tile list_tile(const Args &a, int li, int n) {
  const comet_mtile_t mt = a.mtiles[li];
  Tile tl;
  tl.group = mt.expert;
  tl.row0 = mt.row_begin;
  tl.row_end = mt.row_begin + mt.rows;
  tl.n = n;
  tl.mtile = li;
  tl.index = mt.index;
  tl.src_first = mt.src_first;
  tl.src_last = mt.src_last;
  tl.shared = false;
  return tl;
}

__device__ __forceinline__ Tile sched_list(const Args &a, int count, int t) {
  const comet_tile_t ti = list_pos(a, count, t);
  return list_tile(a, ti.mtile, ti.n);
}

/* The grouped reduction: tile t -> (group, M-tile, N-tile) in bands of
 * kKgBand M-tiles, M fastest inside a band: a wave of 132 CTAs then covers
 * about 16 x 8 tiles, whose A and B columns it reads per K step (M fastest
 * over all of dw1's 224 M-tiles read A's every column once per N-tile:
 * 562 TFLOP/s on Mixtral's dw1 against 690 for dA, ncu 2026-12-01); rows
 * of C are g * kg_m + m. */
constexpr int kKgBand = 16;
__device__ __forceinline__ Tile sched_kgroup(const Args &a, int t) {
  const int per = a.kg_mtiles * a.n_tiles, g = t / per, rem = t - g * per;
  const int first = rem / (kKgBand * a.n_tiles) * kKgBand;
  const int bm = min(kKgBand, a.kg_mtiles - first), r = rem - first * a.n_tiles;
  Tile tl;
  tl.group = g;
  tl.row0 = g * a.kg_m + (first + r % bm) * kBM;
  tl.row_end = (g + 1) * a.kg_m;
  tl.n = r / bm;
  tl.mtile = t;
  tl.index = t;
  tl.src_first = tl.src_last = 0;
  tl.shared = false;
  return tl;
}

/* K blocks of tile tl: the grouped reduction's are its group's rows. */
__device__ __forceinline__ int kgroup_iters(const Args &a, const Tile &tl) {
  const int rows = a.group_offset[tl.group + 1] - a.group_offset[tl.group];
  return rows > 0 ? (rows + kBK - 1) / kBK : 0;
}

/* A natural schedule's widest M-tile: the fitted tile's cap (build_tables
 * keeps it past the tables), else the tile's rows. */
template <class C>
__device__ __forceinline__ int sched_rows(const int *mstart) {
  if constexpr (C::kFit) return mstart[C::kMaxGroups + 1];
  return C::kRows;
}

template <class C>
__device__ __forceinline__ Tile sched_tile(const Args &a, const int *row_off, const int *mstart,
                                           int count, int t) {
  if constexpr (C::kKgroup) return sched_kgroup(a, t);
  if constexpr (C::kPair) return sched_pair(a, row_off, mstart, t, (int)cluster_ctarank());
  if constexpr (C::kHooks)
    if (a.mtiles) return sched_list(a, count, t);
  return sched_natural(a, row_off, mstart, t, sched_rows<C>(mstart), C::kFit);
}

/* ---- where a CTA's next tile comes from ----
 * Static (default): cta, cta + ncta, ... Dynamic (Args.tile_counter, with a
 * tile list): the producer takes the next tile from a global counter and
 * hands it to the consumer warpgroups through a ring of kRing shared slots
 * (full: the producer's arrival; empty: one per consumer warpgroup once done
 * with the tile). Tiles then go to whichever CTA is free first, and CTAs
 * that first did other work (a fused kernel's movers) can join. -1: no
 * more tiles. With hooks (a tile list) the ring lives in the group-table
 * area, unused with a list; a plain launch (params.dynamic_tiles: the
 * split tail's items from a counter in its workspace, so CTAs that drew
 * cheaper tiles take more) keeps it after the tables. */
constexpr int kRing = 4;
static_assert(32 + 2 * kRing * 8 <= kRingAreaBytes, "the work ring fits its area");

struct Ring {
  volatile int *item; /* [kRing] + 1: the gather producer's broadcast slot */
  uint64_t *full, *empty;
};

template <class C>
__device__ __forceinline__ Ring ring_of(uint8_t *smem) {
  uint8_t *base = smem + C::kOffTab + (C::kHooks ? C::kHookRingOff : C::kTabBytes);
  Ring r;
  r.item = (volatile int *)base;
  r.full = (uint64_t *)(base + 32);
  r.empty = r.full + kRing;
  return r;
}

__device__ __forceinline__ int producer_next(const Args &a, const Ring &r, int i, int cta, int ncta,
                                             int total) {
  if (!a.tile_counter) return cta + i * ncta < total ? cta + i * ncta : -1;
  int w = (int)atomicAdd(a.tile_counter, 1u);
  if (w >= total) w = -1;
  const int slot = i % kRing;
  mbar_wait(&r.empty[slot], ((i / kRing) & 1) ^ 1);
  r.item[slot] = w;
  mbar_arrive(&r.full[slot]);
  return w;
}

__device__ __forceinline__ int consumer_next(const Args &a, const Ring &r, int i, int cta, int ncta,
                                             int total) {
  if (!a.tile_counter) return cta + i * ncta < total ? cta + i * ncta : -1;
  const int slot = i % kRing;
  mbar_wait(&r.full[slot], (i / kRing) & 1);
  return r.item[slot];
}

/* A consumer warpgroup is done with its i-th tile (every thread read the
 * slot long before: they met at the epilogue's barriers since). */
__device__ __forceinline__ void consumer_done(const Args &a, const Ring &r, int i, int ctid) {
  if (a.tile_counter && ctid == 0) mbar_arrive(&r.empty[i % kRing]);
}

/* ---- hooks ---- */

/* Producer: spin until all the M-tile's rows have arrived (its counter,
 * acquire), then order those generic-proxy writes before our TMA
 * (async-proxy) loads. With a comm view (the fused layer0) the wait is
 * wait.cuh's: bounded by the layer's timeout, abort-aware, the fault
 * recorded; after one gives up (*dead) the rest of the call's tiles load
 * without waiting (the call's status is FAULT, its output poisoned).
 * Without one (the standalone GEMM's hook, for tests) it traps after 10 s.
 * Everything is inlined: a call in the kernel (printf) makes ptxas
 * serialize its wgmma pipeline (C7510). */
__device__ __forceinline__ void wait_rows(const Args &a, const Tile &tl, uint64_t want,
                                          const comet_comm_view_t *view, bool *dead) {
  const uint64_t *f = a.wait_count + tl.index;
  if (view) {
    if (!*dead && !comet_wait_geq(*view, f, want, COMET_WAIT_TILE,
                                  comet_plan_source(view->rank, tl.src_last, view->world),
                                  tl.group, tl.index))
      *dead = true;
  } else {
    const uint64_t t0 = globaltimer_ns();
    while (ld_acquire_sys_u64(f) < want)
      if (globaltimer_ns() - t0 > 10000000000ull) __trap();
  }
  fence_proxy_async_global();
}

/* ---- producer: one thread issues every TMA load of this CTA's tiles ---- */

/* The gathered A (C::kGather): the rows of this tile that other ranks send
 * (its rows outside arrival block 0, this rank's own) are counted in; the
 * own rows are read in place from x. */
__device__ __forceinline__ uint64_t delivered_rows(const Args &a, const Tile &tl) {
  const int32_t *bo = a.block_offset + tl.group * (a.gather_world + 1);
  const int32_t own = max(0, min(tl.row_end, bo[1]) - max(tl.row0, bo[0]));
  return (uint64_t)(tl.row_end - tl.row0 - own);
}

/* All 128 producer threads. Per tile, thread i looks up where A row
 * row0 + i comes from (x or the window; NULL past the tile's rows) into the
 * shared table srcs; per stage, each thread copies 8 of the tile's 128 x 8
 * chunks of 16 bytes with cp.async, 8 threads per row so that a warp reads
 * 4 whole 128-byte lines, into the 128B-swizzled layout TMA would have
 * written (zeros past the rows and past K), then arrives once on the
 * stage's full barrier (129 arrivals: these 128 and thread 0's expect_tx
 * for B's TMA bytes). Thread 0 waits for the delivered rows first; the
 * producer warpgroup's barrier orders that acquire before every thread's
 * reads. */
template <class C>
__device__ __forceinline__ void produce_gather(const Args &a, const CUtensorMap *tm_b,
                                               uint8_t *smem, uint64_t *full, uint64_t *empty,
                                               const char **srcs, const Ring &ring, int count,
                                               int cta, int ncta, const comet_comm_view_t *view) {
  const int k_iters = (a.k + kBK - 1) / kBK, tid = threadIdx.x;
  const int nb_half = C::kBN / 2, chunk = tid & 7, row_lo = tid >> 3;
  const size_t row_bytes = (size_t)a.k * 2;
  bool dead = false;
  int stage = 0;
  uint32_t phase = 0;
  for (int i = 0;; ++i) {
    /* thread 0 takes the tile and tells the other producer threads: they
     * all read the slot before the barrier after srcs, so it is free again
     * when thread 0 writes the next one */
    if (tid == 0) ring.item[kRing] = producer_next(a, ring, i, cta, ncta, count * a.n_tiles);
    named_bar_sync(5, 128);
    const int w = ring.item[kRing];
    if (w < 0) break;
    const Tile tl = sched_list(a, count, w);
    if (tid == 0 && a.wait_count) {
      const uint64_t want = delivered_rows(a, tl);
      if (want > 0) wait_rows(a, tl, want, view, &dead);
    }
    named_bar_sync(5, 128); /* the rows are in; nobody reads the old table any more */
    {
      const int r = tl.row0 + tid;
      const char *src = NULL;
      if (r < tl.row_end)
        src = a.row_src[r] == a.gather_self ? a.gather_x + (size_t)a.row_token[r] * row_bytes
                                            : a.gather_rows + (size_t)r * row_bytes;
      srcs[tid] = src;
    }
    named_bar_sync(5, 128);
    const int b_row0 = C::kSwiglu ? tl.n * C::kOutN : tl.n * C::kBN;
    const int b_row1 = C::kSwiglu ? a.n + b_row0 : b_row0 + nb_half;
    for (int kb = 0; kb < k_iters; ++kb) {
      mbar_wait(&empty[stage], phase ^ 1);
      if (tid == 0) {
        uint8_t *sb = smem + C::kOffB + stage * C::kBBytes;
        mbar_arrive_expect_tx(&full[stage], C::kBBytes);
        tma_load_3d(sb, tm_b, &full[stage], kb * kBK, b_row0, tl.group);
        tma_load_3d(sb + nb_half * 128, tm_b, &full[stage], kb * kBK, b_row1, tl.group);
      }
      const uint32_t sa = smem_u32(smem + C::kOffA + stage * C::kABytes);
      const int col = kb * kBK + chunk * 8;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int row = row_lo + 16 * i;
        const char *src = srcs[row];
        const bool in = src != NULL && col < a.k;
        cp_async_16(sa + row * 128 + ((chunk ^ (row & 7)) << 4),
                    in ? src + (size_t)col * 2 : a.gather_rows, in ? 16u : 0u);
      }
      cp_async_mbar_arrive_noinc(&full[stage]);
      if (++stage == C::kStages) { stage = 0; phase ^= 1; }
    }
  }
}

/* The grouped reduction's producer (one thread): per stage kBM/64 boxes of
 * A (kg_a [rows, kg_m]: 64 columns x 64 rows from the group's row r_begin +
 * 64 kb) and kBN/64 of B, into the 64 k-rows x 64 columns chunks wgmma
 * reads transposed. Rows past the group are the next group's (zeroed by the
 * consumers, zero_tail); past the tensor, and columns past m or n, TMA
 * fills zeros. */
template <class C>
__device__ __forceinline__ void produce_kgroup(const Args &a, const CUtensorMap *tm_a,
                                               const CUtensorMap *tm_b, uint8_t *smem,
                                               uint64_t *full, uint64_t *empty, int total, int cta,
                                               int ncta) {
  int stage = 0;
  uint32_t phase = 0;
  for (int w = cta; w < total; w += ncta) {
    const Tile tl = sched_tile<C>(a, nullptr, nullptr, 0, w);
    const int k_iters = kgroup_iters(a, tl);
    const int r_begin = a.group_offset[tl.group];
    const int m0 = tl.row0 - tl.group * a.kg_m, n0 = tl.n * C::kBN;
    for (int kb = 0; kb < k_iters; ++kb) {
      mbar_wait(&empty[stage], phase ^ 1);
      mbar_arrive_expect_tx(&full[stage], C::kStageBytes);
      uint8_t *sa = smem + C::kOffA + stage * C::kABytes;
      uint8_t *sb = smem + C::kOffB + stage * C::kBBytes;
      const int r = r_begin + kb * kBK;
#pragma unroll
      for (int ch = 0; ch < kBM / 64; ++ch)
        tma_load_2d(sa + ch * (kBK * 128), tm_a, &full[stage], m0 + ch * 64, r);
#pragma unroll
      for (int ch = 0; ch < C::kBN / 64; ++ch)
        tma_load_2d(sb + ch * (kBK * 128), tm_b, &full[stage], n0 + ch * 64, r);
      if (++stage == C::kStages) { stage = 0; phase ^= 1; }
    }
  }
}

/* Both consumer warpgroups, on the grouped reduction's last stage of a tile
 * when the group ends inside it: zero k-rows valid..63 of the stage's A and
 * B (whole 128-byte rows of every 64-column chunk, so the swizzle does not
 * matter), then order the writes before wgmma's reads (async proxy) and
 * meet: B is shared by both. */
template <class C>
__device__ __forceinline__ void zero_tail(uint8_t *sa, uint8_t *sb, int valid) {
  const int t = threadIdx.x - 128, n = (kBK - valid) * 8; /* 16-byte units per chunk */
  const uint4 z = make_uint4(0, 0, 0, 0);
  for (int u = t; u < (kBM / 64) * n; u += 256)
    *(uint4 *)(sa + (u / n) * (kBK * 128) + valid * 128 + (u % n) * 16) = z;
  for (int u = t; u < (C::kBN / 64) * n; u += 256)
    *(uint4 *)(sb + (u / n) * (kBK * 128) + valid * 128 + (u % n) * 16) = z;
  fence_proxy_async_shared();
  named_bar_sync(6, 256);
}

/* One box of a B stage at (c0, c1) of tile tl's group: loaded into this CTA,
 * or, in a pair sharing the tile, multicast into both CTAs by the one whose
 * half it is (`mine`; the other box arrives from the peer). */
template <class C>
__device__ __forceinline__ void load_b_box(uint8_t *dst, const CUtensorMap *tm_b, uint64_t *bar,
                                           int c0, int c1, const Tile &tl, bool mine) {
  if (C::kPair && tl.shared) {
    if (mine) tma_load_3d_mc(dst, tm_b, bar, c0, c1, tl.group, 3);
  } else {
    tma_load_3d(dst, tm_b, bar, c0, c1, tl.group);
  }
}

template <class C>
__device__ __forceinline__ void produce(const Args &a, const CUtensorMap *tm_a,
                                        const CUtensorMap *tm_b, uint8_t *smem, uint64_t *full,
                                        uint64_t *empty, const int *row_off, const int *mstart,
                                        const Split &sp, int count, int cta, int ncta,
                                        const comet_comm_view_t *view) {
  const int k_iters = (a.k + kBK - 1) / kBK;
  const int nb_half = C::kBN / 2; /* each B stage = two TMA boxes of kBN/2 rows */
  const Ring ring = ring_of<C>(smem);
  const int rank = C::kPair ? (int)cluster_ctarank() : 0;
  bool dead = false;
  int stage = 0;
  uint32_t phase = 0;
  for (int i = 0;; ++i) {
    const int w = producer_next(a, ring, i, cta, ncta, sp.items);
    if (w < 0) break;
    const Work wk = work_item(sp, k_iters, w);
    const Tile tl = sched_tile<C>(a, row_off, mstart, count, wk.t);
    if constexpr (C::kHooks)
      if (a.wait_count) wait_rows(a, tl, (uint64_t)(tl.row_end - tl.row0), view, &dead);
    int b_row0, b_row1;
    if constexpr (C::kSwiglu) {
      b_row0 = tl.n * C::kOutN;
      b_row1 = a.n + b_row0;
    } else {
      b_row0 = tl.n * C::kBN;
      b_row1 = b_row0 + nb_half;
    }
    for (int kb = wk.kb0; kb < wk.kb1; ++kb) {
      mbar_wait(&empty[stage], phase ^ 1);
      mbar_arrive_expect_tx(&full[stage], C::kStageBytes);
      uint8_t *sa = smem + C::kOffA + stage * C::kABytes;
      uint8_t *sb = smem + C::kOffB + stage * C::kBBytes;
      if constexpr (C::kPair) { /* two boxes of 64 rows: one each, multicast, when shared */
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (!tl.shared_a) tma_load_2d(sa + h * 64 * 128, tm_a, &full[stage], kb * kBK, tl.row0 + 64 * h);
          else if (h == rank) tma_load_2d_mc(sa + h * 64 * 128, tm_a, &full[stage], kb * kBK, tl.row0 + 64 * h, 3);
      } else {
        tma_load_2d(sa, tm_a, &full[stage], kb * kBK, tl.row0);
      }
      if constexpr (C::kTall) tma_load_2d(sa + kBM * 128, tm_a, &full[stage], kb * kBK, tl.row0 + kBM);
      if constexpr (C::kBmn) { /* box (64 columns, 64 k-rows) per chunk */
        constexpr int kChunks = C::kBN / 64;
#pragma unroll
        for (int ch = 0; ch < kChunks; ++ch)
          load_b_box<C>(sb + ch * (kBK * 128), tm_b, &full[stage], tl.n * C::kBN + ch * 64,
                        kb * kBK, tl, ch / (kChunks / 2) == rank);
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h)
          load_b_box<C>(sb + h * nb_half * 128, tm_b, &full[stage], kb * kBK, h ? b_row1 : b_row0,
                        tl, h == rank);
      }
      if (++stage == C::kStages) { stage = 0; phase ^= 1; }
    }
  }
  /* a plain launch's dynamic tiles: every producer has made its last claim
   * once all have counted in, so the last zeroes the counters (the next
   * launch on the stream sees them after this one ends) */
  if constexpr (!C::kHooks)
    if (a.tile_done && atomicAdd(a.tile_done, 1u) == gridDim.x - 1) {
      atomicExch(a.tile_counter, 0u);
      atomicExch(a.tile_done, 0u);
    }
}

/* ---- consumer ---- */

/* A consumer warpgroup is done reading a stage: its empty barrier, and with
 * pairs the peer CTA's too (the peer's producer multicasts into ours). */
template <class C>
__device__ __forceinline__ void release_stage(uint64_t *empty) {
  mbar_arrive(empty);
  if constexpr (C::kPair) mbar_arrive_cluster(empty, cluster_ctarank() ^ 1u);
}

template <class C>
__device__ __forceinline__ void mma_stage(float (&acc)[C::kBN / 2], uint32_t sa, uint32_t sb,
                                          bool first) {
  wgmma_fence();
  constexpr int kT = C::kBmn || C::kKgroup ? 1 : 0, kTA = C::kKgroup ? 1 : 0;
#pragma unroll
  for (int k = 0; k < kBK / 16; ++k) {
    /* K-major: the next 16 k are 32 bytes on in each row; MN-major: 16 rows
     * (2 swizzle atoms) on, the 64-column chunks kBK * 128 bytes apart */
    const uint64_t da = C::kKgroup ? wgmma_desc_sw128_mn(sa + k * 16 * 128, kBK * 128)
                                   : wgmma_desc_sw128(sa + k * 32);
    const uint64_t db = kT ? wgmma_desc_sw128_mn(sb + k * 16 * 128, kBK * 128)
                           : wgmma_desc_sw128(sb + k * 32);
    const int scale_d = (first && k == 0) ? 0 : 1;
    if constexpr (C::kBN == 256) {
      if constexpr (C::kFp16) wgmma_m64n256k16_f16<kT, kTA>(acc, da, db, scale_d);
      else wgmma_m64n256k16_bf16<kT, kTA>(acc, da, db, scale_d);
    } else {
      if constexpr (C::kFp16) wgmma_m64n128k16_f16<kT, kTA>(acc, da, db, scale_d);
      else wgmma_m64n128k16_bf16<kT, kTA>(acc, da, db, scale_d);
    }
  }
  wgmma_commit();
}

/* A half tile's stage (C::kHalf): the 64 rows at sa against this
 * warpgroup's 128 of the stage's 256 B rows (sb: the first or second box),
 * m64n128 into acc's first 64 registers (which hold an m64n256's first 128
 * columns in the same layout). */
template <class C>
__device__ __forceinline__ void mma_stage_half(float (&acc)[C::kBN / 2], uint32_t sa, uint32_t sb,
                                               bool first) {
  static_assert(C::kHalf, "the half tile's");
  constexpr int kT = C::kBmn ? 1 : 0;
  float(&lo)[64] = *reinterpret_cast<float(*)[64]>(&acc[0]);
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < kBK / 16; ++k) {
    const uint64_t da = wgmma_desc_sw128(sa + k * 32);
    const uint64_t db = kT ? wgmma_desc_sw128_mn(sb + k * 16 * 128, kBK * 128)
                           : wgmma_desc_sw128(sb + k * 32);
    const int scale_d = (first && k == 0) ? 0 : 1;
    if constexpr (C::kFp16) wgmma_m64n128k16_f16<kT, 0>(lo, da, db, scale_d);
    else wgmma_m64n128k16_bf16<kT, 0>(lo, da, db, scale_d);
  }
  wgmma_commit();
}

/* The tall tile's stage (C::kTall): the warpgroup's two 64-row blocks
 * (sa, sa + 64 rows) against the same B. Both always run: skipping one
 * by a branch made ptxas serialize every wgmma of the kernel (C7520; the
 * tile ran at 0.64x the wide one, session 12 run 7). */
template <class C>
__device__ __forceinline__ void mma_stage_tall(float (&acc)[C::kAcc], uint32_t sa, uint32_t sb,
                                               bool first) {
  static_assert(C::kTall, "the tall tile's");
  float(&lo)[64] = *reinterpret_cast<float(*)[64]>(&acc[0]);
  float(&hi)[64] = *reinterpret_cast<float(*)[64]>(&acc[64]);
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < kBK / 16; ++k) {
    const uint64_t db = wgmma_desc_sw128(sb + k * 32);
    const int scale_d = (first && k == 0) ? 0 : 1;
    const uint64_t da0 = wgmma_desc_sw128(sa + k * 32), da1 = wgmma_desc_sw128(sa + 64 * 128 + k * 32);
    if constexpr (C::kFp16) {
      wgmma_m64n128k16_f16<0, 0>(lo, da0, db, scale_d);
      wgmma_m64n128k16_f16<0, 0>(hi, da1, db, scale_d);
    } else {
      wgmma_m64n128k16_bf16<0, 0>(lo, da0, db, scale_d);
      wgmma_m64n128k16_bf16<0, 0>(hi, da1, db, scale_d);
    }
  }
  wgmma_commit();
}

/* One m64nNk16 of the swapped tile (N = its rows). */
#define COMET_WGMMA_SWAP(n)                                              \
  if constexpr (kN == n) {                                               \
    if constexpr (kFp16) wgmma_m64n##n##k16_f16<0, 0>(d, da, db, scale_d); \
    else wgmma_m64n##n##k16_bf16<0, 0>(d, da, db, scale_d);                \
    return;                                                              \
  }
template <int kN, bool kFp16>
__device__ __forceinline__ void wgmma_swap(float (&d)[kN / 2], uint64_t da, uint64_t db, int scale_d) {
  static_assert(kN >= 128 && kN <= 208 && kN % 8 == 0, "a swapped tile's rows (ptx_wgmma.cuh's shapes)");
  COMET_WGMMA_SWAP(128) COMET_WGMMA_SWAP(136) COMET_WGMMA_SWAP(144) COMET_WGMMA_SWAP(152)
  COMET_WGMMA_SWAP(160) COMET_WGMMA_SWAP(168) COMET_WGMMA_SWAP(176) COMET_WGMMA_SWAP(184)
  COMET_WGMMA_SWAP(192) COMET_WGMMA_SWAP(200) COMET_WGMMA_SWAP(208)
}
#undef COMET_WGMMA_SWAP

/* The swapped tile's stage (C::kSwap): this warpgroup's 64-row blocks of
 * the stage's B rows (256: rows 128 cw.. and 128 cw + 64..; with SwiGLU
 * gate rows 64 cw.. and up rows 128 + 64 cw..; the slim tile's 128: rows
 * 64 cw..) as wgmma's A against the tile's first kN A rows (sa) as its N
 * (kN: C::kRows, or a fitted tile's width): D^T blocks in acc[0, kN / 2)
 * and acc[kN / 2, kN). */
template <class C, int kN = C::kRows>
__device__ __forceinline__ void mma_stage_swap(float (&acc)[C::kAcc], uint32_t sa, uint32_t sb,
                                               int cw, bool first) {
  static_assert(C::kSwap && kN <= C::kRows && (C::kSwapBlocks == 1 || kN == C::kRows), "the swapped tile's");
  float(&lo)[kN / 2] = *reinterpret_cast<float(*)[kN / 2]>(&acc[0]);
  float(&hi)[kN / 2] = *reinterpret_cast<float(*)[kN / 2]>(&acc[(C::kSwapBlocks - 1) * (kN / 2)]);
  const uint32_t w0 = sb + cw * (C::kSwiglu ? 64 : C::kBN / 2) * 128;
  const uint32_t w1 = C::kSwiglu ? sb + (128 + cw * 64) * 128 : w0 + 64 * 128;
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < kBK / 16; ++k) {
    const uint64_t db = wgmma_desc_sw128(sa + k * 32);
    const int scale_d = (first && k == 0) ? 0 : 1;
    wgmma_swap<kN, C::kFp16>(lo, wgmma_desc_sw128(w0 + k * 32), db, scale_d);
    if constexpr (C::kSwapBlocks == 2) wgmma_swap<kN, C::kFp16>(hi, wgmma_desc_sw128(w1 + k * 32), db, scale_d);
  }
  wgmma_commit();
}

__device__ __forceinline__ uint32_t pack2(float x, float y, bool fp16) {
  uint32_t u;
  if (fp16) {
    __half2 h = __floats2half2_rn(x, y);
    u = *reinterpret_cast<uint32_t *>(&h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    u = *reinterpret_cast<uint32_t *>(&h);
  }
  return u;
}

/* x * sigmoid(x) with the fast division (MUFU reciprocal and a multiply):
 * an IEEE division is a ~30-instruction sequence per element, and the
 * epilogue's instructions are time the tensor cores sit idle (SwiGLU ran
 * 5-13% below the plain store). exp(-g) = inf gives -0. */
__device__ __forceinline__ float silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

/* The GELU epilogue's element: the result rounded to the dtype (the
 * pre-activation the reference rounds), then GELU. */
template <bool kFp16>
__device__ __forceinline__ float gelu_rounded(float v) {
  return act_gelu(kFp16 ? __half2float(__float2half_rn(v)) : __bfloat162float(__float2bfloat16_rn(v)));
}

/* Byte offset of (row r < 64, column c < kOutN) in a warpgroup's staging
 * area: 64-column slabs of 64 rows x 128 bytes, 16-byte chunks XOR-swizzled
 * by row (the TMA 128B swizzle, so the tensor-map store reads it directly;
 * also free of bank conflicts for the fragment writes). */
__device__ __forceinline__ int staging_off(int r, int c) {
  const int cc = c & 63;
  return (c >> 6) * kSlabBytes + r * 128 + ((((cc >> 3) ^ (r & 7))) << 4) + (cc & 7) * 2;
}

/* The row scales of this thread's two fragment rows (rows warp*16 + lane/4
 * and 8 below it; 0 past the group). */
__device__ __forceinline__ void fragment_scales(const Args &a, const Tile &tl, int wrow0, int warp,
                                                int lane, float (&scale)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = wrow0 + warp * 16 + (lane >> 2) + 8 * h;
    scale[h] = 1.0f;
    if (a.row_scale) scale[h] = row < tl.row_end ? a.row_scale[row] : 0.0f;
  }
}

/* A ragged half-tile's store: rows [0, rows) of `chunks` 16-byte chunks
 * each from the staging area at stg (staging_off's layout) to C's rows from
 * wrow0, columns from col0 (none at or past n): the rows past the group's
 * end belong to the next group, so no TMA box. */
__device__ __forceinline__ void store_ragged(const Args &a, const uint8_t *stg, int rows, int chunks,
                                             int wrow0, int col0, int ctid) {
  for (int idx = ctid; idx < rows * chunks; idx += 128) {
    const int r = idx / chunks, ch = idx % chunks, col = col0 + ch * 8;
    if (col < a.n) {
      const uint4 v = *reinterpret_cast<const uint4 *>(stg + staging_off(r, ch * 8));
      *reinterpret_cast<uint4 *>((uint8_t *)a.c + ((int64_t)(wrow0 + r) * a.n + col) * 2) = v;
    }
  }
}

/* The pairs' epilogue (kStgSlabs < kSlabs): the slabs take turns in
 * kStgSlabs staging buffers, one TMA store group a slab. Before the first
 * slab every earlier store has been read (as in epilogue); before a later
 * one all but the newest kStgSlabs - 1 groups, i.e. this tile's store that
 * used the buffer last. A ragged half-tile (rows past the group) copies
 * each slab out itself: the barrier before the next write releases its
 * buffer. Slabs past n are skipped (and all after them). */
template <class C>
__device__ __forceinline__ void epilogue_turns(const Args &a, const CUtensorMap *tm_c,
                                               const float (&acc)[C::kBN / 2], uint8_t *stg,
                                               const Tile &tl, int wrow0, int cw, int ctid, int n0,
                                               int slabs) {
  static_assert(!C::kSwiglu, "the SwiGLU tile's two slabs are staged at once");
  const int warp = ctid >> 5, lane = ctid & 31;
  const bool whole = wrow0 + 64 <= tl.row_end;
  float scale[2];
  fragment_scales(a, tl, wrow0, warp, lane, scale);
  const uint32_t stg_row = smem_u32(stg) + (warp * 16 + (lane >> 2)) * 128 + (lane & 3) * 4;
  const int x = (lane >> 2) & 7;
#pragma unroll
  for (int slab = 0; slab < C::kSlabs; ++slab) {
    if (slab >= slabs || n0 + slab * 64 >= a.n) break;
    uint8_t *buf = stg + (slab % C::kStgSlabs) * kSlabBytes;
    if (ctid == 0) {
      if (slab == 0) bulk_wait_read_all();
      else if (whole) bulk_wait_read<C::kStgSlabs - 1>();
    }
    named_bar_sync(1 + cw, 128); /* the buffer is free */
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const uint32_t base = stg_row + (slab % C::kStgSlabs) * kSlabBytes + ((jj ^ x) << 4);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i = (slab * 8 + jj) * 4 + h * 2;
        float v0 = acc[i], v1 = acc[i + 1];
        if (a.gelu) {
          v0 = gelu_rounded<C::kFp16>(v0);
          v1 = gelu_rounded<C::kFp16>(v1);
        }
        st_shared_u32(base + h * 1024, pack2(v0 * scale[h], v1 * scale[h], C::kFp16));
      }
    }
    fence_proxy_async_shared();
    named_bar_sync(1 + cw, 128);
    if (whole) {
      if (ctid == 0) {
        tma_store_2d(tm_c, buf, n0 + slab * 64, wrow0);
        bulk_commit();
      }
    } else {
      store_ragged(a, buf, min(64, tl.row_end - wrow0), 8, wrow0, n0 + slab * 64, ctid);
    }
  }
}

/* Writes a 64 x (64 * slabs) block of this warpgroup's results (slabs <=
 * kSlabs; fewer: a half tile's), rows from wrow0, columns from n0, to
 * global memory. */
template <class C>
__device__ __forceinline__ void epilogue(const Args &a, const CUtensorMap *tm_c,
                                         const float (&acc)[C::kBN / 2], uint8_t *stg,
                                         const Tile &tl, int wrow0, int cw, int ctid, int n0,
                                         int slabs) {
  if constexpr (C::kStgSlabs < C::kSlabs) {
    epilogue_turns<C>(a, tm_c, acc, stg, tl, wrow0, cw, ctid, n0, slabs);
    return;
  }
  const int warp = ctid >> 5, lane = ctid & 31;
  /* the previous tile's TMA store must have read the staging area */
  if (ctid == 0) bulk_wait_read_all();
  named_bar_sync(1 + cw, 128);

  float scale[2];
  fragment_scales(a, tl, wrow0, warp, lane, scale);
  /* D fragment of m64nNk16: register i holds row warp*16 + lane/4 + 8*((i/2)%2),
   * column (i/4)*8 + (lane%4)*2 + i%2. Column block j (8 columns) lands in
   * slab j/8, 16-byte chunk (j%8) ^ (row%8) (row%8 = (lane/4)%8 for both
   * row halves): 8 base addresses, the rest are immediates. */
  const uint32_t stg_row = smem_u32(stg) + (warp * 16 + (lane >> 2)) * 128 + (lane & 3) * 4;
  const int x = (lane >> 2) & 7;
#pragma unroll
  for (int jj = 0; jj < 8; ++jj) {
    const uint32_t base = stg_row + ((jj ^ x) << 4);
#pragma unroll
    for (int slab = 0; slab < C::kSlabs; ++slab) {
      if (slab >= slabs) break;
      const int j = slab * 8 + jj;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i = j * 4 + h * 2;
        float v0, v1;
        if constexpr (C::kSwiglu) {
          v0 = silu(acc[i]) * acc[i + C::kBN / 4];
          v1 = silu(acc[i + 1]) * acc[i + 1 + C::kBN / 4];
        } else {
          v0 = acc[i];
          v1 = acc[i + 1];
          if (a.gelu) {
            v0 = gelu_rounded<C::kFp16>(v0);
            v1 = gelu_rounded<C::kFp16>(v1);
          }
        }
        st_shared_u32(base + slab * kSlabBytes + h * 1024,
                      pack2(v0 * scale[h], v1 * scale[h], C::kFp16));
      }
    }
  }
  fence_proxy_async_shared();
  named_bar_sync(1 + cw, 128);

  if (wrow0 + 64 <= tl.row_end) { /* whole half-tile inside the group: TMA store */
    if (ctid == 0) {
#pragma unroll
      for (int s = 0; s < C::kSlabs; ++s)
        if (s < slabs && n0 + s * 64 < a.n) tma_store_2d(tm_c, stg + s * kSlabBytes, n0 + s * 64, wrow0);
      bulk_commit();
    }
  } else { /* ragged: rows past the group's end belong to the next group */
    store_ragged(a, stg, min(64, tl.row_end - wrow0), slabs * 8, wrow0, n0, ctid);
  }
}

/* Where lane `lane` of warp `warp` points stmatrix .trans in a slab at
 * `slab`: row l % 8 of the matrices of A rows 8 j.. (j: the matrix pair's
 * row block), the 16-byte chunk of output columns 16 warp + 8 ((l / 8) %
 * 2).., swizzled as staging_off. */
__device__ __forceinline__ uint32_t swap_stmatrix_addr(uint32_t slab, int j, int lane, int warp) {
  const int t = 8 * j + (lane & 7), ch = 2 * warp + ((lane >> 3) & 1);
  return slab + t * 128 + ((ch ^ (t & 7)) << 4);
}

/* The swapped tile's epilogue: block b of this warpgroup's D^T (acc[b
 * kRows / 2 ..]) is output columns n0 + 64 (kSwapBlocks cw + b) + (B rows
 * 0..63) by the tile's rows (SwiGLU: one block, silu(block 0) * block 1,
 * columns n0 + 64 cw ..). Fragment element i of lane l in warp w is D^T row 16 w +
 * l / 4 + 8 ((i / 2) % 2), column 8 (i / 4) + 2 (l % 4) + i % 2: each
 * (i / 4, (i / 2) % 2) pair of elements is an 8 x 8 matrix in the layout
 * stmatrix takes, so stmatrix .trans writes the tile's rows straight into
 * staging_off's layout (a slab of kRows rows a block, 16 bytes of 8 output
 * columns a row). Whole 64-row pieces inside the group go out by TMA, the
 * rest row by row (store_ragged: rows past the group are the next one's). */
template <class C, int kR = C::kRows> /* kR: the rows computed (a fitted tile's wgmma N) */
__device__ __forceinline__ void epilogue_swap(const Args &a, const CUtensorMap *tm_c,
                                              const float (&acc)[C::kAcc], uint8_t *stg,
                                              const Tile &tl, int valid, int cw, int ctid) {
  constexpr int kSlab = C::kRows * 128; /* the staging's slabs hold the widest tile */
  const int warp = ctid >> 5, lane = ctid & 31, m = lane >> 3;
  uint8_t *mine = stg + cw * C::kSwapBlocks * kSlab; /* this warpgroup's slabs */
  if (ctid == 0) bulk_wait_read_all();  /* the last tile's TMA stores have read them */
  named_bar_sync(1 + cw, 128);
  const uint32_t base = smem_u32(mine);
  constexpr int kBlocks = C::kSwiglu ? 1 : C::kSwapBlocks; /* 64-column blocks out */
  float sw[C::kSwiglu ? kR / 2 : 1];
  if constexpr (C::kSwiglu)
#pragma unroll
    for (int i = 0; i < kR / 2; ++i) sw[i] = silu(acc[i]) * acc[kR / 2 + i];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const float *d = C::kSwiglu ? sw : &acc[b * (kR / 2)];
    /* x4: matrices (j, h) = (jj, 0), (jj, 1), (jj + 1, 0), (jj + 1, 1); lane
     * l addresses row l % 8 of matrix l / 8: A row 8 j + l % 8, chunk 2 w + h */
#pragma unroll
    for (int jj = 0; jj + 1 < kR / 8; jj += 2) {
      const uint32_t addr = swap_stmatrix_addr(base + b * kSlab, jj + (m >> 1), lane, warp);
      stmatrix_x4_trans(addr, pack2(d[4 * jj], d[4 * jj + 1], C::kFp16),
                        pack2(d[4 * jj + 2], d[4 * jj + 3], C::kFp16),
                        pack2(d[4 * jj + 4], d[4 * jj + 5], C::kFp16),
                        pack2(d[4 * jj + 6], d[4 * jj + 7], C::kFp16));
    }
    if constexpr ((kR / 8) % 2) { /* the last j: x2 */
      constexpr int j = kR / 8 - 1;
      const uint32_t addr = swap_stmatrix_addr(base + b * kSlab, j, lane, warp);
      stmatrix_x2_trans(addr, pack2(d[4 * j], d[4 * j + 1], C::kFp16),
                        pack2(d[4 * j + 2], d[4 * j + 3], C::kFp16));
    }
  }
  fence_proxy_async_shared();
  named_bar_sync(1 + cw, 128);
  const int whole = valid / 64 * 64; /* rows in whole 64-row pieces */
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int col0 = tl.n * C::kOutN + cw * (kBlocks * 64) + b * 64;
    if (col0 >= a.n) break;
    if (ctid == 0)
      for (int r = 0; r < whole; r += 64) tma_store_2d(tm_c, mine + b * kSlab + r * 128, col0, tl.row0 + r);
    store_ragged(a, mine + b * kSlab + whole * 128, valid - whole, 8, tl.row0 + whole, col0, ctid);
  }
  if (ctid == 0) bulk_commit();
}

/* After both halves of a tile are stored: make them visible, then one
 * thread release-stores the tile's flag. */
template <class C>
__device__ __forceinline__ void publish(const Args &a, const Tile &tl, int ctid) {
  if (ctid == 0) {
    bulk_wait_all();            /* this warpgroup's TMA stores are complete */
    fence_proxy_async_global(); /* ... and ordered before generic accesses */
  }
  named_bar_sync(3, 256);
  if (threadIdx.x == 128) {
    __threadfence_system();
    /* an asm load: written as `p ? *(volatile *)p : a.publish_value`, the
     * compiler selected between the two addresses and read the parameter's
     * param-space offset (0x50) as a global address when p was NULL */
    uint64_t value = a.publish_value;
    if (a.publish_epoch) value = ld_acquire_sys_u64(a.publish_epoch);
    st_release_sys_u64(a.publish_flags + (int64_t)tl.mtile * a.n_tiles + tl.n, value);
  }
}

/* A split part's end (see plan_split): add this warpgroup's accumulators
 * into the slot (ordered: store them into the part's own slot), count the
 * part in; the last part gets the sum back in acc (returns true), leaves
 * the slot and its counter zeroed (ordered: the counter), and runs the
 * epilogue. The fence-barrier-atomic / atomic-barrier-fence pairs are the
 * release and acquire of the partial sums (CUDA's threadFenceReduction
 * pattern). */
template <class C>
__device__ __forceinline__ bool split_fixup(const Args &a, float (&acc)[C::kBN / 2], int slot,
                                            int part, int s, int cw, int ctid) {
  __shared__ int s_last; /* rewritten only after all 256 threads pass the next first barrier */
  constexpr size_t kSlot = (size_t)C::kBN * 128; /* floats: both warpgroups' halves */
  const size_t mine = (size_t)cw * (C::kBN / 2) * 128 + ctid * 4;
  float *wsp = a.ws + (a.ws_ordered ? (size_t)slot * s + part : (size_t)slot) * kSlot + mine;
  if (a.ws_ordered) {
#pragma unroll
    for (int i = 0; i < C::kBN / 2; i += 4)
      __stcg(reinterpret_cast<float4 *>(wsp + i * 128), make_float4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3]));
  } else {
#pragma unroll
    for (int i = 0; i < C::kBN / 2; i += 4)
      red_add_v4_f32(wsp + i * 128, acc[i], acc[i + 1], acc[i + 2], acc[i + 3]);
  }
  __threadfence();
  named_bar_sync(4, 256);
  if (threadIdx.x == 128) s_last = atomicAdd(a.ws_count + slot, 1u) == (unsigned)(s - 1);
  named_bar_sync(4, 256);
  if (!s_last) return false;
  __threadfence();
  if (a.ws_ordered) {
    /* part 0 + part 1 + ... into part 0's slot, then read back like the
     * atomic sum: acc stays dead meanwhile (summing into acc spilled the
     * consumers); each thread rereads only what it wrote. kRun float4s of
     * a slot are loaded at once: one load at a time left the last part
     * waiting out s x 32 L2 round trips (ordered 596 against atomic 635
     * TFLOP/s on Mixtral T=4096 skewed layer1, 14 parts). */
    constexpr int kRun = 8;
    float *sum0 = a.ws + (size_t)slot * s * kSlot + mine;
#pragma unroll 1
    for (int i0 = 0; i0 < C::kBN / 2; i0 += 4 * kRun) {
      float4 sum[kRun];
#pragma unroll
      for (int j = 0; j < kRun; ++j)
        sum[j] = __ldcg(reinterpret_cast<const float4 *>(sum0 + (i0 + 4 * j) * 128));
#pragma unroll 1
      for (int q = 1; q < s; ++q) {
        float4 v[kRun];
#pragma unroll
        for (int j = 0; j < kRun; ++j)
          v[j] = __ldcg(reinterpret_cast<const float4 *>(sum0 + q * kSlot + (i0 + 4 * j) * 128));
#pragma unroll
        for (int j = 0; j < kRun; ++j) {
          sum[j].x += v[j].x;
          sum[j].y += v[j].y;
          sum[j].z += v[j].z;
          sum[j].w += v[j].w;
        }
      }
#pragma unroll
      for (int j = 0; j < kRun; ++j)
        __stcg(reinterpret_cast<float4 *>(sum0 + (i0 + 4 * j) * 128), sum[j]);
    }
    wsp = sum0;
  }
#pragma unroll
  for (int i = 0; i < C::kBN / 2; i += 4) {
    float4 *q = reinterpret_cast<float4 *>(wsp + i * 128);
    const float4 v = __ldcg(q);
    acc[i] = v.x;
    acc[i + 1] = v.y;
    acc[i + 2] = v.z;
    acc[i + 3] = v.w;
    if (!a.ws_ordered) __stcg(q, make_float4(0.f, 0.f, 0.f, 0.f));
  }
  if (threadIdx.x == 128) a.ws_count[slot] = 0;
  return true;
}

/* params.trace: work item w's record (see gemm.h), from the first consumer
 * warpgroup's thread 0. */
__device__ __forceinline__ void trace_item(const Args &a, int w, int t, const Tile &tl, int rows,
                                           unsigned long long t_start, int cw, int ctid) {
  if (a.trace && w < a.trace_items && cw == 0 && ctid == 0) {
    unsigned long long *r = a.trace + 4 * (size_t)w;
    r[0] = t_start;
    r[1] = globaltimer_ns();
    r[2] = (unsigned long long)blockIdx.x << 48 | (unsigned long long)rows << 32 | (unsigned)t;
    r[3] = (unsigned long long)tl.group << 40 | (unsigned long long)tl.mtile << 20 | (unsigned)tl.n;
  }
}

/* A consumer warpgroup's turn through the ring for K blocks [kb0, kb1)
 * (stage, phase: its place in it): each stage waited for, then mma(kb,
 * stage) issued and the previous stage's slot handed back once its wgmma
 * is done; idle (no rows of this warpgroup's in the tile): no wgmma, each
 * slot handed back once all 4 warps are past the wait (so none lags a
 * ring's turn behind). mma(kb, stage, first): first, kb == kb0 (the
 * accumulators' start). t_start: the first stage's arrival (params.trace). */
template <class C, class Mma>
__device__ __forceinline__ void ring_stages(const Args &a, uint64_t *full, uint64_t *empty, int &stage,
                                            uint32_t &phase, int kb0, int kb1, bool idle, int cw,
                                            int ctid, unsigned long long &t_start, Mma &&mma) {
  int prev = -1;
  for (int kb = kb0; kb < kb1; ++kb) {
    mbar_wait(&full[stage], phase);
    if (a.trace && kb == kb0 && cw == 0 && ctid == 0) t_start = globaltimer_ns();
    if (idle) {
      named_bar_sync(1 + cw, 128);
      if (ctid == 0) release_stage<C>(&empty[stage]);
      if (++stage == C::kStages) { stage = 0; phase ^= 1; }
      continue;
    }
    mma(kb, stage, kb == kb0);
    if (kb > kb0) { /* the previous stage's wgmma is done: hand its slot back */
      wgmma_wait<1>();
      if (ctid == 0) release_stage<C>(&empty[prev]);
    }
    prev = stage;
    if (++stage == C::kStages) { stage = 0; phase ^= 1; }
  }
  wgmma_wait<0>();
  if (ctid == 0 && prev >= 0) release_stage<C>(&empty[prev]);
}

/* A fitted tile (Cfg::kFit) of `valid` rows, computed as kN (its width
 * rounded up to 8, at least 128): K blocks [kb0, kb1) through the ring
 * (stage, phase: the consumer's place in it), then the transposed store. */
template <class C, int kN>
__device__ __forceinline__ void fit_tile(const Args &a, const CUtensorMap *tm_c, uint8_t *smem,
                                         uint64_t *full, uint64_t *empty, float (&acc)[C::kAcc],
                                         int &stage, uint32_t &phase, int kb0, int kb1, const Tile &tl,
                                         int valid, int cw, int ctid, unsigned long long &t_start) {
  ring_stages<C>(a, full, empty, stage, phase, kb0, kb1, false, cw, ctid, t_start, [&](int, int st, bool first) {
    mma_stage_swap<C, kN>(acc, smem_u32(smem + C::kOffA) + st * C::kABytes,
                          smem_u32(smem + C::kOffB) + st * C::kBBytes, cw, first);
  });
  epilogue_swap<C, kN>(a, tm_c, acc, smem + C::kOffC, tl, valid, cw, ctid);
}

template <class C>
__device__ __forceinline__ void consume(const Args &a, const CUtensorMap *tm_c, uint8_t *smem,
                                        uint64_t *full, uint64_t *empty, const int *row_off,
                                        const int *mstart, const Split &sp, int count, int cta,
                                        int ncta) {
  const int cw = threadIdx.x / 128 - 1, ctid = threadIdx.x % 128;
  const int k_iters = (a.k + kBK - 1) / kBK;
  uint8_t *stg = smem + C::kOffC + cw * C::kStgSlabs * kSlabBytes;
  /* this warpgroup's rows: 64 (128 in a tall tile) */
  const uint32_t sa0 = smem_u32(smem + C::kOffA) + cw * (C::kRows / 2) * 128;
  const uint32_t sb0 = smem_u32(smem + C::kOffB);
  float acc[C::kAcc];
  const Ring ring = ring_of<C>(smem);
  int stage = 0;
  uint32_t phase = 0;
  for (int i = 0;; ++i) {
    const int w = consumer_next(a, ring, i, cta, ncta, sp.items);
    if (w < 0) break;
    const Work wk = work_item(sp, k_iters, w);
    const Tile tl = sched_tile<C>(a, row_off, mstart, count, wk.t);
    int kb0 = wk.kb0, kb1 = wk.kb1;
    if constexpr (C::kKgroup) { /* K = the group's rows; none: a zero tile */
      kb0 = 0;
      kb1 = kgroup_iters(a, tl);
      if (kb1 == 0)
#pragma unroll
        for (int i2 = 0; i2 < C::kBN / 2; ++i2) acc[i2] = 0.0f;
    }
    if constexpr (C::kFit) { /* the whole tile in the branch of its width: no wgmma behind a branch */
      const int valid = fit_valid(row_off, tl, sched_rows<C>(mstart));
      unsigned long long t_start = 0;
      switch (fit_n(valid)) {
#define COMET_FIT_CASE(n)                                                                          \
  case n:                                                                                          \
    if constexpr (n <= C::kRows)                                                                   \
      fit_tile<C, n>(a, tm_c, smem, full, empty, acc, stage, phase, kb0, kb1, tl, valid, cw, ctid, \
                     t_start);                                                                     \
    break;
        COMET_FIT_CASE(136) COMET_FIT_CASE(144) COMET_FIT_CASE(152) COMET_FIT_CASE(160)
        COMET_FIT_CASE(168) COMET_FIT_CASE(176) COMET_FIT_CASE(184) COMET_FIT_CASE(192)
        COMET_FIT_CASE(200) COMET_FIT_CASE(208)
        default: COMET_FIT_CASE(128) /* fit_n's narrowest */
#undef COMET_FIT_CASE
      }
      trace_item(a, w, wk.t, tl, valid, t_start, cw, ctid);
      consumer_done(a, ring, i, ctid);
      continue;
    }
    int tail = kBK; /* the grouped reduction: valid rows of the last stage */
    if constexpr (C::kKgroup)
      tail = a.group_offset[tl.group + 1] - a.group_offset[tl.group] - (kb1 - 1) * kBK;
    /* This warpgroup's 64 rows all past the tile's group (a ragged last
     * M-tile of at most 64 rows, or a pair's empty tile): no wgmma, so the
     * other warpgroup has the tensor cores to itself; the stages are waited
     * for and handed back as usual (ring_stages' idle), and the epilogue
     * stores none of its rows. Routed expert sizes leave such a tile in about half the groups.
     * (A tall tile's warpgroup: all its 128 rows.) */
    /* A half tile (C::kHalf): an M-tile of at most 64 rows (the ragged end
     * of about half the routed experts) keeps both warpgroups busy, each
     * on 128 of the 256 columns of the same 64 rows, instead of one
     * warpgroup idle for a whole tile time: half the MACs a warpgroup. */
    bool half = false;
    if constexpr (C::kHalf) half = a.half_tiles && tl.row_end - tl.row0 <= 64;
    const int wrow0 = tl.row0 + (half ? 0 : cw * (C::kRows / 2));
    bool idle = false;
    if constexpr (!C::kKgroup && !C::kSwap) idle = wrow0 >= tl.row_end || tl.nostore;
    unsigned long long t_start = 0; /* params.trace */
    ring_stages<C>(a, full, empty, stage, phase, kb0, kb1, idle, cw, ctid, t_start, [&](int kb, int st, bool first) {
      if constexpr (C::kKgroup)
        if (kb == kb1 - 1 && tail < kBK)
          zero_tail<C>(smem + C::kOffA + st * C::kABytes, smem + C::kOffB + st * C::kBBytes, tail);
      if constexpr (C::kSwap) { /* all the tile's rows against this warpgroup's B rows */
        mma_stage_swap<C>(acc, smem_u32(smem + C::kOffA) + st * C::kABytes, sb0 + st * C::kBBytes, cw,
                          first);
      } else if constexpr (C::kTall) {
        mma_stage_tall<C>(acc, sa0 + st * C::kABytes, sb0 + st * C::kBBytes, first);
      } else if constexpr (C::kHalf) {
        if (half) /* warpgroup 0's 64 rows, this warpgroup's B box */
          mma_stage_half<C>(acc, sa0 - cw * 64 * 128 + st * C::kABytes,
                            sb0 + st * C::kBBytes + cw * (C::kBBytes / 2), first);
        else
          mma_stage<C>(acc, sa0 + st * C::kABytes, sb0 + st * C::kBBytes, first);
      } else {
        mma_stage<C>(acc, sa0 + st * C::kABytes, sb0 + st * C::kBBytes, first);
      }
    });
    bool last = true; /* this item ends its tile: the epilogue */
    if constexpr (!C::kHooks && !C::kKgroup && !C::kTall && !C::kSwap) /* never split: no fixup code */
      if (wk.u >= 0) last = split_fixup<C>(a, acc, wk.u / sp.s, wk.u % sp.s, sp.s, cw, ctid);
    if (last && !tl.nostore) {
      if constexpr (C::kSwap) {
        epilogue_swap<C>(a, tm_c, acc, smem + C::kOffC, tl, min(C::kRows, tl.row_end - tl.row0), cw, ctid);
      } else if constexpr (C::kTall) { /* block by block, through the same staging */
        const int n0 = tl.n * C::kOutN;
        epilogue<C>(a, tm_c, *reinterpret_cast<float(*)[64]>(&acc[0]), stg, tl, wrow0, cw, ctid, n0,
                    C::kSlabs);
        epilogue<C>(a, tm_c, *reinterpret_cast<float(*)[64]>(&acc[64]), stg, tl, wrow0 + 64, cw, ctid,
                    n0, C::kSlabs);
      } else if (half) { /* this warpgroup's 128 columns of the 64 rows */
        epilogue<C>(a, tm_c, acc, stg, tl, wrow0, cw, ctid, tl.n * C::kOutN + cw * 128, 2);
      } else {
        epilogue<C>(a, tm_c, acc, stg, tl, wrow0, cw, ctid, tl.n * C::kOutN, C::kSlabs);
      }
      if constexpr (C::kHooks)
        if (a.publish_flags) publish<C>(a, tl, ctid);
    }
    trace_item(a, w, wk.t, tl, min(tl.row_end - tl.row0, C::kRows), t_start, cw, ctid);
    consumer_done(a, ring, i, ctid);
  }
  if (ctid == 0) bulk_wait_all();
}

/* The fitted tile's cap (Cfg::kFit, Args::fit_rows 0) on ncta CTAs: of
 * 128, 136, ..., C::kRows, the one whose tiles take the least time by the
 * estimate ceil(tiles / ncta) waves x (the tiles' mean rows + a tile's
 * fixed cost in rows, kFitTileRows + kFitFillRows / K blocks), a warp a
 * cap; ties go to the wider. Without it an expert's tiles are always the
 * widest that fit (fit_width), and 2 experts of 1024 rows (Mixtral at EP
 * 4, 4096 tokens) made 320 tiles of 208 rows on 132 SMs: 2.4 waves, 0.835x
 * cuBLAS (session 22 run 2); 6 tiles of 176 an expert (2.9 waves) ran
 * 0.955x (run 3). The fixed cost from two points: ~27 rows at K = 14336
 * (session 20's trace: 136 / 176 / 184-row tiles 0.668 / 0.648 / 0.639 us
 * a row) and ~117 at K = 2560 (run 3: Qwen2-57B's 512-row experts at EP 4
 * in 14 waves of 128-row tiles ran 0.94x 11 waves of 176, run 2). Every
 * CTA computes the same from the same offsets. scratch: kThreads / 32
 * floats of smem no one else uses yet. */
constexpr float kFitTileRows = 8.0f, kFitFillRows = 4400.0f;
template <class C>
__device__ __forceinline__ int fit_pick(const Args &a, const int *row_off, int ncta, float *scratch) {
  constexpr int kCaps = (C::kRows - 128) / 8 + 1;
  static_assert(kCaps <= kThreads / 32, "fit_pick: a warp a cap");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp < kCaps) {
    const int cap = 128 + 8 * warp;
    long long tiles = 0, rows = 0;
    for (int g = lane; g < a.groups; g += 32) {
      const int r = max(row_off[g + 1] - row_off[g], 0), m = (r + cap - 1) / cap;
      tiles += m;
      rows += (long long)m * fit_width(r, cap);
    }
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) {
      tiles += __shfl_xor_sync(0xffffffffu, tiles, d);
      rows += __shfl_xor_sync(0xffffffffu, rows, d);
    }
    if (lane == 0) {
      const long long waves = (tiles * a.n_tiles + ncta - 1) / ncta;
      const float fixed = kFitTileRows + kFitFillRows / (float)((a.k + kBK - 1) / kBK);
      scratch[warp] = tiles ? (float)waves * (fixed + (float)rows / (float)tiles) : 0.0f;
    }
  }
  __syncthreads();
  int best = kCaps - 1;
  for (int i = kCaps - 2; i >= 0; --i)
    if (scratch[i] < scratch[best]) best = i;
  return 128 + 8 * best;
}

/* Builds the CTA's group tables (natural schedule): row_off[g] = off[g],
 * mstart[g] = M-tiles of C::kRows rows before group g, or of the fitted
 * tile's cap (kept at mstart[C::kMaxGroups + 1]). smem: the CTA's (the
 * fitted tile's pick uses its staging as scratch). */
template <class C>
__device__ __forceinline__ void build_tables(const Args &a, int *row_off, int *mstart, int ncta,
                                             uint8_t *smem) {
  for (int i = threadIdx.x; i <= a.groups; i += blockDim.x) row_off[i] = a.group_offset[i];
  __syncthreads();
  int rows = C::kRows;
  if constexpr (C::kFit) {
    rows = a.fit_rows ? a.fit_rows : fit_pick<C>(a, row_off, ncta, (float *)(smem + C::kOffC));
    if (threadIdx.x == 0) mstart[C::kMaxGroups + 1] = rows;
  }
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int running = 0;
    for (int base = 0; base < a.groups; base += 32) {
      const int g = base + lane;
      int mt = 0;
      if (g < a.groups) mt = (max(row_off[g + 1] - row_off[g], 0) + rows - 1) / rows;
      if constexpr (C::kPair) /* mstart counts pair tiles */
        if (g < a.groups) mt = pair_count(max(row_off[g + 1] - row_off[g], 0), a.n_tiles);
      int incl = mt;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, d);
        if (lane >= d) incl += v;
      }
      if (g < a.groups) mstart[g] = running + incl - mt;
      running += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) mstart[a.groups] = running;
  }
}

/* The whole CTA body. smem: C::kSmemBytes of dynamic shared memory. cta /
 * ncta: this CTA's index among the GEMM's CTAs and their number (a fused
 * kernel's other CTAs do something else). view: the comm view whose waits
 * bound the row waits (fused layer0), or NULL. */
template <class C>
__device__ __forceinline__ void gemm_engine_run(const Args &a, const CUtensorMap *tm_a,
                                                const CUtensorMap *tm_b,
                                                const CUtensorMap *tm_c, uint8_t *smem_raw,
                                                int cta, int ncta,
                                                const comet_comm_view_t *view = nullptr) {
  uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
  uint64_t *full = (uint64_t *)(smem + C::kOffBar), *empty = full + C::kStages;
  int *row_off = (int *)(smem + C::kOffTab), *mstart = row_off + C::kMaxGroups + 1;
  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      mbar_init(&full[s], C::kGather ? 129 : 1);
      mbar_init(&empty[s], C::kEmptyArrivals); /* each consumer warpgroup (of the pair) */
    }
    if (a.tile_counter) { /* the work ring (ring_of: where this config keeps it) */
      const Ring r = ring_of<C>(smem);
      for (int s = 0; s < kRing; ++s) {
        mbar_init(&r.full[s], 1);
        mbar_init(&r.empty[s], 2);
      }
    }
    fence_mbar_init();
    tma_prefetch_desc(tm_a);
    tma_prefetch_desc(tm_b);
    tma_prefetch_desc(tm_c);
  }
  int total, count = 0;
  bool listed = false;
  if constexpr (C::kHooks) listed = a.mtiles != nullptr;
  if (listed) {
    count = *a.mtile_count;
    total = count * a.n_tiles;
  } else if (!C::kKgroup) {
    build_tables<C>(a, row_off, mstart, ncta, smem);
  }
  /* pairs: the peer's barriers are initialized before any multicast or
   * remote arrival; the cluster is the scheduling unit */
  if constexpr (C::kPair) {
    cluster_sync();
    cta >>= 1;
    ncta >>= 1;
  } else {
    __syncthreads();
  }
  if (C::kKgroup) {
    listed = true; /* whole tiles, no split: every group's tiles, empty groups too */
    total = a.groups * a.kg_mtiles * a.n_tiles;
  } else if (C::kPair) {
    listed = true; /* no split */
    total = pair_tiles(a, mstart);
  } else if (!listed) {
    total = mstart[a.groups] * a.n_tiles;
  }
  /* no split with a tile list (the fused kernels' hooks assume whole tiles)
   * nor in the hook kernels (the host gives them no workspace) */
  Split sp = {total, 1, total};
  if constexpr (!C::kHooks)
    if (!listed) sp = plan_split(a, total, ncta, (a.k + kBK - 1) / kBK);

  if (threadIdx.x < 128) {
    setmaxnreg_dec<kProducerRegs>();
    if constexpr (C::kKgroup) {
      if (threadIdx.x == 0) produce_kgroup<C>(a, tm_a, tm_b, smem, full, empty, total, cta, ncta);
    } else if constexpr (C::kGather)
      produce_gather<C>(a, tm_b, smem, full, empty, (const char **)row_off,
                        ring_of<C>(smem), count, cta, ncta,
                        view); /* the group tables are unused with a list: the row table */
    else if (threadIdx.x == 0)
      produce<C>(a, tm_a, tm_b, smem, full, empty, row_off, mstart, sp, count, cta, ncta, view);
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    consume<C>(a, tm_c, smem, full, empty, row_off, mstart, sp, count, cta, ncta);
  }
  /* pairs: no CTA leaves while its peer may still arrive on its barriers */
  if constexpr (C::kPair) cluster_sync();
}

} /* namespace comet_gemm */

#endif /* COMET_GEMM_ENGINE_CUH */
