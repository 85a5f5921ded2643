/*
 * lora.h - LoRA adapters on the decoder's linear layers, as PEFT defines
 * them (peft.tuners.lora.Linear):
 *
 *     y = x W^T + scale * (dropout(x) A^T) B^T,  scale = alpha / r
 *                                                (alpha / sqrt(r) with rsLoRA)
 *
 * A (r, n_in), B (n_out, r) per adapted module; W frozen. Modules are named
 * as in transformers: q_proj k_proj v_proj o_proj gate_proj up_proj
 * down_proj (llama) and qkv_proj o_proj gate_up_proj down_proj (phi3, whose
 * fused qkv_proj and gate_up_proj PEFT adapts as one Linear each: one A, one
 * B over all q|k|v or gate|up rows).
 *
 * An sb_lora owns one slab of parameters (every A then B, module by module)
 * and, when made for training, a gradient slab of the same layout. B's rows
 * are in the loaded model's row order (for a llama GGUF: llama.cpp's
 * permuted Q/K rows); the adapter files convert on the way in and out.
 *
 * Inference (sb_ctx_set_adapters) adds the adapters' products to each
 * projection's output without merging them into the base.
 */
#ifndef SB_LORA_H
#define SB_LORA_H

#include "base/base.h"
#include "model/model.h"

typedef enum sb_lora_mod {
    SB_LORA_Q = 0,
    SB_LORA_K,
    SB_LORA_V,
    SB_LORA_QKV,
    SB_LORA_O,
    SB_LORA_GATE,
    SB_LORA_UP,
    SB_LORA_GATE_UP,
    SB_LORA_DOWN,
    SB_LORA_N_MOD
} sb_lora_mod;

/* "q_proj", ... (transformers' module names). */
const char *sb_lora_mod_name(int mod);
/* llama.cpp's tensor name part: "attn_q", "attn_qkv", "ffn_up", ... */
const char *sb_lora_mod_gguf_name(int mod);

#define SB_LORA_MAX_TARGETS 16

typedef struct sb_lora_config {
    int r;              /* rank */
    float alpha;        /* lora_alpha */
    float dropout;      /* lora_dropout, in [0, 1) */
    bool rslora;        /* use_rslora: scale = alpha / sqrt(r) */
    int n_targets;
    char targets[SB_LORA_MAX_TARGETS][32]; /* module names, or "all-linear" */
} sb_lora_config;

/* r 8, alpha 16, dropout 0.05, no rsLoRA, targets: every linear layer. */
sb_lora_config sb_lora_config_default(void);
/* Parses a comma-separated target list ("qkv_proj,o_proj"); "all-linear"
 * or "all" selects every linear layer. */
sb_status sb_lora_config_set_targets(sb_lora_config *c, const char *list, sb_err *err);

typedef struct sb_lora_mat {
    float *A;  /* (r, n_in) lora_A.weight, NULL if the module is not adapted */
    float *B;  /* (n_out, r) lora_B.weight */
    float *dA; /* gradients, same shapes (NULL without a gradient slab) */
    float *dB;
    int n_in, n_out;
} sb_lora_mat;

typedef struct sb_lora {
    sb_lora_config cfg;
    char arch[32];
    int n_layer;
    float scale;         /* alpha / r or alpha / sqrt(r) */
    float user_scale;    /* inference multiplier (--lora-scaled), 1 by default */
    sb_lora_mat *mats;   /* (n_layer, SB_LORA_N_MOD) */
    float *params;       /* (n_params) every A then B, module by module */
    float *grads;        /* (n_params) or NULL */
    size_t n_params;
} sb_lora;

/* Modules m has for its arch (fused for phi3, split for llama): a mask of
 * 1 << sb_lora_mod. */
unsigned sb_lora_model_modules(const sb_model_config *c);
/* Input and output widths of module mod for config c. */
void sb_lora_mod_dims(const sb_model_config *c, int mod, int *n_in, int *n_out);

/* A new adapter for model config mc: every module named by cfg's targets
 * (in every layer). A target matching no module of the model is an error
 * naming it and listing the model's modules (the Phi-3 trap: a llama target
 * list adapts only o_proj and down_proj there). Parameters zeroed; with
 * grads, a zeroed gradient slab too. NULL on error. */
sb_lora *sb_lora_new(const sb_model_config *mc, const sb_lora_config *cfg, bool grads, sb_err *err);
void sb_lora_free(sb_lora *l);
/* PEFT's initialisation: A ~ kaiming_uniform_(a = sqrt(5)), i.e. uniform in
 * +-1/sqrt(n_in); B = 0. Deterministic in seed. */
void sb_lora_init(sb_lora *l, uint64_t seed);
/* PEFT's key of a parameter: base_model.model.model.layers.<l>.<self_attn|mlp>.<mod>.lora_<A|B>.weight */
void sb_lora_peft_key(char *out, size_t n, int layer, int mod, bool is_B);

/* y[:, j - o0] += user_scale * scale * (x A^T) B[j]^T for output rows j in
 * [o0, o1) of module mod of layer: x (n, n_in) dense, y with row stride
 * ldy (ignored when n = 1). No allocation; nothing if the module is not adapted. */
void sb_lora_apply(const sb_lora *l, int layer, int mod, const float *x, int n, float *y, int64_t ldy, int o0, int o1);

/* ---- splitmix64: the small counter-based generator of the train layer ----
 * sb_rng_at(seed, i) is the i-th output of the stream: dropout masks and
 * initialisation are addressed, not sequential, so recomputation
 * (gradient checkpointing) and resume reproduce them. */
uint64_t sb_rng_at(uint64_t seed, uint64_t i);
/* uniform float in [0, 1) from a 64-bit draw */
static inline float sb_rng_unit(uint64_t r) { return (float)(r >> 40) * (1.0f / 16777216.0f); }

#endif
