/* SPDX-License-Identifier: Apache-2.0 */
/* test_gemm.cu — the grouped GEMM engine (src/kernels/gemm.h) against the
 * CPU reference (src/ref/ref_gemm.c): ragged groups (0, 1, 127, 128, 129
 * rows), N and K off the tile grid, both dtypes, both tile shapes, every
 * epilogue, row scales, the hooks (an M-tile list in both orders; wait
 * flags released by the host after a delay while the A rows are still NaN;
 * publish flags), half tiles (the same bits as a ragged tile run whole),
 * the split tail (few CTAs, long K: the last wave's tiles split along K
 * and summed in a workspace; run twice so a slot left dirty would show),
 * the per-tile trace (the same bits, a record per tile), the swapped tile
 * (136 x 256, tokens on wgmma's N; store and SwiGLU), and argument
 * errors. Fresh random data per case, output
 * poisoned with NaN before each launch; rows past the last group must stay
 * poisoned. `--quick`: a few small cases (for compute-sanitizer); `--only
 * TEXT`: the cases whose names hold TEXT, nothing else (the sanitizers on
 * one kind of tile, e.g. --quick --only slim). */
#include <algorithm>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <string>
#include <set>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "ref/convert.h"
#include "ref/ref_gemm.h"
#include "test_util.h"

#define CUDA_OK(x)                                                                    \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

static uint64_t g_rng;

struct Case {
  comet_dtype_t dt;
  comet_gemm_epilogue_t epi;
  comet_gemm_tile_t tile;
  int n, k;
  std::vector<int> sizes; /* rows per group */
  int extra_rows;         /* capacity past the last group (must stay poisoned) */
  bool scale;
  const char *name;
  int ctas; /* num_ctas (0: one per SM); few CTAs force the split tail */
  bool bmn; /* B uploaded MN-major ([G][k][n], b_mn_major) */
  comet_gemm_cluster_t cluster; /* ON: also run without pairs, the bits must match */
  int swap_rows; /* with the swapped tile: 0 (136 x 256) or the slim tile's rows; AUTO: the fitted tile's cap */
  int tile_rows;  /* the trace's widest tile must have this many rows (the device's pick); 0: any */
};

/* n group sizes: a, b, a, b, ... */
static std::vector<int> alternating(int n, int a, int b) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i % 2 ? b : a;
  return v;
}

static void fill_random(std::vector<uint16_t> &v, comet_dtype_t dt, float lo, float hi) {
  for (auto &x : v) {
    const float f = test_rand_uniform(&g_rng, lo, hi);
    x = dt == COMET_DTYPE_FP16 ? comet_f32_to_fp16(f) : comet_f32_to_bf16(f);
  }
}

/* Compares the GPU output with the reference over the groups' rows and
 * checks that rows [rows, cap) are still the poison pattern. */
static void compare(const Case &c, const std::vector<uint16_t> &got, const std::vector<float> &ref,
                    int rows, int cap) {
  double num = 0, den = 0, maxerr = 0, maxref = 0;
  long nan_count = 0;
  for (size_t i = 0; i < (size_t)rows * c.n; ++i) {
    const float o = comet_load_f32(got.data(), i, c.dt), r = ref[i];
    if (isnan(o)) { nan_count++; continue; }
    num += (double)(o - r) * (o - r);
    den += (double)r * r;
    maxerr = fmax(maxerr, fabs(o - r));
    maxref = fmax(maxref, fabs(r));
  }
  const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  const double tol = c.dt == COMET_DTYPE_FP16 ? 2e-3 : 1e-2;
  long untouched_bad = 0;
  for (size_t i = (size_t)rows * c.n; i < (size_t)cap * c.n; ++i)
    if (got[i] != 0xFFFF) untouched_bad++;
  printf("  %-34s rows %5d n %5d k %5d: rel %.2e maxerr %.3g (max|ref| %.3g)%s\n", c.name, rows,
         c.n, c.k, rel, maxerr, maxref, nan_count ? "  NaN!" : "");
  CHECK_MSG(nan_count == 0, "%s: %ld unwritten/NaN outputs", c.name, nan_count);
  CHECK_MSG(rel < tol, "%s: relative error %.3e >= %.1e", c.name, rel, tol);
  CHECK_MSG(maxerr <= 0.03 * maxref + 1e-3, "%s: max abs error %.3g vs max|ref| %.3g", c.name,
            maxerr, maxref);
  CHECK_MSG(untouched_bad == 0, "%s: %ld elements past the last group were written", c.name,
            untouched_bad);
}

/* Poisons C, runs p, returns C. */
static std::vector<uint16_t> run_poisoned(const comet_gemm_params_t &p, size_t n) {
  std::vector<uint16_t> out(n);
  CUDA_OK(cudaMemset(p.c, 0xFF, n * 2));
  CHECK_OK(comet_gemm_grouped(&p, 0));
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(out.data(), p.c, n * 2, cudaMemcpyDeviceToHost));
  return out;
}

/* The deterministic split tail (a caller's workspace, each part in a slot of
 * its own, summed in part order): right, and the same bits on a second run
 * (whichever part came last); the elements it rounds otherwise than the
 * unsplit launch are counted (0 would mean it did not split). */
static void run_ordered_split(const Case &c, comet_gemm_params_t p, const std::vector<float> &ref,
                              int rows, int cap) {
  const int slots = 64;
  void *ws;
  CUDA_OK(cudaMalloc(&ws, comet_gemm_split_ws_bytes(slots)));
  CUDA_OK(cudaMemset(ws, 0, comet_gemm_split_ws_bytes(slots)));
  const size_t n = (size_t)cap * c.n;
  p.deterministic = 1;
  p.cluster = COMET_GEMM_CLUSTER_OFF;
  p.split_ws = NULL;
  const std::vector<uint16_t> plain = run_poisoned(p, n);
  p.split_ws = ws;
  p.split_slots = slots;
  const std::vector<uint16_t> first = run_poisoned(p, n), second = run_poisoned(p, n);
  CHECK_MSG(first == second, "%s: the ordered split tail gave other bits on a second run", c.name);
  p.half_tiles = 1; /* split parts of half tiles: the same sums */
  CHECK_MSG(run_poisoned(p, n) == first, "%s: half tiles in the split tail give other bits", c.name);
  p.dynamic_tiles = 1; /* tiles and parts from the workspace's counter: the same sums */
  CHECK_MSG(run_poisoned(p, n) == first && run_poisoned(p, n) == first,
            "%s: dynamic tiles (twice: the counters reset) give other bits", c.name);
  p.half_tiles = 0;
  CHECK_MSG(run_poisoned(p, n) == first, "%s: dynamic tiles without half tiles give other bits",
            c.name);
  p.dynamic_tiles = 0;
  long differ = 0;
  for (size_t i = 0; i < n; ++i) differ += first[i] != plain[i];
  std::string name = std::string(c.name) + " ordered";
  Case oc = c;
  oc.name = name.c_str();
  compare(oc, first, ref, rows, cap);
  printf("    %ld of %zu elements rounded otherwise than unsplit\n", differ, (size_t)rows * c.n);
  cudaFree(ws);
}

/* params.trace (bench --op gemm --trace): the same bits, and one record per
 * tile (no split tail in q): distinct (group, M-tile, N-tile), start <=
 * end, 1..256 rows, the N-tile 0 records covering every row once. */
static void check_trace(const Case &c, comet_gemm_params_t q, const std::vector<uint16_t> &base,
                        int rows) {
  int widest = 0;
  const int items = (q.max_rows / 64 + q.groups + 1) * (q.n / 64 + 1); /* over the tiles */
  unsigned long long *d;
  CUDA_OK(cudaMalloc(&d, (size_t)items * 4 * sizeof *d));
  CUDA_OK(cudaMemset(d, 0, (size_t)items * 4 * sizeof *d));
  q.trace = d;
  q.trace_items = items;
  CHECK_MSG(run_poisoned(q, base.size()) == base, "%s: a traced launch gives other bits", c.name);
  std::vector<unsigned long long> h((size_t)items * 4);
  CUDA_OK(cudaMemcpy(h.data(), d, h.size() * sizeof h[0], cudaMemcpyDeviceToHost));
  cudaFree(d);
  std::set<unsigned long long> seen;
  long covered = 0;
  int bad = 0, recs = 0;
  for (int w = 0; w < items; ++w) {
    const unsigned long long *r = &h[4 * (size_t)w];
    if (!r[1]) continue;
    const int n_rows = (int)(r[2] >> 32) & 0xFFFF;
    widest = std::max(widest, n_rows);
    ++recs;
    bad += r[0] == 0 || r[0] > r[1] || n_rows < 1 || n_rows > 256 || !seen.insert(r[3]).second;
    if ((r[3] & 0xFFFFF) == 0) covered += n_rows;
  }
  CHECK_MSG(bad == 0 && (recs > 0 || rows == 0) && covered == rows, /* rows 0: no tiles */
            "%s: trace: %d bad of %d records, N-tile 0 covers %ld of %d rows", c.name, bad, recs,
            covered, rows);
  /* AUTO's fitted tile picks its cap by waves on the card's SMs: the
   * cases' widths are an H100 / H200's (132 SMs) */
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const bool picked = c.tile == COMET_GEMM_TILE_AUTO && c.swap_rows == 0 && c.ctas == 0;
  if (c.tile_rows && picked && sms != 132)
    printf("  %s: the widest tile not checked (%d SMs, the case's width is for 132)\n", c.name, sms);
  else
    CHECK_MSG(c.tile_rows == 0 || widest == c.tile_rows, "%s: the widest tile has %d rows (want %d)",
              c.name, widest, c.tile_rows);
}

static void run_case(const Case &c) {
  const int G = (int)c.sizes.size();
  std::vector<int32_t> off(G + 1, 0);
  for (int g = 0; g < G; ++g) off[g + 1] = off[g] + c.sizes[g];
  const int rows = off[G], cap = rows + c.extra_rows;
  const int nb = c.epi == COMET_GEMM_EPI_SWIGLU ? 2 * c.n : c.n;
  std::vector<uint16_t> a((size_t)cap * c.k), b((size_t)G * nb * c.k), out((size_t)cap * c.n);
  fill_random(a, c.dt, -1.f, 1.f);
  fill_random(b, c.dt, -1.f, 1.f);
  std::vector<float> scale(cap), ref((size_t)cap * c.n, 0.f);
  for (auto &s : scale) s = test_rand_uniform(&g_rng, 0.1f, 1.f);

  void *da, *db, *dc;
  int32_t *doff;
  float *dscale;
  CUDA_OK(cudaMalloc(&da, a.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&db, b.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&dc, out.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&doff, (G + 1) * 4));
  CUDA_OK(cudaMalloc(&dscale, cap * 4 + 4));
  CUDA_OK(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice));
  if (c.bmn) { /* the same B, stored [G][k][n] */
    std::vector<uint16_t> bt(b.size());
    for (int g = 0; g < G; ++g)
      for (int j = 0; j < nb; ++j)
        for (int kk = 0; kk < c.k; ++kk)
          bt[((size_t)g * c.k + kk) * nb + j] = b[((size_t)g * nb + j) * c.k + kk];
    CUDA_OK(cudaMemcpy(db, bt.data(), bt.size() * 2, cudaMemcpyHostToDevice));
  } else {
    CUDA_OK(cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  }
  CUDA_OK(cudaMemcpy(doff, off.data(), (G + 1) * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dscale, scale.data(), cap * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dc, 0xFF, out.size() * 2)); /* NaN in bf16 and fp16 */

  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = c.dt;
  p.groups = G;
  p.n = c.n;
  p.k = c.k;
  p.max_rows = cap;
  p.a = da;
  p.b = db;
  p.c = dc;
  p.group_offset = doff;
  p.epilogue = c.epi;
  p.row_scale = c.scale ? dscale : NULL;
  p.tile = c.tile;
  p.num_ctas = c.ctas;
  p.b_mn_major = c.bmn;
  p.cluster = c.cluster;
  p.swap_rows = c.swap_rows;
  if (c.tile == COMET_GEMM_TILE_SWAP) { /* 136 rows by 256 B rows (SwiGLU: 128 outputs), or slim: by 128 */
    int tm = 0, tn = 0;
    CHECK_OK(comet_gemm_tile_shape(&p, &tm, &tn));
    const int want_m = c.swap_rows ? c.swap_rows : 136;
    const int want_n = c.swap_rows ? 128 : c.epi == COMET_GEMM_EPI_SWIGLU ? 128 : 256;
    CHECK_MSG(tm == want_m && tn == want_n,
              "%s: comet_gemm_tile_shape says %d x %d for the swapped tile (%d x %d)", c.name, tm, tn,
              want_m, want_n);
  }
  CHECK_OK(comet_gemm_grouped(&p, 0));
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(out.data(), dc, out.size() * 2, cudaMemcpyDeviceToHost));
  if (c.cluster == COMET_GEMM_CLUSTER_ON) { /* pairs change the loads, never the sums */
    std::vector<uint16_t> alone(out.size());
    CUDA_OK(cudaMemset(dc, 0xFF, out.size() * 2));
    p.cluster = COMET_GEMM_CLUSTER_OFF;
    p.deterministic = 1; /* no split tail, whose sums differ */
    CHECK_OK(comet_gemm_grouped(&p, 0));
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(alone.data(), dc, alone.size() * 2, cudaMemcpyDeviceToHost));
    CHECK_MSG(alone == out, "%s: pairs and single CTAs give other bits", c.name);
  }
  CHECK_OK(comet_ref_gemm_grouped(c.dt, G, c.n, c.k, off.data(), a.data(), b.data(),
                                  c.epi == COMET_GEMM_EPI_SWIGLU, c.scale ? scale.data() : NULL,
                                  ref.data()));
  if (c.epi == COMET_GEMM_EPI_GELU) /* the pre-activation rounded once, then GELU (tanh form) */
    for (auto &v : ref) {
      const double z = comet_round_f32(v, c.dt);
      v = (float)(0.5 * z * (1.0 + tanh(0.7978845608028654 * (z + 0.044715 * z * z * z))));
    }
  compare(c, out, ref, rows, cap);
  { /* the raster band changes the tiles' order, never their sums (no split tail) */
    comet_gemm_params_t q = p;
    q.deterministic = 1;
    q.split_ws = NULL;
    const size_t n = (size_t)cap * c.n;
    const std::vector<uint16_t> base = run_poisoned(q, n);
    q.band = 3;
    const std::vector<uint16_t> b3 = run_poisoned(q, n);
    q.band = 16;
    const std::vector<uint16_t> b16 = run_poisoned(q, n);
    CHECK_MSG(b3 == base && b16 == base, "%s: raster bands of 3 or 16 M-tiles give other bits", c.name);
    q.band = 0; /* nor does the ring's depth (4 by default where it applies) */
    q.stages = 3;
    CHECK_MSG(run_poisoned(q, n) == base, "%s: the 3-stage ring gives other bits", c.name);
    q.stages = 0; /* nor half tiles (ragged M-tiles of <= 64 rows, wide plain store) */
    q.half_tiles = 1;
    CHECK_MSG(run_poisoned(q, n) == base, "%s: half tiles give other bits", c.name);
    q.half_tiles = 0;
    if (q.cluster != COMET_GEMM_CLUSTER_ON) check_trace(c, q, base, rows); /* pairs: rowless tiles */
    /* nor the tile's orientation: the slim swapped tiles (tokens as wgmma's
     * N) and AUTO without them give the same bits as any other tile */
    if (c.epi == COMET_GEMM_EPI_STORE && !c.scale && !c.bmn && G <= 128 && c.tile != COMET_GEMM_TILE_TALL &&
        c.cluster != COMET_GEMM_CLUSTER_ON) {
      for (int r : {136, 184}) {
        q.tile = COMET_GEMM_TILE_SWAP;
        q.swap_rows = r;
        CHECK_MSG(run_poisoned(q, n) == base, "%s: the slim swapped tile of %d rows gives other bits",
                  c.name, r);
      }
      q.tile = COMET_GEMM_TILE_AUTO;
      q.swap_rows = -1;
      CHECK_MSG(run_poisoned(q, n) == base, "%s: AUTO without the slim tiles gives other bits", c.name);
      for (int r : {128, 136, 184, 208}) { /* the fitted tile's bodies and caps */
        q.swap_rows = r;
        CHECK_MSG(run_poisoned(q, n) == base, "%s: the fitted tile capped at %d rows gives other bits",
                  c.name, r);
      }
      q.swap_rows = c.swap_rows;
    }
  }
  if (c.ctas > 0 && c.cluster != COMET_GEMM_CLUSTER_ON)
    run_ordered_split(c, p, ref, rows, cap);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(doff);
  cudaFree(dscale);
}

static int rand_mult8(int lo, int hi) { return test_rand_int(&g_rng, lo / 8, hi / 8) * 8; }

/* The hooks (and dynamic tiles: from a counter): G experts whose rows come from W source blocks each
 * (plan_core.h layout); the tiles run from the layer0 M-tile list and wait
 * on their row counters wait_count[mt.index]. A starts as NaN on the
 * device; the host copies each level's blocks in, then sets the counters of
 * the tiles whose rows are now all in (src_last = that level) after a
 * delay, so a tile that loads before its rows reads NaN. Every tile
 * publishes its flag. */
static void run_hooks(bool layer1, bool wait, comet_dtype_t dt, bool dynamic = false) {
  const int G = 4, W = 3, n = rand_mult8(136, 520), k = rand_mult8(64, 400);
  const int counts[] = {0, 1, 50, 127, 128, 129, 200};
  std::vector<int32_t> block_off(G * (W + 1)), off(G + 1);
  int row = 0;
  for (int e = 0; e < G; ++e) {
    off[e] = row;
    for (int j = 0; j < W; ++j) {
      block_off[e * (W + 1) + j] = row;
      row += counts[test_rand_int(&g_rng, 0, 6)];
    }
    block_off[e * (W + 1) + W] = row;
  }
  off[G] = row;
  const int rows = row, cap = rows + 5;
  std::vector<comet_mtile_t> mt(rows / 1 + G * W + 1);
  const int count = layer1 ? comet_sched_mtiles_natural(block_off.data(), G, W, COMET_GEMM_TILE_M, mt.data())
                           : comet_sched_mtiles_layer0(block_off.data(), G, W, COMET_GEMM_TILE_M, mt.data());

  std::vector<uint16_t> a((size_t)cap * k), b((size_t)G * n * k), out((size_t)cap * n);
  fill_random(a, dt, -1.f, 1.f);
  fill_random(b, dt, -1.f, 1.f);
  uint16_t *ha;
  CUDA_OK(cudaHostAlloc((void **)&ha, a.size() * 2, cudaHostAllocDefault));
  memcpy(ha, a.data(), a.size() * 2);
  void *da, *db, *dc;
  int32_t *doff, *dcount;
  comet_mtile_t *dmt;
  uint64_t *hcount, *dcount_rows, *dpub;
  uint32_t *dnext = NULL;
  CUDA_OK(cudaMalloc(&da, a.size() * 2));
  CUDA_OK(cudaMalloc(&db, b.size() * 2));
  CUDA_OK(cudaMalloc(&dc, out.size() * 2));
  CUDA_OK(cudaMalloc(&doff, (G + 1) * 4));
  CUDA_OK(cudaMalloc(&dcount, 4));
  CUDA_OK(cudaMalloc(&dmt, mt.size() * sizeof(comet_mtile_t)));
  CUDA_OK(cudaHostAlloc((void **)&hcount, (count + 1) * 8, cudaHostAllocMapped));
  CUDA_OK(cudaHostGetDevicePointer((void **)&dcount_rows, hcount, 0));
  for (int i = 0; i <= count; ++i) hcount[i] = 0;
  CUDA_OK(cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(doff, off.data(), (G + 1) * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dcount, &count, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dmt, mt.data(), count * sizeof(comet_mtile_t), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dc, 0xFF, out.size() * 2));
  if (wait) CUDA_OK(cudaMemset(da, 0xFF, a.size() * 2));
  else CUDA_OK(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice));

  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = dt;
  p.groups = G;
  p.n = n;
  p.k = k;
  p.max_rows = cap;
  p.a = da;
  p.b = db;
  p.c = dc;
  p.group_offset = doff;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.mtiles = dmt;
  p.mtile_count = dcount;
  p.order = layer1 ? COMET_GEMM_ORDER_LAYER1 : COMET_GEMM_ORDER_LAYER0;
  if (wait) p.wait_count = dcount_rows;
  if (dynamic) { /* tiles from a counter instead of a fixed stride */
    CUDA_OK(cudaMalloc(&dnext, 4));
    CUDA_OK(cudaMemset(dnext, 0, 4));
    p.tile_counter = dnext;
  }
  int tile_m = 0, tile_n = 0;
  CHECK_OK(comet_gemm_tile_shape(&p, &tile_m, &tile_n));
  const int n_tiles = (n + tile_n - 1) / tile_n, n_flags = count * n_tiles;
  CUDA_OK(cudaMalloc(&dpub, (n_flags + 8) * 8));
  CUDA_OK(cudaMemset(dpub, 0, (n_flags + 8) * 8));
  p.publish_flags = dpub;
  p.publish_value = 0x5EED;

  cudaStream_t s1, s2;
  CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  CHECK_OK(comet_gemm_grouped(&p, s1));
  if (wait) { /* arrive level by level, as peers' rows would */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (rows > 0) CHECK_MSG(cudaStreamQuery(s1) == cudaErrorNotReady, "the GEMM finished before its rows arrived");
    for (int j = 0; j < W; ++j) {
      for (int e = 0; e < G; ++e) {
        const int r0 = block_off[e * (W + 1) + j], r1 = block_off[e * (W + 1) + j + 1];
        if (r1 > r0)
          CUDA_OK(cudaMemcpyAsync((uint16_t *)da + (size_t)r0 * k, ha + (size_t)r0 * k,
                                  (size_t)(r1 - r0) * k * 2, cudaMemcpyHostToDevice, s2));
      }
      CUDA_OK(cudaStreamSynchronize(s2));
      for (int i = 0; i < count; ++i)
        if (mt[i].src_last == j)
          __atomic_store_n(&hcount[mt[i].index], (uint64_t)mt[i].rows, __ATOMIC_RELEASE);
      ts.tv_nsec = 2 * 1000 * 1000;
      nanosleep(&ts, NULL);
    }
  }
  CUDA_OK(cudaStreamSynchronize(s1));
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaMemcpy(out.data(), dc, out.size() * 2, cudaMemcpyDeviceToHost));
  std::vector<uint64_t> pub(n_flags + 8);
  CUDA_OK(cudaMemcpy(pub.data(), dpub, pub.size() * 8, cudaMemcpyDeviceToHost));
  std::vector<float> ref((size_t)cap * n, 0.f);
  CHECK_OK(comet_ref_gemm_grouped(dt, G, n, k, off.data(), a.data(), b.data(), 0, NULL, ref.data()));
  Case c = {dt, COMET_GEMM_EPI_STORE, COMET_GEMM_TILE_AUTO, n, k, {}, 5, false,
            dynamic ? (wait ? "hooks layer0 wait+publish, dynamic tiles" : "hooks list+publish, dynamic tiles")
            : layer1 ? (wait ? "hooks layer1 wait+publish" : "hooks layer1 list+publish")
                     : (wait ? "hooks layer0 wait+publish" : "hooks layer0 list+publish")};
  compare(c, out, ref, rows, cap);
  int bad = 0;
  for (int i = 0; i < n_flags; ++i) bad += pub[i] != 0x5EED;
  for (int i = n_flags; i < n_flags + 8; ++i) bad += pub[i] != 0;
  CHECK_MSG(bad == 0, "%d publish flags wrong (of %d, %d M-tiles x %d N-tiles)", bad, n_flags, count,
            n_tiles);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(doff);
  cudaFree(dcount);
  cudaFree(dmt);
  cudaFree(dpub);
  cudaFree(dnext);
  cudaFreeHost(hcount);
  cudaFreeHost(ha);
}

/* The grouped reduction (the backward's weight gradients): C_g [m, n] =
 * sum over group g's rows of a[r, :]^T b[r, :], groups of 0, 1, 63, 64, 65
 * and more rows, m and n not multiples of the tile; every C row written
 * (an empty group's are zeros); rows past the last group are NaN, which
 * must not reach C. */
static void run_kgroup(comet_dtype_t dt, int m, int n, const std::vector<int> &sizes,
                       const char *name) {
  const int G = (int)sizes.size();
  std::vector<int32_t> off(G + 1, 0);
  for (int g = 0; g < G; ++g) off[g + 1] = off[g] + sizes[g];
  const int rows = off[G], cap = rows + 37; /* rows past the last group hold NaN */
  std::vector<uint16_t> a((size_t)cap * m), b((size_t)cap * n), out((size_t)G * m * n);
  fill_random(a, dt, -1.f, 1.f);
  fill_random(b, dt, -1.f, 1.f);
  std::fill(a.begin() + (size_t)rows * m, a.end(), (uint16_t)0xFFFF);
  std::fill(b.begin() + (size_t)rows * n, b.end(), (uint16_t)0xFFFF);
  std::vector<float> ref((size_t)G * m * n, 0.f);
  for (int g = 0; g < G; ++g)
    for (int r = off[g]; r < off[g + 1]; ++r)
      for (int i = 0; i < m; ++i) {
        const float x = comet_load_f32(a.data(), (size_t)r * m + i, dt);
        float *row = &ref[((size_t)g * m + i) * n];
        for (int j = 0; j < n; ++j) row[j] += x * comet_load_f32(b.data(), (size_t)r * n + j, dt);
      }
  void *da, *db, *dc;
  int32_t *doff;
  CUDA_OK(cudaMalloc(&da, a.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&db, b.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&dc, out.size() * 2 + 16));
  CUDA_OK(cudaMalloc(&doff, (G + 1) * 4));
  CUDA_OK(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(doff, off.data(), (G + 1) * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dc, 0xFF, out.size() * 2));
  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = dt;
  p.groups = G;
  p.m = m;
  p.n = n;
  p.a = da;
  p.b = db;
  p.c = dc;
  p.group_offset = doff;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.k_grouped = 1;
  p.max_rows = cap;
  CHECK_OK(comet_gemm_grouped(&p, 0));
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(out.data(), dc, out.size() * 2, cudaMemcpyDeviceToHost));
  Case c = {dt, COMET_GEMM_EPI_STORE, COMET_GEMM_TILE_WIDE, n, 0, {}, 0, false, name};
  compare(c, out, ref, G * m, G * m);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(doff);
}

static void run_arg_errors(void) {
  comet_gemm_params_t p;
  memset(&p, 0, sizeof p);
  p.dtype = COMET_DTYPE_BF16;
  p.groups = 1;
  p.n = 12;
  p.k = 64;
  p.max_rows = 10;
  p.a = p.b = p.c = (void *)0x1000;
  p.group_offset = (const int32_t *)0x1000;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "n = 12");
  p.n = 16;
  p.k = 4;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "k = 4");
  p.k = 64;
  p.dtype = COMET_DTYPE_FP8_E4M3;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "dtype");
  p.dtype = COMET_DTYPE_BF16;
  p.a = (void *)0x1004;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "a is NULL or not 16-byte");
  p.a = (void *)0x1000;
  p.wait_count = (const uint64_t *)0x1000;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "wait_count needs an mtiles");
  p.wait_count = NULL;
  p.epilogue = COMET_GEMM_EPI_GELU;
  p.row_scale = (const float *)0x1000;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "the GELU epilogue takes no row_scale");
  p.row_scale = NULL;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.groups = COMET_GEMM_MAX_GROUPS + 1;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "groups");
  p.groups = 2;
  p.k_grouped = 1;
  p.m = 12;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "m = 12");
  p.m = 16;
  p.row_scale = (const float *)0x1000;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "no row_scale");
  p.row_scale = NULL;
  p.k_grouped = 0;
  p.b_mn_major = 1;
  p.epilogue = COMET_GEMM_EPI_SWIGLU;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "MN-major B takes the STORE");
  p.b_mn_major = 0;
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.cluster = COMET_GEMM_CLUSTER_ON;
  p.tile = COMET_GEMM_TILE_NARROW;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "cluster pairs take the wide tile");
  p.tile = COMET_GEMM_TILE_AUTO;
  p.cluster = COMET_GEMM_CLUSTER_AUTO;
  p.stages = 5;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "stages = 5");
  p.stages = 0;
  p.cluster = (comet_gemm_cluster_t)3;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "cluster 3 unknown");
  p.cluster = COMET_GEMM_CLUSTER_AUTO;
  p.band = -1;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "band = -1 must be 0 (the default) or 1..1024");
  p.band = 1025;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "band = 1025 must be 0");
  p.band = 0;
  p.tile = COMET_GEMM_TILE_TALL;
  p.groups = 129;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "at most 128 groups (groups = 129)");
  p.groups = 2;
  p.b_mn_major = 1;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "the tall tile takes no hooks");
  p.b_mn_major = 0;
  p.tile = COMET_GEMM_TILE_SWAP;
  p.epilogue = COMET_GEMM_EPI_GELU;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT,
            "the swapped tile takes the STORE or SWIGLU epilogue");
  p.epilogue = COMET_GEMM_EPI_SWIGLU;
  p.swap_rows = 184;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "swap_rows = 184: 0; -1, or a multiple of 8 in 128..208, with tile AUTO; or 136, 176 or 184");
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.swap_rows = 200;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "swap_rows = 200: 0; -1, or a multiple of 8 in 128..208, with tile AUTO; or 136, 176 or 184");
  p.tile = COMET_GEMM_TILE_WIDE;
  p.swap_rows = 136;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "swap_rows = 136: 0; -1, or a multiple of 8 in 128..208, with tile AUTO; or 136, 176 or 184");
  p.swap_rows = -1;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "swap_rows = -1: 0; -1, or a multiple of 8 in 128..208, with tile AUTO; or 136, 176 or 184");
  p.tile = COMET_GEMM_TILE_AUTO; /* the fitted tile's caps */
  for (int r : {120, 132, 216}) {
    p.swap_rows = r;
    char want[96];
    snprintf(want, sizeof want, "swap_rows = %d: 0; -1, or a multiple of 8 in 128..208", r);
    CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, want);
  }
  p.swap_rows = 136;
  p.epilogue = COMET_GEMM_EPI_SWIGLU;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT,
            "swap_rows = 136 with tile AUTO (the fitted tile) takes the STORE epilogue");
  p.epilogue = COMET_GEMM_EPI_STORE;
  p.groups = 129;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "at most 128 groups (groups = 129)");
  p.groups = 2;
  p.swap_rows = 0;
  p.tile = (comet_gemm_tile_t)5;
  CHECK_ERR(comet_gemm_grouped(&p, 0), COMET_ERR_INVALID_ARGUMENT, "tile 5 unknown");
}

int main(int argc, char **argv) {
  const char *name = "test_gemm";
  bool quick = false;
  const char *only = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--quick")) quick = true;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else {
      fprintf(stderr, "usage: test_gemm [--quick] [--only TEXT]\n");
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) return test_skip(name, "no CUDA GPU");
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  if (prop.major != 9) return test_skip(name, "needs a Hopper (sm_90) GPU");
  g_rng = test_seed(name);
  setvbuf(stdout, NULL, _IOLBF, 0); /* a case a line as it ends: a log cut by a timeout shows where */
  run_arg_errors();

  const comet_dtype_t BF = COMET_DTYPE_BF16, FP = COMET_DTYPE_FP16;
  const comet_gemm_epilogue_t ST = COMET_GEMM_EPI_STORE, SW = COMET_GEMM_EPI_SWIGLU,
                              GE = COMET_GEMM_EPI_GELU;
  const comet_gemm_tile_t AU = COMET_GEMM_TILE_AUTO, WI = COMET_GEMM_TILE_WIDE,
                          NA = COMET_GEMM_TILE_NARROW, TA = COMET_GEMM_TILE_TALL,
                          SWP = COMET_GEMM_TILE_SWAP;
  /* the tall tile's blocks: a group ending in either 64-row block of its
   * warpgroups, or in none, and a tile that is all padding past 64 rows */
  const std::vector<int> tall_edge = {0, 1, 63, 64, 65, 129, 192, 255, 256, 257, 300, 3, 520};
  const std::vector<int> edge = {0, 1, 127, 128, 129, 0, 255, 3};
  std::vector<Case> cases = {
      {BF, ST, WI, 200, 136, edge, 7, false, "bf16 store wide edges"},
      {BF, ST, NA, 200, 136, edge, 7, false, "bf16 store narrow edges"},
      {BF, SW, WI, 136, 72, edge, 0, true, "bf16 swiglu wide scale"},
      {FP, SW, NA, 72, 520, edge, 3, false, "fp16 swiglu narrow"},
      {FP, ST, WI, 264, 8, {129, 1}, 2, true, "fp16 store wide k=8 scale"},
      /* GELU in the epilogue: wide (4 slabs), narrow, the 4-stage ring's
       * stores in turns (AUTO, <= 128 groups), the split tail */
      {BF, GE, WI, 200, 136, edge, 7, false, "bf16 gelu wide edges"},
      {FP, GE, NA, 264, 520, {129, 1, 300}, 3, false, "fp16 gelu narrow"},
      {BF, GE, AU, 1032, 1000, {300, 0, 517}, 5, false, "bf16 gelu auto ragged"},
      {BF, GE, WI, 264, 2048, {129, 1, 200}, 3, false, "bf16 gelu wide split 4", 8},
      /* 10 tiles on 8 CTAs: the last 2 split 4 ways */
      {BF, ST, WI, 264, 2048, {129, 1, 200}, 3, true, "bf16 store wide split 4", 8},
      {BF, ST, WI, 264, 2048, {129, 1, 200}, 3, true, "bf16 store wide split 4 again", 8},
      /* B MN-major (the backward's dh = dy . w2, dA = d(fc1) . w1) */
      {BF, ST, WI, 200, 136, edge, 7, false, "bf16 MN-major B wide edges", 0, true},
      {FP, ST, NA, 264, 520, {129, 1, 300}, 3, true, "fp16 MN-major B narrow scale", 0, true},
      {BF, ST, AU, 1032, 2056, {300, 0, 517}, 5, false, "bf16 MN-major B auto ragged", 0, true},
      {BF, ST, WI, 264, 2048, {129, 1, 200}, 3, true, "bf16 MN-major B split 4", 8, true},
      /* pairs (2-CTA clusters sharing B, or an odd group's last M-tile's A
       * across two N-tiles): odd M-tile counts, last M-tiles of <= 64 rows,
       * odd N-tile counts (a partner that stores nothing), one-M-tile
       * groups, empty groups, few CTAs */
      {BF, ST, WI, 264, 520, {129, 1, 300, 0, 256, 5}, 3, true, "bf16 pairs straddling odd", 0,
       false, COMET_GEMM_CLUSTER_ON},
      {BF, SW, WI, 136, 1000, edge, 7, true, "bf16 swiglu pairs edges", 0, false,
       COMET_GEMM_CLUSTER_ON},
      {FP, ST, AU, 520, 2056, {1000, 17}, 5, false, "fp16 pairs auto tile", 0, false,
       COMET_GEMM_CLUSTER_ON},
      {BF, ST, WI, 264, 520, {129, 1, 300, 0, 256, 5}, 3, true, "bf16 MN-major B pairs", 0, true,
       COMET_GEMM_CLUSTER_ON},
      {FP, SW, WI, 520, 264, {700, 3, 129}, 0, false, "fp16 swiglu pairs 3 CTAs", 3, false,
       COMET_GEMM_CLUSTER_ON},
      {BF, ST, WI, 520, 264, std::vector<int>(8, 100), 2, true, "bf16 pairs one M-tile a group", 0,
       false, COMET_GEMM_CLUSTER_ON},
      {BF, SW, WI, 264, 520, {513, 64, 129, 1, 0, 384}, 1, false, "bf16 swiglu pairs ragged odd", 0,
       false, COMET_GEMM_CLUSTER_ON},
      {FP, ST, WI, 520, 136, {192, 64, 320, 200, 1, 700}, 3, true, "fp16 pairs last tiles of <= 64 rows",
       0, false, COMET_GEMM_CLUSTER_ON},
      /* more groups than the pairs' tables hold: single CTAs instead */
      {BF, ST, WI, 264, 136, std::vector<int>(130, 3), 2, false, "bf16 pairs 130 groups", 0, false,
       COMET_GEMM_CLUSTER_ON},
      {BF, ST, AU, 1024, 1024, {2048, 1000, 77}, 0, false, "bf16 auto 3125 rows"},
      /* tall tiles (256 x 128) */
      {BF, ST, TA, 200, 136, tall_edge, 7, false, "bf16 store tall edges"},
      {BF, SW, TA, 136, 72, tall_edge, 0, true, "bf16 swiglu tall scale"},
      {FP, ST, TA, 264, 520, tall_edge, 3, true, "fp16 store tall scale"},
      {FP, SW, TA, 72, 2056, {129, 1, 300, 0, 700}, 5, false, "fp16 swiglu tall 5 CTAs k=2056", 5},
      {BF, ST, TA, 1032, 1000, std::vector<int>(128, 70), 2, false, "bf16 store tall 128 groups"},
      /* swapped tiles (136 x 256, tokens on wgmma's N): groups ending in
       * or at a 64-row piece, a partial last piece, past 4 tiles, empty */
      {BF, ST, SWP, 200, 136, {0, 1, 63, 64, 65, 128, 135, 136, 137, 200, 272, 545, 3}, 7, false,
       "bf16 store swapped edges"},
      {FP, ST, SWP, 264, 520, {129, 1, 300, 0, 700}, 3, false, "fp16 store swapped k=520"},
      {BF, ST, SWP, 4096, 1024, {482, 537, 525, 501}, 5, false, "bf16 store swapped routed"},
      {BF, ST, SWP, 520, 2056, {300, 0, 517}, 2, false, "bf16 store swapped 5 CTAs", 5},
      {BF, ST, SWP, 1032, 1000, std::vector<int>(128, 70), 2, false, "bf16 store swapped 128 groups"},
      {BF, SW, SWP, 136, 72, {0, 1, 63, 64, 65, 136, 137, 300, 545, 3}, 0, false, "bf16 swiglu swapped edges"},
      {FP, SW, SWP, 520, 1000, {482, 537, 0, 129}, 5, false, "fp16 swiglu swapped"},
      {BF, SW, SWP, 200, 2064, {129, 127, 0, 300}, 5, false, "bf16 swiglu swapped 3 CTAs", 3},
      /* slim swapped tiles (rows x 128 B rows): groups ending at or next to
       * a 64-row piece and a tile edge, a partial N-tile (n = 200), routed
       * sizes, few CTAs, 128 groups */
      {BF, ST, SWP, 200, 136, {0, 1, 63, 64, 65, 135, 136, 137, 183, 184, 185, 369, 3}, 7, false,
       "bf16 store slim 136 edges", 0, false, COMET_GEMM_CLUSTER_AUTO, 136},
      {BF, ST, SWP, 200, 136, {0, 1, 63, 64, 65, 175, 176, 177, 183, 184, 185, 369, 3}, 7, false,
       "bf16 store slim 176 edges", 0, false, COMET_GEMM_CLUSTER_AUTO, 176},
      {BF, ST, SWP, 200, 136, {0, 1, 63, 64, 65, 127, 128, 129, 183, 184, 185, 369, 3}, 7, false,
       "bf16 store slim 184 edges", 0, false, COMET_GEMM_CLUSTER_AUTO, 184},
      {FP, ST, SWP, 264, 520, {129, 1, 300, 0, 700}, 3, false, "fp16 store slim 184 k=520", 0, false,
       COMET_GEMM_CLUSTER_AUTO, 184},
      {FP, ST, SWP, 264, 520, {129, 1, 300, 0, 700}, 3, false, "fp16 store slim 136 k=520", 0, false,
       COMET_GEMM_CLUSTER_AUTO, 136},
      {BF, ST, SWP, 4096, 1024, {482, 537, 525, 501}, 5, false, "bf16 store slim 184 routed", 0, false,
       COMET_GEMM_CLUSTER_AUTO, 184},
      {BF, ST, SWP, 520, 2056, {300, 0, 517}, 2, false, "bf16 store slim 176 5 CTAs", 5, false,
       COMET_GEMM_CLUSTER_AUTO, 176},
      {BF, ST, SWP, 1032, 1000, std::vector<int>(128, 70), 2, false, "bf16 store slim 136 128 groups", 0,
       false, COMET_GEMM_CLUSTER_AUTO, 136},
      /* AUTO's slim tile with a width a group (fit_width: the fewest
       * tiles of <= 208 rows, ceil(rows / tiles) rounded up to 8, >= 128;
       * the widest tile's rows in the trace): Mixtral-like routed experts
       * (3 tiles each, 537 rows: 184), 64 experts of 250 or 270 rows (2 of
       * 128 or 136: 260 on average, the 5-stage body's pick), one of 4096 (20 of 208), and groups at every edge of
       * the widths (1, 63, 127: 128; 185: 192; 369: 2 of 192; 553: 3 of
       * 192; 700: 4 of 176; 209: 2 of 128; 417: 3 of 144; 625: 4 of 160);
       * capped (swap_rows) at 208 (the edges), 184 (553: 4 of 144), 136 (the
       * 5-stage body; 272: 2 of 136; 273: 3 of 128) and 128 (129: 2 of
       * 128); uncapped, the device's pick of the cap by waves (fit_pick): 2
       * experts of 1024 rows on 132 SMs in 6 tiles of 176 each (2.9
       * waves), not 5 of 208 (2.4) */
      {BF, ST, AU, 4096, 1024, {482, 537, 525, 501, 490, 512, 530, 519}, 5, false,
       "bf16 store auto fit routed", 0, false, COMET_GEMM_CLUSTER_AUTO, 0, 184},
      {BF, ST, AU, 3584, 1024, alternating(64, 250, 270), 5, false, "bf16 store auto fit 250/270", 0,
       false, COMET_GEMM_CLUSTER_AUTO, 0, 136},
      {FP, ST, AU, 4096, 1024, {4096}, 5, false, "fp16 store auto fit 4096 rows", 0, false,
       COMET_GEMM_CLUSTER_AUTO, 0, 208},
      {BF, ST, AU, 200, 136, {0, 1, 63, 127, 128, 129, 184, 185, 300, 368, 369, 552, 553, 700}, 7, false,
       "bf16 store auto fit edges", 0, false, COMET_GEMM_CLUSTER_AUTO, 208, 192},
      {BF, ST, AU, 200, 136, {208, 209, 416, 417, 624, 625, 201, 0, 7}, 7, false,
       "bf16 store auto fit 208 edges", 0, false, COMET_GEMM_CLUSTER_AUTO, 208, 208},
      {BF, ST, AU, 4096, 256, {1024, 1024}, 5, false, "bf16 store auto fit 2 x 1024 (the wave pick)", 0,
       false, COMET_GEMM_CLUSTER_AUTO, 0, 176},
      {BF, ST, AU, 200, 136, {0, 1, 63, 127, 128, 129, 184, 185, 300, 368, 369, 552, 553, 700}, 7, false,
       "bf16 store auto fit capped 184", 0, false, COMET_GEMM_CLUSTER_AUTO, 184, 184},
      {BF, ST, AU, 200, 136, {0, 1, 63, 127, 128, 129, 136, 137, 272, 273, 300, 552, 700}, 7, false,
       "bf16 store auto fit capped 136", 0, false, COMET_GEMM_CLUSTER_AUTO, 136, 136},
      {FP, ST, AU, 264, 520, {129, 1, 300, 0, 700, 256}, 3, false, "fp16 store auto fit capped 128", 0,
       false, COMET_GEMM_CLUSTER_AUTO, 128, 128},
      {FP, ST, AU, 264, 2056, {129, 1, 300, 0, 700}, 3, false, "fp16 store auto fit 5 CTAs", 5, false,
       COMET_GEMM_CLUSTER_AUTO, 208, 176},
  };
  if (!quick) {
    cases.push_back({BF, ST, AU, 1024, 1024, {1024}, 0, false, "bf16 dense 1024^3"});
    cases.push_back({BF, ST, WI, 520, 1000, {300, 0, 517, 64, 129}, 128, true, "bf16 store wide k=1000"});
    cases.push_back({BF, ST, NA, 8, 64, {1000}, 1, false, "bf16 store narrow n=8"});
    cases.push_back({FP, ST, NA, 392, 2056, {131, 400}, 9, false, "fp16 store narrow k=2056"});
    cases.push_back({BF, SW, NA, 200, 328, {129, 127, 0, 300}, 5, true, "bf16 swiglu narrow scale"});
    /* split tail: 33 wide tiles on 16 CTAs (1 left, split 4), swiglu, fp16
     * narrow 24 tiles on 20 CTAs (4 left, split 4 with K 2056 ragged),
     * 4 tiles on 64 CTAs (split 8) */
    cases.push_back({BF, ST, WI, 520, 2056, {300, 0, 517, 64, 129}, 128, true, "bf16 wide split", 16});
    /* 13 tiles on 8 CTAs: the last 13 split 3 ways, several parts a CTA */
    cases.push_back({BF, ST, WI, 200, 2048, {1500, 60}, 4, true, "bf16 wide split 2 waves", 8});
    cases.push_back({BF, SW, AU, 200, 2064, {129, 127, 0, 300}, 5, true, "bf16 swiglu auto split", 24});
    cases.push_back({FP, ST, NA, 392, 2056, {131, 400}, 9, false, "fp16 narrow split k=2056", 20});
    cases.push_back({FP, SW, WI, 136, 4096, {200}, 0, true, "fp16 swiglu wide split 8", 64});
    for (int i = 0; i < 8; ++i) { /* random shapes */
      Case c;
      c.dt = i & 1 ? FP : BF;
      c.epi = i & 2 ? SW : ST;
      c.tile = (comet_gemm_tile_t)(i % 4);
      c.n = rand_mult8(8, 700);
      c.k = rand_mult8(8, 900);
      const int G = test_rand_int(&g_rng, 1, 12);
      for (int g = 0; g < G; ++g) {
        const int pick = test_rand_int(&g_rng, 0, 6);
        const int fixed[] = {0, 1, 127, 128, 129};
        c.sizes.push_back(pick < 5 ? fixed[pick] : test_rand_int(&g_rng, 0, 700));
      }
      c.extra_rows = test_rand_int(&g_rng, 0, 200);
      c.scale = i & 4;
      c.name = "random";
      c.ctas = i < 4 ? 0 : test_rand_int(&g_rng, 1, 12);
      c.bmn = c.epi == ST && (i & 4) && c.tile != TA; /* some with B MN-major (not tall) */
      cases.push_back(c);
    }
  }
  for (const Case &c : cases)
    if (!only || strstr(c.name, only)) run_case(c);
  if (only) return test_finish(name);
  run_hooks(false, true, BF);
  run_hooks(false, true, BF, true);
  run_kgroup(BF, 136, 264, {0, 1, 63, 64, 65, 200}, "grouped reduction bf16");
  run_kgroup(FP, 200, 520, {130, 0, 7}, "grouped reduction fp16");
  run_hooks(true, false, FP, true);
  if (!quick) {
    run_hooks(true, false, FP);
    run_hooks(false, false, BF);
    run_hooks(true, true, BF);
  }
  return test_finish(name);
}
