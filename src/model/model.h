/*
 * model.h - the decoder-only transformer: Phi-3 (Phi-3-mini-4k/128k,
 * Phi-3.5-mini, Phi-4-mini) and Llama-style models (separate Q/K/V, GQA:
 * stories260K, SmolLM2), one code path configured by metadata.
 *
 * Sources: a GGUF file (llama.cpp's tensor names and keys; weights stay in
 * the mapping, any type sb_matvec reads), a Hugging Face folder (config.json
 * + model.safetensors or a sharded set), or a .safetensors file with
 * config.json beside it.
 *
 * The forward pass reproduces Hugging Face transformers' Phi3ForCausalLM /
 * LlamaForCausalLM (eager attention): RMSNorm, RoPE (rotate_half pairs for
 * phi3 and HF llama; interleaved pairs for llama from GGUF, whose Q/K rows
 * llama.cpp's converter permuted), partial rotary, LongRoPE with the factor
 * set chosen per call from the sequence length, sliding-window causal mask,
 * GQA, SwiGLU.
 *
 * Ownership: sb_model owns its mapping, weights and tokenizer; an sb_ctx
 * borrows the model (free contexts first). One sb_ctx is one sequence and is
 * not shared between threads.
 */
#ifndef SB_MODEL_H
#define SB_MODEL_H

#include "base/base.h"
#include "tensor/tensor.h"
#include "text/tokenizer.h"

typedef struct sb_model sb_model;

typedef struct sb_model_config {
    char arch[32];        /* "phi3" or "llama" (general.architecture / model_type) */
    int n_vocab;          /* V */
    int n_embd;           /* D: hidden_size */
    int n_layer;          /* num_hidden_layers */
    int n_head;           /* Hq: num_attention_heads */
    int n_head_kv;        /* Hkv: num_key_value_heads (divides n_head) */
    int head_dim;         /* Hd */
    int n_ff;             /* F: intermediate_size */
    int n_ctx_train;      /* max_position_embeddings / <arch>.context_length */
    int n_rot;            /* rotary dims per head, even, <= head_dim */
    float rms_eps;
    float rope_theta;
    bool rope_neox;       /* pairs (i, i + n_rot/2) if true, (2i, 2i+1) if false */
    /* LongRoPE (Phi-3-128k, Phi-3.5): inv_freq[i] = 1 / (factor[i] * theta^(2i/n_rot)),
     * factor = long set if the call's sequence length > n_ctx_orig else short set;
     * cos and sin multiplied by rope_attn_factor. */
    bool longrope;
    int n_ctx_orig;         /* original_max_position_embeddings (0 if none) */
    float rope_attn_factor; /* 1 without LongRoPE */
    int sliding_window;     /* 0 = none; else a query at p sees keys p-W+1 .. p */
    bool tied_embeddings;   /* lm_head is token_embd */
    bool fused_qkv;         /* one [D -> Hq*Hd + 2*Hkv*Hd] matrix (phi3) */
    bool fused_gate_up;     /* one [D -> 2F] matrix, gate first half (phi3) */
    int weight_type;        /* dtype of most matrices (informational) */
} sb_model_config;

/* Opens a .gguf file, a Hugging Face folder, or a .safetensors file with
 * config.json beside it. Every tensor is checked (missing, wrong shape or
 * type: an error naming it). NULL on error, message in err. */
sb_model *sb_model_open(const char *path, sb_err *err);
void sb_model_free(sb_model *m);

const sb_model_config *sb_model_get_config(const sb_model *m);
/* NULL if the source has no tokenizer. Owned by the model. */
const sb_tokenizer *sb_model_tokenizer(const sb_model *m);
/* The GGUF the model was read from (NULL for safetensors): for metadata such
 * as the chat template. */
const sb_gguf *sb_model_gguf(const sb_model *m);

/* ---- one sequence: KV cache and scratch ---- */
typedef struct sb_ctx sb_ctx;

/* Allocates everything the forward pass needs for n_ctx positions (f32 KV
 * cache: 2 * n_layer * n_ctx * Hkv * Hd floats) in one go; decoding
 * allocates nothing. n_ctx must be in 1..n_ctx_train. NULL on error. */
sb_ctx *sb_ctx_new(const sb_model *m, int n_ctx, sb_err *err);
void sb_ctx_free(sb_ctx *c);
int sb_ctx_n_past(const sb_ctx *c);
int sb_ctx_n_ctx(const sb_ctx *c);
/* Threads for the context's matrix products (default: online CPUs, at most 8).
 * Results are the same for any thread count. */
sb_status sb_ctx_set_threads(sb_ctx *c, int n_threads, sb_err *err);
/* The context's thread pool (NULL with one thread): for a caller that runs
 * its own work on the decode's threads between steps (bench/infer's
 * bandwidth probe paired with each generated token). */
struct sb_pool *sb_ctx_pool(const sb_ctx *c);
/* Decoding (one token at a time) quantizes the input of each layer's matrix
 * products to 8 bits per element for the integer kernels of quantized
 * weights (as llama.cpp does): about 1.3x faster, but logits move (SmolLM2
 * Q4_1: up to 1.7% relative over 32 greedy steps, the ids unchanged).
 * exact = true keeps float activations everywhere (dequantized weights times
 * float x, equal to transformers within f32 rounding). Default false, or
 * true if the environment has SABIO_EXACT=1. F32/F16/BF16 weights always
 * use float activations; a Q8_0 or Q6_K lm_head two-level 8-bit ones in
 * fast mode (within 1/64516 of each block's largest |x|; SmolLM2: logits
 * within 0.0017 of float), other lm_head types float. */
void sb_ctx_set_exact(sb_ctx *c, bool exact);
/* Prompts of more than 16 tokens quantize the matrices' inputs to 8 bits
 * too, by default (SABIO_PREFILL=float: not), where the CPU has the panel
 * kernels (tensor/pgemm.h: AVX-512 VNNI or AVX2); on = float activations for them
 * (dequantized tiles + sgemm), as exact mode does. */
void sb_ctx_set_prompt_float(sb_ctx *c, bool on);
/* LoRA adapters (model/lora.h) added to every projection without merging,
 * each with its own scale; borrowed (they must outlive the context's use).
 * Replaces the previous set; n = 0 removes them. */
#define SB_CTX_MAX_ADAPTERS 8
struct sb_lora;
sb_status sb_ctx_set_adapters(sb_ctx *c, const struct sb_lora *const *adapters, int n, sb_err *err);
/* Keeps the first n_keep cached positions (clamped to 0..n_past). */
void sb_ctx_truncate(sb_ctx *c, int n_keep);

/* Runs n tokens at positions n_past .. n_past+n-1 and appends them to the
 * cache. logits: n_vocab floats for the last token (may be NULL); all_logits:
 * n * n_vocab (may be NULL).
 *
 * LongRoPE: the factor set is chosen from n_past + n as transformers chooses
 * it from max(position_ids) + 1. Cached keys computed with the other set
 * (the sequence just grew past n_ctx_orig, or was truncated below it) are
 * recomputed from the kept token history first, as transformers' generate()
 * drops and rebuilds its cache at that point; so results always equal one
 * evaluation of the whole sequence.
 * Errors: SB_ERR_RANGE if n_past + n > n_ctx or a token id is out of range
 * (nothing is changed). */
sb_status sb_decode(sb_ctx *c, const int32_t *tokens, int n, float *logits, float *all_logits,
                    sb_err *err);

/* Writes the model as GGUF (llama.cpp names and keys, same arch) with
 * matrices converted to `type` (F32, F16, BF16, Q8_0, ... anything with a
 * from_float; a type whose block does not divide a row falls back to F16;
 * type < 0 keeps each tensor's type), norms and rope factors in F32; written
 * to a temporary file and renamed. Llama Q/K rows from Hugging Face are
 * permuted to llama.cpp's interleaved RoPE layout. A GGUF source's metadata
 * (tokenizer, chat template) is carried over; a Hugging Face source gets no
 * tokenizer keys yet. */
sb_status sb_model_save_gguf(const sb_model *m, const char *path, int type, sb_err *err);

/* `sabio quantize`: the same, with llama-quantize's choice of type per tensor
 * for file type `ftype` (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K,
 * or Q4_K_M): matrices get the base type, except (for quantized bases)
 * output.weight Q6_K (Q8_0 stays Q8_0); Q4_K_M also gives attn_qkv Q5_K and
 * attn_v / ffn_down Q6_K in the first and last eighth of the layers and every
 * third layer between (llama.cpp's use_more_bits); rows the block does not
 * divide fall back as llama.cpp does (Q4_K -> Q5_0, Q6_K -> Q8_0, else F16).
 * Each matrix is converted when the writer reaches it, rows split over
 * n_threads (<= 0: all CPUs): memory holds one output tensor, the input stays
 * mapped. Progress lines (rate, ETA) go to the log at INFO. */
sb_status sb_model_quantize(const sb_model *m, const char *path, const char *ftype, int n_threads,
                            sb_err *err);
/* QLoRA's frozen base: quantizes every attention and MLP projection to NF4
 * (tensor/nf4.h; blocksize 64 and double_quant as QLoRA), keeping the token
 * embedding, norms and lm_head as they are. Weights already NF4 (a
 * bitsandbytes 4-bit checkpoint, bound at open) are left alone. */
sb_status sb_model_quantize_nf4(sb_model *m, int blocksize, bool double_quant, sb_err *err);
/* Rearranges weights in memory for this CPU's decode kernels: where the best
 * kernels are AVX2, Q4_0 attention and MLP matrices (and an untied Q4_0
 * lm_head) become SB_Q4_0_R8 (tensor/q4r8.h), faster to decode and prompt
 * with the same arithmetic as the scalar Q4_0 kernels. Costs one copy of
 * those weights in anonymous memory (the mapped file's pages are handed
 * back, so resident memory stays about the file's size) and a pass over
 * them at load. For inference only: training, merging and export read the
 * file's layout (call it on a model opened for generation). *n_repacked
 * (may be NULL): matrices changed. Nothing to do is not an error. */
sb_status sb_model_repack(sb_model *m, int *n_repacked, sb_err *err);
/* true if sb_model_repack changes anything on this CPU. */
bool sb_model_repack_applies(void);
/* Writes a model quantized by sb_model_quantize_nf4 from a Hugging Face
 * folder as a bitsandbytes 4-bit checkpoint in folder dir (model.safetensors
 * in the layout transformers' save_pretrained uses, so transformers loads it
 * in 4-bit; config.json with its quantization_config; tokenizer files). */
sb_status sb_model_save_nf4(const sb_model *m, const char *dir, sb_err *err);

#endif
