/*
 * adapter.h - LoRA adapter files: PEFT's folder (adapter_config.json +
 * adapter_model.safetensors, keys like
 * base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight) and
 * llama.cpp's GGUF LoRA (general.type = adapter, adapter.type = lora,
 * adapter.lora.alpha; tensors blk.N.attn_qkv.weight.lora_a (ne [n_in, r])
 * and .lora_b (ne [r, n_out]), as convert_lora_to_gguf.py writes them), and
 * merging an adapter into a model file.
 *
 * Q/K row order: PEFT holds Hugging Face's, GGUF llama.cpp's permuted one
 * (llama only); an sb_lora holds its model's (model/lora.h), and these
 * functions convert. llama.cpp has no rsLoRA: its scale is alpha / r, so a
 * GGUF export of an rsLoRA adapter writes alpha' = alpha * sqrt(r)
 * (alpha' / r = alpha / sqrt(r)).
 *
 * Every write goes to a temporary file, fsync'd and renamed.
 */
#ifndef SB_ADAPTER_H
#define SB_ADAPTER_H

#include "model/lora.h"
#include "model/model.h"

/* dir is created if missing. */
sb_status sb_lora_save_peft(const sb_lora *l, const sb_model *m, const char *dir, sb_err *err);
sb_status sb_lora_save_gguf(const sb_lora *l, const sb_model *m, const char *path, sb_err *err);
/* path: a PEFT folder, its adapter_model.safetensors, or a .gguf LoRA. The
 * adapter is checked against m (arch, layer count, shapes); NULL on error
 * with the file and tensor named. */
sb_lora *sb_lora_load(const sb_model *m, const char *path, sb_err *err);

/* Writes m with the adapters merged into its weights (W + scale B A):
 * GGUF with matrices in `type` (< 0 keeps each tensor's type), through
 * sb_model_save_gguf. */
sb_status sb_lora_merge_save_gguf(sb_model *m, const sb_lora *const *l, int n, const char *path, int type,
                                  sb_err *err);

#endif
