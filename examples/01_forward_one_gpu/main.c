/* SPDX-License-Identifier: Apache-2.0 */
/* 01_forward_one_gpu — one MoE forward with comet on one GPU (W = 1):
 * create a context and a layer, fill random inputs, run comet_moe_forward,
 * time it, print a few outputs. Public API only. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "comet.h"

#define COMET_OK_OR_DIE(call)                                                        \
  do {                                                                               \
    comet_status_t s_ = (call);                                                      \
    if (s_ != COMET_OK) {                                                            \
      fprintf(stderr, "%s: %s: %s\n", #call, comet_status_string(s_), comet_last_error()); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)
#define CUDA_OR_DIE(call)                                                            \
  do {                                                                               \
    cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));                    \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

static uint16_t bf16(float f) { /* round to nearest even */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static float frand(uint64_t *s) { /* uniform in [-1, 1) */
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* A device buffer of n bf16 values, uniform in [-scale, scale). */
static void *random_bf16(size_t n, float scale, uint64_t *s) {
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; ++i) h[i] = bf16(scale * frand(s));
  void *d = NULL;
  CUDA_OR_DIE(cudaMalloc(&d, n * 2));
  CUDA_OR_DIE(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
  free(h);
  return d;
}

int main(int argc, char **argv) {
  const char *model = argc > 1 ? argv[1] : "mixtral-8x7b";
  const int T = argc > 2 ? atoi(argv[2]) : 2048;
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  if (comet_config_from_preset(&cfg, model) != COMET_OK) {
    fprintf(stderr, "%s\n", comet_last_error());
    return 2;
  }
  cfg.ep = 1; cfg.tp = 1; cfg.max_tokens_per_rank = T;
  COMET_OK_OR_DIE(comet_config_validate(&cfg, 1));
  size_t ws = 0;
  COMET_OK_OR_DIE(comet_layer_workspace_bytes(&cfg, 1, &ws));
  printf("%s: H %d F %d E %d top-%d, %d tokens; comet's workspace %.2f GB\n", model, cfg.hidden,
         cfg.ffn, cfg.num_experts, cfg.topk, T, ws / 1e9);

  /* A world of one rank: its own NCCL communicator of one. */
  comet_unique_id_t id;
  comet_context_t ctx;
  comet_layer_t layer;
  COMET_OK_OR_DIE(comet_get_unique_id(&id));
  COMET_OK_OR_DIE(comet_context_create(&ctx, 0, 1, &id, 0));
  COMET_OK_OR_DIE(comet_layer_create(&layer, ctx, &cfg));
  cudaStream_t stream = comet_context_stream(ctx);

  /* Inputs: tokens, router choices (distinct experts per token), weights. */
  uint64_t s = 42;
  const int H = cfg.hidden, K = cfg.topk, E = cfg.num_experts;
  void *x = random_bf16((size_t)T * H, 1.0f, &s);
  void *w1 = random_bf16((size_t)E * comet_config_w1_rows(&cfg) * H, 0.02f, &s);
  void *w2 = random_bf16((size_t)E * H * cfg.ffn, 0.02f, &s);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * K);
  float *wt = malloc(sizeof(float) * (size_t)T * K);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) {
      ids[t * K + k] = (t + k * (E / K > 0 ? E / K : 1)) % E; /* distinct: K <= E */
      wt[t * K + k] = 1.0f / K;
    }
  int32_t *d_ids;
  float *d_wt;
  void *out;
  CUDA_OR_DIE(cudaMalloc((void **)&d_ids, sizeof(int32_t) * (size_t)T * K));
  CUDA_OR_DIE(cudaMalloc((void **)&d_wt, sizeof(float) * (size_t)T * K));
  CUDA_OR_DIE(cudaMalloc(&out, (size_t)T * H * 2));
  CUDA_OR_DIE(cudaMemcpy(d_ids, ids, sizeof(int32_t) * (size_t)T * K, cudaMemcpyHostToDevice));
  CUDA_OR_DIE(cudaMemcpy(d_wt, wt, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice));

  comet_moe_args_t a = COMET_MOE_ARGS_INITIALIZER;
  a.num_tokens = T; a.x = x; a.topk_ids = d_ids; a.topk_weights = d_wt;
  a.w1 = w1; a.w2 = w2; a.out = out;
  COMET_OK_OR_DIE(comet_moe_forward(layer, &a, stream)); /* warm-up */
  cudaEvent_t e0, e1;
  CUDA_OR_DIE(cudaEventCreate(&e0));
  CUDA_OR_DIE(cudaEventCreate(&e1));
  const int iters = 10;
  CUDA_OR_DIE(cudaEventRecord(e0, stream));
  for (int i = 0; i < iters; ++i) COMET_OK_OR_DIE(comet_moe_forward(layer, &a, stream));
  CUDA_OR_DIE(cudaEventRecord(e1, stream));
  CUDA_OR_DIE(cudaEventSynchronize(e1));
  float ms = 0;
  CUDA_OR_DIE(cudaEventElapsedTime(&ms, e0, e1));
  uint16_t head[4];
  CUDA_OR_DIE(cudaMemcpy(head, out, sizeof head, cudaMemcpyDeviceToHost));
  printf("forward: %.3f ms per call; out[0][0..3] = %g %g %g %g\n", ms / iters, from_bf16(head[0]),
         from_bf16(head[1]), from_bf16(head[2]), from_bf16(head[3]));

  COMET_OK_OR_DIE(comet_layer_destroy(layer));
  COMET_OK_OR_DIE(comet_context_destroy(ctx));
  cudaFree(x); cudaFree(w1); cudaFree(w2); cudaFree(d_ids); cudaFree(d_wt); cudaFree(out);
  free(ids); free(wt);
  return 0;
}
