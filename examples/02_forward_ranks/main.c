/* SPDX-License-Identifier: Apache-2.0 */
/* 02_forward_ranks — one MoE forward on W ranks, expert-parallel, each rank
 * with its own tokens. Two ways to get W ranks:
 *
 *   --loopback W        W threads of this process on one GPU (the loopback
 *                       world: for trying and testing without W GPUs)
 *   RANK, WORLD_SIZE,   one process per GPU started by torchrun or mpirun-
 *   LOCAL_RANK env +    style launchers; rank 0 writes comet's unique id to
 *   --id-file PATH      PATH, the others read it (a shared file system)
 *
 * Public API only. Each rank prints its first output values. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "comet.h"

typedef struct rank_arg {
  int rank, world, device;
  comet_loopback_t loopback; /* NULL: NCCL, with id */
  comet_unique_id_t id;
  int status;
} rank_arg_t;

#define TRY(call)                                                                       \
  do {                                                                                  \
    comet_status_t s_ = (call);                                                         \
    if (s_ != COMET_OK) {                                                               \
      fprintf(stderr, "[rank %d] %s: %s\n", r->rank, #call, comet_last_error());         \
      r->status = 1;                                                                    \
      return NULL;                                                                      \
    }                                                                                   \
  } while (0)
#define TRY_CUDA(call)                                                                  \
  do {                                                                                  \
    cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess) {                                                            \
      fprintf(stderr, "[rank %d] %s: %s\n", r->rank, #call, cudaGetErrorString(e_));     \
      r->status = 1;                                                                    \
      return NULL;                                                                      \
    }                                                                                   \
  } while (0)

/* A device buffer of n bf16 values, small and deterministic per rank
 * (stream-ordered: in the loopback world a rank must not cudaMalloc/cudaFree
 * while its peers wait for it). */
static cudaError_t fill(void **d, size_t n, int seed, float scale, cudaStream_t st) {
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; ++i) {
    float f = scale * (float)((int)((i * 2654435761u + (unsigned)seed * 40503u) % 2001) - 1000) / 1000.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    h[i] = (uint16_t)(u >> 16);
  }
  cudaError_t e = cudaMallocAsync(d, n * 2, st);
  if (e == cudaSuccess) e = cudaMemcpyAsync(*d, h, n * 2, cudaMemcpyHostToDevice, st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st);
  free(h);
  return e;
}

static void *rank_main(void *p) {
  rank_arg_t *r = (rank_arg_t *)p;
  comet_context_t ctx = NULL;
  if (r->loopback) TRY(comet_context_create_loopback(&ctx, r->loopback, r->rank));
  else TRY(comet_context_create(&ctx, r->rank, r->world, &r->id, r->device));
  cudaStream_t st = comet_context_stream(ctx);

  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER; /* a small Qwen2-MoE-like layer */
  cfg.hidden = 1024; cfg.ffn = 512; cfg.num_experts = 8 * r->world; cfg.topk = 4;
  cfg.ep = r->world; cfg.tp = 1; cfg.max_tokens_per_rank = 512;
  comet_layer_t layer = NULL;
  TRY(comet_layer_create(&layer, ctx, &cfg)); /* collective: every rank */

  const int T = 256 + 64 * r->rank, H = cfg.hidden, K = cfg.topk, El = cfg.num_experts / cfg.ep;
  void *x, *w1, *w2, *out;
  TRY_CUDA(fill(&x, (size_t)T * H, r->rank, 1.0f, st));
  TRY_CUDA(fill(&w1, (size_t)El * comet_config_w1_rows(&cfg) * H, 100 + r->rank, 0.02f, st));
  TRY_CUDA(fill(&w2, (size_t)El * H * cfg.ffn, 200 + r->rank, 0.02f, st));
  TRY_CUDA(cudaMallocAsync(&out, (size_t)T * H * 2, st));
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * K), *d_ids;
  float *wt = malloc(sizeof(float) * (size_t)T * K), *d_wt;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) {
      ids[t * K + k] = (t * 7 + k * (cfg.num_experts / K) + r->rank) % cfg.num_experts;
      wt[t * K + k] = 0.25f;
    }
  TRY_CUDA(cudaMallocAsync((void **)&d_ids, sizeof(int32_t) * (size_t)T * K, st));
  TRY_CUDA(cudaMallocAsync((void **)&d_wt, sizeof(float) * (size_t)T * K, st));
  TRY_CUDA(cudaMemcpyAsync(d_ids, ids, sizeof(int32_t) * (size_t)T * K, cudaMemcpyHostToDevice, st));
  TRY_CUDA(cudaMemcpyAsync(d_wt, wt, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice, st));

  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = x; a.topk_ids = d_ids; a.topk_weights = d_wt; a.w1 = w1; a.w2 = w2;
  a.out = out;
  TRY(comet_moe_forward(layer, &a, st));
  uint16_t head[2];
  TRY_CUDA(cudaMemcpyAsync(head, out, sizeof head, cudaMemcpyDeviceToHost, st));
  TRY_CUDA(cudaStreamSynchronize(st));
  uint32_t u0 = (uint32_t)head[0] << 16, u1 = (uint32_t)head[1] << 16;
  float f0, f1;
  memcpy(&f0, &u0, 4);
  memcpy(&f1, &u1, 4);
  printf("[rank %d of %d, %s] %d tokens; out[0][0..1] = %g %g\n", r->rank, r->world,
         r->loopback ? "loopback" : "nccl", T, f0, f1);

  cudaFreeAsync(x, st); cudaFreeAsync(w1, st); cudaFreeAsync(w2, st); cudaFreeAsync(out, st);
  cudaFreeAsync(d_ids, st); cudaFreeAsync(d_wt, st);
  TRY_CUDA(cudaStreamSynchronize(st));
  free(ids); free(wt);
  TRY(comet_layer_destroy(layer)); /* collective too */
  TRY(comet_context_destroy(ctx));
  return NULL;
}

static int run_loopback(int W) {
  comet_loopback_t world = NULL;
  if (comet_loopback_create(&world, W, 0) != COMET_OK) {
    fprintf(stderr, "loopback world of %d: %s\n", W, comet_last_error());
    return 1;
  }
  printf("loopback world: %d ranks on GPU 0, %d SMs each\n", W, comet_loopback_sm_per_rank(world));
  pthread_t th[64];
  rank_arg_t args[64];
  for (int i = 0; i < W; ++i) {
    args[i] = (rank_arg_t){i, W, 0, world, {{0}}, 0};
    pthread_create(&th[i], NULL, rank_main, &args[i]);
  }
  int rc = 0;
  for (int i = 0; i < W; ++i) {
    pthread_join(th[i], NULL);
    rc |= args[i].status;
  }
  if (comet_loopback_destroy(world) != COMET_OK) rc = 1;
  return rc;
}

static int env_int(const char *name) {
  const char *v = getenv(name);
  return v ? atoi(v) : -1;
}

/* One rank of a launcher's world: rank 0 publishes the id in id_file. */
static int run_launched(const char *id_file) {
  rank_arg_t a;
  memset(&a, 0, sizeof a);
  a.rank = env_int("RANK");
  a.world = env_int("WORLD_SIZE");
  a.device = env_int("LOCAL_RANK") >= 0 ? env_int("LOCAL_RANK") : a.rank;
  if (a.rank < 0 || a.world < 1 || !id_file) {
    fprintf(stderr, "usage: 02_forward_ranks --loopback W\n"
                    "   or: RANK=r WORLD_SIZE=w [LOCAL_RANK=l] 02_forward_ranks --id-file PATH\n");
    return 2;
  }
  if (a.rank == 0) {
    if (comet_get_unique_id(&a.id) != COMET_OK) {
      fprintf(stderr, "comet_get_unique_id: %s\n", comet_last_error());
      return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", id_file);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(&a.id, sizeof a.id, 1, f) != 1 || fclose(f) || rename(tmp, id_file)) {
      fprintf(stderr, "cannot write %s: %s\n", id_file, strerror(errno));
      return 1;
    }
  } else {
    for (int tries = 0;; ++tries) { /* up to a minute */
      FILE *f = fopen(id_file, "rb");
      if (f && fread(&a.id, sizeof a.id, 1, f) == 1) {
        fclose(f);
        break;
      }
      if (f) fclose(f);
      if (tries == 600) {
        fprintf(stderr, "[rank %d] no id in %s after 60 s\n", a.rank, id_file);
        return 1;
      }
      usleep(100000);
    }
  }
  rank_main(&a);
  return a.status;
}

int main(int argc, char **argv) {
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  for (int i = 1; i + 1 < argc; ++i) {
    if (!strcmp(argv[i], "--loopback")) {
      /* before the first CUDA call: the loopback world's two rules (comet.h) */
      setenv("CUDA_MODULE_LOADING", "EAGER", 1);
      setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 1);
      return run_loopback(atoi(argv[i + 1]));
    }
    if (!strcmp(argv[i], "--id-file")) return run_launched(argv[i + 1]);
  }
  return run_launched(NULL);
}
