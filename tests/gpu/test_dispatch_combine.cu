/* SPDX-License-Identifier: Apache-2.0 */
/* test_dispatch_combine — the device routing plan, token dispatch and
 * combine at W = 1 on a real GPU, W = 2, 4, 8 in the loopback world, and
 * over NCCL on as many GPUs as there are; every EP x TP layout,
 * against the host plan (plan.c) and the combine formula computed here:
 * uniform, skewed, empty experts, dropped tokens, unequal tokens per rank
 * (one rank with none). Fresh random data per run (seed printed), outputs
 * poisoned. A consumer kernel waits on the dispatch arrival flags the way a
 * GEMM will, then copies the rows out. Bad input: bad ids on one rank ->
 * COMET_ERR_ROUTING on every rank (none hangs); too many rows -> routing
 * error; too many tokens -> error before any kernel; configs that differ
 * across ranks -> error naming the field on every rank. Exit 77 if no GPU. */
#include <math.h>

#include "comm_test.h"
#include "kernels/comm/sync.cuh"
#include "kernels/comm/wait.cuh"
#include "ref/convert.h"

static const char *TEST = "test_dispatch_combine";

/* Waits for every (local expert, arrival) block flag, then copies the
 * block's rows out of the window: what a GEMM CTA does before its tile. */
__global__ void consume_rows(comet_comm_view_t v, char *dst) {
  const int W = v.world, El = v.num_experts / v.ep;
  const uint64_t epoch = comet_epoch(v);
  const size_t row_bytes = (size_t)v.hidden * v.elem_bytes;
  const char *rows = v.win_local + v.off_rows;
  for (int b = blockIdx.x; b < El * W; b += gridDim.x) {
    const int el = b / W, j = b % W;
    bool ok = true;
    if (threadIdx.x == 0)
      ok = comet_wait_geq(v, (const uint64_t *)(v.win_local + v.off_dflags) + b, epoch,
                          COMET_WAIT_TEST, comet_plan_source(v.rank, j, W), el, j);
    if (!__syncthreads_and(ok)) return;
    const size_t r0 = v.block_offset[el * (W + 1) + j], r1 = v.block_offset[el * (W + 1) + j + 1];
    for (size_t i = r0 * row_bytes / 16 + threadIdx.x; i < r1 * row_bytes / 16; i += blockDim.x)
      ((uint4 *)dst)[i] = ld_v4(rows + i * 16);
    __syncthreads();
  }
}

typedef struct run_args {
  uint64_t seed;
} run_args_t;

typedef struct tcfg {
  int E, K, H, T_max;
  comet_dtype_t dtype;
} tcfg_t;

static float to_f32(uint16_t b, int fp16) { return fp16 ? comet_fp16_to_f32(b) : comet_bf16_to_f32(b); }
static uint16_t from_f32(float f, int fp16) { return fp16 ? comet_f32_to_fp16(f) : comet_f32_to_bf16(f); }

static int tokens_of(int r, int T_max, int zero_rank) {
  if (r == zero_rank) return 0;
  return T_max - (r % 5) * T_max / 5; /* unequal tokens per rank */
}

/* One routing case on one layer: plan, dispatch, consume, combine twice. */
static void run_case(comet_layer_t L, const comet_layer_config_t *cfg, const comet_rank_info_t *info,
                     cudaStream_t stream, int kind, uint64_t seed, int case_id, int zero_rank,
                     int ctas) {
  const int W = info->world, me = info->rank, E = cfg->num_experts, K = cfg->topk, H = cfg->hidden;
  const int T_max = cfg->max_tokens_per_rank, tp = cfg->tp, El = E / cfg->ep;
  const int fp16 = cfg->dtype == COMET_DTYPE_FP16;
  const comet_comm_view_t *v = comet_layer_view(L);
  const size_t row_bytes = (size_t)H * 2;
  const int64_t cap = v->row_capacity;
  int *T = (int *)calloc((size_t)W, sizeof(int));
  int32_t **ids = (int32_t **)calloc((size_t)W, sizeof(int32_t *));
  uint16_t **x = (uint16_t **)calloc((size_t)W, sizeof(uint16_t *));
  for (int r = 0; r < W; ++r) {
    T[r] = tokens_of(r, T_max, zero_rank);
    ids[r] = (int32_t *)malloc(sizeof(int32_t) * ((size_t)T[r] * K + 1));
    x[r] = (uint16_t *)malloc(row_bytes * ((size_t)T[r] + 1));
    gen_ids(kind, mix_seed(seed, case_id, r, 1), E, K, T[r], ids[r]);
    gen_bits16(mix_seed(seed, case_id, r, 2), (size_t)T[r] * H, x[r], fp16);
  }
  comet_plan_t plan;
  comet_plan_dims_t dims = {E, K, cfg->ep, cfg->tp};
  CHECK_OK(comet_plan_build(&plan, dims, T, (const int32_t *const *)ids, T_max, cap));
  const comet_rank_plan_t *rp = &plan.ranks[me];
  const int Tm = T[me];
  const int64_t rows = rp->rows;
  float *w = (float *)malloc(sizeof(float) * ((size_t)Tm * K + 1));
  uint64_t ws = mix_seed(seed, case_id, me, 3);
  for (int i = 0; i < Tm * K; ++i) w[i] = test_rand_uniform(&ws, 0.0f, 1.0f);

  int32_t *d_ids;
  float *d_w;
  char *d_x, *d_out, *d_copy, *d_y;
  CUDA_OK(test_malloc(&d_ids, sizeof(int32_t) * ((size_t)Tm * K + 1)));
  CUDA_OK(test_malloc(&d_w, sizeof(float) * ((size_t)Tm * K + 1)));
  CUDA_OK(test_malloc(&d_x, row_bytes * ((size_t)Tm + 1)));
  CUDA_OK(test_malloc(&d_out, row_bytes * ((size_t)Tm + 1)));
  CUDA_OK(test_malloc(&d_copy, row_bytes * (size_t)cap));
  CUDA_OK(test_malloc(&d_y, row_bytes * (size_t)(rows + 1)));
  CUDA_OK(cudaMemcpy(d_ids, ids[me], sizeof(int32_t) * (size_t)Tm * K, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_w, w, sizeof(float) * (size_t)Tm * K, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_x, x[me], row_bytes * (size_t)Tm, cudaMemcpyHostToDevice));
  /* y of every rank (this one's on the device) */
  uint16_t **y = (uint16_t **)calloc((size_t)W, sizeof(uint16_t *));
  for (int q = 0; q < W; ++q) {
    y[q] = (uint16_t *)malloc(row_bytes * (size_t)(plan.ranks[q].rows + 1));
    gen_bits16(mix_seed(seed, case_id, q, 4), (size_t)plan.ranks[q].rows * H, y[q], fp16);
  }
  CUDA_OK(cudaMemcpy(d_y, y[me], row_bytes * (size_t)rows, cudaMemcpyHostToDevice));
  /* poison: NaN everywhere an output lands */
  test_fill(d_out, 0xff, row_bytes * ((size_t)Tm + 1), stream);
  test_fill(d_copy, 0xff, row_bytes * (size_t)cap, stream);
  test_barrier(L->ctx, stream); /* peers no longer read this rank's y (= rows) */
  test_fill(v->win_local + v->off_rows, 0xff, row_bytes * (size_t)cap, stream);

  CHECK_OK(comet_layer_plan(L, Tm, d_ids, NULL, stream));
  CHECK_OK(comet_layer_dispatch(L, d_x, ctas, stream));
  consume_rows<<<4, 256, 0, stream>>>(*v, d_copy);
  CUDA_OK(cudaGetLastError());
  comet_route_status_t rs;
  CHECK_OK(comet_layer_route_status(L, stream, &rs));
  CHECK_MSG(rs.rows == rows, "rank %d: device plan has %d rows, host plan %lld", me, rs.rows,
            (long long)rows);

  /* the device plan's tables equal the host plan's */
  int32_t *h = (int32_t *)malloc(sizeof(int32_t) * ((size_t)(T_max * K * tp) + (size_t)cap + W * E + 64));
  CUDA_OK(cudaMemcpy(h, v->all_counts, sizeof(int32_t) * W * E, cudaMemcpyDeviceToHost));
  CHECK_MSG(!memcmp(h, plan.all_counts, sizeof(int32_t) * W * E), "rank %d: all_counts differ", me);
  CUDA_OK(cudaMemcpy(h, v->block_offset, sizeof(int32_t) * El * (W + 1), cudaMemcpyDeviceToHost));
  CHECK_MSG(!memcmp(h, rp->block_offset, sizeof(int32_t) * El * (W + 1)), "rank %d: block_offset differ", me);
  CUDA_OK(cudaMemcpy(h, v->expert_offset, sizeof(int32_t) * (El + 1), cudaMemcpyDeviceToHost));
  CHECK_MSG(!memcmp(h, rp->expert_offset, sizeof(int32_t) * (El + 1)), "rank %d: expert_offset differ", me);
  if (Tm > 0) {
    CUDA_OK(cudaMemcpy(h, v->dest_row, sizeof(int32_t) * Tm * K * tp, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < Tm * K * tp; ++i) bad += h[i] != rp->dest_row[i];
    CHECK_MSG(bad == 0, "rank %d: %d dest_row entries differ", me, bad);
  }
  if (rows > 0) {
    const int32_t *tabs[3] = {rp->row_src, rp->row_token, rp->row_slot};
    const size_t offs[3] = {v->off_row_src, v->off_row_token, v->off_row_slot};
    for (int k = 0; k < 3; ++k) {
      CUDA_OK(cudaMemcpy(h, v->win_local + offs[k], sizeof(int32_t) * rows, cudaMemcpyDeviceToHost));
      CHECK_MSG(!memcmp(h, tabs[k], sizeof(int32_t) * rows), "rank %d: row table %d differs", me, k);
    }
  }
  free(h);

  /* dispatched rows: row r is x of (row_src, row_token) */
  uint16_t *got = (uint16_t *)malloc(row_bytes * (size_t)(rows + 1));
  CUDA_OK(cudaMemcpy(got, d_copy, row_bytes * (size_t)rows, cudaMemcpyDeviceToHost));
  int64_t bad_rows = 0;
  for (int64_t r = 0; r < rows; ++r)
    bad_rows += memcmp(got + (size_t)r * H, x[rp->row_src[r]] + (size_t)rp->row_token[r] * H, row_bytes) != 0;
  CHECK_MSG(bad_rows == 0, "rank %d: %lld of %lld dispatched rows differ", me, (long long)bad_rows,
            (long long)rows);
  free(got);

  /* combine: y (random) and then the round trip (y = the dispatched rows) */
  uint16_t *want = (uint16_t *)malloc(row_bytes * ((size_t)Tm + 1));
  uint16_t *out = (uint16_t *)malloc(row_bytes * ((size_t)Tm + 1));
  for (int pass = 0; pass < 2; ++pass) {
    for (int t = 0; t < Tm; ++t)
      for (int c = 0; c < H; ++c) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) {
          const int e = ids[me][(size_t)t * K + k];
          if (e < 0) continue;
          for (int i = 0; i < tp; ++i) {
            const int q = (e / El) * tp + i;
            const int32_t r = rp->dest_row[((size_t)t * K + k) * tp + i];
            const uint16_t b = pass == 0 ? y[q][(size_t)r * H + c] : x[me][(size_t)t * H + c];
            acc = fmaf(w[(size_t)t * K + k], to_f32(b, fp16), acc);
          }
        }
        want[(size_t)t * H + c] = from_f32(acc, fp16);
      }
    test_fill(d_out, 0xff, row_bytes * ((size_t)Tm + 1), stream);
    /* A combine per plan: the re-plan (same ids) gives a new epoch and its
     * barrier keeps pushes of this pass out of the last pass's reduce; the
     * rows are dispatched again (pass 0's y took their memory). */
    if (pass == 1) {
      CHECK_OK(comet_layer_plan(L, Tm, d_ids, NULL, stream));
      CHECK_OK(comet_layer_dispatch(L, d_x, ctas, stream));
      consume_rows<<<4, 256, 0, stream>>>(*v, d_copy); /* the rows are in */
      CUDA_OK(cudaGetLastError());
    }
    CHECK_OK(comet_layer_combine(L, pass == 0 ? d_y : NULL, d_w, d_out, ctas, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(out, d_out, row_bytes * (size_t)Tm, cudaMemcpyDeviceToHost));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < (size_t)Tm * H; ++i)
      if (out[i] != want[i] && !bad++) first = i;
    CHECK_MSG(bad == 0, "rank %d: combine (%s) differs in %zu of %zu values; first at token %zu col %zu: "
              "got %g want %g", me, pass == 0 ? "random y" : "round trip", bad, (size_t)Tm * H,
              first / H, first % H, to_f32(out[first], fp16), to_f32(want[first], fp16));
  }
  free(want);
  free(out);
  for (int q = 0; q < W; ++q) free(y[q]);
  free(y);
  test_free(d_ids); test_free(d_w); test_free(d_x); test_free(d_out); test_free(d_copy); test_free(d_y);
  comet_plan_free(&plan);
  for (int r = 0; r < W; ++r) { free(ids[r]); free(x[r]); }
  free(ids); free(x); free(T); free(w);
}

/* Bad ids on one rank (out of range, then a duplicate), too many tokens. */
static void run_bad_input(comet_layer_t L, const comet_layer_config_t *cfg,
                          const comet_rank_info_t *info, cudaStream_t stream, uint64_t seed) {
  const int W = info->world, me = info->rank, E = cfg->num_experts, K = cfg->topk;
  const int T = cfg->max_tokens_per_rank;
  int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)T * K);
  int32_t *d_ids;
  float *d_w;
  char *d_x, *d_out;
  const size_t row_bytes = (size_t)cfg->hidden * 2;
  CUDA_OK(test_malloc(&d_ids, sizeof(int32_t) * (size_t)(T + 1) * K));
  CUDA_OK(test_malloc(&d_w, sizeof(float) * (size_t)T * K));
  CUDA_OK(test_malloc(&d_x, row_bytes * T));
  CUDA_OK(test_malloc(&d_out, row_bytes * T));
  test_fill(d_w, 0, sizeof(float) * (size_t)T * K, stream);
  test_fill(d_x, 0, row_bytes * T, stream);
  for (int which = 0; which < 2; ++which) {
    gen_ids(ROUTE_UNIFORM, mix_seed(seed, 900 + which, me, 1), E, K, T, ids);
    const int bad_rank = which == 0 ? W - 1 : 0;
    if (me == bad_rank) {
      if (which == 0) ids[(size_t)5 * K + K - 1] = E + 5;
      else if (K >= 2) ids[(size_t)7 * K + 1] = ids[(size_t)7 * K];
      else ids[7] = -3;
    }
    CUDA_OK(cudaMemcpy(d_ids, ids, sizeof(int32_t) * (size_t)T * K, cudaMemcpyHostToDevice));
    CHECK_OK(comet_layer_plan(L, T, d_ids, NULL, stream)); /* asynchronous: the error comes later */
    CHECK_OK(comet_layer_dispatch(L, d_x, 8, stream));
    CHECK_OK(comet_layer_combine(L, NULL, d_w, d_out, 8, stream));
    char needle[32];
    snprintf(needle, sizeof needle, "on rank %d", bad_rank);
    CHECK_ERR(comet_layer_route_status(L, stream, NULL), COMET_ERR_ROUTING, needle);
    if (me == 0) printf("  bad ids on rank %d only -> every rank: %s\n", bad_rank, comet_last_error());
  }
  /* every rank: each refuses its own call and tells the others */
  CHECK_ERR(comet_layer_plan(L, T + 1, d_ids, NULL, stream), COMET_ERR_INVALID_ARGUMENT, "max_tokens_per_rank");
  if (me == 0) printf("  too many tokens -> %s\n", comet_last_error());
  test_free(d_ids); test_free(d_w); test_free(d_x); test_free(d_out);
  free(ids);
}

static comet_layer_config_t make_cfg(const tcfg_t *c, int ep, int tp) {
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  cfg.hidden = c->H;
  cfg.ffn = 256 * tp;
  cfg.num_experts = c->E;
  cfg.topk = c->K;
  cfg.ep = ep;
  cfg.tp = tp;
  cfg.max_tokens_per_rank = c->T_max;
  cfg.dtype = c->dtype;
  return cfg;
}

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const run_args_t *a = (const run_args_t *)arg;
  const int W = info->world, me = info->rank;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  cudaStream_t stream = comet_context_stream(ctx);
  const int budget = comet_context_sm_budget(ctx);
  const tcfg_t cfgs[2] = {{8, 2, 1024, 384, COMET_DTYPE_BF16}, {16, 4, 264, 200, COMET_DTYPE_FP16}};
  const int ctas_list[3] = {1, 7, 32};
  int case_id = 0;
  for (int ep = W; ep >= 1; --ep) {
    if (W % ep) continue;
    const int tp = W / ep;
    for (int ci = 0; ci < 2; ++ci) {
      if (cfgs[ci].E % ep) continue;
      comet_layer_config_t cfg = make_cfg(&cfgs[ci], ep, tp);
      comet_layer_t L = NULL;
      CHECK_OK(comet_layer_create(&L, ctx, &cfg));
      if (!L) return 1;
      for (int kind = 0; kind < ROUTE_KINDS; ++kind) {
        const int zero_rank = kind == ROUTE_DROPPED ? W - 1 : -1;
        const int ctas = ctas_list[case_id % 3] < budget ? ctas_list[case_id % 3] : budget;
        const int before = test_failures;
        run_case(L, &cfg, info, stream, kind, a->seed, case_id++, zero_rank, ctas);
        if (me == 0)
          printf("  world %d ep %d tp %d E %d K %d H %d %s %-13s%s ctas %2d: %s\n", W, ep, tp, cfg.num_experts,
                 cfg.topk, cfg.hidden, comet_dtype_name(cfg.dtype), route_names[kind],
                 zero_rank >= 0 ? " (a rank without tokens)" : "", ctas,
                 test_failures == before ? "ok" : "FAILED");
      }
      if (ci == 0) {
        run_bad_input(L, &cfg, info, stream, a->seed);
        run_case(L, &cfg, info, stream, ROUTE_UNIFORM, a->seed, case_id++, -1, 16); /* recovers */
      }
      CHECK_OK(comet_layer_destroy(L));
    }
  }
  { /* more rows than the workspace holds */
    comet_layer_config_t cfg = make_cfg(&cfgs[0], W, 1);
    cfg.max_rows_per_rank = 64;
    comet_layer_t L = NULL;
    CHECK_OK(comet_layer_create(&L, ctx, &cfg));
    if (L) {
      int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * cfg.max_tokens_per_rank * cfg.topk), *d_ids;
      gen_ids(ROUTE_SKEW, mix_seed(a->seed, 950, me, 1), cfg.num_experts, cfg.topk, cfg.max_tokens_per_rank, ids);
      CUDA_OK(test_malloc(&d_ids, sizeof(int32_t) * cfg.max_tokens_per_rank * cfg.topk));
      CUDA_OK(cudaMemcpy(d_ids, ids, sizeof(int32_t) * cfg.max_tokens_per_rank * cfg.topk, cudaMemcpyHostToDevice));
      CHECK_OK(comet_layer_plan(L, cfg.max_tokens_per_rank, d_ids, NULL, stream));
      CHECK_ERR(comet_layer_route_status(L, stream, NULL), COMET_ERR_ROUTING, "row capacity");
      if (me == 0) printf("  too many rows -> %s\n", comet_last_error());
      test_free(d_ids);
      free(ids);
      CHECK_OK(comet_layer_destroy(L));
    }
  }
  if (W >= 2) { /* configs that differ across ranks */
    comet_layer_config_t cfg = make_cfg(&cfgs[0], W, 1);
    if (me == 1) cfg.ffn = 512;
    comet_layer_t L = NULL;
    CHECK_ERR(comet_layer_create(&L, ctx, &cfg), COMET_ERR_INVALID_ARGUMENT, "ffn");
    if (me == 0) printf("  configs differ -> %s\n", comet_last_error());
  }
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a;
  a.seed = test_seed(TEST);
  return test_run_worlds(TEST, &w, rank_body, &a, 600.0);
}
