/*
 * convert.c - sb_model_save_gguf: writes the loaded model as a GGUF file
 * llama.cpp reads, with its tensor names and `<arch>.*` keys, matrices
 * converted to the asked type (row by row: dequantize to f32, quantize),
 * norms and LongRoPE factors in f32.
 *
 * Llama from Hugging Face uses rotate_half RoPE; llama.cpp's llama expects
 * interleaved pairs, and its converter permutes the Q and K rows so the two
 * agree: within each head, output row 2i + j is input row j * Hd/2 + i. We
 * do the same (and a model read back from that GGUF then uses interleaved
 * RoPE). Phi-3 keeps rotate_half (NeoX) in GGUF: no permutation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "tensor/matvec.h"

typedef struct {
    sb_gguf_writer *w;
    void **bufs; /* converted tensors, freed after the write */
    int n_bufs, cap_bufs;
    float *row;  /* scratch row of the widest input */
    int type;    /* target type, < 0 keeps each tensor's own */
    sb_err *err;
} saver;

static sb_status keep_buf(saver *s, void *p) {
    if (s->n_bufs == s->cap_bufs) {
        int cap = s->cap_bufs ? 2 * s->cap_bufs : 64;
        void **nb = sb_realloc_array(s->bufs, (size_t)cap, sizeof *nb);
        if (!nb) {
            free(p);
            return sb_err_set(s->err, SB_ERR_NOMEM, "out of memory");
        }
        s->bufs = nb, s->cap_bufs = cap;
    }
    s->bufs[s->n_bufs++] = p;
    return SB_OK;
}

/* Row r of the output reads row src_row(r) of the input: identity, or
 * llama.cpp's Q/K permutation for heads of hd rows. */
int64_t sb_rope_perm_src_row(int64_t r, int hd) {
    int64_t h = r / hd, within = r % hd, i = within / 2, j = within % 2;
    return h * hd + j * (hd / 2) + i;
}

static int64_t src_row(int64_t r, int hd, bool permute) { return permute ? sb_rope_perm_src_row(r, hd) : r; }

static sb_status add_matrix(saver *s, const char *name, const sb_tensor *src, bool permute,
                            int head_dim) {
    const int64_t ne0 = src->ne[0], ne1 = src->ne[1];
    int t = s->type < 0 ? src->type : s->type;
    const sb_type_traits *tt = sb_type_traits_get(t);
    bool writable = tt && tt->from_float && ne0 % tt->blck_size == 0;
    if (t != src->type && !writable) {
        sb_log(SB_LOG_WARN, "%s: %s rows of %lld cannot be %s; writing f16", name,
               sb_dtype_name(src->type), (long long)ne0, sb_dtype_name(t));
        t = SB_F16;
        tt = sb_type_traits_get(t);
    }
    size_t rb_src, rb_dst, total;
    if (!sb_dtype_row_bytes(src->type, ne0, &rb_src) || !sb_dtype_row_bytes(t, ne0, &rb_dst) ||
        !sb_mul_ok(rb_dst, (size_t)ne1, &total))
        return sb_err_set(s->err, SB_ERR_FORMAT, "tensor %s: bad size", name);
    int64_t ne[2] = {ne0, ne1};
    if (t == src->type && !permute)
        return sb_gguf_writer_add_tensor(s->w, name, t, 2, ne, src->data, total);
    char *dst = sb_malloc(total ? total : 1);
    if (!dst) return sb_err_set(s->err, SB_ERR_NOMEM, "out of memory converting %s", name);
    sb_status st = keep_buf(s, dst);
    if (st != SB_OK) return st;
    for (int64_t r = 0; r < ne1; r++) {
        int64_t sr = src_row(r, head_dim, permute);
        if (t == src->type) {
            memcpy(dst + (size_t)r * rb_dst, (const char *)src->data + (size_t)sr * rb_src, rb_dst);
        } else {
            sb_get_row(src, sr, s->row);
            tt->from_float(s->row, dst + (size_t)r * rb_dst, ne0);
        }
    }
    return sb_gguf_writer_add_tensor(s->w, name, t, 2, ne, dst, total);
}

static sb_status add_vec(saver *s, const char *name, const float *v, int64_t n) {
    return sb_gguf_writer_add_tensor(s->w, name, SB_F32, 1, &n, v, (size_t)n * sizeof(float));
}

static sb_status set_keys(saver *s, const sb_model *m) {
    const sb_model_config *c = &m->cfg;
    sb_gguf_writer *w = s->w;
    char k[128];
    sb_status st = SB_OK;
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", c->arch, suffix), k)
#define TRY(x) \
    if ((st = (x)) != SB_OK) return sb_err_set(s->err, st, "writing key %s", k)
    snprintf(k, sizeof k, "general.architecture");
    TRY(sb_gguf_writer_set_str(w, k, c->arch));
    if (!m->gguf || sb_gguf_find_key(m->gguf, "general.name") < 0) {
        const char *base = strrchr(m->path, '/');
        snprintf(k, sizeof k, "general.name");
        TRY(sb_gguf_writer_set_str(w, k, base && base[1] ? base + 1 : m->path));
    }
    TRY(sb_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx_train));
    TRY(sb_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd));
    TRY(sb_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer));
    TRY(sb_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff));
    TRY(sb_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head));
    TRY(sb_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv));
    TRY(sb_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps));
    TRY(sb_gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta));
    TRY(sb_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->n_rot));
    TRY(sb_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab));
    if (c->head_dim * c->n_head != c->n_embd) {
        TRY(sb_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim));
        TRY(sb_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim));
    }
    if (!strcmp(c->arch, "phi3")) {
        TRY(sb_gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window));
        if (c->n_ctx_orig > 0)
            TRY(sb_gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"),
                                       (uint32_t)c->n_ctx_orig));
        if (c->longrope)
            TRY(sb_gguf_writer_set_f32(w, KEY("rope.scaling.attn_factor"), c->rope_attn_factor));
    }
    int ft = s->type >= 0 ? sb_gguf_file_type_of(s->type) : -1;
    if (ft >= 0) {
        snprintf(k, sizeof k, "general.file_type");
        TRY(sb_gguf_writer_set_u32(w, k, (uint32_t)ft));
    }
#undef KEY
#undef TRY
    return SB_OK;
}

static sb_status add_tensors(saver *s, const sb_model *m) {
    const sb_model_config *c = &m->cfg;
    const int64_t D = c->n_embd;
    /* HF llama: rotate_half layout -> llama.cpp's interleaved layout */
    bool permute = c->rope_neox && !strcmp(c->arch, "llama");
    if (permute && c->n_rot != c->head_dim)
        return sb_err_set(s->err, SB_ERR_UNSUPPORTED,
                          "llama with partial rotary (%d of %d dims) cannot be written as GGUF",
                          c->n_rot, c->head_dim);
    char name[96];
    sb_status st;
#define TRY(x) \
    if ((st = (x)) != SB_OK) return st
    TRY(add_matrix(s, "token_embd.weight", &m->tok_embd, false, 0));
    TRY(add_vec(s, "output_norm.weight", m->output_norm, D));
    if (!c->tied_embeddings) TRY(add_matrix(s, "output.weight", &m->output, false, 0));
    if (c->longrope) {
        TRY(add_vec(s, "rope_factors_long.weight", m->rope_long, c->n_rot / 2));
        TRY(add_vec(s, "rope_factors_short.weight", m->rope_short, c->n_rot / 2));
    }
    for (int l = 0; l < c->n_layer; l++) {
        const sb_layer *L = &m->layers[l];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s.weight", l, suffix), name)
        TRY(add_vec(s, NAME("attn_norm"), L->attn_norm, D));
        if (c->fused_qkv) {
            TRY(add_matrix(s, NAME("attn_qkv"), &L->wqkv, false, 0));
        } else {
            TRY(add_matrix(s, NAME("attn_q"), &L->wq, permute, c->head_dim));
            TRY(add_matrix(s, NAME("attn_k"), &L->wk, permute, c->head_dim));
            TRY(add_matrix(s, NAME("attn_v"), &L->wv, false, 0));
        }
        TRY(add_matrix(s, NAME("attn_output"), &L->wo, false, 0));
        TRY(add_vec(s, NAME("ffn_norm"), L->ffn_norm, D));
        if (c->fused_gate_up) {
            TRY(add_matrix(s, NAME("ffn_up"), &L->w_gate_up, false, 0));
        } else {
            TRY(add_matrix(s, NAME("ffn_gate"), &L->w_gate, false, 0));
            TRY(add_matrix(s, NAME("ffn_up"), &L->w_up, false, 0));
        }
        TRY(add_matrix(s, NAME("ffn_down"), &L->w_down, false, 0));
#undef NAME
    }
#undef TRY
    return SB_OK;
}

sb_status sb_model_save_gguf(const sb_model *m, const char *path, int type, sb_err *err) {
    if (type >= 0) {
        const sb_type_traits *tt = sb_type_traits_get(type);
        if (!tt || !tt->from_float)
            return sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: cannot write tensors as type %s",
                              path, sb_dtype_name(type));
    }
    const sb_model_config *c = &m->cfg;
    int widest = c->n_embd;
    if (c->n_ff > widest) widest = c->n_ff;
    if (c->n_head * c->head_dim > widest) widest = c->n_head * c->head_dim;
    saver s = {.type = type, .err = err};
    s.w = sb_gguf_writer_new();
    s.row = sb_calloc((size_t)widest, sizeof(float));
    sb_status st = SB_OK;
    if (!s.w || !s.row) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (m->gguf && (st = sb_gguf_writer_copy_kv(s.w, m->gguf)) != SB_OK) {
        sb_err_set(err, st, "%s: copying metadata", path);
        goto done;
    }
    if ((st = set_keys(&s, m)) != SB_OK) goto done;
    /* A Hugging Face source's tokenizer goes into the file too. */
    if (!m->gguf && m->tok && (st = sb_tokenizer_write_gguf(m->tok, s.w, err)) != SB_OK) goto done;
    if ((st = add_tensors(&s, m)) != SB_OK) goto done;
    st = sb_gguf_writer_write(s.w, path, err);
done:
    for (int i = 0; i < s.n_bufs; i++) free(s.bufs[i]);
    free(s.bufs);
    free(s.row);
    sb_gguf_writer_free(s.w);
    return st;
}
