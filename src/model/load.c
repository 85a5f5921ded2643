/*
 * load.c - sb_model_open: finds the source (GGUF file or Hugging Face
 * safetensors + config.json), reads the config (config.c), binds every weight
 * by name as a view into the mapped file, and checks each one's shape and
 * type before anything runs. Norm vectors and LongRoPE factors are copied to
 * f32 (one slab); matrices stay where they are, in whatever type they have.
 *
 * Names: llama.cpp's (token_embd, blk.N.attn_qkv, ...) for GGUF, transformers'
 * (model.embed_tokens, model.layers.N.self_attn.qkv_proj, ...) for
 * safetensors; each weight below is listed once with both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model_impl.h"

/* ------------------------------------------------------------ lookup -- */

static bool lookup(const sb_model *m, const char *name, sb_tensor *out) {
    if (m->source == SB_SRC_GGUF) {
        int64_t i = sb_gguf_find_tensor(m->gguf, name);
        return i >= 0 && sb_gguf_tensor(m->gguf, i, out);
    }
    int64_t i = sb_st_find(m->st, name);
    return i >= 0 && sb_st_tensor(m->st, i, out);
}

/* The name of a weight in this model's source: gguf_fmt or hf_fmt with the
 * layer number substituted (formats without %d ignore it). */
static const char *wname(const sb_model *m, char *buf, size_t cap, const char *gguf_fmt,
                         const char *hf_fmt, int layer) {
    snprintf(buf, cap, m->source == SB_SRC_GGUF ? gguf_fmt : hf_fmt, layer);
    return buf;
}

static bool has(const sb_model *m, const char *gguf_fmt, const char *hf_fmt, int layer) {
    char name[160];
    sb_tensor t;
    return lookup(m, wname(m, name, sizeof name, gguf_fmt, hf_fmt, layer), &t);
}

/* Binds a weight of shape ne0 x ne1 (ne1 == 0: a vector of ne0) and checks
 * its type can be read. */
static sb_status bind(sb_model *m, const char *gguf_fmt, const char *hf_fmt, int layer,
                      int64_t ne0, int64_t ne1, sb_tensor *out, sb_err *err) {
    char name[160];
    wname(m, name, sizeof name, gguf_fmt, hf_fmt, layer);
    bool nf4;
    sb_status nst = sb_model_bind_nf4(m, name, ne0, ne1, out, &nf4, err);
    if (nst != SB_OK || nf4) return nst;
    if (!lookup(m, name, out))
        return sb_err_set(err, SB_ERR_NOT_FOUND, "tensor %s is missing", name);
    int64_t want1 = ne1 ? ne1 : 1;
    int dims = out->n_dims;
    bool shape_ok = out->ne[0] == ne0 && out->ne[1] == want1 && out->ne[2] == 1 &&
                    out->ne[3] == 1 && dims <= 2 && (ne1 == 0 || dims == 2);
    if (!shape_ok) {
        char got[96];
        if (dims <= 1)
            snprintf(got, sizeof got, "[%lld]", (long long)out->ne[0]);
        else if (dims == 2)
            snprintf(got, sizeof got, "[%lld, %lld]", (long long)out->ne[0], (long long)out->ne[1]);
        else
            snprintf(got, sizeof got, "[%lld, %lld, %lld, %lld]", (long long)out->ne[0],
                     (long long)out->ne[1], (long long)out->ne[2], (long long)out->ne[3]);
        if (ne1)
            return sb_err_set(err, SB_ERR_FORMAT,
                              "tensor %s: shape %s (ne, innermost first), expected [%lld, %lld]",
                              name, got, (long long)ne0, (long long)ne1);
        return sb_err_set(err, SB_ERR_FORMAT, "tensor %s: shape %s, expected [%lld]", name, got,
                          (long long)ne0);
    }
    const sb_type_traits *tt = sb_type_traits_get(out->type);
    if (!tt || !tt->to_float)
        return sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s: element type %s (%d) is not "
                          "supported", name, sb_dtype_name(out->type), out->type);
    size_t row;
    if (!sb_dtype_row_bytes(out->type, ne0, &row) || out->nbytes / row < (size_t)want1)
        return sb_err_set(err, SB_ERR_FORMAT, "tensor %s: %zu bytes too few for its shape", name,
                          out->nbytes);
    return SB_OK;
}

/* A vector weight copied to f32. */
static sb_status bind_vec(sb_model *m, const char *gguf_fmt, const char *hf_fmt, int layer,
                          int64_t n, float *dst, sb_err *err) {
    sb_tensor t;
    sb_status st = bind(m, gguf_fmt, hf_fmt, layer, n, 0, &t, err);
    if (st != SB_OK) return st;
    sb_type_traits_get(t.type)->to_float(t.data, dst, n);
    return SB_OK;
}

/* --------------------------------------------------------- weights -- */

static sb_status bind_weights(sb_model *m, sb_err *err) {
    sb_model_config *c = &m->cfg;
    const int64_t D = c->n_embd, F = c->n_ff, Hd = c->head_dim;
    const int64_t nq = (int64_t)c->n_head * Hd, nkv = (int64_t)c->n_head_kv * Hd;
    bool phi3 = !strcmp(c->arch, "phi3");
    sb_status st;
#define TRY(x) \
    if ((st = (x)) != SB_OK) return st

    /* Unknown extras would be silently ignored: refuse biases outright. */
    int64_t nt = m->source == SB_SRC_GGUF ? sb_gguf_n_tensors(m->gguf) : sb_st_n_tensors(m->st);
    for (int64_t i = 0; i < nt; i++) {
        sb_tensor t;
        bool ok = m->source == SB_SRC_GGUF ? sb_gguf_tensor(m->gguf, i, &t) : sb_st_tensor(m->st, i, &t);
        if (ok && t.name && strstr(t.name, ".bias"))
            return sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s: biases are not supported",
                              t.name);
    }

    /* token embedding; GGUF may omit the vocab size key */
    if (c->n_vocab == 0) {
        sb_tensor t;
        if (!lookup(m, "token_embd.weight", &t))
            return sb_err_set(err, SB_ERR_NOT_FOUND, "tensor token_embd.weight is missing");
        if (t.ne[1] <= 0 || t.ne[1] > (1 << 24))
            return sb_err_set(err, SB_ERR_FORMAT, "tensor token_embd.weight: %lld rows",
                              (long long)t.ne[1]);
        c->n_vocab = (int)t.ne[1];
    }
    const int64_t V = c->n_vocab;
    TRY(bind(m, "token_embd.weight", "model.embed_tokens.weight", 0, D, V, &m->tok_embd, err));
    if (m->source == SB_SRC_GGUF) c->tied_embeddings = !has(m, "output.weight", "", 0);
    if (c->tied_embeddings)
        m->output = m->tok_embd;
    else
        TRY(bind(m, "output.weight", "lm_head.weight", 0, D, V, &m->output, err));

    /* f32 vectors: 2 norms per layer + the final norm */
    m->vec_slab = sb_calloc((size_t)(2 * c->n_layer + 1) * (size_t)D, sizeof(float));
    m->layers = sb_calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->vec_slab || !m->layers) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    float *vp = m->vec_slab;
    m->output_norm = vp, vp += D;
    TRY(bind_vec(m, "output_norm.weight", "model.norm.weight", 0, D, m->output_norm, err));

    c->fused_qkv = has(m, "blk.%d.attn_qkv.weight", "model.layers.%d.self_attn.qkv_proj.weight", 0);
    c->fused_gate_up = phi3 && (m->source == SB_SRC_GGUF
                                    ? !has(m, "blk.%d.ffn_gate.weight", "", 0)
                                    : has(m, "", "model.layers.%d.mlp.gate_up_proj.weight", 0));
    for (int l = 0; l < c->n_layer; l++) {
        sb_layer *L = &m->layers[l];
        L->attn_norm = vp, vp += D;
        L->ffn_norm = vp, vp += D;
        TRY(bind_vec(m, "blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", l, D,
                     L->attn_norm, err));
        TRY(bind_vec(m, "blk.%d.ffn_norm.weight",
                     "model.layers.%d.post_attention_layernorm.weight", l, D, L->ffn_norm, err));
        if (c->fused_qkv) {
            TRY(bind(m, "blk.%d.attn_qkv.weight", "model.layers.%d.self_attn.qkv_proj.weight", l,
                     D, nq + 2 * nkv, &L->wqkv, err));
        } else {
            TRY(bind(m, "blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", l, D,
                     nq, &L->wq, err));
            TRY(bind(m, "blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", l, D,
                     nkv, &L->wk, err));
            TRY(bind(m, "blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", l, D,
                     nkv, &L->wv, err));
        }
        TRY(bind(m, "blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", l, nq,
                 D, &L->wo, err));
        if (c->fused_gate_up) {
            TRY(bind(m, "blk.%d.ffn_up.weight", "model.layers.%d.mlp.gate_up_proj.weight", l, D,
                     2 * F, &L->w_gate_up, err));
        } else {
            TRY(bind(m, "blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", l, D, F,
                     &L->w_gate, err));
            TRY(bind(m, "blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", l, D, F,
                     &L->w_up, err));
        }
        TRY(bind(m, "blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", l, F, D,
                 &L->w_down, err));
    }
    c->weight_type = c->fused_qkv ? m->layers[0].wqkv.type : m->layers[0].wq.type;

    /* LongRoPE factors from GGUF tensors (config.json's come from config.c) */
    if (m->source == SB_SRC_GGUF && c->longrope) {
        int64_t n = c->n_rot / 2;
        m->rope_short = sb_calloc((size_t)n, sizeof(float));
        m->rope_long = sb_calloc((size_t)n, sizeof(float));
        if (!m->rope_short || !m->rope_long) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        TRY(bind_vec(m, "rope_factors_short.weight", "", 0, n, m->rope_short, err));
        TRY(bind_vec(m, "rope_factors_long.weight", "", 0, n, m->rope_long, err));
        for (int64_t i = 0; i < n; i++)
            if (!(m->rope_short[i] > 0.0f) || !(m->rope_long[i] > 0.0f))
                return sb_err_set(err, SB_ERR_FORMAT, "tensor rope_factors_*.weight: factor %lld "
                                  "is not positive", (long long)i);
    }
#undef TRY
    return SB_OK;
}

/* ------------------------------------------------------------ open -- */

static bool looks_like_gguf(const char *path) {
    if (sb_is_dir(path)) return false;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

static sb_status open_gguf(sb_model *m, sb_err *err) {
    m->source = SB_SRC_GGUF;
    m->gguf = sb_gguf_open(m->path, err);
    if (!m->gguf) return err ? err->code : SB_ERR_FORMAT;
    sb_status st = sb_config_from_gguf(m, err);
    if (st == SB_OK) st = sb_config_check(&m->cfg, err);
    if (st == SB_OK) st = bind_weights(m, err);
    if (st != SB_OK) return st;
    if (sb_gguf_find_key(m->gguf, "tokenizer.ggml.model") >= 0) {
        m->tok = sb_tokenizer_from_gguf(m->gguf, err);
        if (!m->tok) return sb_err_prefix(err, "tokenizer");
    }
    return SB_OK;
}

static sb_status open_hf(sb_model *m, sb_err *err) {
    m->source = SB_SRC_HF;
    char *dir = NULL;
    if (sb_is_dir(m->path)) {
        dir = sb_strdup(m->path);
    } else {
        const char *slash = strrchr(m->path, '/');
        dir = slash ? sb_strndup(m->path, (size_t)(slash - m->path)) : sb_strdup(".");
    }
    char *cfg = dir ? sb_path_join(dir, "config.json") : NULL;
    char *tokj = dir ? sb_path_join(dir, "tokenizer.json") : NULL;
    sb_status st = SB_OK;
    if (!dir || !cfg || !tokj) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!sb_file_exists(cfg)) {
        st = sb_err_set(err, SB_ERR_NOT_FOUND, "not a GGUF file and no config.json in %s", dir);
        goto done;
    }
    if ((st = sb_config_from_hf(m, cfg, err)) != SB_OK) goto done;
    m->st = sb_st_open(m->path, err);
    if (!m->st) {
        st = err ? err->code : SB_ERR_FORMAT;
        goto done;
    }
    if ((st = sb_config_check(&m->cfg, err)) != SB_OK) goto done;
    if ((st = bind_weights(m, err)) != SB_OK) goto done;
    char *tokm = sb_path_join(dir, "tokenizer.model");
    bool has_tok = sb_file_exists(tokj) || (tokm && sb_file_exists(tokm));
    free(tokm);
    if (has_tok) {
        m->tok = sb_tokenizer_from_hf(dir, err);
        if (!m->tok) st = sb_err_prefix(err, "tokenizer");
    }
done:
    free(dir);
    free(cfg);
    free(tokj);
    return st;
}

sb_model *sb_model_open(const char *path, sb_err *err) {
    sb_model *m = sb_calloc(1, sizeof *m);
    if (!m || !(m->path = sb_strdup(path))) {
        free(m);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sb_err local = {0};
    if (!err) err = &local;
    sb_status st;
    if (!sb_file_exists(path) && !sb_is_dir(path))
        st = sb_err_set(err, SB_ERR_NOT_FOUND, "no such file or folder");
    else
        st = looks_like_gguf(path) ? open_gguf(m, err) : open_hf(m, err);
    if (st != SB_OK) {
        sb_err_prefix(err, "%s", path);
        sb_model_free(m);
        return NULL;
    }
    return m;
}

/* A page touched again is read back from the file, and pages another
 * process maps stay cached for it. MADV_PAGEOUT would skip pages shared with
 * another reader of the file. (sb_model_open always maps a file.) */
void sb_model_page_out(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void sb_model_free(sb_model *m) {
    if (!m) return;
    sb_tokenizer_free(m->tok);
    sb_gguf_free(m->gguf);
    sb_st_free(m->st);
    sb_model_free_nf4(m);
    free(m->layers);
    free(m->vec_slab);
    free(m->r8_slab);
    free(m->rope_short);
    free(m->rope_long);
    free(m->path);
    free(m);
}

const sb_model_config *sb_model_get_config(const sb_model *m) { return &m->cfg; }
const sb_tokenizer *sb_model_tokenizer(const sb_model *m) { return m->tok; }
const sb_gguf *sb_model_gguf(const sb_model *m) { return m->gguf; }
