/* SPDX-License-Identifier: Apache-2.0 */
/* presets.c — the model shapes users run (REFERENCE.md), in one table. */
#include <stdio.h>
#include <string.h>

#include "error.h"

static const comet_preset_t k_presets[] = {
    /* name              H     F      E    K  activation */
    {"mixtral-8x7b", 4096, 14336, 8, 2, COMET_ACT_SWIGLU},
    {"qwen2-moe-2.7b", 2048, 1408, 64, 4, COMET_ACT_SWIGLU},
    {"phi3.5-moe", 4096, 6400, 16, 2, COMET_ACT_SWIGLU},
    {"qwen2-57b-a14b", 3584, 2560, 64, 8, COMET_ACT_SWIGLU},
    {"deepseek-v2-lite", 2048, 1408, 64, 6, COMET_ACT_SWIGLU},
    {"qwen3-30b-a3b", 2048, 768, 128, 8, COMET_ACT_SWIGLU},
    {"deepseek-v3", 7168, 2048, 256, 8, COMET_ACT_SWIGLU},
};
enum { k_preset_count = (int)(sizeof k_presets / sizeof k_presets[0]) };

int comet_preset_count(void) { return k_preset_count; }

const comet_preset_t *comet_preset_at(int i) {
  return (i >= 0 && i < k_preset_count) ? &k_presets[i] : NULL;
}

comet_status_t comet_config_from_preset(comet_layer_config_t *cfg, const char *name) {
  COMET_ARG(cfg != NULL, "comet_config_from_preset: cfg is NULL");
  const comet_preset_t *p = comet_preset_find(name);
  if (!p) return COMET_ERR_INVALID_ARGUMENT; /* the message lists the names */
  cfg->hidden = p->hidden;
  cfg->ffn = p->ffn;
  cfg->num_experts = p->num_experts;
  cfg->topk = p->topk;
  cfg->activation = p->activation;
  return COMET_OK;
}

const comet_preset_t *comet_preset_find(const char *name) {
  if (name)
    for (int i = 0; i < k_preset_count; ++i)
      if (strcmp(k_presets[i].name, name) == 0) return &k_presets[i];
  char list[512] = "";
  for (int i = 0; i < k_preset_count; ++i) {
    strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
    strncat(list, k_presets[i].name, sizeof list - strlen(list) - 1);
  }
  comet_set_error(COMET_ERR_INVALID_ARGUMENT, "unknown model preset '%s' (known: %s)",
                  name ? name : "(null)", list);
  return NULL;
}
