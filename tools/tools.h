/* SPDX-License-Identifier: Apache-2.0 */
/* tools.h — the `comet` command's subcommands, one file each. Each takes the
 * arguments after its name and returns the process exit code. */
#ifndef COMET_TOOLS_H
#define COMET_TOOLS_H

#ifdef __cplusplus
extern "C" {
#endif

int comet_cmd_info(int argc, char **argv);      /* tools/info.c */
int comet_cmd_presets(int argc, char **argv);   /* tools/presets_cmd.c */
int comet_bench_moe_main(int argc, char **argv);  /* tools/bench.c: the MoE layer table */
int comet_tune_main(int argc, char **argv);       /* tools/bench.c + tune.c: `comet tune` */
int comet_bench_comm_main(int argc, char **argv); /* tools/bench_comm.cu: --op dispatch|combine */
int comet_bench_gemm_main(int argc, char **argv); /* tools/bench_gemm.cu: --op gemm */

#ifdef __cplusplus
}
#endif
#endif
