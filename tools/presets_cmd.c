/* SPDX-License-Identifier: Apache-2.0 */
/* presets_cmd.c — `comet presets`: the model shapes in src/presets.c. */
#include <stdio.h>
#include <string.h>

#include "comet.h"
#include "tools.h"

int comet_cmd_presets(int argc, char **argv) {
  if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    printf("usage: comet presets\n  Lists the model presets usable as --model NAME.\n");
    return 0;
  }
  if (argc > 0) {
    fprintf(stderr, "comet presets: unexpected argument '%s' (comet presets --help)\n", argv[0]);
    return 2;
  }
  printf("%-18s %6s %6s %5s %3s  %-8s %s\n", "model", "H", "F", "E", "K", "act",
         "expert GFLOP/token (fc1+fc2, all K)");
  for (int i = 0; i < comet_preset_count(); ++i) {
    const comet_preset_t *p = comet_preset_at(i);
    int w1_rows = p->activation == COMET_ACT_SWIGLU ? 2 * p->ffn : p->ffn;
    double gflop = 2.0 * p->topk * ((double)p->hidden * w1_rows + (double)p->hidden * p->ffn) / 1e9;
    printf("%-18s %6d %6d %5d %3d  %-8s %.3f\n", p->name, p->hidden, p->ffn, p->num_experts,
           p->topk, comet_activation_name(p->activation), gflop);
  }
  return 0;
}
