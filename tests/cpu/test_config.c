/* SPDX-License-Identifier: Apache-2.0 */
/* test_config.c — every bad layer config gets INVALID_ARGUMENT (or
 * UNSUPPORTED) with a message naming the field; good configs pass; presets
 * and names resolve. */
#include "test_util.h"

static comet_layer_config_t good(void) {
  comet_layer_config_t c = COMET_LAYER_CONFIG_INITIALIZER;
  c.hidden = 4096;
  c.ffn = 14336;
  c.num_experts = 8;
  c.topk = 2;
  c.ep = 4;
  c.tp = 1;
  c.max_tokens_per_rank = 8192;
  return c;
}

int main(void) {
  comet_layer_config_t c = good();
  CHECK_OK(comet_config_validate(&c, 4));
  CHECK(comet_config_w1_rows(&c) == 2 * 14336);
  CHECK(comet_config_row_capacity(&c) == 4LL * 8192 * 2);
  c.max_rows_per_rank = 1000;
  CHECK(comet_config_row_capacity(&c) == 1000);
  c.activation = COMET_ACT_GELU;
  CHECK(comet_config_w1_rows(&c) == 14336);

  CHECK_ERR(comet_config_validate(NULL, 4), COMET_ERR_INVALID_ARGUMENT, "config is NULL");
  c = good(); c.size = 12;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.size");
  c = good(); c.hidden = 4100;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.hidden = 4100");
  c = good(); c.hidden = 0;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.hidden = 0");
  c = good(); c.tp = 3; c.ep = 1;
  CHECK_ERR(comet_config_validate(&c, 3), COMET_ERR_INVALID_ARGUMENT, "config.ffn = 14336 is not a positive multiple of config.tp = 3");
  c = good(); c.ffn = 14336 + 4; c.tp = 2; c.ep = 2;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.ffn / config.tp = 7170");
  c = good(); c.num_experts = 6;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.num_experts = 6 is not a multiple of config.ep = 4");
  c = good(); c.topk = 9;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.topk = 9");
  c = good(); c.topk = 0;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.topk = 0");
  c = good(); c.ep = 0;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.ep = 0");
  c = good(); c.tp = 0;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.tp = 0");
  c = good();
  CHECK_ERR(comet_config_validate(&c, 8), COMET_ERR_INVALID_ARGUMENT, "differs from world_size = 8");
  c = good(); c.max_tokens_per_rank = 0;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.max_tokens_per_rank = 0");
  c = good(); c.max_rows_per_rank = -1;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.max_rows_per_rank = -1");
  c = good(); c.dtype = (comet_dtype_t)7;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.dtype = 7");
  c = good(); c.dtype = COMET_DTYPE_FP8_E4M3;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_UNSUPPORTED, "fp8_e4m3");
  c = good(); c.activation = (comet_activation_t)9;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "config.activation = 9");
  c = good(); c.ep = 4; c.tp = 1; c.num_experts = 256; c.topk = 8; c.max_tokens_per_rank = 1 << 27;
  c.ffn = 2048;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_INVALID_ARGUMENT, "max_rows_per_rank");
  c.max_rows_per_rank = 1 << 24;
  CHECK_OK(comet_config_validate(&c, 4));
  c.ep = 1; c.tp = 4; /* T * K * tp slot indices overflow */
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_UNSUPPORTED, "overflows 32-bit slot indices");

  /* What the kernels cannot run is refused: a config that validates runs. */
  c = good(); c.num_experts = 4096; c.topk = 300; c.ep = 4;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_UNSUPPORTED, "plan's row kernel");
  c = good(); c.num_experts = 16384; c.ep = 4;
  CHECK_ERR(comet_config_validate(&c, 4), COMET_ERR_UNSUPPORTED, "local experts");
  c = good(); c.num_experts = 4096 * 4; c.ep = 16; c.tp = 4;
  CHECK_ERR(comet_config_validate(&c, 64), COMET_ERR_UNSUPPORTED, "shared memory");
  c = good(); c.num_experts = 128; c.ep = 128;
  CHECK_ERR(comet_config_validate(&c, 128), COMET_ERR_UNSUPPORTED, "up to 64 ranks");

  /* Edge shapes that must be accepted: E = 1, K = 1, W = 1, K = E. */
  c = good(); c.num_experts = 1; c.topk = 1; c.ep = 1;
  CHECK_OK(comet_config_validate(&c, 1));
  c = good(); c.topk = 8; c.ep = 2; c.tp = 2;
  CHECK_OK(comet_config_validate(&c, 4));

  /* Presets, names and status strings. */
  CHECK(comet_preset_count() == 7);
  { /* an unknown preset names the known ones; the config is left alone */
    comet_layer_config_t pc = COMET_LAYER_CONFIG_INITIALIZER;
    CHECK(comet_config_from_preset(&pc, "nope") == COMET_ERR_INVALID_ARGUMENT &&
          strstr(comet_last_error(), "mixtral-8x7b") && pc.hidden == 0);
    CHECK(comet_config_from_preset(NULL, "mixtral-8x7b") == COMET_ERR_INVALID_ARGUMENT);
  }
  for (int i = 0; i < comet_preset_count(); ++i) {
    const comet_preset_t *p = comet_preset_at(i);
    CHECK(p && comet_preset_find(p->name) == p);
    comet_layer_config_t pc = COMET_LAYER_CONFIG_INITIALIZER;
    CHECK(comet_config_from_preset(&pc, p->name) == COMET_OK && pc.hidden == p->hidden &&
          pc.ffn == p->ffn && pc.num_experts == p->num_experts && pc.topk == p->topk &&
          pc.activation == p->activation);
    pc.ep = 4; pc.max_tokens_per_rank = 4096;
    CHECK_MSG(comet_config_validate(&pc, 4) == COMET_OK, "%s: %s", p->name, comet_last_error());
  }
  CHECK(comet_preset_at(7) == NULL && comet_preset_at(-1) == NULL);
  const comet_preset_t *mx = comet_preset_find("mixtral-8x7b");
  CHECK(mx && mx->hidden == 4096 && mx->ffn == 14336 && mx->num_experts == 8 && mx->topk == 2);
  const comet_preset_t *ds = comet_preset_find("deepseek-v3");
  CHECK(ds && ds->hidden == 7168 && ds->ffn == 2048 && ds->num_experts == 256 && ds->topk == 8);
  CHECK(comet_preset_find("gpt-5") == NULL);
  CHECK(strstr(comet_last_error(), "unknown model preset 'gpt-5'") != NULL);
  CHECK(strstr(comet_last_error(), "qwen3-30b-a3b") != NULL);
  CHECK(strcmp(comet_status_string(COMET_ERR_ROUTING), "routing error") == 0);
  CHECK(strcmp(comet_status_string((comet_status_t)99), "unknown status") == 0);
  CHECK(strcmp(comet_dtype_name(COMET_DTYPE_FP16), "fp16") == 0);
  CHECK(comet_dtype_size(COMET_DTYPE_BF16) == 2 && comet_dtype_size((comet_dtype_t)5) == 0);
  CHECK(strcmp(comet_activation_name(COMET_ACT_GELU), "gelu") == 0);
  CHECK(comet_version() == COMET_VERSION_CODE);
  return test_finish("test_config");
}
