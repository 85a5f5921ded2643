/*
 * encoder.c - BERT forward pass and sentence-transformers pooling.
 *
 * Dimension letters: T tokens of one text, D = n_embd, H heads of dh = D / H,
 * F = n_ff, N tokens of a pass (several texts packed). Weights are converted
 * at load: embeddings, biases and norms to f32, the four linears of a block
 * packed to bf16 (tensor/gemm.h: bf16 inputs, f32 accumulation; Q, K, V as
 * one (3D, D) matrix). Attention goes through the same kernel, per text and
 * head (K_h and V_h^T packed on the fly). The residual stream and
 * LayerNorm stay f32; every product's input is rounded to bf16 once.
 *
 * One block (transformers' BertLayer, post-LayerNorm):
 *   a = softmax(Q K^T / sqrt(dh)) V per head;  x = LN(x + a Wo^T + bo)
 *   h = gelu(x Wi^T + bi);                      x = LN(x + h Wo2^T + bo2)
 */
#include "model/encoder.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "text/wordpiece.h"
#include "tensor/gemm.h"
#include "base/threadpool.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct enc_layer {
    float *wq, *bq, *wk, *bk, *wv, *bv; /* (D, D), (D); the f32 weights are freed once packed */
    float *wo, *bo, *ln1_w, *ln1_b;     /* attention output (D, D), LayerNorm (D) */
    float *wi, *bi;                     /* intermediate (F, D), (F) */
    float *wo2, *bo2, *ln2_w, *ln2_b;   /* output (D, F), (D), LayerNorm (D) */
    float *bqkv;                        /* (3D): bq, bk, bv */
    sb_bf16_mat qkv, out, up, down;     /* (3D, D), (D, D), (F, D), (D, F) packed */
} enc_layer;

struct sb_encoder {
    int n_vocab, n_embd, n_layer, n_head, n_ff, n_pos, n_types, max_tokens;
    float eps;
    bool pool_cls, normalize;
    char *query_prefix; /* config_sentence_transformers.json prompts.query, or NULL */
    float *tok_emb, *pos_emb, *type_emb; /* (V, D), (P, D), (types, D) */
    float *emb_ln_w, *emb_ln_b;          /* (D) */
    enc_layer *layers;
    float **owned; /* converted weights */
    sb_pool *pool;  /* texts' batches are spread over these threads */
    int n_owned;
    sb_tokenizer *tok;
};

void sb_encoder_free(sb_encoder *e) {
    if (!e) return;
    for (int i = 0; i < e->n_owned; i++) free(e->owned[i]);
    free(e->owned);
    for (int l = 0; e->layers && l < e->n_layer; l++) {
        enc_layer *L = &e->layers[l];
        free(L->bqkv);
        sb_bf16_mat_free(&L->qkv), sb_bf16_mat_free(&L->out), sb_bf16_mat_free(&L->up), sb_bf16_mat_free(&L->down);
    }
    free(e->layers);
    sb_tokenizer_free(e->tok);
    sb_pool_free(e->pool);
    free(e);
}

int sb_encoder_dim(const sb_encoder *e) { return e->n_embd; }
int sb_encoder_max_tokens(const sb_encoder *e) { return e->max_tokens; }
const sb_tokenizer *sb_encoder_tokenizer(const sb_encoder *e) { return e->tok; }
bool sb_encoder_normalizes(const sb_encoder *e) { return e->normalize; }

/* ---- loading ---- */

static json_t *load_json(const char *dir, const char *name, bool required, sb_err *err) {
    char *p = sb_path_join(dir, name);
    json_t *j = NULL;
    if (p && sb_file_exists(p)) {
        json_error_t je;
        j = json_load_file(p, 0, &je);
        if (!j) sb_err_set(err, SB_ERR_FORMAT, "%s: JSON error at line %d: %s", p, je.line, je.text);
    } else if (required) {
        sb_err_set(err, SB_ERR_NOT_FOUND, "%s: not found", p ? p : name);
    }
    free(p);
    return j;
}

static bool cfg_int(json_t *cfg, const char *key, int lo, int hi, int *out, sb_err *err, const char *dir) {
    json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        sb_err_set(err, SB_ERR_FORMAT, "%s/config.json: %s must be an integer from %d to %d", dir, key, lo, hi);
        return false;
    }
    *out = (int)json_integer_value(v);
    return true;
}

/* Where the weights come from: a safetensors set (HF names, with or without
 * a "bert." prefix) or a GGUF (llama.cpp's names). */
typedef struct wsrc {
    const sb_safetensors *st;
    const sb_gguf *g;
} wsrc;

static bool find_tensor(const wsrc *src, const char *name, sb_tensor *t) {
    if (src->g) {
        int64_t i = sb_gguf_find_tensor(src->g, name);
        return i >= 0 && sb_gguf_tensor(src->g, i, t);
    }
    char full[256];
    int64_t i = sb_st_find(src->st, name);
    if (i < 0) {
        snprintf(full, sizeof full, "bert.%s", name);
        i = sb_st_find(src->st, full);
    }
    return i >= 0 && sb_st_tensor(src->st, i, t);
}

/* Finds a tensor, checks its shape (ne0 innermost; ne1 = 0 for vectors) and
 * converts it to f32. */
static float *weight(sb_encoder *e, const wsrc *src, const char *name, int64_t ne0, int64_t ne1, sb_err *err) {
    sb_tensor t;
    if (!find_tensor(src, name, &t)) {
        sb_err_set(err, SB_ERR_NOT_FOUND, "encoder: tensor %s not found", name);
        return NULL;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t.ne[0] != ne0 || t.ne[1] != want1 || t.ne[2] != 1 || t.ne[3] != 1) {
        if (ne1)
            sb_err_set(err, SB_ERR_FORMAT, "encoder: tensor %s has shape [%lld, %lld, %lld, %lld] (ne0 first), expected [%lld, %lld]",
                       name, (long long)t.ne[0], (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3],
                       (long long)ne0, (long long)want1);
        else
            sb_err_set(err, SB_ERR_FORMAT, "encoder: tensor %s has shape [%lld, %lld, %lld, %lld] (ne0 first), expected [%lld]",
                       name, (long long)t.ne[0], (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3],
                       (long long)ne0);
        return NULL;
    }
    const sb_type_traits *tr = sb_type_traits_get(t.type);
    size_t bytes;
    if (!tr || !tr->to_float || !sb_dtype_row_bytes(t.type, ne0, &bytes)) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "encoder: tensor %s: type %s is not supported", name,
                   sb_dtype_name(t.type));
        return NULL;
    }
    if (t.nbytes < bytes * (size_t)want1) {
        sb_err_set(err, SB_ERR_FORMAT, "encoder: tensor %s: %zu bytes for %lld x %lld %s values", name, t.nbytes,
                   (long long)want1, (long long)ne0, sb_dtype_name(t.type));
        return NULL;
    }
    float *w = malloc(sizeof(float) * (size_t)(ne0 * want1));
    float **o = sb_realloc_array(e->owned, (size_t)e->n_owned + 1, sizeof *o);
    if (!w || !o) {
        free(w);
        if (o) e->owned = o;
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->owned = o;
    e->owned[e->n_owned++] = w;
    for (int64_t r = 0; r < want1; r++) /* row by row: quantized rows are whole blocks */
        tr->to_float((const char *)t.data + (size_t)r * bytes, w + r * ne0, ne0);
    return w;
}

/* Frees an f32 weight that has been packed (and forgets it). */
static void drop(sb_encoder *e, float **w) {
    for (int i = 0; i < e->n_owned; i++)
        if (e->owned[i] == *w) {
            free(e->owned[i]);
            e->owned[i] = e->owned[--e->n_owned];
            break;
        }
    *w = NULL;
}

/* The block linears to bf16 panels (Q, K, V stacked), f32 copies freed. */
static sb_status pack_layers(sb_encoder *e, sb_err *err) {
    const int D = e->n_embd, F = e->n_ff;
    float *qkv = malloc(sizeof(float) * 3 * (size_t)D * D);
    if (!qkv) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (int l = 0; l < e->n_layer; l++) {
        enc_layer *L = &e->layers[l];
        memcpy(qkv, L->wq, sizeof(float) * (size_t)D * D);
        memcpy(qkv + (size_t)D * D, L->wk, sizeof(float) * (size_t)D * D);
        memcpy(qkv + 2 * (size_t)D * D, L->wv, sizeof(float) * (size_t)D * D);
        if (!(L->bqkv = malloc(sizeof(float) * 3 * (size_t)D)) || sb_bf16_pack(&L->qkv, qkv, 3 * D, D) ||
            sb_bf16_pack(&L->out, L->wo, D, D) || sb_bf16_pack(&L->up, L->wi, F, D) ||
            sb_bf16_pack(&L->down, L->wo2, D, F)) {
            free(qkv);
            return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
        memcpy(L->bqkv, L->bq, sizeof(float) * (size_t)D);
        memcpy(L->bqkv + D, L->bk, sizeof(float) * (size_t)D);
        memcpy(L->bqkv + 2 * D, L->bv, sizeof(float) * (size_t)D);
        drop(e, &L->wq), drop(e, &L->wk), drop(e, &L->wv), drop(e, &L->wo), drop(e, &L->wi), drop(e, &L->wo2);
    }
    free(qkv);
    return SB_OK;
}

/* Each weight by its Hugging Face name and llama.cpp's GGUF name. */
static sb_status load_weights(sb_encoder *e, const wsrc *src, sb_err *err) {
    const int D = e->n_embd, F = e->n_ff;
    const bool g = src->g != NULL;
#define W(field, hf, gg, a, b) \
    if (!(field = weight(e, src, g ? gg : hf, a, b, err))) return err ? err->code : SB_ERR_FORMAT
    W(e->tok_emb, "embeddings.word_embeddings.weight", "token_embd.weight", D, e->n_vocab);
    W(e->pos_emb, "embeddings.position_embeddings.weight", "position_embd.weight", D, e->n_pos);
    W(e->type_emb, "embeddings.token_type_embeddings.weight", "token_types.weight", D, e->n_types);
    W(e->emb_ln_w, "embeddings.LayerNorm.weight", "token_embd_norm.weight", D, 0);
    W(e->emb_ln_b, "embeddings.LayerNorm.bias", "token_embd_norm.bias", D, 0);
    char n[160];
    for (int l = 0; l < e->n_layer; l++) {
        enc_layer *L = &e->layers[l];
#define LW(field, hf, gg, a, b)                                                        \
    if (g)                                                                             \
        snprintf(n, sizeof n, "blk.%d.%s", l, gg);                                     \
    else                                                                               \
        snprintf(n, sizeof n, "encoder.layer.%d.%s", l, hf);                           \
    if (!(field = weight(e, src, n, a, b, err))) return err ? err->code : SB_ERR_FORMAT
        LW(L->wq, "attention.self.query.weight", "attn_q.weight", D, D);
        LW(L->bq, "attention.self.query.bias", "attn_q.bias", D, 0);
        LW(L->wk, "attention.self.key.weight", "attn_k.weight", D, D);
        LW(L->bk, "attention.self.key.bias", "attn_k.bias", D, 0);
        LW(L->wv, "attention.self.value.weight", "attn_v.weight", D, D);
        LW(L->bv, "attention.self.value.bias", "attn_v.bias", D, 0);
        LW(L->wo, "attention.output.dense.weight", "attn_output.weight", D, D);
        LW(L->bo, "attention.output.dense.bias", "attn_output.bias", D, 0);
        LW(L->ln1_w, "attention.output.LayerNorm.weight", "attn_output_norm.weight", D, 0);
        LW(L->ln1_b, "attention.output.LayerNorm.bias", "attn_output_norm.bias", D, 0);
        LW(L->wi, "intermediate.dense.weight", "ffn_up.weight", D, F);
        LW(L->bi, "intermediate.dense.bias", "ffn_up.bias", F, 0);
        LW(L->wo2, "output.dense.weight", "ffn_down.weight", F, D);
        LW(L->bo2, "output.dense.bias", "ffn_down.bias", D, 0);
        LW(L->ln2_w, "output.LayerNorm.weight", "layer_output_norm.weight", D, 0);
        LW(L->ln2_b, "output.LayerNorm.bias", "layer_output_norm.bias", D, 0);
#undef LW
    }
#undef W
    return pack_layers(e, err);
}

/* Optional sentence-transformers file: NULL if absent; *bad if present but broken. */
static json_t *opt_json(const char *dir, const char *name, bool *bad, sb_err *err) {
    sb_err local = {0};
    json_t *j = load_json(dir, name, false, &local);
    if (!j && local.code != SB_OK) {
        *bad = true;
        sb_err_set(err, local.code, "%s", local.msg);
    }
    return j;
}

/* Pooling, normalisation, sequence length and the query prompt from the
 * sentence-transformers files (modules.json, 1_Pooling/config.json,
 * sentence_bert_config.json, config_sentence_transformers.json). Without
 * them: mean pooling, no normalisation, max_position_embeddings. */
static bool read_pipeline(sb_encoder *e, const char *dir, sb_err *err) {
    bool bad = false;
    json_t *modules = opt_json(dir, "modules.json", &bad, err);
    size_t i;
    json_t *m;
    json_array_foreach(modules, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        if (type && strstr(type, "Normalize")) e->normalize = true;
    }
    json_decref(modules);
    char *pool = sb_path_join(dir, "1_Pooling");
    json_t *pc = pool && !bad ? opt_json(pool, "config.json", &bad, err) : NULL;
    free(pool);
    static const char *const unsupported[] = {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                                              "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
    for (size_t k = 0; pc && k < sizeof unsupported / sizeof unsupported[0]; k++)
        if (json_is_true(json_object_get(pc, unsupported[k]))) {
            sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/1_Pooling/config.json: %s is not supported (mean or CLS pooling)",
                       dir, unsupported[k]);
            bad = true;
        }
    bool cls = json_is_true(json_object_get(pc, "pooling_mode_cls_token"));
    bool mean = json_is_true(json_object_get(pc, "pooling_mode_mean_tokens"));
    if (cls && mean) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/1_Pooling/config.json: CLS and mean pooling together are not supported",
                   dir);
        bad = true;
    }
    e->pool_cls = cls;
    json_decref(pc);
    json_t *sb = bad ? NULL : opt_json(dir, "sentence_bert_config.json", &bad, err);
    json_t *msl = json_object_get(sb, "max_seq_length");
    if (json_is_integer(msl) && json_integer_value(msl) > 2 && json_integer_value(msl) < e->max_tokens)
        e->max_tokens = (int)json_integer_value(msl);
    json_decref(sb);
    json_t *cst = bad ? NULL : opt_json(dir, "config_sentence_transformers.json", &bad, err);
    const char *q = json_string_value(json_object_get(json_object_get(cst, "prompts"), "query"));
    if (q && *q && !(e->query_prefix = sb_strdup(q))) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        bad = true;
    }
    json_decref(cst);
    return !bad;
}

static sb_encoder *enc_alloc(sb_err *err) {
    sb_encoder *e = calloc(1, sizeof *e);
    if (!e) sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    return e;
}

static bool enc_check_dims(sb_encoder *e, const char *path, const char *file, const char *heads_key, sb_err *err) {
    if (e->n_embd % e->n_head || (e->n_embd / e->n_head) % 2) {
        sb_err_set(err, SB_ERR_FORMAT, "%s%s: hidden size %d is not an even multiple of %s %d (heads of even size)",
                   path, file, e->n_embd, heads_key, e->n_head);
        return false;
    }
    e->max_tokens = e->n_pos;
    e->layers = calloc((size_t)e->n_layer, sizeof *e->layers);
    if (!e->layers) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return false;
    }
    return true;
}

/* The WordPiece normaliser must be the uncased one sb_tokenize applies. */
static bool enc_check_wpm(const sb_wpm_opts *o, const char *path, sb_err *err) {
    if (o->lowercase && o->strip_accents && o->clean_text && o->handle_cjk) return true;
    sb_err_set(err, SB_ERR_UNSUPPORTED,
               "%s: tokenizer normalizer (lowercase %d, strip_accents %d, clean_text %d, handle_chinese_chars %d) "
               "is not supported: only uncased BERT vocabularies", path, o->lowercase, o->strip_accents, o->clean_text,
               o->handle_cjk);
    return false;
}

/* A GGUF with general.architecture "bert" as llama.cpp's converter writes it.
 * Pooling from bert.pooling_type (1 mean, 2 CLS); the output is
 * L2-normalised, as llama.cpp's embedding tool does by default. */
static sb_encoder *open_gguf(const char *path, sb_err *err) {
    sb_gguf *g = sb_gguf_open(path, err);
    if (!g) return NULL;
    sb_encoder *e = enc_alloc(err);
    if (!e) goto fail;
    char *arch = sb_gguf_get_str_dup(g, "general.architecture");
    bool bert = arch && !strcmp(arch, "bert");
    if (!bert)
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: general.architecture '%s' is not a BERT encoder (bert)", path,
                   arch ? arch : "(none)");
    free(arch);
    if (!bert) goto fail;
    static const struct {
        const char *key;
        int64_t lo, hi;
        size_t off;
    } keys[] = {
        {"bert.embedding_length", 1, 1 << 16, offsetof(sb_encoder, n_embd)},
        {"bert.block_count", 1, 1024, offsetof(sb_encoder, n_layer)},
        {"bert.attention.head_count", 1, 1024, offsetof(sb_encoder, n_head)},
        {"bert.feed_forward_length", 1, 1 << 18, offsetof(sb_encoder, n_ff)},
        {"bert.context_length", 3, 1 << 16, offsetof(sb_encoder, n_pos)},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int64_t v;
        if (!sb_gguf_get_int(g, keys[i].key, &v) || v < keys[i].lo || v > keys[i].hi) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: %s must be an integer from %lld to %lld", path, keys[i].key,
                       (long long)keys[i].lo, (long long)keys[i].hi);
            goto fail;
        }
        *(int *)((char *)e + keys[i].off) = (int)v;
    }
    double eps;
    e->eps = sb_gguf_get_float(g, "bert.attention.layer_norm_epsilon", &eps) && eps > 0 && eps < 1 ? (float)eps
                                                                                                    : 1e-12f;
    int64_t pool = 1;
    sb_gguf_get_int(g, "bert.pooling_type", &pool);
    if (pool != 1 && pool != 2) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: bert.pooling_type %lld is not supported (1 mean, 2 CLS)", path,
                   (long long)pool);
        goto fail;
    }
    e->pool_cls = pool == 2;
    e->normalize = true;
    if (!(e->tok = sb_tokenizer_from_gguf(g, err))) {
        sb_err_prefix(err, "%s", path);
        goto fail;
    }
    sb_wpm_opts wo;
    sb_wpm_opts_from_gguf(g, &wo);
    if (!enc_check_wpm(&wo, path, err)) goto fail;
    e->n_vocab = sb_tokenizer_n_vocab(e->tok);
    sb_tensor tt;
    int64_t ti = sb_gguf_find_tensor(g, "token_types.weight");
    e->n_types = ti >= 0 && sb_gguf_tensor(g, ti, &tt) && tt.ne[1] >= 1 && tt.ne[1] <= 16 ? (int)tt.ne[1] : 2;
    if (!enc_check_dims(e, path, "", "bert.attention.head_count", err)) goto fail;
    if (sb_gguf_find_tensor(g, "blk.0.attn_qkv.weight") >= 0) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: fused blk.N.attn_qkv tensors are not supported (separate q, k, v)",
                   path);
        goto fail;
    }
    wsrc src = {NULL, g};
    if (load_weights(e, &src, err) != SB_OK) {
        sb_err_prefix(err, "%s", path);
        goto fail;
    }
    sb_gguf_free(g);
    return e;
fail:
    sb_gguf_free(g);
    sb_encoder_free(e);
    return NULL;
}

static sb_encoder *open_hf(const char *path, sb_err *err) {
    sb_encoder *e = enc_alloc(err);
    json_t *cfg = NULL;
    sb_safetensors *st = NULL;
    if (!e) return NULL;
    if (!(cfg = load_json(path, "config.json", true, err))) goto fail;
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    if (!mt || strcmp(mt, "bert")) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' is not a BERT encoder", path,
                   mt ? mt : "(none)");
        goto fail;
    }
    const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
    if (act && strcmp(act, "gelu")) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/config.json: hidden_act '%s' is not supported (gelu)", path, act);
        goto fail;
    }
    const char *pet = json_string_value(json_object_get(cfg, "position_embedding_type"));
    if (pet && strcmp(pet, "absolute")) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/config.json: position_embedding_type '%s' is not supported", path, pet);
        goto fail;
    }
    if (!cfg_int(cfg, "vocab_size", 1, 1 << 22, &e->n_vocab, err, path) ||
        !cfg_int(cfg, "hidden_size", 1, 1 << 16, &e->n_embd, err, path) ||
        !cfg_int(cfg, "num_hidden_layers", 1, 1024, &e->n_layer, err, path) ||
        !cfg_int(cfg, "num_attention_heads", 1, 1024, &e->n_head, err, path) ||
        !cfg_int(cfg, "intermediate_size", 1, 1 << 18, &e->n_ff, err, path) ||
        !cfg_int(cfg, "max_position_embeddings", 3, 1 << 16, &e->n_pos, err, path))
        goto fail;
    e->n_types = 2;
    json_t *tv = json_object_get(cfg, "type_vocab_size");
    if (json_is_integer(tv) && json_integer_value(tv) >= 1 && json_integer_value(tv) <= 16)
        e->n_types = (int)json_integer_value(tv);
    json_t *eps = json_object_get(cfg, "layer_norm_eps");
    e->eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    if (!enc_check_dims(e, path, "/config.json", "num_attention_heads", err)) goto fail;
    if (!(st = sb_st_open(path, err))) goto fail;
    wsrc src = {st, NULL};
    if (load_weights(e, &src, err) != SB_OK) {
        sb_err_prefix(err, "%s", path);
        goto fail;
    }
    /* tokenizer.json, else vocab.txt (+ tokenizer_config.json's flags) */
    char *tj = sb_path_join(path, "tokenizer.json"), *vt = sb_path_join(path, "vocab.txt");
    if (tj && vt && !sb_file_exists(tj) && sb_file_exists(vt))
        e->tok = sb_wpm_from_vocab_txt(vt, err);
    else
        e->tok = sb_tokenizer_from_hf(path, err);
    free(tj);
    free(vt);
    if (!e->tok) {
        sb_err_prefix(err, "%s: tokenizer", path);
        goto fail;
    }
    if (sb_tokenizer_n_vocab(e->tok) > e->n_vocab) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: the tokenizer has %d tokens, config.json vocab_size is %d", path,
                   sb_tokenizer_n_vocab(e->tok), e->n_vocab);
        goto fail;
    }
    sb_wpm_opts wo;
    if (sb_wpm_opts_from_hf(path, &wo, err) != SB_OK || !enc_check_wpm(&wo, path, err)) goto fail;
    if (!read_pipeline(e, path, err)) goto fail;
    sb_st_free(st);
    json_decref(cfg);
    return e;
fail:
    sb_st_free(st);
    json_decref(cfg);
    sb_encoder_free(e);
    return NULL;
}

sb_encoder *sb_encoder_open(const char *path, sb_err *err) {
    sb_encoder *e = NULL;
    if (sb_is_dir(path))
        e = open_hf(path, err);
    else if (sb_file_exists(path))
        e = open_gguf(path, err);
    else
        sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no such encoder (a Hugging Face folder or a .gguf file)", path);
    if (!e) return NULL;
    e->pool = sb_pool_new(0); /* one per online CPU; NULL (one thread) if it cannot start */
    return e;
}

void sb_encoder_set_max_tokens(sb_encoder *e, int n) {
    e->max_tokens = n < 3 ? 3 : n > e->n_pos ? e->n_pos : n;
}

void sb_encoder_set_threads(sb_encoder *e, int n) {
    sb_pool_free(e->pool);
    e->pool = sb_pool_new(n); /* NULL (the caller's thread only) if it cannot start */
}

const char *sb_encoder_query_prefix(const sb_encoder *e) { return e->query_prefix; }

/* ---- forward ---- */

/* Scratch of one pass of up to N tokens (longest text maxT), in floats:
 * x (N, D) and the scores (maxT, maxT) in f32; bf16 rows of x or of the
 * attention output, of q|k|v, of the GELU output, of the probabilities;
 * one head's packed K_h and V_h^T. */
static size_t pass_floats(int N, int maxT, int D, int F, int dh) {
    const size_t halves = (size_t)N * (sb_bf16_ld(D) + sb_bf16_ld(3 * D) + sb_bf16_ld(F)) +
                          (size_t)maxT * sb_bf16_ld(maxT) + sb_bf16_packed_size(maxT, dh) +
                          sb_bf16_packed_size(dh, maxT);
    return (size_t)N * D + (size_t)maxT * maxT + halves / 2 + 64;
}

/* A batch of texts packed one after another: tokens (N = sum of lengths) run
 * through the per-token layers as one matrix, attention stays within each
 * text (offsets off[0..n]). Pooled embeddings go to out (n, D). */
static void encode_batch(const sb_encoder *e, const int32_t *ids, const int *off, int n, float *out, float *s) {
    const int D = e->n_embd, F = e->n_ff, H = e->n_head, dh = D / H, N = off[n], maxT = e->max_tokens;
    const int ldD = sb_bf16_ld(D), ldF = sb_bf16_ld(F), ld3 = sb_bf16_ld(3 * D), ldT = sb_bf16_ld(maxT);
    float *x = s, *att = x + (size_t)N * D;
    uint16_t *xb = (uint16_t *)(att + (size_t)maxT * maxT), *qkv = xb + (size_t)N * ldD;
    uint16_t *hb = qkv + (size_t)N * ld3, *pb = hb + (size_t)N * ldF, *kp = pb + (size_t)maxT * ldT;
    uint16_t *vp = kp + sb_bf16_packed_size(maxT, dh);
    for (int b = 0; b < n; b++)
        for (int t = off[b]; t < off[b + 1]; t++)
            for (int i = 0; i < D; i++)
                x[(size_t)t * D + i] = e->tok_emb[(size_t)ids[t] * D + i] +
                                       e->pos_emb[(size_t)(t - off[b]) * D + i] + e->type_emb[i];
    sb_layer_norm_rows(x, N, D, e->emb_ln_w, e->emb_ln_b, e->eps, xb, ldD);
    const float scale = 1.0f / sqrtf((float)dh);
    for (int l = 0; l < e->n_layer; l++) {
        const enc_layer *L = &e->layers[l];
        /* q, k, v = x Wq^T + bq, ... as one (N, 3D) product of xb (x as bf16) */
        sb_gemm_bf16(xb, ldD, N, &L->qkv, L->bqkv, 0, NULL, 0, qkv, ld3);
        /* per text and head: p = softmax(Q_h K_h^T * scale) by rows; a_h = p V_h, into xb */
        for (int b = 0; b < n; b++) {
            const int T = off[b + 1] - off[b];
            const uint16_t *q = qkv + (size_t)off[b] * ld3, *k = q + D, *v = q + 2 * D;
            for (int hd = 0; hd < H; hd++) {
                sb_bf16_mat km, vm;
                sb_bf16_pack_rows(&km, kp, k + hd * dh, ld3, T, dh);
                sb_gemm_bf16(q + hd * dh, ld3, T, &km, NULL, 0, att, T, NULL, 0);
                sb_softmax_rows(att, T, T, T, scale, pb, ldT);
                sb_bf16_pack_cols(&vm, vp, v + hd * dh, ld3, dh, T);
                sb_gemm_bf16(pb, ldT, T, &vm, NULL, 0, NULL, 0, xb + (size_t)off[b] * ldD + hd * dh, ldD);
            }
        }
        /* x = LN(x + a Wo^T + bo) */
        sb_gemm_bf16(xb, ldD, N, &L->out, L->bo, SB_GEMM_ACC, x, D, NULL, 0);
        sb_layer_norm_rows(x, N, D, L->ln1_w, L->ln1_b, e->eps, xb, ldD);
        /* h = gelu(x Wi^T + bi) as bf16; x = LN(x + h Wo2^T + bo2) */
        sb_gemm_bf16(xb, ldD, N, &L->up, L->bi, SB_GEMM_GELU, NULL, 0, hb, ldF);
        sb_gemm_bf16(hb, ldF, N, &L->down, L->bo2, SB_GEMM_ACC, x, D, NULL, 0);
        sb_layer_norm_rows(x, N, D, L->ln2_w, L->ln2_b, e->eps, l + 1 < e->n_layer ? xb : NULL, ldD);
    }
    for (int b = 0; b < n; b++) {
        float *o = out + (size_t)b * D;
        const int T = off[b + 1] - off[b];
        if (e->pool_cls) {
            memcpy(o, x + (size_t)off[b] * D, sizeof(float) * (size_t)D);
            continue;
        }
        for (int i = 0; i < D; i++) {
            double acc = 0;
            for (int t = off[b]; t < off[b + 1]; t++) acc += x[(size_t)t * D + i];
            o[i] = (float)(acc / T);
        }
    }
}

#define BATCH_TOKENS 2048 /* tokens packed into one pass (at least one whole text) */

typedef struct embed_job {
    const sb_encoder *e;
    const int32_t *ids;   /* all texts' tokens, one after another */
    const int *tok_off;   /* text k's tokens: ids[tok_off[k] .. tok_off[k+1]) */
    const int *batch_off; /* batch j: texts batch_off[j] .. batch_off[j+1] */
    int n_batches;
    int next;             /* atomic: the next batch to take */
    float *out;
    size_t scratch_floats;
    bool failed;
} embed_job;

static void embed_worker(void *arg, int ith, int nth) {
    embed_job *j = arg;
    const int D = j->e->n_embd;
    float *scratch = malloc(sizeof(float) * j->scratch_floats);
    int *off = NULL;
    for (;;) {
        int b = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (b >= j->n_batches) break;
        int t0 = j->batch_off[b], t1 = j->batch_off[b + 1];
        int *o = realloc(off, sizeof(int) * (size_t)(t1 - t0 + 1));
        if (!scratch || !o) {
            __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
            break;
        }
        off = o;
        for (int k = t0; k <= t1; k++) off[k - t0] = j->tok_off[k] - j->tok_off[t0];
        encode_batch(j->e, j->ids + j->tok_off[t0], off, t1 - t0, j->out + (size_t)t0 * D, scratch);
    }
    free(off);
    free(scratch);
}

sb_status sb_encoder_embed(sb_encoder *e, const char *const *texts, int n, bool normalize, float *out,
                           sb_err *err) {
    const int D = e->n_embd, F = e->n_ff, maxT = e->max_tokens;
    const int cap = BATCH_TOKENS > maxT ? BATCH_TOKENS : maxT;
    int *tok_off = malloc(sizeof(int) * ((size_t)n + 1)), *batch_off = malloc(sizeof(int) * ((size_t)n + 1));
    sb_tokens ids = {0};
    sb_status st = SB_OK;
    if (!tok_off || !batch_off) {
        st = sb_err_set(err, SB_ERR_NOMEM, "encoder: out of memory");
        goto done;
    }
    /* 1. tokens of every text, [CLS] ... [SEP], truncated to the model's maximum */
    int32_t cls = sb_tokenizer_bos(e->tok), sep = sb_tokenizer_eos(e->tok);
    tok_off[0] = 0;
    for (int k = 0; k < n; k++) {
        size_t start = ids.n;
        if (cls >= 0) sb_tokens_push(&ids, cls);
        const char *txt = texts[k] ? texts[k] : "";
        if ((st = sb_tokenize(e->tok, txt, strlen(txt), false, true, &ids, err)) != SB_OK) goto done;
        size_t room = (size_t)maxT - (sep >= 0 ? 1 : 0); /* keep room for [SEP] */
        if (ids.n - start > room) ids.n = start + room;
        if (sep >= 0 && !sb_tokens_push(&ids, sep)) {
            st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (ids.n > (size_t)INT32_MAX / 2) {
            st = sb_err_set(err, SB_ERR_RANGE, "encoder: too many tokens in one call");
            goto done;
        }
        tok_off[k + 1] = (int)ids.n;
    }
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= e->n_vocab) {
            st = sb_err_set(err, SB_ERR_RANGE, "encoder: token id %d outside the vocabulary", ids.ids[i]);
            goto done;
        }
    /* 2. batches: whole texts packed up to cap tokens */
    int nb = 0;
    batch_off[0] = 0;
    for (int k = 0; k < n;) {
        int k1 = k + 1;
        while (k1 < n && tok_off[k1 + 1] - tok_off[k] <= cap) k1++;
        batch_off[++nb] = k1;
        k = k1;
    }
    /* 3. batches over the threads, each with its own scratch */
    embed_job job = {e, ids.ids, tok_off, batch_off, nb, 0, out, pass_floats(cap, maxT, D, F, D / e->n_head), false};
    sb_pool_run(nb > 1 ? e->pool : NULL, embed_worker, &job);
    if (job.failed) {
        st = sb_err_set(err, SB_ERR_NOMEM, "encoder: out of memory for a %d-token batch", cap);
        goto done;
    }
    for (int k = 0; k < n && (normalize || e->normalize); k++) {
        float *o = out + (size_t)k * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)o[i] * o[i];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int i = 0; i < D; i++) o[i] *= inv;
    }
done:
    sb_tokens_free(&ids);
    free(tok_off);
    free(batch_off);
    return st;
}
