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
#include <strings.h>

#include "base/threadpool.h"
#include "model/model_impl.h"
#include "tensor/matvec.h"

typedef struct saver saver;

/* One matrix converted when the writer reaches it (sb_gguf_writer_add_tensor_fn):
 * rows dequantized to f32 and quantized to `type`, split over the pool. */
typedef struct job {
    saver *s;
    char name[96];
    sb_tensor src;
    int type, head_dim;
    bool permute;
    size_t rb_src, rb_dst;
    char *dst;
    sb_status st; /* of the worker threads */
} job;

struct saver {
    sb_gguf_writer *w;
    job **jobs; /* freed after the write */
    int n_jobs, cap_jobs;
    int type;   /* target type, < 0 keeps each tensor's own */
    int mix;    /* llama-quantize's per-tensor exceptions (sb_model_quantize) */
    sb_pool *pool;
    int64_t n_layer, done_el, total_el;
    bool tied; /* token_embd is also the output matrix */
    double t0;
    sb_err *err;
};

/* Row r of the output reads row src_row(r) of the input: identity, or
 * llama.cpp's Q/K permutation for heads of hd rows. */
int64_t sb_rope_perm_src_row(int64_t r, int hd) {
    int64_t h = r / hd, within = r % hd, i = within / 2, j = within % 2;
    return h * hd + j * (hd / 2) + i;
}

static int64_t src_row(int64_t r, int hd, bool permute) { return permute ? sb_rope_perm_src_row(r, hd) : r; }

static void convert_rows(void *arg, int ith, int nth) {
    job *j = arg;
    const int64_t ne0 = j->src.ne[0], ne1 = j->src.ne[1];
    const sb_type_traits *tt = sb_type_traits_get(j->type);
    float *row = j->type == j->src.type ? NULL : sb_malloc((size_t)ne0 * sizeof(float));
    if (j->type != j->src.type && !row) {
        j->st = SB_ERR_NOMEM;
        return;
    }
    for (int64_t r = ne1 * ith / nth; r < ne1 * (ith + 1) / nth; r++) {
        int64_t sr = src_row(r, j->head_dim, j->permute);
        char *d = j->dst + (size_t)r * j->rb_dst;
        if (!row) {
            memcpy(d, (const char *)j->src.data + (size_t)sr * j->rb_src, j->rb_dst);
        } else {
            sb_get_row(&j->src, sr, row);
            tt->from_float(row, d, ne0);
        }
    }
    free(row);
}

static sb_status fill_matrix(void *ctx, void *dst, size_t nbytes) {
    job *j = ctx;
    saver *s = j->s;
    j->dst = dst;
    j->st = SB_OK;
    sb_pool_run(s->pool, convert_rows, j);
    if (j->st != SB_OK) return sb_err_set(s->err, j->st, "out of memory converting %s", j->name);
    s->done_el += sb_tensor_nelements(&j->src);
    if (s->total_el) {
        double dt = sb_time_sec() - s->t0, rate = (double)s->done_el / (dt > 0 ? dt : 1e-9);
        sb_log(SB_LOG_INFO, "%-28s %-5s %5.1f%%  %.0f M el/s, ETA %.0f s", j->name, sb_dtype_name(j->type),
               100.0 * (double)s->done_el / (double)s->total_el, rate / 1e6,
               (double)(s->total_el - s->done_el) / rate);
    }
    (void)nbytes;
    return SB_OK;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third one between get more bits in the _M mixes. */
static bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The type llama-quantize (llama_tensor_get_type, src/llama-quant.cpp) gives
 * this tensor for base type `t` (mix: Q4_K_M's exceptions on top), then the
 * same fallback when the row length is not a multiple of the block. */
static int mixed_type(const saver *s, const char *name, int t, int64_t ne0) {
    if (!sb_type_traits_get(t)->quantized) return t;
    int layer = -1;
    sscanf(name, "blk.%d.", &layer);
    const int K = (int)sb_type_traits_get(SB_Q6_K)->blck_size;
    if (!strcmp(name, "output.weight") || (s->tied && !strcmp(name, "token_embd.weight"))) {
        if (ne0 % K) t = SB_Q8_0;
        else if (t != SB_Q8_0) t = SB_Q6_K;
    } else if (s->mix && layer >= 0) {
        if (strstr(name, ".attn_v.") && use_more_bits(layer, s->n_layer)) t = SB_Q6_K;
        else if (strstr(name, ".attn_qkv.")) t = SB_Q5_K;
        else if (strstr(name, ".ffn_down.") && use_more_bits(layer, s->n_layer)) t = SB_Q6_K;
    }
    if (ne0 % sb_type_traits_get(t)->blck_size) {
        t = t == SB_Q4_K ? SB_Q5_0 : t == SB_Q5_K ? SB_Q5_1 : t == SB_Q6_K ? SB_Q8_0 : SB_F16;
        if (ne0 % sb_type_traits_get(t)->blck_size) t = SB_F16;
    }
    return t;
}

static sb_status add_matrix(saver *s, const char *name, const sb_tensor *src, bool permute,
                            int head_dim) {
    const int64_t ne0 = src->ne[0], ne1 = src->ne[1];
    int t = s->type < 0 ? src->type : s->type;
    if (s->mix >= 0 && s->type >= 0) t = mixed_type(s, name, t, ne0);
    const sb_type_traits *tt = sb_type_traits_get(t);
    bool writable = tt && tt->from_float && ne0 % tt->blck_size == 0;
    if (t != src->type && !writable) {
        sb_log(SB_LOG_WARN, "%s: %s rows of %lld cannot be %s; writing f16", name,
               sb_dtype_name(src->type), (long long)ne0, sb_dtype_name(t));
        t = SB_F16;
    }
    size_t rb_src, rb_dst, total;
    if (!sb_dtype_row_bytes(src->type, ne0, &rb_src) || !sb_dtype_row_bytes(t, ne0, &rb_dst) ||
        !sb_mul_ok(rb_dst, (size_t)ne1, &total))
        return sb_err_set(s->err, SB_ERR_FORMAT, "tensor %s: bad size", name);
    int64_t ne[2] = {ne0, ne1};
    if (t == src->type && !permute) return sb_gguf_writer_add_tensor(s->w, name, t, 2, ne, src->data, total);
    if (s->n_jobs == s->cap_jobs) {
        int cap = s->cap_jobs ? 2 * s->cap_jobs : 64;
        job **nj = sb_realloc_array(s->jobs, (size_t)cap, sizeof *nj);
        if (!nj) return sb_err_set(s->err, SB_ERR_NOMEM, "out of memory");
        s->jobs = nj, s->cap_jobs = cap;
    }
    job *j = sb_calloc(1, sizeof *j);
    if (!j) return sb_err_set(s->err, SB_ERR_NOMEM, "out of memory");
    s->jobs[s->n_jobs++] = j;
    *j = (job){.s = s, .src = *src, .type = t, .head_dim = head_dim, .permute = permute, .rb_src = rb_src,
               .rb_dst = rb_dst};
    snprintf(j->name, sizeof j->name, "%s", name);
    s->total_el += ne0 * ne1;
    return sb_gguf_writer_add_tensor_fn(s->w, name, t, 2, ne, total, fill_matrix, j);
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
    if (s->type == SB_Q4_K && s->mix == 0) ft = 14; /* Q4_K_S */
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

static sb_status save(const sb_model *m, const char *path, int type, int mix, int n_threads, sb_err *err) {
    if (type >= 0) {
        const sb_type_traits *tt = sb_type_traits_get(type);
        if (!tt || !tt->from_float)
            return sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: cannot write tensors as type %s",
                              path, sb_dtype_name(type));
    }
    saver s = {.type = type, .mix = mix, .n_layer = m->cfg.n_layer, .tied = m->cfg.tied_embeddings, .err = err};
    s.w = sb_gguf_writer_new();
    s.pool = n_threads == 1 ? NULL : sb_pool_new(n_threads);
    sb_status st = SB_OK;
    if (!s.w || (n_threads != 1 && !s.pool)) {
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
    s.t0 = sb_time_sec();
    st = sb_gguf_writer_write(s.w, path, err);
done:
    for (int i = 0; i < s.n_jobs; i++) free(s.jobs[i]);
    free(s.jobs);
    sb_pool_free(s.pool);
    sb_gguf_writer_free(s.w);
    return st;
}

sb_status sb_model_save_gguf(const sb_model *m, const char *path, int type, sb_err *err) {
    return save(m, path, type, -1, 1, err);
}

sb_status sb_model_quantize(const sb_model *m, const char *path, const char *ftype, int n_threads,
                            sb_err *err) {
    char base[16];
    size_t n = strlen(ftype);
    bool k_m = n > 2 && n < sizeof base && (!strcasecmp(ftype + n - 2, "_M"));
    snprintf(base, sizeof base, "%.*s", (int)(k_m ? n - 2 : n), ftype);
    int type = sb_dtype_from_name(base);
    static const int allowed[] = {SB_F32, SB_F16, SB_BF16, SB_Q8_0, SB_Q4_0, SB_Q4_1, SB_Q5_0, SB_Q5_1,
                                  SB_Q4_K, SB_Q5_K, SB_Q6_K};
    bool ok = false;
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) ok |= type == allowed[i];
    if (!ok || (k_m && type != SB_Q4_K))
        return sb_err_set(err, SB_ERR_INVALID,
                          "quantize: unknown type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q4_K_M Q5_K "
                          "Q6_K)",
                          ftype);
    return save(m, path, type, k_m ? 1 : 0, n_threads, err);
}
