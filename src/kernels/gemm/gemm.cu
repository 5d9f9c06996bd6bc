/* SPDX-License-Identifier: Apache-2.0 */
/* gemm.cu — host launcher of the grouped GEMM (gemm.h): checks the params,
 * picks the tile shape, builds the three tensor maps in one helper and
 * launches the persistent kernel (gemm_engine.cuh) of the matching
 * instantiation. Nothing here reads device memory: launches are
 * asynchronous and graph-capturable. */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <mutex>

#include "error.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_engine.cuh"
#include "kernels/gemm/gemm_launch.cuh"

using namespace comet_gemm;

template <class C>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_kernel(const __grid_constant__ Args args, const __grid_constant__ CUtensorMap tm_a,
                const __grid_constant__ CUtensorMap tm_b, const __grid_constant__ CUtensorMap tm_c) {
  extern __shared__ uint8_t smem[];
  gemm_engine_run<C>(args, &tm_a, &tm_b, &tm_c, smem, blockIdx.x, gridDim.x);
}

/* The narrow tile's rate per useful FLOP against the wide one's, as the
 * tile choices (host and device) count it. Measured on one H200 (session 11
 * run 6, `bench --op gemm --ab`): 0.86-0.95 in full waves, but wherever the
 * wave count made 0.9 pick narrow (9 of 56 rows, fewer and shorter tiles)
 * the wide tile ran 1-7% faster all the same: a narrow tile's fixed costs
 * (prologue, epilogue, scheduling) weigh more than its fuller last wave.
 * At 0.8 the narrow tile is picked only where the wide one leaves SMs idle
 * for most of a wave (few tiles: small batches). */
constexpr float kNarrowTileEff = 0.8f;

/* AUTO tile without hooks: the CTAs read the group sizes and pick the shape
 * whose last wave is fullest (the narrow one discounted for its lower
 * per-tile efficiency), the same choice in every CTA, then run that body.
 * The sizes are only known on the device, so the host can't choose well. */
/* Run time of `tiles` tiles on ncta CTAs in tile times (plan_split's estimate). */
__device__ __forceinline__ float waves(const Args &a, int tiles, int ncta, int k_iters) {
  return plan_split(a, tiles, ncta, k_iters).time;
}

/* Tiles of `rows` rows that a's groups take, summed over one warp (every
 * lane gets the sum). */
__device__ __forceinline__ int warp_group_tiles(const Args &a, int rows) {
  int mt = 0;
  for (int g = threadIdx.x & 31; g < a.groups; g += 32)
    mt += (max(a.group_offset[g + 1] - a.group_offset[g], 0) + rows - 1) / rows;
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) mt += __shfl_xor_sync(0xffffffffu, mt, d);
  return mt;
}

__device__ __forceinline__ bool device_pick_wide(const Args &aw, const Args &an, int out_w,
                                                 int out_n) {
  __shared__ int s_wide;
  if (threadIdx.x < 32) {
    const int mt = warp_group_tiles(aw, kBM);
    if (threadIdx.x == 0) { /* useful / (time in tile-waves * CTAs * tile) for each shape */
      const int ncta = gridDim.x, k_iters = (aw.k + kBK - 1) / kBK;
      const int tw = mt * aw.n_tiles, tn = mt * an.n_tiles;
      const float fw = tw / (waves(aw, tw, ncta, k_iters) * ncta) * aw.n / (float)(aw.n_tiles * out_w);
      const float fn = tn / (waves(an, tn, ncta, k_iters) * ncta) * an.n / (float)(an.n_tiles * out_n);
      s_wide = mt == 0 || fw >= kNarrowTileEff * fn;
    }
  }
  __syncthreads();
  return s_wide;
}

template <class CW, class CN>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_kernel_auto(const __grid_constant__ Args aw, const __grid_constant__ Args an,
                     const __grid_constant__ CUtensorMap tm_a,
                     const __grid_constant__ CUtensorMap tm_bw,
                     const __grid_constant__ CUtensorMap tm_bn,
                     const __grid_constant__ CUtensorMap tm_c) {
  extern __shared__ uint8_t smem[];
  if (device_pick_wide(aw, an, CW::kOutN, CN::kOutN))
    gemm_engine_run<CW>(aw, &tm_a, &tm_bw, &tm_c, smem, blockIdx.x, gridDim.x);
  else
    gemm_engine_run<CN>(an, &tm_a, &tm_bn, &tm_c, smem, blockIdx.x, gridDim.x);
}

/* The slim swapped tiles' fixed token rows (swap_rows with tile SWAP: A/B
 * and tests); AUTO plain stores run the fitted tile (Fit, below). */
constexpr int kSlimRows[3] = COMET_GEMM_SLIM_ROWS;

/* ---- tensor maps ---- */

static PFN_cuTensorMapEncodeTiled_v12000 encode_fn(void) {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
  if (!fn) {
    void *p = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
  }
  return fn;
}

/* One tiled, 128B-swizzled tensor map of a row-major [dims...] bf16/fp16
 * tensor (dims innermost first; rank 2 or 3), box = `box`. */
static comet_status_t make_tmap(CUtensorMap *m, const char *what, const void *base, int rank,
                                const uint64_t *dims, const uint32_t *box, bool fp16,
                                bool load) {
  PFN_cuTensorMapEncodeTiled_v12000 fn = encode_fn();
  if (!fn)
    return comet_set_error(COMET_ERR_CUDA,
                           "gemm: cuTensorMapEncodeTiled not found through the driver entry point "
                           "(driver older than CUDA 12.0?)");
  cuuint64_t gdim[3], gstride[2];
  cuuint32_t bdim[3], estride[3] = {1, 1, 1};
  uint64_t stride = 2;
  for (int i = 0; i < rank; ++i) {
    gdim[i] = dims[i];
    bdim[i] = box[i];
    if (i > 0) gstride[i - 1] = stride;
    stride *= dims[i];
  }
  CUresult r = fn(m, fp16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                  (cuuint32_t)rank, (void *)base, gdim, gstride, bdim, estride,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                  load ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B : CU_TENSOR_MAP_L2_PROMOTION_NONE,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return comet_set_error(COMET_ERR_CUDA,
                           "gemm: cuTensorMapEncodeTiled failed (%d) for %s (dims %llu x %llu "
                           "x %llu)",
                           (int)r, what, (unsigned long long)dims[0], (unsigned long long)dims[1],
                           (unsigned long long)(rank > 2 ? dims[2] : 1));
  return COMET_OK;
}

/* ---- split-tail workspace ----
 * One per (device, stream), so launches that may run concurrently never
 * share one: fp32 partial sums for up to 2*sms wide tiles (plan_split
 * splits at most the last two waves) and their counters, zeroed once here and
 * left zeroed by every launch (the last part of a tile clears its slot;
 * zeroed on the stream itself, so no device-wide sync).
 * Allocated on a stream's first launch outside graph capture; a launch that
 * finds none while capturing runs without the split tail. Never freed (a
 * 33 MiB per stream on 132 SMs; kWsMax entries, then no split). */
enum { kWsMax = 64 };
struct Workspace {
  int dev;
  cudaStream_t stream;
  float *ws;
  uint32_t *count; /* two per wide-tile slot (a narrow tile is half a slot) */
  int tiles;       /* wide-tile slots */
  int ordered;     /* a slot per part, summed in part order (the caller's) */
};
constexpr size_t kSlotFloats = (size_t)256 * kBM; /* a wide tile's fp32 sums */
static Workspace g_ws[kWsMax];
static int g_ws_n;
static std::mutex g_ws_mu;

static const Workspace *workspace_for(cudaStream_t stream, int sms) {
  const char *env = getenv("COMET_GEMM_SPLIT"); /* "0": off (A/B timing) */
  if (env && env[0] == '0') return NULL;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return NULL;
  std::lock_guard<std::mutex> lock(g_ws_mu);
  for (int i = 0; i < g_ws_n; ++i)
    if (g_ws[i].dev == dev && g_ws[i].stream == stream) return &g_ws[i];
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (g_ws_n == kWsMax || cudaStreamIsCapturing(stream, &cap) != cudaSuccess ||
      cap != cudaStreamCaptureStatusNone)
    return NULL;
  Workspace w = {dev, stream, NULL, NULL, 2 * sms, 0};
  const size_t ws_bytes = (size_t)w.tiles * kSlotFloats * 4, cnt_bytes = 4 * (size_t)w.tiles * 2;
  if (cudaMalloc(&w.ws, ws_bytes) != cudaSuccess) w.ws = NULL;
  if (w.ws && cudaMalloc(&w.count, cnt_bytes) != cudaSuccess) w.count = NULL;
  if (!w.ws || !w.count || cudaMemsetAsync(w.ws, 0, ws_bytes, stream) != cudaSuccess ||
      cudaMemsetAsync(w.count, 0, cnt_bytes, stream) != cudaSuccess) {
    cudaFree(w.ws);
    cudaFree(w.count);
    cudaGetLastError(); /* no split tail then; not an error */
    return NULL;
  }
  g_ws[g_ws_n] = w;
  return &g_ws[g_ws_n++];
}

/* ---- params ---- */

static bool hooks_on(const comet_gemm_params_t *p) {
  return p->mtiles || p->wait_count || p->publish_flags || p->tile_counter;
}

/* What the tall, swapped and fitted tiles share: a plain grouped launch
 * (no hooks, K-major B, no grouped reduction, no pairs) of at most
 * kPairMaxGroups groups (their smaller tables). */
static bool plain_grouped(const comet_gemm_params_t *p) {
  return !hooks_on(p) && !p->b_mn_major && !p->k_grouped && p->groups <= kPairMaxGroups &&
         p->cluster != COMET_GEMM_CLUSTER_ON;
}

/* The split tail needs whole-tile completion for the hooks (off with them)
 * and adds in a varying order (off when asked to be deterministic). Only a
 * launch that may split looks for (and on a stream's first, allocates) the
 * workspace: the library's calls are deterministic, so they never allocate
 * mid-call (a cudaMalloc there can wait for the whole device, including, in
 * the loopback world, a peer's kernel that waits for this rank). */
static bool split_wanted(const comet_gemm_params_t *p) { return !hooks_on(p) && !p->deterministic; }

/* The workspace a launch splits in: the caller's (ordered sums, any mode),
 * else the stream's when the order may vary, else none. */
static Workspace split_workspace(const comet_gemm_params_t *p, cudaStream_t stream, int sms) {
  Workspace none = {0, NULL, NULL, NULL, 0, 0};
  if (hooks_on(p)) return none;
  if (p->split_ws && p->split_slots > 0) {
    Workspace w = {0, stream, (float *)p->split_ws,
                   (uint32_t *)((char *)p->split_ws + (size_t)p->split_slots * kSlotFloats * 4),
                   p->split_slots, 1};
    return w;
  }
  const Workspace *w = split_wanted(p) ? workspace_for(stream, sms) : NULL;
  return w ? *w : none;
}

extern "C" int comet_gemm_split_slots(int sms) {
  constexpr int kSmsBound = 132;
  return 2 * (sms < kSmsBound ? sms : kSmsBound);
}

extern "C" size_t comet_gemm_split_ws_bytes(int slots) {
  return slots > 0 ? (size_t)slots * (kSlotFloats * 4 + 2 * 4) : 0;
}

static comet_status_t check_kgroup(const comet_gemm_params_t *p) {
  COMET_ARG(p->dtype == COMET_DTYPE_BF16 || p->dtype == COMET_DTYPE_FP16,
            "gemm: dtype %d unsupported (bf16 or fp16)", (int)p->dtype);
  COMET_ARG(p->groups >= 1, "gemm: groups = %d, must be >= 1", p->groups);
  COMET_ARG(p->m >= 8 && p->m % 8 == 0, "gemm: m = %d must be a positive multiple of 8", p->m);
  COMET_ARG(p->n >= 8 && p->n % 8 == 0, "gemm: n = %d must be a positive multiple of 8", p->n);
  COMET_ARG(p->epilogue == COMET_GEMM_EPI_STORE && !p->row_scale && !hooks_on(p) && !p->b_mn_major,
            "gemm: the grouped reduction takes the STORE epilogue, no row_scale, no hooks");
  COMET_ARG(p->a && ((uintptr_t)p->a & 15) == 0, "gemm: a is NULL or not 16-byte aligned");
  COMET_ARG(p->b && ((uintptr_t)p->b & 15) == 0, "gemm: b is NULL or not 16-byte aligned");
  COMET_ARG(p->c && ((uintptr_t)p->c & 15) == 0, "gemm: c is NULL or not 16-byte aligned");
  COMET_ARG(p->group_offset, "gemm: group_offset is NULL");
  COMET_ARG(p->max_rows >= 0 && p->max_rows < ((int64_t)1 << 31), "gemm: max_rows = %lld out of range",
            (long long)p->max_rows);
  COMET_ARG((int64_t)p->groups * p->m < ((int64_t)1 << 31), "gemm: groups * m overflows");
  return COMET_OK;
}

static comet_status_t check_params(const comet_gemm_params_t *p) {
  COMET_ARG(p, "gemm: params is NULL");
  if (p->k_grouped) return check_kgroup(p);
  COMET_ARG(p->dtype == COMET_DTYPE_BF16 || p->dtype == COMET_DTYPE_FP16,
            "gemm: dtype %d unsupported (bf16 or fp16)", (int)p->dtype);
  COMET_ARG(p->groups >= 1, "gemm: groups = %d, must be >= 1", p->groups);
  COMET_ARG(p->mtiles || p->groups <= COMET_GEMM_MAX_GROUPS,
            "gemm: groups = %d over %d (pass an mtiles list for more)", p->groups,
            COMET_GEMM_MAX_GROUPS);
  COMET_ARG(p->n >= 8 && p->n % 8 == 0, "gemm: n = %d must be a positive multiple of 8", p->n);
  COMET_ARG(p->k >= 8 && p->k % 8 == 0, "gemm: k = %d must be a positive multiple of 8", p->k);
  COMET_ARG(p->band >= 0 && p->band <= 1024, "gemm: band = %d must be 0 (the default) or 1..1024", p->band);
  COMET_ARG(p->max_rows >= 0 && p->max_rows < ((int64_t)1 << 31), "gemm: max_rows = %lld out of range",
            (long long)p->max_rows);
  COMET_ARG(p->epilogue == COMET_GEMM_EPI_STORE || p->epilogue == COMET_GEMM_EPI_SWIGLU ||
                p->epilogue == COMET_GEMM_EPI_GELU,
            "gemm: epilogue %d unknown", (int)p->epilogue);
  COMET_ARG(p->epilogue != COMET_GEMM_EPI_GELU || !p->row_scale,
            "gemm: the GELU epilogue takes no row_scale");
  COMET_ARG(p->tile >= COMET_GEMM_TILE_AUTO && p->tile <= COMET_GEMM_TILE_SWAP,
            "gemm: tile %d unknown", (int)p->tile);
  COMET_ARG(p->tile != COMET_GEMM_TILE_SWAP ||
                (p->epilogue != COMET_GEMM_EPI_GELU && !p->row_scale && plain_grouped(p)),
            "gemm: the swapped tile takes the STORE or SWIGLU epilogue, no row_scale, no hooks, no MN-major "
            "B, no grouped reduction, no pairs and at most %d groups (groups = %d)",
            kPairMaxGroups, p->groups);
  const bool fit_cap = p->tile == COMET_GEMM_TILE_AUTO && p->swap_rows >= 128 &&
                       p->swap_rows <= kFitRows && p->swap_rows % 8 == 0;
  COMET_ARG(p->swap_rows == 0 || (p->swap_rows == -1 && p->tile == COMET_GEMM_TILE_AUTO) || fit_cap ||
                (p->tile == COMET_GEMM_TILE_SWAP && p->epilogue == COMET_GEMM_EPI_STORE &&
                 (p->swap_rows == kSlimRows[0] || p->swap_rows == kSlimRows[1] ||
                  p->swap_rows == kSlimRows[2])),
            "gemm: swap_rows = %d: 0; -1, or a multiple of 8 in 128..%d, with tile AUTO; or 136, 176 or "
            "184 with the swapped tile and the STORE epilogue",
            p->swap_rows, kFitRows);
  COMET_ARG(!fit_cap || (p->epilogue == COMET_GEMM_EPI_STORE && !p->row_scale && plain_grouped(p)),
            "gemm: swap_rows = %d with tile AUTO (the fitted tile) takes the STORE epilogue, no row_scale, "
            "no hooks, no MN-major B, no grouped reduction, no pairs and at most %d groups (groups = %d)",
            p->swap_rows, kPairMaxGroups, p->groups);
  COMET_ARG(p->tile != COMET_GEMM_TILE_TALL || plain_grouped(p),
            "gemm: the tall tile takes no hooks, no MN-major B, no grouped reduction, no pairs and "
            "at most %d groups (groups = %d)",
            kPairMaxGroups, p->groups);
  COMET_ARG(p->num_ctas >= 0, "gemm: num_ctas = %d is negative", p->num_ctas);
  if (p->max_rows == 0) return COMET_OK;
  COMET_ARG(p->a && ((uintptr_t)p->a & 15) == 0, "gemm: a is NULL or not 16-byte aligned");
  COMET_ARG(p->b && ((uintptr_t)p->b & 15) == 0, "gemm: b is NULL or not 16-byte aligned");
  COMET_ARG(p->c && ((uintptr_t)p->c & 15) == 0, "gemm: c is NULL or not 16-byte aligned");
  COMET_ARG(p->group_offset, "gemm: group_offset is NULL");
  COMET_ARG(!p->mtiles == !p->mtile_count, "gemm: mtiles and mtile_count go together");
  COMET_ARG(p->order == COMET_GEMM_ORDER_LAYER0 || p->order == COMET_GEMM_ORDER_LAYER1,
            "gemm: order %d unknown", (int)p->order);
  COMET_ARG(!p->wait_count || p->mtiles, "gemm: wait_count needs an mtiles list");
  COMET_ARG(!p->tile_counter || p->mtiles, "gemm: tile_counter needs an mtiles list");
  COMET_ARG(p->b_mn_major == 0 || p->b_mn_major == 1, "gemm: b_mn_major = %d is not 0 or 1",
            p->b_mn_major);
  COMET_ARG(!p->b_mn_major || (p->epilogue == COMET_GEMM_EPI_STORE && !hooks_on(p)),
            "gemm: an MN-major B takes the STORE epilogue and no hooks");
  COMET_ARG(p->stages == 0 || p->stages == 3 || p->stages == 4,
            "gemm: stages = %d is not 0 (default), 3 or 4", p->stages);
  COMET_ARG(p->cluster >= COMET_GEMM_CLUSTER_AUTO && p->cluster <= COMET_GEMM_CLUSTER_ON,
            "gemm: cluster %d unknown", (int)p->cluster);
  COMET_ARG(p->cluster != COMET_GEMM_CLUSTER_ON || (!hooks_on(p) && p->tile != COMET_GEMM_TILE_NARROW),
            "gemm: cluster pairs take the wide tile and no hooks");
  return COMET_OK;
}

static comet_status_t sm_count(int *sms) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "gemm: reading the SM count: %s", cudaGetErrorString(e));
  return COMET_OK;
}

/* Wide (128 x 256) unless the narrow tile fills the SMs' waves clearly
 * better: each shape's useful fraction of its last wave, the narrow one
 * discounted for its lower per-tile efficiency. */
static comet_gemm_tile_t choose_tile(const comet_gemm_params_t *p, int sms) {
  if (p->tile != COMET_GEMM_TILE_AUTO) return p->tile;
  const bool sw = p->epilogue == COMET_GEMM_EPI_SWIGLU;
  const double m_tiles = ceil((double)p->max_rows / 128.0) + (p->mtiles ? 0 : 0.5 * p->groups);
  double best = -1;
  comet_gemm_tile_t pick = COMET_GEMM_TILE_WIDE;
  for (int s = 0; s < 2; ++s) {
    const int out_n = (s == 0 ? 256 : 128) / (sw ? 2 : 1);
    const double n_tiles = ceil((double)p->n / out_n);
    const double tiles = m_tiles * n_tiles, waves = ceil(tiles / sms);
    const double useful = m_tiles * 128.0 * p->n / (waves * sms * 128.0 * out_n);
    const double score = useful * (s == 0 ? 1.0 : kNarrowTileEff);
    /* narrow must win by more than rounding: a tie goes to the wide tile
     * (fewer tiles, each more efficient). Mixtral's layer1 at 2048 tokens,
     * W = 1, scored 0.8727...27 wide against 0.8727...28 narrow and ran
     * narrow (session 10: its layer1 0.85x the baseline's, 0.94x at 8192) */
    if (score > best + 1e-9) { best = score; pick = s == 0 ? COMET_GEMM_TILE_WIDE : COMET_GEMM_TILE_NARROW; }
  }
  return pick;
}

extern "C" comet_status_t comet_gemm_tile_shape(const comet_gemm_params_t *p, int *tile_m,
                                                int *tile_n) {
  COMET_CHECK(check_params(p));
  int sms = 0;
  COMET_CHECK(sm_count(&sms));
  if (p->num_ctas > 0 && p->num_ctas < sms) sms = p->num_ctas; /* the caller's SM budget */
  const bool swap = p->tile == COMET_GEMM_TILE_SWAP;
  const int wide = swap ? (p->swap_rows ? 128 : 256) : choose_tile(p, sms) == COMET_GEMM_TILE_WIDE ? 256 : 128;
  if (tile_m)
    *tile_m = p->tile == COMET_GEMM_TILE_TALL ? 2 * kBM : swap ? (p->swap_rows ? p->swap_rows : kSwapRows) : kBM;
  if (tile_n) *tile_n = p->epilogue == COMET_GEMM_EPI_SWIGLU ? wide / 2 : wide;
  return COMET_OK;
}

/* An environment switch for A/B timing, read once ("1": on). */
static bool env_on(const char *name) {
  const char *e = getenv(name);
  return e && e[0] == '1';
}

/* Pairs (2-CTA clusters, gemm_engine.cuh) for this launch? Only when
 * asked (cluster ON, or COMET_GEMM_PAIRS=1 for AUTO launches: A/B timing).
 * On one H200 (session 23 run 7, timed in turns against single CTAs): the
 * matrix's SwiGLU rows (equal or Zipf-skewed sizes) 1.039x geomean,
 * 0.94-1.19x (the small-expert presets gain most); the W = 1 layer0 GEMMs
 * on routed sizes 0.972x (0.94-1.04x); the plain-store rows 0.913x
 * (against the fitted tile and the split tail, which pairs lack). The host
 * cannot tell those launches apart (group sizes are on the device), so
 * AUTO stays single. */
static bool pair_wanted(const comet_gemm_params_t *p, int sms) {
  if (p->k_grouped || hooks_on(p) || sms < 2 || p->cluster == COMET_GEMM_CLUSTER_OFF ||
      p->groups > kPairMaxGroups) /* the pairs' smaller group tables */
    return false;
  if (p->cluster == COMET_GEMM_CLUSTER_ON) return true;
  static const bool asked = env_on("COMET_GEMM_PAIRS");
  return asked && p->max_rows >= 16 * kBM && choose_tile(p, sms) == COMET_GEMM_TILE_WIDE;
}

/* The tensor maps of a launch: A [max_rows, K] (box 64 x 128), B
 * [G, NB, K] (box 64 x kBN/2 x 1: a stage is two boxes), C [max_rows, N]
 * (box 64 x 64, the staging slab). */
template <class C>
static comet_status_t make_tmap_b(CUtensorMap *m, const comet_gemm_params_t *p) {
  if (C::kBmn) { /* [G, K, N]: boxes of 64 columns x 64 k-rows */
    const uint64_t db[3] = {(uint64_t)p->n, (uint64_t)p->k, (uint64_t)p->groups};
    const uint32_t bb[3] = {64, kBK, 1};
    return make_tmap(m, "b (MN-major)", p->b, 3, db, bb, p->dtype == COMET_DTYPE_FP16, true);
  }
  const uint64_t nb = C::kSwiglu ? 2 * (uint64_t)p->n : (uint64_t)p->n;
  const uint64_t db[3] = {(uint64_t)p->k, nb, (uint64_t)p->groups};
  const uint32_t bb[3] = {kBK, (uint32_t)C::kBN / 2, 1};
  return make_tmap(m, "b", p->b, 3, db, bb, p->dtype == COMET_DTYPE_FP16, true);
}

/* A [max_rows, K] in boxes of 64 columns x a_rows rows (a tile's rows). */
static comet_status_t make_tmap_a(CUtensorMap *ma, const comet_gemm_params_t *p, int a_rows) {
  const uint64_t da[2] = {(uint64_t)p->k, (uint64_t)p->max_rows};
  const uint32_t ba[2] = {kBK, (uint32_t)a_rows};
  return make_tmap(ma, "a", p->a, 2, da, ba, p->dtype == COMET_DTYPE_FP16, true);
}

static comet_status_t make_tmaps_ac(CUtensorMap *ma, CUtensorMap *mc, const comet_gemm_params_t *p,
                                    int a_rows = kBM /* A's box: a tile's rows (the tall tile loads two) */) {
  const bool fp16 = p->dtype == COMET_DTYPE_FP16;
  COMET_CHECK(make_tmap_a(ma, p, a_rows));
  const uint64_t dc[2] = {(uint64_t)p->n, (uint64_t)p->max_rows};
  const uint32_t bc[2] = {64, 64};
  COMET_CHECK(make_tmap(mc, "c", p->c, 2, dc, bc, fp16, false));
  return COMET_OK;
}

template <class C>
static Args make_args(const comet_gemm_params_t *p, const Workspace &w) {
  Args a = {};
  a.group_offset = p->group_offset;
  a.row_scale = p->row_scale;
  a.mtiles = p->mtiles;
  a.mtile_count = p->mtile_count;
  a.wait_count = p->wait_count;
  a.publish_flags = p->publish_flags;
  a.c = p->c;
  a.groups = p->groups;
  a.n = p->n;
  a.k = p->k;
  a.n_tiles = (p->n + C::kOutN - 1) / C::kOutN;
  a.order = (int)p->order;
  a.band = p->band > 0 ? p->band : kBand;
  a.publish_value = p->publish_value;
  a.tile_counter = p->tile_counter;
  a.ws = w.ws;
  a.ws_count = w.count;
  a.ws_tiles = w.ws ? w.tiles * 256 / C::kBN : 0;
  a.ws_ordered = w.ordered;
  a.half_tiles = p->half_tiles;
  a.gelu = p->epilogue == COMET_GEMM_EPI_GELU;
  a.trace = p->trace;
  a.trace_items = p->trace ? p->trace_items : 0;
  a.split_max = w.ws && !C::kTall && !C::kSwap ? 16 : 0; /* the tall and swapped tiles never split */
  a.fit_rows = C::kFit && p->swap_rows > 0 ? (p->swap_rows < C::kRows ? p->swap_rows : C::kRows)
                                           : 0; /* the cap; 0: the device's pick (fit_pick) */
  /* a plain launch's dynamic tiles: their two counters are the workspace's
   * last two (one slot fewer for the split tail) */
  if (p->dynamic_tiles && w.ws && w.tiles > 1 && !hooks_on(p) && !C::kKgroup && !C::kPair) {
    a.tile_counter = w.count + 2 * (w.tiles - 1);
    a.tile_done = a.tile_counter + 1;
    a.ws_tiles = (w.tiles - 1) * 256 / C::kBN;
  }
  return a;
}

/* One CTA per SM, fewer if asked or if there can't be that many tiles
 * (an upper bound: group sizes are on the device) nor split parts. */
static unsigned grid_size(const comet_gemm_params_t *p, int sms, int n_tiles, const Args &a) {
  const int64_t m_bound = (p->max_rows + kBM - 1) / kBM + p->groups;
  int64_t grid = (int64_t)sms;
  if (p->num_ctas > 0 && p->num_ctas < grid) grid = p->num_ctas;
  /* split parts only where K is long enough to split (plan_split) */
  const bool may_split = a.split_max > 1 && (p->k + kBK - 1) / kBK >= 2 * kMinSplitIters;
  const int64_t parts = m_bound * n_tiles * (may_split ? a.split_max : 1);
  if (parts < grid) grid = parts;
  return (unsigned)grid;
}

static comet_status_t launch_error(cudaError_t e, int out_n, int smem) {
  return comet_set_error(COMET_ERR_CUDA, "gemm: launch (tile %dx%d, %d B smem): %s", kBM, out_n,
                         smem, cudaGetErrorString(e));
}

/* Sets a kernel's dynamic smem, launches it on kThreads threads a CTA,
 * and returns the first error. */
template <class... P, class... T>
static cudaError_t start(void (*kernel)(P...), unsigned grid, int smem, cudaStream_t stream,
                         const T &...args) {
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e == cudaSuccess) {
    kernel<<<grid, kThreads, smem, stream>>>(args...);
    e = cudaGetLastError();
  }
  return e;
}

template <class C>
static comet_status_t launch(const comet_gemm_params_t *p, int sms, cudaStream_t stream) {
  CUtensorMap tm_a, tm_b, tm_c;
  COMET_CHECK(make_tmaps_ac(&tm_a, &tm_c, p, C::kSwap ? C::kRows : kBM));
  COMET_CHECK(make_tmap_b<C>(&tm_b, p));
  const Args a = make_args<C>(p, split_workspace(p, stream, sms));
  const cudaError_t e =
      start(gemm_kernel<C>, grid_size(p, sms, a.n_tiles, a), C::kSmemBytes, stream, a, tm_a, tm_b, tm_c);
  return e == cudaSuccess ? COMET_OK : launch_error(e, C::kOutN, C::kSmemBytes);
}

template <class CW, class CN>
static comet_status_t launch_auto(const comet_gemm_params_t *p, int sms, cudaStream_t stream) {
  CUtensorMap tm_a, tm_bw, tm_bn, tm_c;
  COMET_CHECK(make_tmaps_ac(&tm_a, &tm_c, p));
  COMET_CHECK(make_tmap_b<CW>(&tm_bw, p));
  COMET_CHECK(make_tmap_b<CN>(&tm_bn, p));
  const Workspace w = split_workspace(p, stream, sms);
  const Args aw = make_args<CW>(p, w), an = make_args<CN>(p, w);
  const int smem = CW::kSmemBytes > CN::kSmemBytes ? CW::kSmemBytes : CN::kSmemBytes;
  const cudaError_t e = start(gemm_kernel_auto<CW, CN>, grid_size(p, sms, an.n_tiles, an), smem, stream,
                              aw, an, tm_a, tm_bw, tm_bn, tm_c);
  return e == cudaSuccess ? COMET_OK : launch_error(e, 0, smem);
}

/* Clusters of 2 that can be resident at once (cached per device: a query
 * per launch would cost more than a small GEMM). */
template <class C>
static int active_pairs(cudaLaunchConfig_t *cfg) {
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 0;
  int n = cache[dev].load();
  if (n == 0 && cudaOccupancyMaxActiveClusters(&n, gemm_kernel<C>, cfg) == cudaSuccess && n > 0)
    cache[dev].store(n);
  return n;
}

/* The launch configuration of the pairs kernel C (clusters of 2 CTAs, its
 * shared memory allowed) with `pairs` clusters on stream. */
template <class C>
static cudaError_t pair_config(cudaLaunchConfig_t *cfg, cudaLaunchAttribute *attr, int pairs,
                               cudaStream_t stream) {
  memset(attr, 0, sizeof *attr);
  attr->id = cudaLaunchAttributeClusterDimension;
  attr->val.clusterDim.x = 2;
  attr->val.clusterDim.y = attr->val.clusterDim.z = 1;
  memset(cfg, 0, sizeof *cfg);
  cfg->gridDim = dim3((unsigned)(2 * pairs));
  cfg->blockDim = dim3(kThreads);
  cfg->dynamicSmemBytes = C::kSmemBytes;
  cfg->stream = stream;
  cfg->attrs = attr;
  cfg->numAttrs = 1;
  return cudaFuncSetAttribute(gemm_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              C::kSmemBytes);
}

/* A pairs launch: clusters of 2 CTAs, as many as fit at once within the
 * SM budget and the tiles (an upper bound: group sizes are on the device). */
template <class C>
static comet_status_t launch_pair(const comet_gemm_params_t *p, int sms, cudaStream_t stream) {
  CUtensorMap tm_a, tm_b, tm_c;
  COMET_CHECK(make_tmaps_ac(&tm_a, &tm_c, p, 64)); /* A in halves: an N-pair multicasts one each */
  COMET_CHECK(make_tmap_b<C>(&tm_b, p));
  const Args a = make_args<C>(p, Workspace{});
  cudaLaunchAttribute attr;
  cudaLaunchConfig_t cfg;
  cudaError_t e = pair_config<C>(&cfg, &attr, sms / 2, stream);
  if (e == cudaSuccess) {
    int64_t pairs = sms / 2;
    const int fit = active_pairs<C>(&cfg);
    if (fit > 0 && fit < pairs) pairs = fit;
    /* pair tiles: ceil(M-tiles / 2) x N-tiles a group at most, M-tiles <= max_rows / kBM + 1 a group */
    const int64_t bound = ((p->max_rows + kBM - 1) / kBM + 2 * (int64_t)p->groups) / 2 * a.n_tiles;
    if (bound < pairs) pairs = bound;
    cfg.gridDim = dim3((unsigned)(2 * pairs));
    e = cudaLaunchKernelEx(&cfg, gemm_kernel<C>, a, tm_a, tm_b, tm_c);
  }
  return e == cudaSuccess ? COMET_OK : launch_error(e, C::kOutN, C::kSmemBytes);
}

/* dtype x hooks x shape -> one instantiation. AUTO without hooks: the
 * kernel holding both shapes decides on the device (device_pick_wide). */
/* The grouped reduction: A [max_rows, m] and B [max_rows, n] in boxes of
 * 64 columns x 64 rows (a map needs a row at least: TMA reads past
 * max_rows are zeros, never memory), C [groups * m, n]. */
template <class C>
static comet_status_t launch_kgroup(const comet_gemm_params_t *p, int sms, cudaStream_t stream) {
  CUtensorMap tm_a, tm_b, tm_c;
  const bool fp16 = p->dtype == COMET_DTYPE_FP16;
  const uint64_t rows = p->max_rows > 0 ? (uint64_t)p->max_rows : 1;
  const uint64_t da[2] = {(uint64_t)p->m, rows}, db[2] = {(uint64_t)p->n, rows};
  const uint64_t dc[2] = {(uint64_t)p->n, (uint64_t)p->groups * p->m};
  const uint32_t box[2] = {64, 64};
  COMET_CHECK(make_tmap(&tm_a, "a", p->a, 2, da, box, fp16, true));
  COMET_CHECK(make_tmap(&tm_b, "b", p->b, 2, db, box, fp16, true));
  COMET_CHECK(make_tmap(&tm_c, "c", p->c, 2, dc, box, fp16, false));
  Args a = {};
  a.group_offset = p->group_offset;
  a.c = p->c;
  a.groups = p->groups;
  a.n = p->n;
  a.k = 64; /* unused: K is each group's rows */
  a.n_tiles = (p->n + C::kOutN - 1) / C::kOutN;
  a.kg_a = (const char *)p->a;
  a.kg_b = (const char *)p->b;
  a.kg_m = p->m;
  a.kg_mtiles = (p->m + kBM - 1) / kBM;
  const int64_t tiles = (int64_t)p->groups * a.kg_mtiles * a.n_tiles;
  int64_t grid = sms;
  if (p->num_ctas > 0 && p->num_ctas < grid) grid = p->num_ctas;
  if (tiles < grid) grid = tiles;
  const cudaError_t e = start(gemm_kernel<C>, (unsigned)grid, C::kSmemBytes, stream, a, tm_a, tm_b, tm_c);
  return e == cudaSuccess ? COMET_OK : launch_error(e, C::kOutN, C::kSmemBytes);
}

template <bool kFp16>
static comet_status_t launch_mn(const comet_gemm_params_t *p, int sms, cudaStream_t s) {
  typedef Cfg<256, false, false, kFp16, false, true> Wide;
  typedef Cfg<128, false, false, kFp16, false, true> Narrow;
  if (pair_wanted(p, sms)) return launch_pair<Cfg<256, false, false, kFp16, false, true, false, true>>(p, sms, s);
  if (p->tile == COMET_GEMM_TILE_WIDE) return launch<Wide>(p, sms, s);
  if (p->tile == COMET_GEMM_TILE_NARROW) return launch<Narrow>(p, sms, s);
  return launch_auto<Wide, Narrow>(p, sms, s);
}

/* The slim swapped tile of kRows rows x 128 B rows (plain store). */
template <bool kFp16, int kRows>
using Slim = Cfg<128, false, false, kFp16, false, false, false, false, false, false, kRows>;

/* AUTO plain stores of at most 128 groups (no row_scale): the slim tile
 * with a token width a group (Cfg::kFit, fit_width): an expert of 512 +-
 * 20 rows in 3 tiles of 168-184 rows, one of 256 in 2 of 128, where fixed
 * widths pad to 552 or 272 (session 20 runs 1-4: the slim tiles of fixed
 * width ran 1.00-1.28x the wide / narrow choice before them on the 10
 * routed layer1 rows, the best width a row differing; session 21 run 1:
 * the fitted tile of <= 184 rows 0.93-1.04x the best fixed width of each
 * row, 1.006x geomean over the 10; a fixed width 0.95-0.98x geomean). Its
 * producer loads kRows rows a stage whatever the width: loading only the
 * rows computed, as boxes of 128 + 32 + 16 + 8 rows, ran 16-25% slower on
 * every row (session 21 run 3). Two bodies: tiles of <= 208 rows (4
 * stages: experts of 553-624 rows in 3 tiles, not 4), the default, and of
 * <= 136 (5 stages, as the fixed 136 tile that beat the 4-stage fitted one
 * by 2.5-6.5% on Qwen2-57B / Phi-3.5 at 2048 tokens, session 21 run 4),
 * for swap_rows <= 136. swap_rows = -1 keeps the wide / narrow choice
 * (A/B). */
template <bool kFp16, int kRows>
using Fit = Cfg<128, false, false, kFp16, false, false, false, false, false, false, kRows, true>;

/* The fitted tile, its widest tile swap_rows, or by default the 208-row
 * body, but the 136-row one where the groups average 209-272 rows (of
 * max_rows: a routing's exact rows at EP 1, a bound past it): two tiles of
 * <= 136 rows either way, and the 5-stage ring ran 5.6% / 7.1% faster on
 * Phi-3.5 / Qwen2-57B layer1 at 2048 tokens (256 rows a group), where it
 * lost 3.5% at 136 rows (Qwen2-MoE) and 20% at 192 (DeepSeek-V2-Lite: one
 * tile of 192 against two of 128; session 22 run 1). */
template <bool kFp16>
static comet_status_t launch_fit(const comet_gemm_params_t *p, int sms, cudaStream_t s) {
  const int64_t rows = p->max_rows, g = p->groups;
  const bool narrow = p->swap_rows > 0 ? p->swap_rows <= kFitNarrowRows
                                       : rows > (int64_t)kFitRows * g && rows <= 2LL * kFitNarrowRows * g;
  if (narrow) return launch<Fit<kFp16, kFitNarrowRows>>(p, sms, s);
  return launch<Fit<kFp16, kFitRows>>(p, sms, s);
}

template <bool kSwiglu, bool kFp16>
static comet_status_t launch_shape(const comet_gemm_params_t *p, int sms, cudaStream_t s) {
  typedef Cfg<256, kSwiglu, false, kFp16> Wide;
  typedef Cfg<128, kSwiglu, false, kFp16> Narrow;
  if constexpr (!kSwiglu) /* a cap on the fitted tile (check_params: its launches only) */
    if (p->tile == COMET_GEMM_TILE_AUTO && p->swap_rows > 0) return launch_fit<kFp16>(p, sms, s);
  if (pair_wanted(p, sms)) return launch_pair<Cfg<256, kSwiglu, false, kFp16, false, false, false, true>>(p, sms, s);
  if (p->tile == COMET_GEMM_TILE_TALL)
    return launch<Cfg<128, kSwiglu, false, kFp16, false, false, false, false, false, true>>(p, sms, s);
  if (p->tile == COMET_GEMM_TILE_SWAP) {
    if constexpr (!kSwiglu) { /* the slim ones (check_params: STORE only) */
      if (p->swap_rows == kSlimRows[0]) return launch<Slim<kFp16, kSlimRows[0]>>(p, sms, s);
      if (p->swap_rows == kSlimRows[1]) return launch<Slim<kFp16, kSlimRows[1]>>(p, sms, s);
      if (p->swap_rows == kSlimRows[2]) return launch<Slim<kFp16, kSlimRows[2]>>(p, sms, s);
    }
    return launch<Cfg<256, kSwiglu, false, kFp16, false, false, false, false, false, false, kSwapRows>>(p, sms, s);
  }
  if (hooks_on(p))
    return choose_tile(p, sms) == COMET_GEMM_TILE_WIDE
               ? launch<Cfg<256, kSwiglu, true, kFp16>>(p, sms, s)
               : launch<Cfg<128, kSwiglu, true, kFp16>>(p, sms, s);
  if (p->stages != 3 && p->groups <= kPairMaxGroups && p->tile != COMET_GEMM_TILE_NARROW) {
    typedef Cfg<256, kSwiglu, false, kFp16, false, false, false, false, true> Deep;
    if (p->tile == COMET_GEMM_TILE_WIDE) return launch<Deep>(p, sms, s);
    if constexpr (!kSwiglu) /* the slim swapped tiles take the plain store only */
      if (p->epilogue == COMET_GEMM_EPI_STORE && !p->row_scale && p->swap_rows == 0)
        return launch_fit<kFp16>(p, sms, s);
    return launch_auto<Deep, Narrow>(p, sms, s);
  }
  if (p->tile == COMET_GEMM_TILE_WIDE) return launch<Wide>(p, sms, s);
  if (p->tile == COMET_GEMM_TILE_NARROW) return launch<Narrow>(p, sms, s);
  return launch_auto<Wide, Narrow>(p, sms, s);
}

/* ---- for the fused kernels (gemm_launch.cuh) ---- */

template <class C>
static comet_status_t prepare_cfg(const comet_gemm_params_t *p, Prepared *o) {
  COMET_CHECK(make_tmaps_ac(&o->tm_a, &o->tm_c, p));
  COMET_CHECK(make_tmap_b<C>(&o->tm_b, p));
  o->args = make_args<C>(p, Workspace{});
  o->smem = C::kSmemBytes;
  return COMET_OK;
}

comet_status_t comet_gemm::prepare(const comet_gemm_params_t *p, Prepared *o) {
  COMET_CHECK(check_params(p));
  COMET_ARG(hooks_on(p), "gemm: a fused kernel's GEMM needs its hooks (an mtiles list)");
  COMET_ARG(p->max_rows > 0, "gemm: a fused kernel's GEMM needs max_rows > 0");
  COMET_ARG(p->num_ctas > 0, "gemm: a fused kernel's GEMM needs num_ctas (its CTA count)");
  o->wide = choose_tile(p, p->num_ctas) == COMET_GEMM_TILE_WIDE;
  o->deep = o->wide && p->stages == 4 && p->groups <= kPairMaxGroups;
  const bool sw = p->epilogue == COMET_GEMM_EPI_SWIGLU, fp16 = p->dtype == COMET_DTYPE_FP16;
  if (o->deep) {
    typedef Cfg<256, true, true, true, false, false, false, false, true> DeepSwF16;
    typedef Cfg<256, true, true, false, false, false, false, false, true> DeepSwBf16;
    typedef Cfg<256, false, true, true, false, false, false, false, true> DeepF16;
    typedef Cfg<256, false, true, false, false, false, false, false, true> DeepBf16;
    if (sw) return fp16 ? prepare_cfg<DeepSwF16>(p, o) : prepare_cfg<DeepSwBf16>(p, o);
    return fp16 ? prepare_cfg<DeepF16>(p, o) : prepare_cfg<DeepBf16>(p, o);
  }
  if (o->wide) {
    if (sw) return fp16 ? prepare_cfg<Cfg<256, true, true, true>>(p, o) : prepare_cfg<Cfg<256, true, true, false>>(p, o);
    return fp16 ? prepare_cfg<Cfg<256, false, true, true>>(p, o) : prepare_cfg<Cfg<256, false, true, false>>(p, o);
  }
  if (sw) return fp16 ? prepare_cfg<Cfg<128, true, true, true>>(p, o) : prepare_cfg<Cfg<128, true, true, false>>(p, o);
  return fp16 ? prepare_cfg<Cfg<128, false, true, true>>(p, o) : prepare_cfg<Cfg<128, false, true, false>>(p, o);
}

extern "C" int comet_gemm_pair_capacity(void) {
  typedef Cfg<256, false, false, false, false, false, false, true> C;
  cudaLaunchAttribute attr;
  cudaLaunchConfig_t cfg;
  return pair_config<C>(&cfg, &attr, 1, NULL) == cudaSuccess ? active_pairs<C>(&cfg) : 0;
}

extern "C" comet_status_t comet_gemm_grouped(const comet_gemm_params_t *p, struct CUstream_st *stream) {
  COMET_CHECK(check_params(p));
  if (!p->k_grouped && p->max_rows == 0) return COMET_OK;
  int sms = 0;
  COMET_CHECK(sm_count(&sms));
  if (p->num_ctas > 0 && p->num_ctas < sms) sms = p->num_ctas; /* the caller's SM budget */
  const bool sw = p->epilogue == COMET_GEMM_EPI_SWIGLU, fp16 = p->dtype == COMET_DTYPE_FP16;
  comet_status_t st;
  if (p->k_grouped) { /* wide tiles: n is a weight's width (F or H) */
    typedef Cfg<256, false, false, true, false, false, true> KgFp16;
    typedef Cfg<256, false, false, false, false, false, true> KgBf16;
    st = fp16 ? launch_kgroup<KgFp16>(p, sms, stream) : launch_kgroup<KgBf16>(p, sms, stream);
  } else if (p->b_mn_major) st = fp16 ? launch_mn<true>(p, sms, stream) : launch_mn<false>(p, sms, stream);
  else if (sw) st = fp16 ? launch_shape<true, true>(p, sms, stream) : launch_shape<true, false>(p, sms, stream);
  else st = fp16 ? launch_shape<false, true>(p, sms, stream) : launch_shape<false, false>(p, sms, stream);
  COMET_CHECK(st);
  return COMET_OK;
}
