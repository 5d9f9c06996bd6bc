/* SPDX-License-Identifier: Apache-2.0 */
/* test_plan_device — the routing plan computed on the GPUs equals the host
 * plan (plan.c) entry for entry: exchanged counts, expert and block offsets,
 * dest_row, send lists and the receivers' row tables, for random and skewed
 * routings with many plan CTAs (T up to 3000), many experts (E 64, K 6;
 * E 128, K 8), EP and EP x TP, unequal tokens, repeated plans on one layer
 * (device epochs, double-buffered counts), the plan's copy of the ids.
 * W = 1 on a real GPU, 2, 4, 8 in the loopback world, NCCL on as many GPUs as
 * there are; exit 77 if there is no GPU. */
#include "comm_test.h"

static const char *TEST = "test_plan_device";

typedef struct run_args { uint64_t seed; } run_args_t;

static int rank_body(const comet_rank_info_t *info, void *arg) {
  const uint64_t seed = ((const run_args_t *)arg)->seed;
  const int W = info->world, me = info->rank;
  comet_context_t ctx = test_rank_begin(info);
  if (!ctx) return 1;
  cudaStream_t stream = comet_context_stream(ctx);
  const int shapes[2][3] = {{64, 6, 3000}, {128, 8, 1100}}; /* E, K, T_max */
  int case_id = 0;
  for (int si = 0; si < 2; ++si)
    for (int tp = 1; tp <= W; tp *= 2) {
      if (tp > 1 && si == 1) continue;
      comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
      cfg.hidden = 64;
      cfg.ffn = 64 * tp;
      cfg.num_experts = shapes[si][0];
      cfg.topk = shapes[si][1];
      cfg.ep = W / tp;
      cfg.tp = tp;
      cfg.max_tokens_per_rank = shapes[si][2];
      comet_layer_t L = NULL;
      CHECK_OK(comet_layer_create(&L, ctx, &cfg));
      if (!L) return 1;
      const comet_comm_view_t *v = comet_layer_view(L);
      const int E = cfg.num_experts, K = cfg.topk, El = E / cfg.ep;
      for (int rep = 0; rep < 3; ++rep, ++case_id) {
        const int kind = rep == 1 ? ROUTE_SKEW : ROUTE_UNIFORM;
        int T[8];
        int32_t *ids[8];
        for (int r = 0; r < W; ++r) {
          T[r] = cfg.max_tokens_per_rank - ((r + rep) % 7) * cfg.max_tokens_per_rank / 7;
          ids[r] = (int32_t *)malloc(sizeof(int32_t) * ((size_t)T[r] * K + 1));
          gen_ids(kind, mix_seed(seed, case_id, r, 1), E, K, T[r], ids[r]);
        }
        comet_plan_t plan;
        comet_plan_dims_t dims = {E, K, cfg.ep, cfg.tp};
        CHECK_OK(comet_plan_build(&plan, dims, T, (const int32_t *const *)ids, cfg.max_tokens_per_rank,
                                  v->row_capacity));
        const comet_rank_plan_t *rp = &plan.ranks[me];
        int32_t *d_ids;
        CUDA_OK(test_malloc(&d_ids, sizeof(int32_t) * ((size_t)T[me] * K + 1)));
        CUDA_OK(cudaMemcpy(d_ids, ids[me], sizeof(int32_t) * T[me] * K, cudaMemcpyHostToDevice));
        /* every rank has allocated before any plan spins (allocations may
         * wait for the device: in the loopback world, for a peer's plan) */
        test_barrier(ctx, stream);
        const double t0 = test_now_s();
        CHECK_OK(comet_layer_plan(L, T[me], d_ids, NULL, stream));
        test_note_slow(me, "comet_layer_plan", t0);
        comet_route_status_t rs;
        CHECK_OK(comet_layer_route_status(L, stream, &rs));
        CHECK(rs.rows == rp->rows);
        size_t nmax = (size_t)T[me] * K * tp + (size_t)v->row_capacity + (size_t)W * E + 64;
        int32_t *h = (int32_t *)malloc(sizeof(int32_t) * nmax);
        CUDA_OK(cudaMemcpy(h, v->all_counts, sizeof(int32_t) * W * E, cudaMemcpyDeviceToHost));
        CHECK(!memcmp(h, plan.all_counts, sizeof(int32_t) * W * E));
        CUDA_OK(cudaMemcpy(h, v->expert_offset, sizeof(int32_t) * (El + 1), cudaMemcpyDeviceToHost));
        CHECK(!memcmp(h, rp->expert_offset, sizeof(int32_t) * (El + 1)));
        CUDA_OK(cudaMemcpy(h, v->block_offset, sizeof(int32_t) * El * (W + 1), cudaMemcpyDeviceToHost));
        CHECK(!memcmp(h, rp->block_offset, sizeof(int32_t) * El * (W + 1)));
        CUDA_OK(cudaMemcpy(h, v->dest_row, sizeof(int32_t) * T[me] * K * tp, cudaMemcpyDeviceToHost));
        CHECK_MSG(!memcmp(h, rp->dest_row, sizeof(int32_t) * T[me] * K * tp), "rank %d case %d: dest_row", me, case_id);
        CUDA_OK(cudaMemcpy(h, v->slot_expert, sizeof(int32_t) * T[me] * K, cudaMemcpyDeviceToHost));
        CHECK_MSG(!memcmp(h, ids[me], sizeof(int32_t) * T[me] * K), "rank %d case %d: slot_expert", me, case_id);
        uint64_t epoch = 0;
        CUDA_OK(cudaMemcpy(&epoch, v->epoch, sizeof epoch, cudaMemcpyDeviceToHost));
        CHECK_MSG(epoch == (uint64_t)rep + 1, "rank %d case %d: device epoch %llu after %d plans", me,
                  case_id, (unsigned long long)epoch, rep + 1);
        /* send list: own (t, k) by expert, then token */
        int32_t *so = (int32_t *)malloc(sizeof(int32_t) * (E + 1));
        CUDA_OK(cudaMemcpy(so, v->send_offset, sizeof(int32_t) * (E + 1), cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(h, v->send_list, sizeof(int32_t) * so[E], cudaMemcpyDeviceToHost));
        int bad = so[E] != 0 && so[0] != 0;
        for (int e = 0, n = 0; e < E; ++e)
          for (int t = 0; t < T[me]; ++t)
            for (int k = 0; k < K; ++k)
              if (ids[me][(size_t)t * K + k] == e) bad += h[n++] != t * K + k;
        CHECK_MSG(bad == 0, "rank %d case %d: send list differs in %d entries", me, case_id, bad);
        free(so);
        const int32_t *tabs[3] = {rp->row_src, rp->row_token, rp->row_slot};
        const size_t offs[3] = {v->off_row_src, v->off_row_token, v->off_row_slot};
        for (int k = 0; k < 3; ++k) {
          CUDA_OK(cudaMemcpy(h, v->win_local + offs[k], sizeof(int32_t) * rp->rows, cudaMemcpyDeviceToHost));
          CHECK_MSG(!memcmp(h, tabs[k], sizeof(int32_t) * rp->rows), "rank %d case %d: row table %d", me, case_id, k);
        }
        if (me == 0)
          printf("  world %d ep %d tp %d E %d K %d T %d..%d %s: %s\n", W, cfg.ep, tp, E, K, T[W - 1], T[0],
                 route_names[kind], test_failures ? "FAILED" : "ok");
        free(h);
        test_free(d_ids);
        comet_plan_free(&plan);
        for (int r = 0; r < W; ++r) free(ids[r]);
      }
      CHECK_OK(comet_layer_destroy(L));
    }
  return test_rank_end(info, ctx);
}

int main(int argc, char **argv) {
  const test_worlds_t w = test_parse_worlds(argc, argv);
  run_args_t a = {test_seed(TEST)};
  return test_run_worlds(TEST, &w, rank_body, &a, 600.0);
}
