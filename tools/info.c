/* SPDX-License-Identifier: Apache-2.0 */
/* info.c — `comet info`: GPUs, peer access between them, CUDA and NCCL
 * versions. Without a usable GPU it says why in plain words (cli.h) and
 * exits 1. */
#include <stdio.h>
#include <string.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "cli.h"
#include "comet.h"
#include "tools.h"

static void print_version(const char *what, int code, int major_div, int minor_div) {
  printf("%-22s %d.%d", what, code / major_div, (code % major_div) / minor_div);
  if (minor_div > 1) printf(".%d", code % minor_div);
  printf("\n");
}

int comet_cmd_info(int argc, char **argv) {
  if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    printf("usage: comet info\n  GPUs, peer access, CUDA and NCCL versions; exits 1 without a GPU.\n");
    return 0;
  }
  if (argc > 0) {
    fprintf(stderr, "comet info: unexpected argument '%s' (comet info --help)\n", argv[0]);
    return 2;
  }
  int v = comet_version();
  printf("%-22s %d.%d.%d\n", "comet", v / 10000, v / 100 % 100, v % 100);
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) print_version("NCCL (loaded)", nccl, 10000, 100);
  print_version("NCCL (built against)", COMET_NCCL_BUILD_VERSION, 10000, 100);
  if (nccl != COMET_NCCL_BUILD_VERSION)
    printf("  warning: the loaded NCCL differs from the one comet was built against; the NCCL\n"
           "  device API has no ABI promise: rebuild comet against the NCCL it loads.\n");
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) print_version("CUDA runtime", rt, 1000, 10);
  if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0) print_version("CUDA driver", drv, 1000, 10);
  else printf("CUDA driver            none\n");
  char why[192];
  const int n = cli_gpu_count(why, sizeof why);
  if (n < 1) {
    printf("\nno GPU: %s.\n", why);
    return 1;
  }
  printf("\n%d GPU(s):\n", n);
  int hopper = 0;
  for (int d = 0; d < n; ++d) {
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      printf("  [%d] cannot read properties\n", d);
      continue;
    }
    hopper += p.major == 9;
    printf("  [%d] %s  sm_%d%d  %d SMs  %.1f GiB  L2 %.0f MiB  smem/block %zu KiB  bus %02x:%02x\n",
           d, p.name, p.major, p.minor, p.multiProcessorCount,
           (double)p.totalGlobalMem / (1 << 30), (double)p.l2CacheSize / (1 << 20),
           p.sharedMemPerBlockOptin / 1024, p.pciBusID, p.pciDeviceID);
  }
  if (n > 1) {
    printf("\npeer access (row can load/store column's memory):\n     ");
    for (int j = 0; j < n; ++j) printf(" %3d", j);
    printf("\n");
    for (int i = 0; i < n; ++i) {
      printf("  %3d", i);
      for (int j = 0; j < n; ++j) {
        int ok = 0;
        const int known = i == j || cudaDeviceCanAccessPeer(&ok, i, j) == cudaSuccess;
        printf(" %3s", i == j ? "-" : !known ? "?" : ok ? "yes" : "no");
      }
      printf("\n");
    }
  }
  if (hopper < n)
    printf("\nnote: comet's kernels are built for sm_90a (Hopper); %d of %d GPU(s) are not Hopper.\n",
           n - hopper, n);
  return 0;
}
