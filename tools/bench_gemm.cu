/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gemm.cu — `comet bench --op gemm`: TFLOP/s of comet's grouped GEMM
 * (src/kernels/gemm.h) and of cuBLAS in the same run on the same device.
 *   dense    G = 1, M = N = K in {4096, 8192}, vs cublasGemmEx
 *   anchor   TransformerEngine's grouped case: 8 groups x 4096 rows, n 768, k 2048
 *   grouped  every preset's expert GEMMs, EP = 4 (E/4 local experts), at
 *            T in {4096, 16384} tokens over 4 ranks (rows per rank = T*K/4),
 *            uniform and skewed (Zipf 1.2) group sizes; layer0 N = 2F, K = H;
 *            layer1 N = H, K = F; vs the faster of cublasGemmGroupedBatchedEx
 *            and a per-expert cublasGemmEx loop (both given host sizes;
 *            comet reads the sizes from device memory).
 *   backward every preset's layer1 at T 16384, EP 4, and T 2048, EP 1: dh = dy . w2 (comet's
 *            MN-major B) and dw2 = dy^T . h (its grouped reduction), vs a
 *            per-expert cublasGemmEx loop.
 *   layer    (only with --only layer) the GEMMs of the W = 1 layer bench:
 *            the fused-layer issues' 5 presets at T in {2048, 8192}, EP 1
 *            (every expert local: Mixtral 512 rows an expert at 2048),
 *            layer0 and layer1 with equal group sizes ("uniform") and with
 *            those of a random top-k routing ("routed": ragged M-tiles, as
 *            the layer sees them), as the grouped rows (op gemm_layer).
 * Times: CUDA events per iteration after warm-up, median; a case's variants
 * (comet's, the SwiGLU launch, the --ab ones, both cuBLAS paths; the
 * backward's four) take turns within each iteration (time_interleaved).
 * One JSON line per
 * case (--json FILE appends): op, shape, groups, comet_tflops, cublas_tflops,
 * ratio, device, commit (env COMET_COMMIT), plus details. Options (usage()):
 * --model NAME, --iters N, --json FILE, --only dense|grouped|backward|layer, --quick, --ab,
 * --trace FILE (one row per tile of one more launch of each case: op gemm_trace);
 * all checked (exit 2) before the GPU is looked for; without one it says
 * why in one line (exit 1). */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "../baselines/moe_data.h"
#include "cli.h"
#include "comet.h"
#include "kernels/gemm/gemm.h"
#include "run_record.h"
#include "tools.h"

#define BENCH_CUDA(x)                                                                 \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "comet bench: %s failed: %s (%s:%d)\n", #x, cudaGetErrorString(e_), \
              __FILE__, __LINE__);                                                    \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#define BENCH_CUBLAS(x)                                                               \
  do {                                                                                \
    cublasStatus_t s_ = (x);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
      fprintf(stderr, "comet bench: %s failed: %d (%s:%d)\n", #x, (int)s_, __FILE__, __LINE__); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#define BENCH_COMET(x)                                                                \
  do {                                                                                \
    comet_status_t s_ = (x);                                                          \
    if (s_ != COMET_OK) {                                                             \
      fprintf(stderr, "comet bench: %s failed: %s\n", #x, comet_last_error());         \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

__global__ void bench_fill(uint16_t *p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float f = ((h & 0xFFFF) / 32768.0f - 1.0f); /* [-1, 1) */
    p[i] = __bfloat16_as_ushort(__float2bfloat16(f));
  }
}

struct Bench {
  int iters = 20;
  unsigned long long seed = 1; /* --seed: the routed sizes' routing */
  bool ab = false; /* --ab: also time comet without pairs, and non-deterministic (same process) */
  FILE *json = NULL;
  FILE *trace = NULL; /* --trace: per-tile rows of one more launch of each case */
  char device[256] = "";
  const char *commit = "unknown";
  cublasHandle_t blas;
  cudaEvent_t ev[2 * 64];
};

/* Median milliseconds of each of fns over b.iters iterations after warm-up,
 * interleaved: every iteration runs each fn once, in turn, so that clock
 * drift (a GPU warming up over a long run) and L2 state weigh on all alike
 * rather than on whichever variant is timed last. The turn order is a
 * fresh permutation each iteration (fixed seed): in a fixed order the
 * first variant ran 1-8% slower than the same launch in a later place
 * (session 7 run 1), and in a rotated one every variant kept the same
 * predecessor: comet's default always ran right after cuBLAS's grouped
 * call, and came out 2-8% below its identical "single" and "nosplit"
 * variants on several routed layer1 rows (session 20 run 4; the cause
 * not measured). */
static std::vector<double> time_interleaved(Bench &b, const std::vector<std::function<void()>> &fns) {
  const int nf = (int)fns.size(), chunk = std::max(1, 64 / std::max(nf, 1));
  for (const auto &f : fns)
    for (int i = 0; i < 3; ++i) f();
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<std::vector<double>> t(nf);
  std::vector<int> order(nf);
  uint32_t seed = 0x9e3779b9u;
  for (int r = 0; r < b.iters; r += chunk) {
    const int nr = std::min(chunk, b.iters - r);
    for (int i = 0; i < nr; ++i) {
      for (int j = 0; j < nf; ++j) order[j] = j;
      for (int j = nf - 1; j > 0; --j) { /* Fisher-Yates, xorshift32 */
        seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
        std::swap(order[j], order[seed % (uint32_t)(j + 1)]);
      }
      for (int j = 0; j < nf; ++j) {
        const int f = order[j];
        BENCH_CUDA(cudaEventRecord(b.ev[2 * (i * nf + f)], 0));
        fns[f]();
        BENCH_CUDA(cudaEventRecord(b.ev[2 * (i * nf + f) + 1], 0));
      }
    }
    BENCH_CUDA(cudaDeviceSynchronize());
    for (int i = 0; i < nr; ++i)
      for (int f = 0; f < nf; ++f) {
        float ms;
        BENCH_CUDA(cudaEventElapsedTime(&ms, b.ev[2 * (i * nf + f)], b.ev[2 * (i * nf + f) + 1]));
        t[f].push_back(ms);
      }
  }
  std::vector<double> med(nf);
  for (int f = 0; f < nf; ++f) {
    std::sort(t[f].begin(), t[f].end());
    med[f] = t[f][t[f].size() / 2];
  }
  return med;
}

static void *dev_random(size_t elems, uint32_t seed) {
  void *p;
  BENCH_CUDA(cudaMalloc(&p, elems * 2 + 16));
  bench_fill<<<1024, 256>>>((uint16_t *)p, elems, seed);
  BENCH_CUDA(cudaGetLastError());
  return p;
}

/* C[m, n] = A[m, k] B[n, k]^T, row-major, through column-major cuBLAS. */
static void cublas_gemm(Bench &b, int m, int n, int k, const void *A, const void *B, void *C) {
  const float one = 1.f, zero = 0.f;
  BENCH_CUBLAS(cublasGemmEx(b.blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, B, CUDA_R_16BF, k, A,
                            CUDA_R_16BF, k, &zero, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

struct Shape {
  int groups, n, k;
  std::vector<int> sizes;
};

struct Result {
  /* comet in the forward's mode (deterministic: the split tail in a
   * layer-like workspace, summed in part order; pairs where AUTO picks
   * them); with --ab also without pairs (single), without the split tail
   * (nosplit), non-deterministic (the atomic split tail, no pairs), and
   * with raster bands of 16 M-tiles (band16), with the wide tile's
   * 3-stage ring of before session 9 (3stage: params.stages, in the row's
   * epilogue), with the tile AUTO did not pick for the row's own
   * launch (other_tile: is the host's choice right?), and with the tall
   * 256 x 128 tile (tall: at most 128 groups) in the row's epilogue, and
   * with half tiles for ragged M-tiles of at most 64 rows (half,
   * params.half_tiles), and with static tiles (static: cta, cta + ncta, ...;
   * the forward's mode takes them from a counter, params.dynamic_tiles), and
   * with the swapped 136 x 256 tile in the row's epilogue (swap: at most
   * 128 groups), and on plain-store rows with the slim swapped tiles of
   * 136, 176 and 184 rows by 128 (slim[]), and AUTO without them in the
   * device's pick (noslim: the default before session 20), and the fitted
   * tile capped at 136 (its 5-stage body), 184 and 208 rows (fit[]) */
  double comet_ms, cublas_ms, loop_ms, grouped_ms, swiglu_ms, single_ms, nosplit_ms, split_ms, band16_ms,
      stage3_ms, other_ms, tall_ms, half_ms, static_ms, swap_ms, slim_ms[3], noslim_ms, fit_ms[3];
  int tile_n;
  bool auto_wide; /* AUTO's tile for the row's own launch (SwiGLU on layer0 rows) */
};

/* A split-tail workspace like a layer's (comet_gemm_split_slots), made
 * once: the forward's mode splits ragged last waves in it, summing in part
 * order. */
static void *layer_split_ws(int *slots) {
  static void *ws = NULL;
  static int n = 0;
  if (!ws) {
    int dev = 0, sms = 0;
    BENCH_CUDA(cudaGetDevice(&dev));
    BENCH_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    n = comet_gemm_split_slots(sms);
    BENCH_CUDA(cudaMalloc(&ws, comet_gemm_split_ws_bytes(n)));
    BENCH_CUDA(cudaMemset(ws, 0, comet_gemm_split_ws_bytes(n)));
  }
  *slots = n;
  return ws;
}

/* One more launch of q with params.trace on (after the case's timing), its
 * work items as rows into b.trace: CTA, rows, tile, group, M-tile, N-tile and
 * start / end in ns from the launch's first start. What it is for: whether
 * the CTAs that share a B tile run it together (session 17: the routed
 * layer1 launch reads w2 ~1.5 times where equal group sizes read it once;
 * scripts/trace_sharers.py sums the rows up). */
static void trace_launch(Bench &b, const char *label, comet_gemm_params_t q, int rows) {
  const int items = (rows / 64 + q.groups + 1) * (q.n / 64 + 1) * 2; /* above tiles + split parts */
  unsigned long long *d;
  BENCH_CUDA(cudaMalloc(&d, (size_t)items * 4 * sizeof *d));
  BENCH_CUDA(cudaMemset(d, 0, (size_t)items * 4 * sizeof *d));
  q.trace = d;
  q.trace_items = items;
  BENCH_COMET(comet_gemm_grouped(&q, 0));
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<unsigned long long> h((size_t)items * 4);
  BENCH_CUDA(cudaMemcpy(h.data(), d, h.size() * sizeof h[0], cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaFree(d));
  unsigned long long t0 = ~0ull;
  for (int w = 0; w < items; ++w)
    if (h[4 * w + 1] && h[4 * w] < t0) t0 = h[4 * w];
  int n = 0;
  for (int w = 0; w < items; ++w) {
    const unsigned long long *r = &h[4 * (size_t)w];
    if (!r[1]) continue;
    fprintf(b.trace,
            "{\"op\":\"gemm_trace\",\"shape\":\"%s\",\"epilogue\":\"%s\",\"item\":%d,\"cta\":%u,\"rows\":%u,"
            "\"tile\":%u,\"group\":%llu,\"mtile\":%llu,\"n_tile\":%llu,\"start_ns\":%llu,"
            "\"end_ns\":%llu,\"device\":\"%s\",\"commit\":\"%s\",\"date\":\"%s\"}\n",
            label,
            q.epilogue == COMET_GEMM_EPI_SWIGLU ? "swiglu" : q.epilogue == COMET_GEMM_EPI_GELU ? "gelu" : "store", w, (unsigned)(r[2] >> 48),
            (unsigned)(r[2] >> 32) & 0xFFFFu,
            (unsigned)r[2], r[3] >> 40, (r[3] >> 20) & 0xFFFFF, r[3] & 0xFFFFF, r[0] - t0, r[1] - t0,
            b.device, b.commit, comet_run_date());
    ++n;
  }
  fflush(b.trace);
  printf("# trace %s: %d work items\n", label, n);
}

static const int kSlimRows[3] = COMET_GEMM_SLIM_ROWS; /* the slim swapped tiles (params.swap_rows) */
static const int kFitCaps[3] = {136, 184, 208};       /* the fitted tile's (swap_rows, tile AUTO) */

static Result run_shape(Bench &b, const Shape &s, bool swiglu_too, const char *label) {
  const int G = s.groups;
  std::vector<int32_t> off(G + 1, 0);
  for (int g = 0; g < G; ++g) off[g + 1] = off[g] + s.sizes[g];
  const int rows = off[G];
  void *A = dev_random((size_t)rows * s.k, 1);
  void *B = dev_random((size_t)G * s.n * s.k, 2);
  void *C;
  BENCH_CUDA(cudaMalloc(&C, (size_t)rows * s.n * 2 + 16));
  int32_t *doff;
  BENCH_CUDA(cudaMalloc(&doff, (G + 1) * 4));
  BENCH_CUDA(cudaMemcpy(doff, off.data(), (G + 1) * 4, cudaMemcpyHostToDevice));

  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = COMET_DTYPE_BF16;
  p.groups = G;
  p.n = s.n;
  p.k = s.k;
  p.max_rows = rows;
  p.a = A;
  p.b = B;
  p.c = C;
  p.group_offset = doff;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.deterministic = 1;
  p.dynamic_tiles = 1; /* as comet_layer1_gemm_params */
  p.split_ws = layer_split_ws(&p.split_slots);
  Result r;
  memset(&r, 0, sizeof r);
  int tm;
  BENCH_COMET(comet_gemm_tile_shape(&p, &tm, &r.tile_n));
  /* every variant in one interleaved timing (time_interleaved) */
  std::vector<std::function<void()>> fns;
  std::vector<double *> into;
  const auto add = [&](double *out, std::function<void()> f) {
    into.push_back(out);
    fns.push_back(std::move(f));
  };
  add(&r.comet_ms, [&] { BENCH_COMET(comet_gemm_grouped(&p, 0)); });
  comet_gemm_params_t q_single = p, q_nosplit = p, q_split = p, q_swiglu = p, q_band = p;
  q_single.cluster = q_nosplit.cluster = q_split.cluster = COMET_GEMM_CLUSTER_OFF;
  q_nosplit.split_ws = NULL; /* deterministic with no split tail (before session 5) */
  q_split.split_ws = NULL;   /* the split tail's fp32 atomics, in the stream's workspace */
  q_split.deterministic = 0;
  q_band.band = 16; /* the default is COMET_SCHED_BAND (8) */
  q_swiglu.n = s.n / 2; /* layer0 with the fused activation: same B ([G, 2F, H]), F outputs */
  q_swiglu.epilogue = COMET_GEMM_EPI_SWIGLU;
  const comet_gemm_params_t own = swiglu_too ? q_swiglu : p; /* the row's own epilogue */
  comet_gemm_params_t q_stage3 = own, q_half = own, q_static = own, q_other = own,
                      q_tall = own;
  q_stage3.stages = 3;
  q_half.half_tiles = 1;
  q_static.dynamic_tiles = 0;
  {
    int own_m, own_n;
    BENCH_COMET(comet_gemm_tile_shape(&q_other, &own_m, &own_n));
    r.auto_wide = own_n == (swiglu_too ? 128 : 256);
    q_other.tile = r.auto_wide ? COMET_GEMM_TILE_NARROW : COMET_GEMM_TILE_WIDE;
  }
  q_tall.tile = COMET_GEMM_TILE_TALL;
  if (b.ab && G <= 128) add(&r.tall_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_tall, 0)); });
  comet_gemm_params_t q_swap = own;
  q_swap.tile = COMET_GEMM_TILE_SWAP;
  if (b.ab && G <= 128) add(&r.swap_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_swap, 0)); });
  /* base with swap_rows = rows[i], timed into ms[i] (plain stores, at most 128 groups) */
  const auto add_rows = [&](comet_gemm_params_t (&q)[3], const comet_gemm_params_t &base,
                            const int (&rows)[3], double (&ms)[3]) {
    for (int i = 0; i < 3; ++i) {
      q[i] = base;
      q[i].swap_rows = rows[i];
      if (b.ab && G <= 128 && !swiglu_too)
        add(&ms[i], [&q, i] { BENCH_COMET(comet_gemm_grouped(&q[i], 0)); });
    }
  };
  comet_gemm_params_t q_slim[3], q_fit[3];
  add_rows(q_slim, q_swap, kSlimRows, r.slim_ms);
  comet_gemm_params_t q_noslim = p;
  q_noslim.swap_rows = -1;
  if (b.ab) add(&r.noslim_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_noslim, 0)); });
  add_rows(q_fit, p, kFitCaps, r.fit_ms); /* the fitted tile's caps: the 5-stage body, 184 / 208 rows */
  if (b.ab) {
    add(&r.single_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_single, 0)); });
    add(&r.nosplit_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_nosplit, 0)); });
    add(&r.split_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_split, 0)); });
    add(&r.band16_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_band, 0)); });
    add(&r.stage3_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_stage3, 0)); });
    add(&r.other_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_other, 0)); });
    add(&r.half_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_half, 0)); });
    add(&r.static_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_static, 0)); });
  }
  if (swiglu_too) add(&r.swiglu_ms, [&] { BENCH_COMET(comet_gemm_grouped(&q_swiglu, 0)); });

  /* cuBLAS: per-expert loop, and (for G > 1) the grouped batched call */
  add(&r.loop_ms, [&] {
    for (int g = 0; g < G; ++g)
      if (s.sizes[g] > 0)
        cublas_gemm(b, s.sizes[g], s.n, s.k, (const uint16_t *)A + (size_t)off[g] * s.k,
                    (const uint16_t *)B + (size_t)g * s.n * s.k,
                    (uint16_t *)C + (size_t)off[g] * s.n);
  });
  r.grouped_ms = 1e30;
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, lda, ldb, ldc, gs;
  std::vector<float> alpha, beta;
  std::vector<const void *> pa, pb;
  std::vector<void *> pc;
  void **dptr = NULL;
  if (G > 1) {
    for (int g = 0; g < G; ++g) {
      if (s.sizes[g] == 0) continue;
      ta.push_back(CUBLAS_OP_T);
      tb.push_back(CUBLAS_OP_N);
      m.push_back(s.n);
      n.push_back(s.sizes[g]);
      k.push_back(s.k);
      lda.push_back(s.k);
      ldb.push_back(s.k);
      ldc.push_back(s.n);
      gs.push_back(1);
      alpha.push_back(1.f);
      beta.push_back(0.f);
      pa.push_back((const uint16_t *)B + (size_t)g * s.n * s.k);
      pb.push_back((const uint16_t *)A + (size_t)off[g] * s.k);
      pc.push_back((uint16_t *)C + (size_t)off[g] * s.n);
    }
  }
  const int cnt = (int)ta.size();
  if (cnt > 0) {
    BENCH_CUDA(cudaMalloc(&dptr, 3 * cnt * sizeof(void *)));
    BENCH_CUDA(cudaMemcpy(dptr, pa.data(), cnt * sizeof(void *), cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dptr + cnt, pb.data(), cnt * sizeof(void *), cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dptr + 2 * cnt, pc.data(), cnt * sizeof(void *), cudaMemcpyHostToDevice));
    add(&r.grouped_ms, [&] {
      BENCH_CUBLAS(cublasGemmGroupedBatchedEx(
          b.blas, ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(),
          (const void *const *)dptr, CUDA_R_16BF, lda.data(), (const void *const *)(dptr + cnt),
          CUDA_R_16BF, ldb.data(), beta.data(), (void *const *)(dptr + 2 * cnt), CUDA_R_16BF,
          ldc.data(), cnt, gs.data(), CUBLAS_COMPUTE_32F));
    });
  }
  const std::vector<double> ms = time_interleaved(b, fns);
  for (size_t i = 0; i < ms.size(); ++i) *into[i] = ms[i];
  if (b.trace) trace_launch(b, label, own, rows);
  if (b.trace && b.ab && G <= 128) { /* the swapped tiles' too, as "<shape> swap[N]" */
    trace_launch(b, (std::string(label) + " swap").c_str(), q_swap, rows);
    for (int i = 0; i < 3 && !swiglu_too; ++i)
      trace_launch(b, (std::string(label) + " swap" + std::to_string(kSlimRows[i])).c_str(), q_slim[i], rows);
  }
  if (dptr) BENCH_CUDA(cudaFree(dptr));
  r.cublas_ms = std::min(r.loop_ms, r.grouped_ms);
  BENCH_CUDA(cudaFree(A));
  BENCH_CUDA(cudaFree(B));
  BENCH_CUDA(cudaFree(C));
  BENCH_CUDA(cudaFree(doff));
  return r;
}

/* The backward's two modes on one preset's layer (ep 4, `rows` rows over El
 * experts): dh [rows, F] = dy [rows, H] . w2_e [H, F] (B MN-major), and
 * dw2_e [H, F] = dy_e^T . h_e (the grouped reduction), each against a
 * per-expert cublasGemmEx loop in the same process. */
struct BackwardResult {
  double dh_ms, dh_cublas_ms, dw_ms, dw_cublas_ms;
};

static BackwardResult run_backward(Bench &b, int El, int H, int F, const std::vector<int> &sizes) {
  std::vector<int32_t> off(El + 1, 0);
  for (int g = 0; g < El; ++g) off[g + 1] = off[g] + sizes[g];
  const int rows = off[El];
  void *dy = dev_random((size_t)rows * H, 3), *w2 = dev_random((size_t)El * H * F, 4);
  void *h = dev_random((size_t)rows * F, 5), *dh, *dw;
  BENCH_CUDA(cudaMalloc(&dh, (size_t)rows * F * 2 + 16));
  BENCH_CUDA(cudaMalloc(&dw, (size_t)El * H * F * 2 + 16));
  int32_t *doff;
  BENCH_CUDA(cudaMalloc(&doff, (El + 1) * 4));
  BENCH_CUDA(cudaMemcpy(doff, off.data(), (El + 1) * 4, cudaMemcpyHostToDevice));
  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = COMET_DTYPE_BF16;
  p.groups = El;
  p.n = F;
  p.k = H;
  p.max_rows = rows;
  p.a = dy;
  p.b = w2;
  p.c = dh;
  p.group_offset = doff;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.b_mn_major = 1;
  p.deterministic = 1;
  p.split_ws = layer_split_ws(&p.split_slots);
  BackwardResult r;
  comet_gemm_params_t q;
  memset(&q, 0, sizeof q);
  q.dtype = COMET_DTYPE_BF16;
  q.groups = El;
  q.m = H;
  q.n = F;
  q.a = dy;
  q.b = h;
  q.c = dw;
  q.group_offset = doff;
  q.epilogue = COMET_GEMM_EPI_STORE;
  q.k_grouped = 1;
  q.max_rows = off[El];
  const float one = 1.f, zero = 0.f;
  const auto comet_dh = [&] { BENCH_COMET(comet_gemm_grouped(&p, 0)); };
  const auto comet_dw = [&] { BENCH_COMET(comet_gemm_grouped(&q, 0)); };
  /* column-major views: dh^T [F, rows] = w2_e^T-as-stored [F, H] . dy^T [H, rows] */
  const auto cublas_dh = [&] {
    for (int g = 0; g < El; ++g)
      if (sizes[g] > 0)
        BENCH_CUBLAS(cublasGemmEx(b.blas, CUBLAS_OP_N, CUBLAS_OP_N, F, sizes[g], H, &one,
                                  (const uint16_t *)w2 + (size_t)g * H * F, CUDA_R_16BF, F,
                                  (const uint16_t *)dy + (size_t)off[g] * H, CUDA_R_16BF, H, &zero,
                                  (uint16_t *)dh + (size_t)off[g] * F, CUDA_R_16BF, F,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  /* dw_e^T [F, H] = h_e^T [F, rows_e] . dy_e [rows_e, H] */
  const auto cublas_dw = [&] {
    for (int g = 0; g < El; ++g)
      if (sizes[g] > 0)
        BENCH_CUBLAS(cublasGemmEx(b.blas, CUBLAS_OP_N, CUBLAS_OP_T, F, H, sizes[g], &one,
                                  (const uint16_t *)h + (size_t)off[g] * F, CUDA_R_16BF, F,
                                  (const uint16_t *)dy + (size_t)off[g] * H, CUDA_R_16BF, H, &zero,
                                  (uint16_t *)dw + (size_t)g * H * F, CUDA_R_16BF, F,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  const std::vector<double> ms = time_interleaved(b, {comet_dh, cublas_dh, comet_dw, cublas_dw});
  r.dh_ms = ms[0];
  r.dh_cublas_ms = ms[1];
  r.dw_ms = ms[2];
  r.dw_cublas_ms = ms[3];
  BENCH_CUDA(cudaFree(dy));
  BENCH_CUDA(cudaFree(w2));
  BENCH_CUDA(cudaFree(h));
  BENCH_CUDA(cudaFree(dh));
  BENCH_CUDA(cudaFree(dw));
  BENCH_CUDA(cudaFree(doff));
  return r;
}

static void report_backward(Bench &b, const char *name, int T, int ep, double rows, int El, int H,
                            int F, const BackwardResult &r) {
  const double flops = 2.0 * rows * H * F;
  const char *ops[2] = {"gemm_dh", "gemm_dw"};
  const double ms[2] = {r.dh_ms, r.dw_ms}, cb[2] = {r.dh_cublas_ms, r.dw_cublas_ms};
  for (int i = 0; i < 2; ++i) {
    char line[4096]; /* the command line is in it */
    snprintf(line, sizeof line,
             "{\"op\":\"%s\",\"shape\":\"%s T=%d%s layer1 backward\",\"groups\":%d,\"ep\":%d,"
             "\"comet_tflops\":%.1f,\"cublas_tflops\":%.1f,\"ratio\":%.3f,\"device\":\"%s\","
             "\"commit\":\"%s\",\"date\":\"%s\",\"command\":\"%s\",\"rows\":%.0f,\"H\":%d,"
             "\"F\":%d,\"cublas_path\":\"loop\"}",
             ops[i], name, T, ep == 1 ? " ep=1" : "", El, ep, flops / (ms[i] * 1e9), flops / (cb[i] * 1e9), cb[i] / ms[i],
             b.device, b.commit, comet_run_date(), comet_run_command(), rows, H, F);
    printf("%s\n", line);
    if (b.json) {
      fprintf(b.json, "%s\n", line);
      fflush(b.json);
    }
  }
}

/* One row. epilogue "swiglu" (layer0): comet's time is the SwiGLU
 * launch's (the same MMA work as the plain store over 2F columns), against
 * cuBLAS's plain GEMM; comet_store_tflops is the plain store's. */
static void report(Bench &b, const char *op, const char *shape, const Shape &s, Result r,
                   const char *extra, bool swiglu = false) {
  double rows = 0;
  for (int x : s.sizes) rows += x;
  const double flops = 2.0 * rows * s.n * s.k;
  const double store_ms = r.comet_ms;
  if (swiglu) r.comet_ms = r.swiglu_ms;
  const auto rate = [&](double ms) { return ms > 0 ? flops / (ms * 1e9) : 0.0; };
  const double ct = rate(r.comet_ms), bt = rate(r.cublas_ms);
  const char *path = r.cublas_ms == r.loop_ms ? "loop" : "grouped";
  char line[4096]; /* the command line is in it */
  snprintf(line, sizeof line,
           "{\"op\":\"%s\",\"shape\":\"%s\",\"groups\":%d,\"comet_tflops\":%.1f,"
           "\"cublas_tflops\":%.1f,\"ratio\":%.3f,\"device\":\"%s\",\"commit\":\"%s\","
           "\"date\":\"%s\",\"command\":\"%s\",\"rows\":%.0f,\"n\":%d,\"k\":%d,\"tile_n_host\":%d,\"cublas_path\":\"%s\","
           "\"cublas_loop_tflops\":%.1f,\"cublas_grouped_tflops\":%.1f,"
           "\"deterministic\":true,\"epilogue\":\"%s\",\"comet_store_tflops\":%.1f,"
           "\"swiglu_ratio\":%.3f,\"comet_single_tflops\":%.1f,\"comet_nosplit_tflops\":%.1f,"
           "\"comet_split_tflops\":%.1f,\"comet_band16_tflops\":%.1f,\"comet_3stage_tflops\":%.1f,"
           "\"tile_auto\":\"%s\",\"comet_other_tile_tflops\":%.1f,\"comet_tall_tflops\":%.1f,\"comet_half_tflops\":%.1f,\"comet_static_tflops\":%.1f,\"comet_swap_tflops\":%.1f,"
           "\"comet_swap136_tflops\":%.1f,\"comet_swap176_tflops\":%.1f,\"comet_swap184_tflops\":%.1f,\"comet_noslim_tflops\":%.1f,"
           "\"comet_fit136_tflops\":%.1f,\"comet_fit184_tflops\":%.1f,\"comet_fit208_tflops\":%.1f%s}",
           op, shape, s.groups, ct, bt, ct / bt, b.device, b.commit, comet_run_date(),
           comet_run_command(), rows, s.n, s.k, r.tile_n,
           path, flops / (r.loop_ms * 1e9), r.grouped_ms < 1e29 ? flops / (r.grouped_ms * 1e9) : 0.0,
           swiglu ? "swiglu" : "store", rate(store_ms), swiglu ? store_ms / r.swiglu_ms : 1.0,
           rate(r.single_ms), rate(r.nosplit_ms), rate(r.split_ms), rate(r.band16_ms), rate(r.stage3_ms),
           r.auto_wide ? "wide" : "narrow", rate(r.other_ms), rate(r.tall_ms), rate(r.half_ms), rate(r.static_ms), rate(r.swap_ms),
           rate(r.slim_ms[0]), rate(r.slim_ms[1]), rate(r.slim_ms[2]), rate(r.noslim_ms),
           rate(r.fit_ms[0]), rate(r.fit_ms[1]), rate(r.fit_ms[2]), extra);
  printf("%s\n", line);
  if (b.json) {
    fprintf(b.json, "%s\n", line);
    fflush(b.json);
  }
}

/* Zipf(1.2) shares over the experts in a fixed shuffled order. */
static std::vector<int> split_rows(int rows, int G, bool skewed) {
  std::vector<double> w(G, 1.0);
  if (skewed) {
    std::vector<int> perm(G);
    for (int i = 0; i < G; ++i) perm[i] = (i * 37 + 11) % G;
    for (int i = 0; i < G; ++i) w[perm[i]] = 1.0 / pow(i + 1.0, 1.2);
  }
  double tot = 0;
  for (double x : w) tot += x;
  std::vector<int> s(G);
  int used = 0;
  for (int g = 0; g < G; ++g) used += s[g] = (int)floor(rows * w[g] / tot);
  for (int g = 0; used < rows; g = (g + 1) % G, ++used) s[g]++;
  return s;
}

/* The group sizes of T tokens routed by the layer bench's uniform routing
 * (comet_md_routing_host, rank 0, seed: --seed, or 1; the forward bench's
 * rows name their seed, so its draw can be timed here): sizes near T K / E, not
 * equal, so about half the groups end in a ragged M-tile (the equal sizes
 * of split_rows fill every M-tile at Mixtral's shapes). */
static std::vector<int> routed_rows(int T, int E, int K, uint64_t seed) {
  const comet_md_routing_t uniform = {0.0, 0.0, 0};
  std::vector<double> p(E);
  comet_md_expert_probs(p.data(), E, &uniform, seed);
  std::vector<int32_t> ids((size_t)T * K);
  std::vector<float> wt((size_t)T * K);
  comet_md_routing_host(ids.data(), wt.data(), T, K, E, p.data(), &uniform, 0, seed);
  std::vector<int> s(E, 0);
  for (int32_t e : ids)
    if (e >= 0) s[e]++;
  return s;
}

enum Sizes { kEqual, kSkewed, kRouted };

/* One preset's expert GEMM over its E / ep local experts, T * K / ep rows
 * (equal, Zipf-skewed, or routed sizes; routed only at ep 1): layer 0 N =
 * 2F, K = H (comet with its SwiGLU epilogue against cuBLAS's plain GEMM),
 * layer 1 N = H, K = F. Its row, with the M-tiles the sizes make
 * (m_tiles); returns cuBLAS's time over comet's. */
static double grouped_case(Bench &b, const comet_preset_t *pr, int ep, int T, Sizes sizes,
                           int layer, const char *op, const char *tag) {
  const int El = pr->num_experts / ep, rows = T * pr->topk / ep;
  Shape s;
  s.groups = El;
  s.n = layer == 0 ? 2 * pr->ffn : pr->hidden;
  s.k = layer == 0 ? pr->hidden : pr->ffn;
  s.sizes = sizes == kRouted ? routed_rows(T, El, pr->topk, b.seed) : split_rows(rows, El, sizes == kSkewed);
  static const char *const names[] = {"uniform", "skewed", "routed"};
  char shape[128], extra[96];
  snprintf(shape, sizeof shape, "%s T=%d%s %s layer%d", pr->name, T, tag, names[sizes], layer);
  Result r = run_shape(b, s, layer == 0, shape);
  int m_tiles = 0;
  for (int n : s.sizes) m_tiles += (n + COMET_GEMM_TILE_M - 1) / COMET_GEMM_TILE_M;
  if (sizes == kRouted) snprintf(extra, sizeof extra, ",\"m_tiles\":%d,\"seed\":%llu", m_tiles, b.seed);
  else snprintf(extra, sizeof extra, ",\"m_tiles\":%d", m_tiles);
  report(b, op, shape, s, r, extra, layer == 0);
  return r.cublas_ms / (layer == 0 ? r.swiglu_ms : r.comet_ms);
}

static void print_geomean(const char *kind, const std::vector<double> &ratios) {
  if (ratios.empty()) return;
  double lg = 0;
  for (double x : ratios) lg += log(x);
  printf("# %s geomean ratio comet/cublas over %zu cases: %.3f\n", kind, ratios.size(),
         exp(lg / ratios.size()));
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: comet bench --op gemm [options]\n"
          "  comet's grouped GEMM vs cuBLAS on GPU 0: dense M = N = K in {4096, 8192},\n"
          "  TransformerEngine's anchor (8 groups x 4096 rows, n 768, k 2048), and every\n"
          "  preset's expert GEMMs at EP 4, T in {4096, 16384} tokens, uniform and skewed\n"
          "  --model NAME        the grouped cases of one preset only (comet presets)\n"
          "  --only dense|grouped|backward|layer   one kind of case (backward: the modes of\n"
          "                      the backward, dh with B MN-major and dw by grouped\n"
          "                      reduction; layer, only when asked: the W = 1 layer bench's\n"
          "                      GEMMs, 5 presets at T 2048 and 8192 with every expert local)\n"
          "  --sizes uniform|routed  with --only layer: equal group sizes or a routing's only\n"
          "  --tokens 2048|8192  with --only layer: that T only\n"
          "  --layer 0|1         with --only layer: that layer's GEMM only (a profiler's target)\n"
          "  --seed N            with --sizes routed: the routing's seed (default 1; a uniform\n"
          "                      forward bench row's seed gives its expert sizes at W = 1)\n"
          "  --quick             one T (16384), uniform only\n"
          "  --iters N           timed iterations per case, median (default 20); a case's\n"
          "                      variants take turns in each iteration\n"
          "  --ab                also time comet without pairs (comet_single_tflops),\n"
          "                      deterministic without the split tail (comet_nosplit_tflops)\n"
          "                      non-deterministic, the atomic split tail (comet_split_tflops),\n"
          "                      with raster bands of 16 M-tiles (comet_band16_tflops)\n"
          "                      with the 3-stage ring for wide tiles (comet_3stage_tflops)\n"
          "                      with the tile AUTO did not pick (comet_other_tile_tflops;\n"
          "                      tile_auto names AUTO's) and with the 256 x 128 tile\n"
          "                      (comet_tall_tflops, 0 past 128 groups), and with half\n"
          "                      tiles for ragged M-tiles of <= 64 rows (comet_half_tflops),\n"
          "                      with static tiles (comet_static_tflops), and with the\n"
          "                      swapped 136 x 256 tile (comet_swap_tflops), and on\n"
          "                      plain-store rows the slim swapped tiles of 136, 176\n"
          "                      and 184 rows by 128 (comet_swap136_tflops, ...), and\n"
          "                      AUTO without them (comet_noslim_tflops), and the fitted\n"
          "                      tile capped at 136 (its 5-stage body), 184 and 208 rows\n"
          "                      (comet_fit136_tflops, ...)\n"
          "  --json FILE         append one JSON line per case\n"
          "  --trace FILE        append one JSON line per tile (op gemm_trace: CTA, rows, group,\n"
          "                      M-tile, N-tile, start and end ns) of one more launch of\n"
          "                      each case in its own epilogue (with --ab the swapped tile's\n"
          "                      too, shape \"... swap\"), for the schedule's diagnosis\n");
}

/* --only layer's filters: the group sizes (all: NULL) and the tokens (all: 0) */
struct LayerPick {
  const char *sizes;
  int tokens;
  int layer; /* 0 or 1; -1: both */
};

/* The options into b and the rest: 0, 1 (--help shown) or -1 (an error, printed). */
static int parse(int argc, char **argv, Bench &b, bool &quick, const char *&only, const char *&model,
                 const char *&json, const char *&trace, LayerPick &pick) {
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 1;
    } else if (!strcmp(a, "--op")) { /* "gemm", how `comet bench` got here */
      CLI_NEED();
      if (strcmp(v, "gemm")) CLI_BAD();
    } else if (!strcmp(a, "--model")) {
      CLI_NEED();
      if (!comet_preset_find(v)) {
        fprintf(stderr, "comet bench: %s\n", comet_last_error());
        return -1;
      }
      model = v;
    } else if (!strcmp(a, "--only")) {
      CLI_NEED();
      if (strcmp(v, "dense") && strcmp(v, "grouped") && strcmp(v, "backward") && strcmp(v, "layer"))
        CLI_BAD();
      only = v;
    } else if (!strcmp(a, "--sizes")) {
      CLI_NEED();
      if (strcmp(v, "uniform") && strcmp(v, "routed")) CLI_BAD();
      pick.sizes = v;
    } else if (!strcmp(a, "--tokens")) {
      CLI_NEED();
      if (strcmp(v, "2048") && strcmp(v, "8192")) CLI_BAD();
      pick.tokens = atoi(v);
    } else if (!strcmp(a, "--layer")) {
      CLI_NEED();
      if (strcmp(v, "0") && strcmp(v, "1")) CLI_BAD();
      pick.layer = atoi(v);
    } else if (!strcmp(a, "--iters")) { CLI_NEED(); if (cli_int(v, 1, CLI_MAX_COUNT, &b.iters)) CLI_BAD();
    } else if (!strcmp(a, "--seed")) {
      CLI_NEED();
      char *end = NULL;
      b.seed = strtoull(v, &end, 0);
      if (!*v || *end) CLI_BAD();
    } else if (!strcmp(a, "--json")) { CLI_NEED(); json = v;
    } else if (!strcmp(a, "--trace")) { CLI_NEED(); trace = v;
    } else if (!strcmp(a, "--quick")) { quick = true;
    } else if (!strcmp(a, "--ab")) { b.ab = true;
    } else {
      fprintf(stderr, "comet bench: unknown option '%s' (comet bench --op gemm --help lists them)\n", a);
      return -1;
    }
  }
  if (json && cli_json_ok("comet bench", json)) return -1;
  return trace && cli_append_ok("comet bench", "--trace", trace) ? -1 : 0;
}

extern "C" int comet_bench_gemm_main(int argc, char **argv) {
  Bench b;
  bool quick = false;
  const char *only = NULL, *model = NULL, *json = NULL, *trace = NULL;
  LayerPick pick = {NULL, 0, -1};
  const int pr = parse(argc, argv, b, quick, only, model, json, trace, pick);
  if (pr) return pr > 0 ? 0 : 2;
  char why[192];
  if (cli_gpu_count(why, sizeof why) < 1) { /* in this process: the GEMMs run here, unforked */
    fprintf(stderr, "comet bench: no CUDA GPU found (%s)\n", why);
    return 1;
  }
  if (json && !(b.json = fopen(json, "a"))) {
    fprintf(stderr, "comet bench: cannot open --json file '%s': %s\n", json, strerror(errno));
    return 1;
  }
  if (trace && !(b.trace = fopen(trace, "a"))) {
    fprintf(stderr, "comet bench: cannot open --trace file '%s': %s\n", trace, strerror(errno));
    return 1;
  }
  if (getenv("COMET_COMMIT")) b.commit = getenv("COMET_COMMIT");
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  snprintf(b.device, sizeof b.device, "%s", prop.name);
  BENCH_CUBLAS(cublasCreate(&b.blas));
  for (auto &e : b.ev) BENCH_CUDA(cudaEventCreate(&e));
  printf("# bench gemm on %s (%d SMs), commit %s, median of %d iterations\n", b.device,
         prop.multiProcessorCount, b.commit, b.iters);
  printf("# pairs (2-CTA clusters) resident at once: %d\n", comet_gemm_pair_capacity());

  if (!only || !strcmp(only, "dense")) {
    const int sizes[] = {4096, 8192};
    for (int sz : sizes) {
      Shape s = {1, sz, sz, {sz}};
      char shape[64];
      snprintf(shape, sizeof shape, "%dx%dx%d", sz, sz, sz);
      Result r = run_shape(b, s, false, shape);
      report(b, "gemm_dense", shape, s, r, "");
    }
  }
  if ((!only || !strcmp(only, "grouped")) && !model) {
    /* TransformerEngine's grouped-GEMM anchor: 8 groups of 4096 rows, n 768, k 2048 */
    Shape s;
    s.groups = 8;
    s.n = 768;
    s.k = 2048;
    s.sizes.assign(8, 4096);
    const char *shape = "te-anchor G=8 rows=4096 n=768 k=2048";
    Result r = run_shape(b, s, false, shape);
    report(b, "gemm_grouped", shape, s, r, ",\"anchor\":\"transformer-engine\"");
  }
  if (!only || !strcmp(only, "grouped")) {
    const int tokens[] = {4096, 16384};
    std::vector<double> ratios;
    for (int pi = 0; pi < comet_preset_count(); ++pi) {
      const comet_preset_t *pr = comet_preset_at(pi);
      if (model && strcmp(model, pr->name)) continue;
      for (int ti = 0; ti < (quick ? 1 : 2); ++ti)
        for (int skew = 0; skew < (quick ? 1 : 2); ++skew)
          for (int layer = 0; layer < 2; ++layer)
            ratios.push_back(grouped_case(b, pr, 4, tokens[quick ? 1 : ti], skew ? kSkewed : kEqual,
                                          layer, "gemm_grouped", ""));
    }
    print_geomean("grouped", ratios);
  }
  if (only && !strcmp(only, "layer")) {
    static const char *const layer_models[] = {"mixtral-8x7b", "qwen2-moe-2.7b", "phi3.5-moe",
                                               "qwen2-57b-a14b", "deepseek-v2-lite"};
    const int tokens[] = {2048, 8192};
    std::vector<double> ratios;
    for (const char *name : layer_models) {
      if (model && strcmp(model, name)) continue;
      const comet_preset_t *pr = comet_preset_find(name);
      if (!pr) continue;
      for (int T : tokens)
        for (Sizes z : {kEqual, kRouted})
          for (int layer = 0; layer < 2; ++layer) {
            if ((pick.tokens && T != pick.tokens) || (pick.layer >= 0 && layer != pick.layer) ||
                (pick.sizes && strcmp(pick.sizes, z == kRouted ? "routed" : "uniform")))
              continue;
            ratios.push_back(grouped_case(b, pr, 1, T, z, layer, "gemm_layer", " ep1"));
          }
    }
    print_geomean("layer", ratios);
  }
  if (!only || !strcmp(only, "backward")) { /* the backward's modes, layer1's shapes */
    /* T 16384 over EP 4 (thousands of rows an expert), and the fused-layer
     * issues' W = 1 point, T 2048 with every expert local (Mixtral: 512
     * rows an expert, so dw's reduction is 8 K-blocks a tile) */
    const int Ts[2] = {16384, 2048}, eps[2] = {4, 1};
    for (int ci = 0; ci < 2; ++ci)
      for (int pi = 0; pi < comet_preset_count(); ++pi) {
        const comet_preset_t *pr = comet_preset_at(pi);
        if (model && strcmp(model, pr->name)) continue;
        const int ep = eps[ci], El = pr->num_experts / ep, T = Ts[ci], rows = T * pr->topk / ep;
        if (El < 1) continue;
        const std::vector<int> sizes = split_rows(rows, El, false);
        const BackwardResult r = run_backward(b, El, pr->hidden, pr->ffn, sizes);
        report_backward(b, pr->name, T, ep, rows, El, pr->hidden, pr->ffn, r);
      }
  }
  for (auto &e : b.ev) cudaEventDestroy(e);
  cublasDestroy(b.blas);
  if (b.json) fclose(b.json);
  if (b.trace) fclose(b.trace);
  return 0;
}

#ifdef COMET_BENCH_GEMM_MAIN /* standalone build (scripts/gpu_gemm.sh) */
int main(int argc, char **argv) { return comet_bench_gemm_main(argc - 1, argv + 1); }
#endif
