/*
 * config.c - the decoder's hyper-parameters from GGUF metadata
 * (`<arch>.embedding_length`, ...) or from a Hugging Face config.json, with
 * the defaults transformers applies when a field is absent.
 *
 * RoPE in config.json comes in two spellings: the one Microsoft's Phi-3
 * checkpoints ship ("rope_theta" top-level, "rope_scaling": {"type":
 * "longrope"|"su", "short_factor", "long_factor"}) and transformers 5's
 * ("rope_parameters": {"rope_type", "rope_theta", "partial_rotary_factor",
 * ...}). Both are read; for phi3 "su" and "yarn" mean longrope
 * (Phi3Config.convert_rope_params_to_dict).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"

#define MAX_DIM (1 << 20)   /* widths, heads, ff: far above any real model */
#define MAX_CTX (1 << 24)
#define MAX_LAYER 4096
#define MAX_VOCAB (1 << 24)

/* LongRoPE's default attention factor (LongRoPE paper, as
 * transformers' _compute_longrope_parameters and llama.cpp's converter):
 * sqrt(1 + ln(factor) / ln(original_max)), factor = max / original_max. */
static float longrope_default_attn_factor(double factor, int n_ctx_orig) {
    if (factor <= 1.0 || n_ctx_orig <= 1) return 1.0f;
    return (float)sqrt(1.0 + log(factor) / log((double)n_ctx_orig));
}

int sb_gguf_file_type_of(int type) {
    switch (type) {
    case SB_F32: return 0;
    case SB_F16: return 1;
    case SB_Q4_0: return 2;
    case SB_Q4_1: return 3;
    case SB_Q8_0: return 7;
    case SB_Q5_0: return 8;
    case SB_Q5_1: return 9;
    case SB_Q2_K: return 10;
    case SB_Q3_K: return 12; /* Q3_K_M */
    case SB_Q4_K: return 15; /* Q4_K_M */
    case SB_Q5_K: return 17; /* Q5_K_M */
    case SB_Q6_K: return 18;
    case SB_BF16: return 32;
    default: return -1;
    }
}

sb_status sb_config_check(const sb_model_config *c, sb_err *err) {
    if (c->n_head_kv <= 0 || c->n_head % c->n_head_kv != 0)
        return sb_err_set(err, SB_ERR_FORMAT,
                          "%s: n_head_kv %d does not divide n_head %d", c->arch, c->n_head_kv,
                          c->n_head);
    if (c->head_dim <= 0 || c->head_dim % 2)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: head_dim %d is not a positive even number",
                          c->arch, c->head_dim);
    if (c->n_rot <= 0 || c->n_rot % 2 || c->n_rot > c->head_dim)
        return sb_err_set(err, SB_ERR_FORMAT,
                          "%s: rotary dims %d must be even and in 2..head_dim %d", c->arch,
                          c->n_rot, c->head_dim);
    if ((int64_t)c->n_head * c->head_dim > MAX_DIM)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: n_head %d * head_dim %d too large", c->arch,
                          c->n_head, c->head_dim);
    if (!(c->rms_eps > 0.0f) || !(c->rms_eps < 1.0f))
        return sb_err_set(err, SB_ERR_FORMAT, "%s: rms epsilon %g out of range", c->arch,
                          (double)c->rms_eps);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return sb_err_set(err, SB_ERR_FORMAT, "%s: rope theta %g out of range", c->arch,
                          (double)c->rope_theta);
    if (c->longrope && (c->n_ctx_orig <= 0 || !(c->rope_attn_factor > 0.0f)))
        return sb_err_set(err, SB_ERR_FORMAT,
                          "%s: LongRoPE needs original context > 0 (got %d) and attention "
                          "factor > 0 (got %g)",
                          c->arch, c->n_ctx_orig, (double)c->rope_attn_factor);
    if (c->sliding_window < 0)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: sliding window %d < 0", c->arch,
                          c->sliding_window);
    return SB_OK;
}

/* ================================================================ GGUF == */

static sb_status gguf_int(const sb_gguf *g, const char *arch, const char *key, bool required,
                          int64_t def, int64_t lo, int64_t hi, int *out, sb_err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t v;
    if (!sb_gguf_get_int(g, full, &v)) {
        if (sb_gguf_find_key(g, full) >= 0)
            return sb_err_set(err, SB_ERR_FORMAT, "key %s: not an integer", full);
        if (required) return sb_err_set(err, SB_ERR_FORMAT, "key %s is missing", full);
        v = def;
    }
    if (v < lo || v > hi)
        return sb_err_set(err, SB_ERR_FORMAT, "key %s: value %lld out of range %lld..%lld",
                          full, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return SB_OK;
}

static sb_status gguf_float(const sb_gguf *g, const char *arch, const char *key, bool required,
                            double def, float *out, sb_err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v;
    if (!sb_gguf_get_float(g, full, &v)) {
        if (sb_gguf_find_key(g, full) >= 0)
            return sb_err_set(err, SB_ERR_FORMAT, "key %s: not a number", full);
        if (required) return sb_err_set(err, SB_ERR_FORMAT, "key %s is missing", full);
        v = def;
    }
    if (!isfinite(v)) return sb_err_set(err, SB_ERR_FORMAT, "key %s: value %g", full, v);
    *out = (float)v;
    return SB_OK;
}

sb_status sb_config_from_gguf(sb_model *m, sb_err *err) {
    const sb_gguf *g = m->gguf;
    sb_model_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    char *arch = sb_gguf_get_str_dup(g, "general.architecture");
    if (!arch) return sb_err_set(err, SB_ERR_FORMAT, "key general.architecture is missing");
    if (strcmp(arch, "phi3") && strcmp(arch, "llama")) {
        sb_err_set(err, SB_ERR_UNSUPPORTED,
                   "architecture '%.64s' is not supported (phi3 and llama are)", arch);
        free(arch);
        return SB_ERR_UNSUPPORTED;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    free(arch);
    const char *a = c->arch;
    bool phi3 = !strcmp(a, "phi3");
    sb_status st;
#define TRY(x) \
    if ((st = (x)) != SB_OK) return st
    TRY(gguf_int(g, a, "embedding_length", true, 0, 1, MAX_DIM, &c->n_embd, err));
    TRY(gguf_int(g, a, "block_count", true, 0, 1, MAX_LAYER, &c->n_layer, err));
    TRY(gguf_int(g, a, "feed_forward_length", true, 0, 1, MAX_DIM, &c->n_ff, err));
    TRY(gguf_int(g, a, "attention.head_count", true, 0, 1, MAX_DIM, &c->n_head, err));
    TRY(gguf_int(g, a, "attention.head_count_kv", false, c->n_head, 1, MAX_DIM, &c->n_head_kv,
                 err));
    TRY(gguf_int(g, a, "context_length", true, 0, 1, MAX_CTX, &c->n_ctx_train, err));
    {
        char key[96];
        snprintf(key, sizeof key, "%s.attention.key_length", a);
        if (c->n_embd % c->n_head != 0 && sb_gguf_find_key(g, key) < 0)
            return sb_err_set(err, SB_ERR_FORMAT,
                              "key %s.attention.head_count %d does not divide "
                              "embedding_length %d (and no key_length)", a, c->n_head, c->n_embd);
    }
    TRY(gguf_int(g, a, "attention.key_length", false, c->n_embd / c->n_head, 1, MAX_DIM,
                 &c->head_dim, err));
    int vlen;
    TRY(gguf_int(g, a, "attention.value_length", false, c->head_dim, 1, MAX_DIM, &vlen, err));
    if (vlen != c->head_dim)
        return sb_err_set(err, SB_ERR_UNSUPPORTED,
                          "key %s.attention.value_length %d differs from key_length %d", a, vlen,
                          c->head_dim);
    TRY(gguf_int(g, a, "rope.dimension_count", false, c->head_dim, 1, MAX_DIM, &c->n_rot, err));
    TRY(gguf_float(g, a, "attention.layer_norm_rms_epsilon", true, 0, &c->rms_eps, err));
    TRY(gguf_float(g, a, "rope.freq_base", false, 10000.0, &c->rope_theta, err));
    /* n_vocab: <arch>.vocab_size, else the embedding's row count (load.c). */
    TRY(gguf_int(g, a, "vocab_size", false, 0, 0, MAX_VOCAB, &c->n_vocab, err));
    {
        char key[96];
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        char *type = sb_gguf_get_str_dup(g, key);
        bool ok = !type || !strcmp(type, "none") || (phi3 && !strcmp(type, "longrope"));
        if (!ok) {
            sb_err_set(err, SB_ERR_UNSUPPORTED, "key %s = '%.32s' is not supported", key, type);
            free(type);
            return SB_ERR_UNSUPPORTED;
        }
        free(type);
        float fs = 1.0f;
        TRY(gguf_float(g, a, "rope.scaling.factor", false, 1.0, &fs, err));
        if (fs != 1.0f && !phi3)
            return sb_err_set(err, SB_ERR_UNSUPPORTED, "key %s.rope.scaling.factor %g: linear "
                              "RoPE scaling is not supported", a, (double)fs);
    }
    if (sb_gguf_find_tensor(g, "rope_freqs.weight") >= 0)
        return sb_err_set(err, SB_ERR_UNSUPPORTED,
                          "tensor rope_freqs.weight (Llama-3 RoPE scaling) is not supported");
    c->rope_neox = phi3; /* llama.cpp's converter permutes llama Q/K to interleaved pairs */
    c->rope_attn_factor = 1.0f;
    if (phi3) {
        TRY(gguf_int(g, a, "attention.sliding_window", false, 0, 0, MAX_CTX, &c->sliding_window,
                     err));
        TRY(gguf_int(g, a, "rope.scaling.original_context_length", false, 0, 0, MAX_CTX,
                     &c->n_ctx_orig, err));
        bool has_long = sb_gguf_find_tensor(g, "rope_factors_long.weight") >= 0;
        if (has_long) {
            c->longrope = true;
            if (c->n_ctx_orig == 0)
                return sb_err_set(err, SB_ERR_FORMAT,
                                  "tensor rope_factors_long.weight present but key "
                                  "%s.rope.scaling.original_context_length is missing", a);
            float def = longrope_default_attn_factor((double)c->n_ctx_train / c->n_ctx_orig,
                                                     c->n_ctx_orig);
            TRY(gguf_float(g, a, "rope.scaling.attn_factor", false, def, &c->rope_attn_factor,
                           err));
        }
    }
#undef TRY
    return SB_OK;
}

/* ========================================================= config.json == */

typedef struct {
    const char *file;
    sb_err *err;
} jctx;

static sb_status j_int(jctx *j, json_t *o, const char *key, bool required, int64_t def,
                       int64_t lo, int64_t hi, int *out) {
    json_t *v = json_object_get(o, key);
    int64_t x = def;
    if (!v || json_is_null(v)) {
        if (required)
            return sb_err_set(j->err, SB_ERR_FORMAT, "%s: field \"%s\" is missing", j->file, key);
    } else if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else {
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: field \"%s\" is not an integer", j->file,
                          key);
    }
    if (x < lo || x > hi)
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: field \"%s\" = %lld out of range %lld..%lld",
                          j->file, key, (long long)x, (long long)lo, (long long)hi);
    *out = (int)x;
    return SB_OK;
}

/* Number or absent/null (then *present = false, *out untouched). */
static sb_status j_num(jctx *j, json_t *o, const char *key, double *out, bool *present) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    *present = false;
    if (!v || json_is_null(v)) return SB_OK;
    if (!json_is_number(v))
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: field \"%s\" is not a number", j->file, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: field \"%s\" is not finite", j->file, key);
    *present = true;
    return SB_OK;
}

static sb_status j_factors(jctx *j, json_t *rp, const char *key, int n, float **out) {
    json_t *v = json_object_get(rp, key);
    if (!json_is_array(v))
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: rope scaling field \"%s\" is missing or "
                          "not a list", j->file, key);
    if ((int)json_array_size(v) != n)
        return sb_err_set(j->err, SB_ERR_FORMAT,
                          "%s: rope scaling \"%s\" has %zu values, expected %d (rotary dims / 2)",
                          j->file, key, json_array_size(v), n);
    float *f = sb_calloc((size_t)n, sizeof *f);
    if (!f) return sb_err_set(j->err, SB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        double d = json_is_number(x) ? json_number_value(x) : NAN;
        if (!(d > 0.0) || !isfinite(d)) {
            free(f);
            return sb_err_set(j->err, SB_ERR_FORMAT, "%s: rope scaling \"%s\"[%d] is not a "
                              "positive number", j->file, key, i);
        }
        f[i] = (float)d;
    }
    *out = f;
    return SB_OK;
}

static sb_status hf_parse(sb_model *m, json_t *root, jctx *j) {
    sb_model_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    if (!json_is_object(root))
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: not a JSON object", j->file);
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    const char *archs0 = json_string_value(json_array_get(json_object_get(root, "architectures"), 0));
    if ((mt && !strcmp(mt, "phi3")) || (!mt && archs0 && !strcmp(archs0, "Phi3ForCausalLM")))
        strcpy(c->arch, "phi3");
    else if ((mt && !strcmp(mt, "llama")) || (!mt && archs0 && !strcmp(archs0, "LlamaForCausalLM")))
        strcpy(c->arch, "llama");
    else
        return sb_err_set(j->err, SB_ERR_UNSUPPORTED,
                          "%s: model_type '%.64s' is not supported (phi3 and llama are)", j->file,
                          mt ? mt : archs0 ? archs0 : "(none)");
    bool phi3 = !strcmp(c->arch, "phi3");
    sb_status st;
#define TRY(x) \
    if ((st = (x)) != SB_OK) return st
    TRY(j_int(j, root, "vocab_size", true, 0, 1, MAX_VOCAB, &c->n_vocab));
    TRY(j_int(j, root, "hidden_size", true, 0, 1, MAX_DIM, &c->n_embd));
    TRY(j_int(j, root, "intermediate_size", true, 0, 1, MAX_DIM, &c->n_ff));
    TRY(j_int(j, root, "num_hidden_layers", true, 0, 1, MAX_LAYER, &c->n_layer));
    TRY(j_int(j, root, "num_attention_heads", true, 0, 1, MAX_DIM, &c->n_head));
    TRY(j_int(j, root, "num_key_value_heads", false, c->n_head, 1, MAX_DIM, &c->n_head_kv));
    if (!json_is_integer(json_object_get(root, "head_dim")) && c->n_embd % c->n_head)
        return sb_err_set(j->err, SB_ERR_FORMAT,
                          "%s: num_attention_heads %d does not divide hidden_size %d", j->file,
                          c->n_head, c->n_embd);
    TRY(j_int(j, root, "head_dim", false, c->n_embd / c->n_head, 1, MAX_DIM, &c->head_dim));
    TRY(j_int(j, root, "max_position_embeddings", false, phi3 ? 4096 : 2048, 1, MAX_CTX,
              &c->n_ctx_train));
    double eps = phi3 ? 1e-5 : 1e-6;
    bool have;
    TRY(j_num(j, root, "rms_norm_eps", &eps, &have));
    c->rms_eps = (float)eps;

    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "silu"))
        return sb_err_set(j->err, SB_ERR_UNSUPPORTED, "%s: hidden_act '%.32s' (only silu)",
                          j->file, act);
    if (json_is_true(json_object_get(root, "attention_bias")) ||
        json_is_true(json_object_get(root, "mlp_bias")))
        return sb_err_set(j->err, SB_ERR_UNSUPPORTED, "%s: attention_bias/mlp_bias are not "
                          "supported", j->file);
    c->tied_embeddings = json_is_true(json_object_get(root, "tie_word_embeddings"));

    /* ---- RoPE ---- */
    json_t *rp = json_object_get(root, "rope_parameters");
    if (!json_is_object(rp)) rp = json_object_get(root, "rope_scaling");
    if (!json_is_object(rp)) rp = NULL;
    double theta = 10000.0, prf = 1.0;
    TRY(j_num(j, root, "rope_theta", &theta, &have));
    TRY(j_num(j, rp, "rope_theta", &theta, &have));
    TRY(j_num(j, root, "partial_rotary_factor", &prf, &have));
    TRY(j_num(j, rp, "partial_rotary_factor", &prf, &have));
    if (!(prf > 0.0 && prf <= 1.0))
        return sb_err_set(j->err, SB_ERR_FORMAT, "%s: partial_rotary_factor %g not in (0, 1]",
                          j->file, prf);
    c->rope_theta = (float)theta;
    c->n_rot = (int)((double)c->head_dim * prf); /* transformers: int(head_dim * factor) */
    c->rope_neox = true;                          /* rotate_half, for llama too */
    c->rope_attn_factor = 1.0f;
    const char *rtype = "default";
    if (rp) {
        const char *t = json_string_value(json_object_get(rp, "rope_type"));
        if (!t) t = json_string_value(json_object_get(rp, "type"));
        if (t) rtype = t;
    }
    if (phi3 && (!strcmp(rtype, "longrope") || !strcmp(rtype, "su") || !strcmp(rtype, "yarn"))) {
        c->longrope = true;
        /* Phi3: the top-level original_max_position_embeddings wins
         * (PreTrainedConfig.standardize_rope_params). */
        c->n_ctx_orig = 0;
        TRY(j_int(j, root, "original_max_position_embeddings", false, 0, 0, MAX_CTX,
                  &c->n_ctx_orig));
        if (c->n_ctx_orig == 0)
            TRY(j_int(j, rp, "original_max_position_embeddings", false, c->n_ctx_train, 1,
                      MAX_CTX, &c->n_ctx_orig));
        double factor = (double)c->n_ctx_train / c->n_ctx_orig, af = 0;
        TRY(j_num(j, rp, "factor", &factor, &have));
        TRY(j_num(j, rp, "attention_factor", &af, &have));
        c->rope_attn_factor = have ? (float)af : longrope_default_attn_factor(factor, c->n_ctx_orig);
        if (c->n_rot % 2)
            return sb_err_set(j->err, SB_ERR_FORMAT, "%s: rotary dims %d odd", j->file, c->n_rot);
        TRY(j_factors(j, rp, "short_factor", c->n_rot / 2, &m->rope_short));
        TRY(j_factors(j, rp, "long_factor", c->n_rot / 2, &m->rope_long));
    } else if (strcmp(rtype, "default")) {
        return sb_err_set(j->err, SB_ERR_UNSUPPORTED,
                          "%s: rope type '%.32s' is not supported for %s", j->file, rtype, c->arch);
    }
    /* Only Phi3Model masks with the sliding window; LlamaModel ignores it. */
    if (phi3) TRY(j_int(j, root, "sliding_window", false, 0, 0, MAX_CTX, &c->sliding_window));
#undef TRY
    return SB_OK;
}

sb_status sb_config_from_hf(sb_model *m, const char *path, sb_err *err) {
    char *text = NULL;
    size_t len = 0;
    sb_status st = sb_read_file(path, 16u << 20, &text, &len, err);
    if (st != SB_OK) return st;
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    if (!root)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    jctx j = {path, err};
    st = hf_parse(m, root, &j);
    json_decref(root);
    return st;
}
