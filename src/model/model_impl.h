/*
 * model_impl.h - the inside of sb_model, shared by config.c (metadata),
 * load.c (weights), forward.c (the forward pass) and convert.c (GGUF export).
 * Not for use outside src/model/.
 */
#ifndef SB_MODEL_IMPL_H
#define SB_MODEL_IMPL_H

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "tensor/nf4.h"

/* Matrices are borrowed views into the mapped file (ne[0] = input width,
 * ne[1] = output rows); vectors are owned f32 copies. Dimension letters as
 * in model.h: D, V, Hq, Hkv, Hd, F. Unused fields (fused vs split) are
 * zeroed (data == NULL). */
typedef struct sb_layer {
    float *attn_norm;   /* (D)  input_layernorm */
    sb_tensor wqkv;     /* (D -> Hq*Hd + 2*Hkv*Hd)  self_attn.qkv_proj, rows q|k|v */
    sb_tensor wq;       /* (D -> Hq*Hd)   q_proj */
    sb_tensor wk;       /* (D -> Hkv*Hd)  k_proj */
    sb_tensor wv;       /* (D -> Hkv*Hd)  v_proj */
    sb_tensor wo;       /* (Hq*Hd -> D)   o_proj */
    float *ffn_norm;    /* (D)  post_attention_layernorm */
    sb_tensor w_gate_up;/* (D -> 2F)  mlp.gate_up_proj: gate rows then up rows */
    sb_tensor w_gate;   /* (D -> F)   gate_proj */
    sb_tensor w_up;     /* (D -> F)   up_proj */
    sb_tensor w_down;   /* (F -> D)   down_proj */
} sb_layer;

typedef enum { SB_SRC_GGUF = 0, SB_SRC_HF } sb_model_source;

struct sb_model {
    sb_model_config cfg;
    sb_model_source source;
    char *path;
    sb_gguf *gguf;        /* SB_SRC_GGUF */
    sb_safetensors *st;   /* SB_SRC_HF */
    sb_tokenizer *tok;    /* may be NULL */

    sb_tensor tok_embd;   /* (V, D)  embed_tokens: row t is token t's vector */
    sb_tensor output;     /* (D -> V)  lm_head (a copy of tok_embd's view if tied) */
    float *output_norm;   /* (D)  model.norm */
    float *rope_short;    /* (n_rot/2) LongRoPE short_factor, NULL without LongRoPE (own allocation) */
    float *rope_long;     /* (n_rot/2) long_factor (own allocation) */
    sb_layer *layers;     /* (n_layer) */
    float *vec_slab;      /* one allocation holding output_norm and every layer's norms */
    sb_nf4 *nf4;          /* (cap_nf4) states behind the SB_NF4 views (nf4_model.c) */
    int64_t n_nf4, cap_nf4;
    uint8_t *r8_slab;     /* the SB_Q4_0_R8 views' bytes (repack.c), NULL if none */
};

/* config.c: fills m->cfg (all but the weight-derived fields) and, for
 * LongRoPE from config.json, m->rope_short / rope_long (allocated there). */
sb_status sb_config_from_gguf(sb_model *m, sb_err *err);
sb_status sb_config_from_hf(sb_model *m, const char *config_json_path, sb_err *err);
/* Checks the filled config for consistency (positive sizes, divisibility,
 * n_rot even and <= head_dim). */
sb_status sb_config_check(const sb_model_config *c, sb_err *err);

/* llama.cpp's Q/K row permutation for interleaved RoPE (convert.c): row r of
 * the permuted matrix is row sb_rope_perm_src_row(r, head_dim) of the
 * Hugging Face (rotate_half) one. */
int64_t sb_rope_perm_src_row(int64_t r, int head_dim);
/* nf4_model.c: binds weight `name` if the safetensors source stores it as
 * bitsandbytes NF4 (*found), checking its shape (ne0 x ne1); frees the states. */
sb_status sb_model_bind_nf4(sb_model *m, const char *name, int64_t ne0, int64_t ne1, sb_tensor *out, bool *found,
                            sb_err *err);
void sb_model_free_nf4(sb_model *m);
/* Drops this process's pages wholly inside [p, p + n) of the source file's
 * read-only mapping, once a weight has been converted out of it (load.c). */
void sb_model_page_out(const void *p, size_t n);

/* GGUF file_type value (llama.cpp's LlamaFileType) for a tensor type, -1 if none. */
int sb_gguf_file_type_of(int type);

#endif
