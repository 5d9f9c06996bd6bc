/* SPDX-License-Identifier: Apache-2.0 */
/* comet.c — the `comet` command: dispatches to its subcommands; `comet
 * --version` (-V) is `comet version`. */
#include <stdio.h>
#include <string.h>

#include "comet.h"
#include "run_record.h"
#include "tools.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: comet <command> [options]\n"
          "\n"
          "commands:\n"
          "  info                 GPUs, peer access between them, CUDA and NCCL versions\n"
          "  presets              the model shapes comet knows (--model NAME elsewhere)\n"
          "  bench [--op moe]     MoE layer: unfused baseline (NCCL + cuBLAS) vs comet, per config\n"
          "  bench --op dispatch|combine   token dispatch/combine bandwidth vs NCCL all-to-all\n"
          "  bench --op gemm      grouped GEMM TFLOP/s vs cuBLAS\n"
          "  tune                 sweep the fused kernels' mover CTAs, write a tuning table\n"
          "  version              library version (also --version, -V)\n"
          "\n"
          "`comet <command> --help` shows a command's options.\n"
          "Multi-GPU commands fork one process per GPU (--gpus N) or join an external\n"
          "launcher's ranks (env RANK, WORLD_SIZE, LOCAL_RANK) with --rendezvous PATH.\n");
}

/* The value of --op in argv, or NULL (options take their value as the next
 * argument, --op too). */
static const char *find_op(int argc, char **argv) {
  for (int i = 0; i + 1 < argc; ++i)
    if (strcmp(argv[i], "--op") == 0) return argv[i + 1];
  return NULL;
}

int main(int argc, char **argv) {
  comet_run_record_init(argc, argv); /* every JSON row names its command and date */
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "info") == 0) return comet_cmd_info(argc - 2, argv + 2);
  if (strcmp(cmd, "presets") == 0) return comet_cmd_presets(argc - 2, argv + 2);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    int v = comet_version();
    printf("comet %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100);
    return 0;
  }
  if (strcmp(cmd, "bench") == 0) {
    const char *op = find_op(argc - 2, argv + 2);
    if (!op || strcmp(op, "moe") == 0) return comet_bench_moe_main(argc - 2, argv + 2);
    if (strcmp(op, "dispatch") == 0 || strcmp(op, "combine") == 0)
      return comet_bench_comm_main(argc - 2, argv + 2);
    if (strcmp(op, "gemm") == 0) return comet_bench_gemm_main(argc - 2, argv + 2);
    fprintf(stderr, "comet bench: unknown --op '%s' (moe, dispatch, combine, gemm)\n", op);
    return 2;
  }
  if (strcmp(cmd, "tune") == 0) return comet_tune_main(argc - 2, argv + 2);
  fprintf(stderr, "comet: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
