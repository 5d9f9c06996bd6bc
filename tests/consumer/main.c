/* SPDX-License-Identifier: Apache-2.0 */
/* consumer — the CPU part of comet from an installed tree: version, a
 * preset, a config validation, a workspace size, an error message. Exits
 * non-zero if any of it is wrong. */
#include <stdio.h>
#include <string.h>

#include <comet.h>

int main(void) {
  if (comet_version() != COMET_VERSION_CODE) {
    fprintf(stderr, "library version %d, header %d\n", comet_version(), COMET_VERSION_CODE);
    return 1;
  }
  comet_layer_config_t cfg = COMET_LAYER_CONFIG_INITIALIZER;
  if (comet_config_from_preset(&cfg, "mixtral-8x7b") != COMET_OK) return 1;
  cfg.ep = 4; cfg.tp = 2; cfg.max_tokens_per_rank = 4096;
  size_t bytes = 0;
  if (comet_config_validate(&cfg, 8) != COMET_OK || comet_layer_workspace_bytes(&cfg, 8, &bytes) != COMET_OK) {
    fprintf(stderr, "valid config refused: %s\n", comet_last_error());
    return 1;
  }
  cfg.ep = 3;
  if (comet_config_validate(&cfg, 6) != COMET_ERR_INVALID_ARGUMENT ||
      !strstr(comet_last_error(), "num_experts")) {
    fprintf(stderr, "bad config accepted or unclear: %s\n", comet_last_error());
    return 1;
  }
  printf("comet %d: mixtral-8x7b ep 4 x tp 2 at 4096 tokens takes %.2f GB per rank; "
         "ep 3 is refused: %s\n", comet_version(), bytes / 1e9, comet_last_error());
  return 0;
}
