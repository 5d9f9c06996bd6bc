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

#include "error.h"
#include "kernels/gemm.h"
#include "kernels/gemm_engine.cuh"

using namespace comet_gemm;

template <class C>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_kernel(const __grid_constant__ Args args, const __grid_constant__ CUtensorMap tm_a,
                const __grid_constant__ CUtensorMap tm_b, const __grid_constant__ CUtensorMap tm_c) {
  extern __shared__ uint8_t smem[];
  gemm_engine_run<C>(args, &tm_a, &tm_b, &tm_c, smem, blockIdx.x, gridDim.x);
}

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

/* ---- params ---- */

static bool hooks_on(const comet_gemm_params_t *p) {
  return p->mtiles || p->wait_flags || p->publish_flags;
}

static comet_status_t check_params(const comet_gemm_params_t *p) {
  COMET_ARG(p, "gemm: params is NULL");
  COMET_ARG(p->dtype == COMET_DTYPE_BF16 || p->dtype == COMET_DTYPE_FP16,
            "gemm: dtype %d unsupported (bf16 or fp16)", (int)p->dtype);
  COMET_ARG(p->groups >= 1, "gemm: groups = %d, must be >= 1", p->groups);
  COMET_ARG(p->mtiles || p->groups <= COMET_GEMM_MAX_GROUPS,
            "gemm: groups = %d over %d (pass an mtiles list for more)", p->groups,
            COMET_GEMM_MAX_GROUPS);
  COMET_ARG(p->n >= 8 && p->n % 8 == 0, "gemm: n = %d must be a positive multiple of 8", p->n);
  COMET_ARG(p->k >= 8 && p->k % 8 == 0, "gemm: k = %d must be a positive multiple of 8", p->k);
  COMET_ARG(p->max_rows >= 0 && p->max_rows < ((int64_t)1 << 31), "gemm: max_rows = %lld out of range",
            (long long)p->max_rows);
  COMET_ARG(p->epilogue == COMET_GEMM_EPI_STORE || p->epilogue == COMET_GEMM_EPI_SWIGLU,
            "gemm: epilogue %d unknown", (int)p->epilogue);
  COMET_ARG(p->tile >= COMET_GEMM_TILE_AUTO && p->tile <= COMET_GEMM_TILE_NARROW,
            "gemm: tile %d unknown", (int)p->tile);
  COMET_ARG(p->num_ctas >= 0, "gemm: num_ctas = %d is negative", p->num_ctas);
  if (p->max_rows == 0) return COMET_OK;
  COMET_ARG(p->a && ((uintptr_t)p->a & 15) == 0, "gemm: a is NULL or not 16-byte aligned");
  COMET_ARG(p->b && ((uintptr_t)p->b & 15) == 0, "gemm: b is NULL or not 16-byte aligned");
  COMET_ARG(p->c && ((uintptr_t)p->c & 15) == 0, "gemm: c is NULL or not 16-byte aligned");
  COMET_ARG(p->group_offset, "gemm: group_offset is NULL");
  COMET_ARG(!p->mtiles == !p->mtile_count, "gemm: mtiles and mtile_count go together");
  COMET_ARG(p->order == COMET_GEMM_ORDER_LAYER0 || p->order == COMET_GEMM_ORDER_LAYER1,
            "gemm: order %d unknown", (int)p->order);
  COMET_ARG(!p->wait_flags || p->mtiles, "gemm: wait_flags needs an mtiles list");
  COMET_ARG(!p->wait_flags || p->wait_stride > 0, "gemm: wait_stride = %d must be > 0",
            p->wait_stride);
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
    const double score = useful * (s == 0 ? 1.0 : 0.9);
    if (score > best) { best = score; pick = s == 0 ? COMET_GEMM_TILE_WIDE : COMET_GEMM_TILE_NARROW; }
  }
  return pick;
}

extern "C" comet_status_t comet_gemm_tile_shape(const comet_gemm_params_t *p, int *tile_m,
                                                int *tile_n) {
  COMET_CHECK(check_params(p));
  int sms = 0;
  COMET_CHECK(sm_count(&sms));
  const int wide = choose_tile(p, sms) == COMET_GEMM_TILE_WIDE ? 256 : 128;
  if (tile_m) *tile_m = kBM;
  if (tile_n) *tile_n = p->epilogue == COMET_GEMM_EPI_SWIGLU ? wide / 2 : wide;
  return COMET_OK;
}

template <class C>
static comet_status_t launch(const comet_gemm_params_t *p, int sms, cudaStream_t stream) {
  const bool fp16 = p->dtype == COMET_DTYPE_FP16;
  const uint64_t nb = C::kSwiglu ? 2 * (uint64_t)p->n : (uint64_t)p->n;
  CUtensorMap tm_a, tm_b, tm_c;
  {
    const uint64_t da[2] = {(uint64_t)p->k, (uint64_t)p->max_rows};
    const uint32_t ba[2] = {kBK, kBM};
    COMET_CHECK(make_tmap(&tm_a, "a", p->a, 2, da, ba, fp16, true));
    const uint64_t db[3] = {(uint64_t)p->k, nb, (uint64_t)p->groups};
    const uint32_t bb[3] = {kBK, (uint32_t)C::kBN / 2, 1};
    COMET_CHECK(make_tmap(&tm_b, "b", p->b, 3, db, bb, fp16, true));
    const uint64_t dc[2] = {(uint64_t)p->n, (uint64_t)p->max_rows};
    const uint32_t bc[2] = {64, 64};
    COMET_CHECK(make_tmap(&tm_c, "c", p->c, 2, dc, bc, fp16, false));
  }
  Args a;
  a.group_offset = p->group_offset;
  a.row_scale = p->row_scale;
  a.mtiles = p->mtiles;
  a.mtile_count = p->mtile_count;
  a.wait_flags = p->wait_flags;
  a.publish_flags = p->publish_flags;
  a.c = p->c;
  a.groups = p->groups;
  a.n = p->n;
  a.k = p->k;
  a.n_tiles = (p->n + C::kOutN - 1) / C::kOutN;
  a.wait_stride = p->wait_stride;
  a.order = (int)p->order;
  a.wait_value = p->wait_value;
  a.publish_value = p->publish_value;

  /* Upper bound of the tile count (group sizes are on the device). */
  const int64_t m_bound = (p->max_rows + kBM - 1) / kBM + p->groups;
  int64_t grid = (int64_t)sms;
  if (p->num_ctas > 0 && p->num_ctas < grid) grid = p->num_ctas;
  if (m_bound * a.n_tiles < grid) grid = m_bound * a.n_tiles;

  cudaError_t e = cudaFuncSetAttribute(gemm_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       C::kSmemBytes);
  if (e == cudaSuccess) {
    gemm_kernel<C><<<(unsigned)grid, kThreads, C::kSmemBytes, stream>>>(a, tm_a, tm_b, tm_c);
    e = cudaGetLastError();
  }
  if (e != cudaSuccess)
    return comet_set_error(COMET_ERR_CUDA, "gemm: launch (tile %dx%d, %d stages, %d B smem): %s",
                           kBM, C::kOutN, C::kStages, C::kSmemBytes, cudaGetErrorString(e));
  return COMET_OK;
}

template <int kBN, bool kSwiglu>
static comet_status_t launch_dtype_hooks(const comet_gemm_params_t *p, int sms, cudaStream_t s) {
  const bool fp16 = p->dtype == COMET_DTYPE_FP16, hk = hooks_on(p);
  if (fp16)
    return hk ? launch<Cfg<kBN, kSwiglu, true, true>>(p, sms, s)
              : launch<Cfg<kBN, kSwiglu, false, true>>(p, sms, s);
  return hk ? launch<Cfg<kBN, kSwiglu, true, false>>(p, sms, s)
            : launch<Cfg<kBN, kSwiglu, false, false>>(p, sms, s);
}

extern "C" comet_status_t comet_gemm_grouped(const comet_gemm_params_t *p, struct CUstream_st *stream) {
  COMET_CHECK(check_params(p));
  if (p->max_rows == 0) return COMET_OK;
  int sms = 0;
  COMET_CHECK(sm_count(&sms));
  const bool wide = choose_tile(p, sms) == COMET_GEMM_TILE_WIDE;
  const bool sw = p->epilogue == COMET_GEMM_EPI_SWIGLU;
  comet_status_t st;
  if (wide)
    st = sw ? launch_dtype_hooks<256, true>(p, sms, stream) : launch_dtype_hooks<256, false>(p, sms, stream);
  else
    st = sw ? launch_dtype_hooks<128, true>(p, sms, stream) : launch_dtype_hooks<128, false>(p, sms, stream);
  COMET_CHECK(st);
  return COMET_OK;
}
