/*
 * encoder.c - BERT forward pass and sentence-transformers pooling.
 *
 * Dimension letters: T tokens of one text, D = n_embd, H heads of dh = D / H,
 * F = n_ff. Weights are converted to f32 once at load (encoders are small)
 * and the matrix products go through OpenBLAS.
 *
 * One block (transformers' BertLayer, post-LayerNorm):
 *   a = softmax(Q K^T / sqrt(dh)) V per head;  x = LN(x + a Wo^T + bo)
 *   h = gelu(x Wi^T + bi);                      x = LN(x + h Wo2^T + bo2)
 */
#include "model/encoder.h"
#include "formats/safetensors.h"
#include "tensor/matvec.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct enc_layer {
    float *wq, *bq, *wk, *bk, *wv, *bv; /* (D, D), (D) */
    float *wo, *bo, *ln1_w, *ln1_b;     /* attention output (D, D), LayerNorm (D) */
    float *wi, *bi;                     /* intermediate (F, D), (F) */
    float *wo2, *bo2, *ln2_w, *ln2_b;   /* output (D, F), (D), LayerNorm (D) */
} enc_layer;

struct sb_encoder {
    int n_vocab, n_embd, n_layer, n_head, n_ff, n_pos, n_types, max_tokens;
    float eps;
    bool pool_cls, normalize;
    float *tok_emb, *pos_emb, *type_emb; /* (V, D), (P, D), (types, D) */
    float *emb_ln_w, *emb_ln_b;          /* (D) */
    enc_layer *layers;
    float **owned; /* converted weights */
    int n_owned;
    sb_tokenizer *tok;
};

void sb_encoder_free(sb_encoder *e) {
    if (!e) return;
    for (int i = 0; i < e->n_owned; i++) free(e->owned[i]);
    free(e->owned);
    free(e->layers);
    sb_tokenizer_free(e->tok);
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

/* Finds a tensor (with or without a "bert." prefix), checks its shape
 * (ne0 innermost; ne1 = 1 for vectors) and converts it to f32. */
static float *weight(sb_encoder *e, const sb_safetensors *st, const char *name, int64_t ne0, int64_t ne1,
                     sb_err *err) {
    char full[256];
    int64_t i = sb_st_find(st, name);
    if (i < 0) {
        snprintf(full, sizeof full, "bert.%s", name);
        i = sb_st_find(st, full);
    }
    sb_tensor t;
    if (i < 0 || !sb_st_tensor(st, i, &t)) {
        sb_err_set(err, SB_ERR_NOT_FOUND, "encoder: tensor %s not found", name);
        return NULL;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t.ne[0] != ne0 || t.ne[1] != want1 || t.ne[2] != 1 || t.ne[3] != 1) {
        sb_err_set(err, SB_ERR_FORMAT, "encoder: tensor %s has shape [%lld, %lld], expected [%lld, %lld]", name,
                   (long long)t.ne[1], (long long)t.ne[0], (long long)want1, (long long)ne0);
        return NULL;
    }
    const sb_type_traits *tr = sb_type_traits_get(t.type);
    if (!tr || !tr->to_float) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "encoder: tensor %s: type %s is not supported", name,
                   sb_dtype_name(t.type));
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
    tr->to_float(t.data, w, ne0 * want1);
    return w;
}

static sb_status load_weights(sb_encoder *e, const sb_safetensors *st, sb_err *err) {
    const int D = e->n_embd, F = e->n_ff;
#define W(field, name, a, b) \
    if (!(field = weight(e, st, name, a, b, err))) return err ? err->code : SB_ERR_FORMAT
    W(e->tok_emb, "embeddings.word_embeddings.weight", D, e->n_vocab);
    W(e->pos_emb, "embeddings.position_embeddings.weight", D, e->n_pos);
    W(e->type_emb, "embeddings.token_type_embeddings.weight", D, e->n_types);
    W(e->emb_ln_w, "embeddings.LayerNorm.weight", D, 0);
    W(e->emb_ln_b, "embeddings.LayerNorm.bias", D, 0);
    char n[160];
    for (int l = 0; l < e->n_layer; l++) {
        enc_layer *L = &e->layers[l];
#define LW(field, suffix, a, b)                                       \
    snprintf(n, sizeof n, "encoder.layer.%d.%s", l, suffix);          \
    W(field, n, a, b)
        LW(L->wq, "attention.self.query.weight", D, D);
        LW(L->bq, "attention.self.query.bias", D, 0);
        LW(L->wk, "attention.self.key.weight", D, D);
        LW(L->bk, "attention.self.key.bias", D, 0);
        LW(L->wv, "attention.self.value.weight", D, D);
        LW(L->bv, "attention.self.value.bias", D, 0);
        LW(L->wo, "attention.output.dense.weight", D, D);
        LW(L->bo, "attention.output.dense.bias", D, 0);
        LW(L->ln1_w, "attention.output.LayerNorm.weight", D, 0);
        LW(L->ln1_b, "attention.output.LayerNorm.bias", D, 0);
        LW(L->wi, "intermediate.dense.weight", D, F);
        LW(L->bi, "intermediate.dense.bias", F, 0);
        LW(L->wo2, "output.dense.weight", F, D);
        LW(L->bo2, "output.dense.bias", D, 0);
        LW(L->ln2_w, "output.LayerNorm.weight", D, 0);
        LW(L->ln2_b, "output.LayerNorm.bias", D, 0);
#undef LW
    }
#undef W
    return SB_OK;
}

/* Pooling and normalisation from the sentence-transformers files. */
static void read_pipeline(sb_encoder *e, const char *dir, sb_err *err) {
    json_t *modules = load_json(dir, "modules.json", false, err);
    size_t i;
    json_t *m;
    json_array_foreach(modules, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        if (type && strstr(type, "Normalize")) e->normalize = true;
    }
    json_decref(modules);
    char *pool = sb_path_join(dir, "1_Pooling");
    json_t *pc = pool ? load_json(pool, "config.json", false, err) : NULL;
    free(pool);
    if (pc && json_is_true(json_object_get(pc, "pooling_mode_cls_token"))) e->pool_cls = true;
    json_decref(pc);
    json_t *sb = load_json(dir, "sentence_bert_config.json", false, err);
    json_t *msl = json_object_get(sb, "max_seq_length");
    if (json_is_integer(msl) && json_integer_value(msl) > 2 && json_integer_value(msl) < e->max_tokens)
        e->max_tokens = (int)json_integer_value(msl);
    json_decref(sb);
    sb_err_clear(err);
}

sb_encoder *sb_encoder_open(const char *path, sb_err *err) {
    if (!sb_is_dir(path)) {
        sb_err_set(err, SB_ERR_UNSUPPORTED,
                   "%s: encoders load from a Hugging Face / sentence-transformers folder for now", path);
        return NULL;
    }
    sb_encoder *e = calloc(1, sizeof *e);
    json_t *cfg = NULL;
    sb_safetensors *st = NULL;
    if (!e) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
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
        !cfg_int(cfg, "max_position_embeddings", 1, 1 << 16, &e->n_pos, err, path))
        goto fail;
    e->n_types = 2;
    json_t *tv = json_object_get(cfg, "type_vocab_size");
    if (json_is_integer(tv) && json_integer_value(tv) >= 1 && json_integer_value(tv) <= 16)
        e->n_types = (int)json_integer_value(tv);
    if (e->n_embd % e->n_head) {
        sb_err_set(err, SB_ERR_FORMAT, "%s/config.json: hidden_size %d is not a multiple of num_attention_heads %d",
                   path, e->n_embd, e->n_head);
        goto fail;
    }
    json_t *eps = json_object_get(cfg, "layer_norm_eps");
    e->eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    e->max_tokens = e->n_pos;
    e->layers = calloc((size_t)e->n_layer, sizeof *e->layers);
    if (!e->layers) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(st = sb_st_open(path, err))) goto fail;
    if (load_weights(e, st, err) != SB_OK) {
        sb_err_prefix(err, "%s", path);
        goto fail;
    }
    if (!(e->tok = sb_tokenizer_from_hf(path, err))) {
        sb_err_prefix(err, "%s: tokenizer", path);
        goto fail;
    }
    read_pipeline(e, path, err);
    sb_blas_single_thread(); /* OpenBLAS's own threads cost more than they give on these sizes */
    sb_st_free(st);
    json_decref(cfg);
    return e;
fail:
    sb_st_free(st);
    json_decref(cfg);
    sb_encoder_free(e);
    return NULL;
}

/* ---- forward ---- */

static void layer_norm(float *x, int T, int D, const float *w, const float *b, float eps) {
    for (int t = 0; t < T; t++) {
        float *r = x + (size_t)t * D;
        double mean = 0, var = 0;
        for (int i = 0; i < D; i++) mean += r[i];
        mean /= D;
        for (int i = 0; i < D; i++) var += (r[i] - mean) * (r[i] - mean);
        var /= D;
        float inv = (float)(1.0 / sqrt(var + eps));
        for (int i = 0; i < D; i++) r[i] = (float)(r[i] - mean) * inv * w[i] + b[i];
    }
}

/* y (T, out) = x (T, in) W^T + b, W stored (out, in) row-major. */
static void linear(const float *x, int T, int in, const float *W, const float *b, int out, float *y) {
    for (int t = 0; t < T; t++) memcpy(y + (size_t)t * out, b, sizeof(float) * (size_t)out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, W, in, 1.0f, y, out);
}

/* A batch of texts packed one after another: tokens (N = sum of lengths) run
 * through the per-token layers as one matrix, attention stays within each
 * text (offsets off[0..n]). Pooled embeddings go to out (n, D). */
static void encode_batch(const sb_encoder *e, const int32_t *ids, const int *off, int n, float *out, float *s) {
    const int D = e->n_embd, F = e->n_ff, H = e->n_head, dh = D / H, N = off[n];
    float *x = s, *q = x + (size_t)N * D, *k = q + (size_t)N * D, *v = k + (size_t)N * D;
    float *a = v + (size_t)N * D, *h = a + (size_t)N * D, *att = h + (size_t)N * F;
    for (int b = 0; b < n; b++)
        for (int t = off[b]; t < off[b + 1]; t++)
            for (int i = 0; i < D; i++)
                x[(size_t)t * D + i] = e->tok_emb[(size_t)ids[t] * D + i] +
                                       e->pos_emb[(size_t)(t - off[b]) * D + i] + e->type_emb[i];
    layer_norm(x, N, D, e->emb_ln_w, e->emb_ln_b, e->eps);
    const float scale = 1.0f / sqrtf((float)dh);
    for (int l = 0; l < e->n_layer; l++) {
        const enc_layer *L = &e->layers[l];
        linear(x, N, D, L->wq, L->bq, D, q);
        linear(x, N, D, L->wk, L->bk, D, k);
        linear(x, N, D, L->wv, L->bv, D, v);
        for (int b = 0; b < n; b++) {
            const int T = off[b + 1] - off[b];
            const size_t o = (size_t)off[b] * D;
            for (int hd = 0; hd < H; hd++) {
                /* att (T, T) = Q_h K_h^T * scale; rows softmaxed; a_h = att V_h */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, scale, q + o + hd * dh, D,
                            k + o + hd * dh, D, 0.0f, att, T);
                for (int t = 0; t < T; t++) {
                    float *r = att + (size_t)t * T, mx = r[0];
                    double sum = 0;
                    for (int j = 1; j < T; j++) mx = r[j] > mx ? r[j] : mx;
                    for (int j = 0; j < T; j++) sum += r[j] = expf(r[j] - mx);
                    float inv = (float)(1.0 / sum);
                    for (int j = 0; j < T; j++) r[j] *= inv;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, 1.0f, att, T, v + o + hd * dh, D,
                            0.0f, a + o + hd * dh, D);
            }
        }
        linear(a, N, D, L->wo, L->bo, D, q); /* q reused as the projection */
        for (size_t i = 0; i < (size_t)N * D; i++) x[i] += q[i];
        layer_norm(x, N, D, L->ln1_w, L->ln1_b, e->eps);
        linear(x, N, D, L->wi, L->bi, F, h);
        for (size_t i = 0; i < (size_t)N * F; i++) h[i] = 0.5f * h[i] * (1.0f + erff(h[i] * (float)M_SQRT1_2));
        linear(h, N, F, L->wo2, L->bo2, D, q);
        for (size_t i = 0; i < (size_t)N * D; i++) x[i] += q[i];
        layer_norm(x, N, D, L->ln2_w, L->ln2_b, e->eps);
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

sb_status sb_encoder_embed(sb_encoder *e, const char *const *texts, int n, bool normalize, float *out,
                           sb_err *err) {
    const int D = e->n_embd, F = e->n_ff, maxT = e->max_tokens;
    const int cap = BATCH_TOKENS > maxT ? BATCH_TOKENS : maxT;
    size_t need = (size_t)cap * (5 * (size_t)D + F) + (size_t)maxT * maxT;
    float *scratch = malloc(sizeof(float) * need);
    int *off = malloc(sizeof(int) * ((size_t)n + 1));
    sb_tokens ids = {0};
    sb_status st = SB_OK;
    if (!scratch || !off) {
        st = sb_err_set(err, SB_ERR_NOMEM, "encoder: out of memory for a %d-token batch", cap);
        goto done;
    }
    int32_t cls = sb_tokenizer_bos(e->tok), sep = sb_tokenizer_eos(e->tok);
    for (int first = 0; first < n && st == SB_OK;) {
        /* Pack whole texts while they fit in the batch. */
        ids.n = 0;
        int count = 0;
        off[0] = 0;
        while (first + count < n) {
            size_t start = ids.n;
            if (cls >= 0) sb_tokens_push(&ids, cls);
            const char *txt = texts[first + count] ? texts[first + count] : "";
            if ((st = sb_tokenize(e->tok, txt, strlen(txt), false, true, &ids, err)) != SB_OK) break;
            size_t room = (size_t)maxT - (sep >= 0 ? 1 : 0); /* truncate, keeping room for [SEP] */
            if (ids.n - start > room) ids.n = start + room;
            if (sep >= 0 && !sb_tokens_push(&ids, sep)) {
                st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                break;
            }
            if (count > 0 && ids.n > (size_t)cap) { /* does not fit: next batch */
                ids.n = start;
                break;
            }
            off[++count] = (int)ids.n;
        }
        if (st != SB_OK) break;
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= e->n_vocab) {
                st = sb_err_set(err, SB_ERR_RANGE, "encoder: token id %d outside the vocabulary", ids.ids[i]);
                goto done;
            }
        encode_batch(e, ids.ids, off, count, out + (size_t)first * D, scratch);
        for (int b = 0; b < count && (normalize || e->normalize); b++) {
            float *o = out + (size_t)(first + b) * D;
            double ss = 0;
            for (int i = 0; i < D; i++) ss += (double)o[i] * o[i];
            float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
            for (int i = 0; i < D; i++) o[i] *= inv;
        }
        first += count;
    }
done:
    sb_tokens_free(&ids);
    free(off);
    free(scratch);
    return st;
}
