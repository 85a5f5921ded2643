/*
 * adapter.c - LoRA adapter files in PEFT and GGUF form, and merging
 * (adapter.h).
 */
#include "train/adapter.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model_impl.h"
#include "tensor/matvec.h"

static sb_lora_mat *mat_at(const sb_lora *l, int layer, int mod) {
    return &l->mats[(size_t)layer * SB_LORA_N_MOD + mod];
}

/* Which Q/K conversion a file in Hugging Face order (hf = true, PEFT) or
 * llama.cpp order (hf = false, GGUF) needs for model config c. */
static bool needs_permute(const sb_model_config *c, bool hf) {
    if (strcmp(c->arch, "llama")) return false;
    return hf ? !c->rope_neox : c->rope_neox;
}

/* B (n_out, r) rows between the model's order and the file's:
 * to_file: file[r] = native[...]; the permuted order's row r is the
 * rotate_half order's row sb_rope_perm_src_row(r). */
static void permute_rows(float *dst, const float *src, int n_out, int r, int hd, bool file_is_hf, bool to_file) {
    for (int64_t row = 0; row < n_out; row++) {
        int64_t s = sb_rope_perm_src_row(row, hd); /* permuted[row] = hf[s] */
        /* native permuted -> hf file: hf[s] = native[row]; hf file -> native permuted: native[row] = hf[s];
         * native hf -> permuted file: file[row] = native[s]; permuted file -> native hf: native[s] = file[row] */
        int64_t d_row, s_row;
        if (file_is_hf == to_file) d_row = s, s_row = row;
        else d_row = row, s_row = s;
        memcpy(dst + d_row * r, src + s_row * r, (size_t)r * sizeof(float));
    }
}

static bool is_qk(int mod) { return mod == SB_LORA_Q || mod == SB_LORA_K; }

/* ------------------------------------------------------------------ PEFT -- */

static sb_status mkdir_p(const char *dir, sb_err *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sb_err_set(err, SB_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
    return SB_OK;
}

sb_status sb_lora_save_peft(const sb_lora *l, const sb_model *m, const char *dir, sb_err *err) {
    const sb_model_config *c = &m->cfg;
    sb_status st = mkdir_p(dir, err);
    if (st != SB_OK) return st;
    const bool perm = needs_permute(c, true);
    sb_st_writer *w = sb_st_writer_new();
    float *conv = perm ? sb_calloc(l->n_params, sizeof(float)) : NULL;
    json_t *cfg = json_object(), *targets = json_array();
    char *path = NULL, *text = NULL;
    if (!w || (perm && !conv) || !cfg || !targets) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    unsigned seen = 0;
    for (int layer = 0; layer < l->n_layer; layer++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            const sb_lora_mat *lm = mat_at(l, layer, mod);
            if (!lm->A) continue;
            if (!(seen & 1u << mod)) json_array_append_new(targets, json_string(sb_lora_mod_name(mod)));
            seen |= 1u << mod;
            const float *B = lm->B;
            if (perm && is_qk(mod)) {
                float *dst = conv + (lm->B - l->params);
                permute_rows(dst, lm->B, lm->n_out, l->cfg.r, c->head_dim, true, true);
                B = dst;
            }
            char key[160];
            int64_t neA[2] = {lm->n_in, l->cfg.r}, neB[2] = {l->cfg.r, lm->n_out};
            sb_lora_peft_key(key, sizeof key, layer, mod, false);
            if ((st = sb_st_writer_add(w, key, SB_F32, 2, neA, lm->A, (size_t)lm->n_in * l->cfg.r * 4)) != SB_OK) goto done;
            sb_lora_peft_key(key, sizeof key, layer, mod, true);
            if ((st = sb_st_writer_add(w, key, SB_F32, 2, neB, B, (size_t)lm->n_out * l->cfg.r * 4)) != SB_OK) goto done;
        }
    path = sb_path_join(dir, "adapter_model.safetensors");
    if (!path) goto nomem;
    if ((st = sb_st_writer_set_metadata(w, "format", "pt")) != SB_OK) goto done;
    if ((st = sb_st_writer_write(w, path, err)) != SB_OK) goto done;
    free(path);
    /* adapter_config.json: the fields PEFT's LoraConfig reads back */
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(cfg, "base_model_name_or_path", json_string(m->path ? m->path : ""));
    json_object_set_new(cfg, "r", json_integer(l->cfg.r));
    json_object_set_new(cfg, "lora_alpha", json_real(l->cfg.alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(l->cfg.dropout));
    json_object_set_new(cfg, "use_rslora", json_boolean(l->cfg.rslora));
    json_object_set_new(cfg, "target_modules", targets);
    targets = NULL;
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "fan_in_fan_out", json_false());
    json_object_set_new(cfg, "inference_mode", json_true());
    json_object_set_new(cfg, "init_lora_weights", json_true());
    json_object_set_new(cfg, "use_dora", json_false());
    json_object_set_new(cfg, "modules_to_save", json_null());
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
    path = sb_path_join(dir, "adapter_config.json");
    if (!text || !path) goto nomem;
    st = sb_write_file_atomic(path, text, strlen(text), err);
    goto done;
nomem:
    st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
done:
    free(path);
    free(text);
    json_decref(cfg);
    json_decref(targets);
    free(conv);
    sb_st_writer_free(w);
    return st;
}

/* Copies a file tensor (F32, F16 or BF16, `rows` x `cols` row-major) into dst. */
static sb_status read_f32(const sb_tensor *t, int64_t cols, int64_t rows, float *dst, const char *file, sb_err *err) {
    if (t->ne[0] != cols || t->ne[1] != rows || t->n_dims != 2)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]", file,
                          t->name ? t->name : "?", (long long)t->ne[1], (long long)t->ne[0], (long long)rows,
                          (long long)cols);
    if (t->type != SB_F32 && t->type != SB_F16 && t->type != SB_BF16)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: tensor %s has type %s (F32, F16 or BF16 wanted)", file,
                          t->name ? t->name : "?", sb_dtype_name(t->type));
    for (int64_t r = 0; r < rows; r++) sb_get_row(t, r, dst + r * cols);
    return SB_OK;
}

/* Parses PEFT's key into layer, module and A/B; false if it is not one. */
static bool parse_peft_key(const char *key, int *layer, int *mod, bool *is_B) {
    int n = 0;
    char block[16], name[32], ab;
    if (sscanf(key, "base_model.model.model.layers.%d.%15[a-z_].%31[a-z_].lora_%c.weight%n", layer, block, name, &ab,
               &n) != 4 || key[n] != 0)
        return false;
    if (ab != 'A' && ab != 'B') return false;
    *is_B = ab == 'B';
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (!strcmp(name, sb_lora_mod_name(i))) {
            *mod = i;
            return !strcmp(block, i <= SB_LORA_O ? "self_attn" : "mlp");
        }
    return false;
}

static sb_lora *load_peft(const sb_model *m, const char *dir, sb_err *err) {
    const sb_model_config *c = &m->cfg;
    char *cpath = sb_path_join(dir, "adapter_config.json"), *spath = sb_path_join(dir, "adapter_model.safetensors");
    char *text = NULL;
    json_t *cfg = NULL;
    sb_safetensors *st = NULL;
    sb_lora *l = NULL;
    size_t len;
    if (!cpath || !spath) goto nomem;
    if (sb_read_file(cpath, 1 << 20, &text, &len, err) != SB_OK) goto fail;
    json_error_t je;
    cfg = json_loads(text, 0, &je);
    if (!cfg || !json_is_object(cfg)) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: line %d: %s", cpath, je.line, cfg ? "not an object" : je.text);
        goto fail;
    }
    const char *ptype = json_string_value(json_object_get(cfg, "peft_type"));
    if (!ptype || strcmp(ptype, "LORA")) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: peft_type is %s, not LORA", cpath, ptype ? ptype : "missing");
        goto fail;
    }
    if (json_is_true(json_object_get(cfg, "use_dora")) || json_object_size(json_object_get(cfg, "rank_pattern")) ||
        json_object_size(json_object_get(cfg, "alpha_pattern")) || json_is_true(json_object_get(cfg, "fan_in_fan_out"))) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: DoRA, rank/alpha patterns and fan_in_fan_out are not supported",
                   cpath);
        goto fail;
    }
    sb_lora_config lc = sb_lora_config_default();
    json_t *jr = json_object_get(cfg, "r"), *ja = json_object_get(cfg, "lora_alpha");
    if (!json_is_integer(jr) || !json_is_number(ja)) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: r or lora_alpha missing or not a number", cpath);
        goto fail;
    }
    lc.r = (int)json_integer_value(jr);
    lc.alpha = (float)json_number_value(ja);
    lc.dropout = 0;
    lc.rslora = json_is_true(json_object_get(cfg, "use_rslora"));
    st = sb_st_open(spath, err);
    if (!st) goto fail;
    /* targets: the modules the file holds */
    unsigned mods = 0;
    const int64_t n_t = sb_st_n_tensors(st);
    for (int64_t i = 0; i < n_t; i++) {
        sb_tensor t;
        int layer, mod;
        bool is_B;
        sb_st_tensor(st, i, &t);
        if (!parse_peft_key(t.name, &layer, &mod, &is_B) || layer < 0 || layer >= c->n_layer) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%s' is not a LoRA weight of this %d-layer model", spath,
                       t.name, c->n_layer);
            goto fail;
        }
        mods |= 1u << mod;
    }
    lc.n_targets = 0;
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (mods & 1u << i) snprintf(lc.targets[lc.n_targets++], sizeof lc.targets[0], "%s", sb_lora_mod_name(i));
    if (lc.n_targets == 0) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: no LoRA tensors", spath);
        goto fail;
    }
    l = sb_lora_new(c, &lc, false, err);
    if (!l) {
        sb_err_prefix(err, "%s", spath);
        goto fail;
    }
    float *tmp = sb_calloc(l->n_params, sizeof(float)); /* whole-B scratch for the row order */
    if (!tmp) goto nomem;
    const bool perm = needs_permute(c, true);
    for (int64_t i = 0; i < n_t; i++) {
        sb_tensor t;
        int layer, mod;
        bool is_B;
        sb_st_tensor(st, i, &t);
        parse_peft_key(t.name, &layer, &mod, &is_B);
        sb_lora_mat *lm = mat_at(l, layer, mod);
        float *dst = is_B ? lm->B : lm->A;
        float *into = perm && is_B && is_qk(mod) ? tmp : dst;
        if (read_f32(&t, is_B ? lc.r : lm->n_in, is_B ? lm->n_out : lc.r, into, spath, err) != SB_OK) {
            free(tmp);
            goto fail;
        }
        if (into != dst) permute_rows(dst, tmp, lm->n_out, lc.r, c->head_dim, true, false);
    }
    free(tmp);
    goto done;
nomem:
    sb_err_set(err, SB_ERR_NOMEM, "out of memory");
fail:
    sb_lora_free(l);
    l = NULL;
done:
    sb_st_free(st);
    json_decref(cfg);
    free(text);
    free(cpath);
    free(spath);
    return l;
}

/* ------------------------------------------------------------------ GGUF -- */

/* llama.cpp's name of module mod's base weight; phi3's gate_up is ffn_up. */
static void gguf_name(char *out, size_t n, int layer, int mod, const char *suffix) {
    snprintf(out, n, "blk.%d.%s.weight.%s", layer, sb_lora_mod_gguf_name(mod), suffix);
}

sb_status sb_lora_save_gguf(const sb_lora *l, const sb_model *m, const char *path, sb_err *err) {
    const sb_model_config *c = &m->cfg;
    const bool perm = needs_permute(c, false);
    sb_gguf_writer *w = sb_gguf_writer_new();
    float *conv = perm ? sb_calloc(l->n_params, sizeof(float)) : NULL;
    sb_status st = SB_OK;
    if (!w || (perm && !conv)) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* llama.cpp scales by alpha / r: an rsLoRA adapter's alpha / sqrt(r) is alpha' / r with alpha' = alpha sqrt(r) */
    const float alpha = l->cfg.rslora ? l->cfg.alpha * sqrtf((float)l->cfg.r) : l->cfg.alpha;
#define TRY(x)                                                                                                        \
    if ((st = (x)) != SB_OK) goto done
    TRY(sb_gguf_writer_set_str(w, "general.architecture", c->arch));
    TRY(sb_gguf_writer_set_str(w, "general.type", "adapter"));
    TRY(sb_gguf_writer_set_str(w, "adapter.type", "lora"));
    TRY(sb_gguf_writer_set_f32(w, "adapter.lora.alpha", alpha));
    for (int layer = 0; layer < l->n_layer; layer++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            const sb_lora_mat *lm = mat_at(l, layer, mod);
            if (!lm->A) continue;
            const float *B = lm->B;
            if (perm && is_qk(mod)) {
                float *dst = conv + (lm->B - l->params);
                permute_rows(dst, lm->B, lm->n_out, l->cfg.r, c->head_dim, false, true);
                B = dst;
            }
            char name[96];
            int64_t neA[2] = {lm->n_in, l->cfg.r}, neB[2] = {l->cfg.r, lm->n_out};
            gguf_name(name, sizeof name, layer, mod, "lora_a");
            TRY(sb_gguf_writer_add_tensor(w, name, SB_F32, 2, neA, lm->A, (size_t)lm->n_in * l->cfg.r * 4));
            gguf_name(name, sizeof name, layer, mod, "lora_b");
            TRY(sb_gguf_writer_add_tensor(w, name, SB_F32, 2, neB, B, (size_t)lm->n_out * l->cfg.r * 4));
        }
#undef TRY
    st = sb_gguf_writer_write(w, path, err);
done:
    free(conv);
    sb_gguf_writer_free(w);
    return st;
}

static sb_lora *load_gguf(const sb_model *m, const char *path, sb_err *err) {
    const sb_model_config *c = &m->cfg;
    sb_gguf *g = sb_gguf_open(path, err);
    if (!g) return NULL;
    sb_lora *l = NULL;
    float *tmp = NULL;
    char *type = sb_gguf_get_str_dup(g, "general.type"), *atype = sb_gguf_get_str_dup(g, "adapter.type");
    char *arch = sb_gguf_get_str_dup(g, "general.architecture");
    double alpha = 0;
    if (!type || strcmp(type, "adapter") || !atype || strcmp(atype, "lora")) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: not a GGUF LoRA (general.type %s, adapter.type %s)", path,
                   type ? type : "missing", atype ? atype : "missing");
        goto fail;
    }
    if (!arch || strcmp(arch, c->arch)) {
        sb_err_set(err, SB_ERR_INVALID, "%s: adapter for architecture %s, the model is %s", path, arch ? arch : "?",
                   c->arch);
        goto fail;
    }
    sb_gguf_get_float(g, "adapter.lora.alpha", &alpha);
    /* modules and rank from the tensors */
    unsigned mods = 0;
    int r = -1;
    const int64_t n_t = sb_gguf_n_tensors(g);
    for (int64_t i = 0; i < n_t; i++) {
        sb_tensor t;
        sb_gguf_tensor(g, i, &t);
        int layer, n = 0;
        char part[32], ab;
        if (sscanf(t.name, "blk.%d.%31[a-z_].weight.lora_%c%n", &layer, part, &ab, &n) != 3 || t.name[n] ||
            layer < 0 || layer >= c->n_layer || (ab != 'a' && ab != 'b')) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%s' is not a LoRA weight of this %d-layer model", path, t.name,
                       c->n_layer);
            goto fail;
        }
        int mod = -1;
        unsigned have = sb_lora_model_modules(c);
        for (int k = 0; k < SB_LORA_N_MOD; k++)
            if ((have & 1u << k) && !strcmp(part, sb_lora_mod_gguf_name(k))) mod = k;
        if (mod < 0) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%s' names no linear layer of this %s model", path, t.name,
                       c->arch);
            goto fail;
        }
        mods |= 1u << mod;
        int tr = (int)(ab == 'a' ? t.ne[1] : t.ne[0]);
        if (r < 0) r = tr;
        if (tr != r || tr < 1) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%s' has rank %d, others %d", path, t.name, tr, r);
            goto fail;
        }
    }
    sb_lora_config lc = sb_lora_config_default();
    lc.r = r, lc.alpha = alpha > 0 ? (float)alpha : (float)r, lc.dropout = 0, lc.n_targets = 0;
    for (int k = 0; k < SB_LORA_N_MOD; k++)
        if (mods & 1u << k) snprintf(lc.targets[lc.n_targets++], sizeof lc.targets[0], "%s", sb_lora_mod_name(k));
    if (!(l = sb_lora_new(c, &lc, false, err))) goto fail;
    tmp = sb_calloc(l->n_params, sizeof(float));
    if (!tmp) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const bool perm = needs_permute(c, false);
    for (int layer = 0; layer < c->n_layer; layer++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            sb_lora_mat *lm = mat_at(l, layer, mod);
            if (!lm->A) continue;
            char na[96], nb[96];
            gguf_name(na, sizeof na, layer, mod, "lora_a");
            gguf_name(nb, sizeof nb, layer, mod, "lora_b");
            int64_t ia = sb_gguf_find_tensor(g, na), ib = sb_gguf_find_tensor(g, nb);
            if (ia < 0 || ib < 0) continue; /* a layer left out: zero, no effect */
            sb_tensor ta, tb;
            sb_gguf_tensor(g, ia, &ta);
            sb_gguf_tensor(g, ib, &tb);
            ta.name = na, tb.name = nb;
            if (read_f32(&ta, lm->n_in, r, lm->A, path, err) != SB_OK) goto fail;
            float *into = perm && is_qk(mod) ? tmp : lm->B;
            if (read_f32(&tb, r, lm->n_out, into, path, err) != SB_OK) goto fail;
            if (into != lm->B) permute_rows(lm->B, tmp, lm->n_out, r, c->head_dim, false, false);
        }
    goto done;
fail:
    sb_lora_free(l);
    l = NULL;
done:
    free(tmp);
    free(type), free(atype), free(arch);
    sb_gguf_free(g);
    return l;
}

sb_lora *sb_lora_load(const sb_model *m, const char *path, sb_err *err) {
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) return load_gguf(m, path, err);
    if (sb_is_dir(path)) return load_peft(m, path, err);
    const char *slash = strrchr(path, '/');
    if (slash && (!strcmp(slash + 1, "adapter_model.safetensors") || !strcmp(slash + 1, "adapter_config.json"))) {
        char *dir = sb_strndup(path, (size_t)(slash - path));
        sb_lora *l = dir ? load_peft(m, dir, err) : NULL;
        free(dir);
        return l;
    }
    sb_err_set(err, SB_ERR_INVALID, "%s: not a LoRA adapter (a PEFT folder or a .gguf LoRA)", path);
    return NULL;
}

/* ----------------------------------------------------------------- merge -- */

static sb_tensor *layer_weight(sb_layer *L, int mod) {
    switch (mod) {
    case SB_LORA_Q: return &L->wq;
    case SB_LORA_K: return &L->wk;
    case SB_LORA_V: return &L->wv;
    case SB_LORA_QKV: return &L->wqkv;
    case SB_LORA_O: return &L->wo;
    case SB_LORA_GATE: return &L->w_gate;
    case SB_LORA_UP: return &L->w_up;
    case SB_LORA_GATE_UP: return &L->w_gate_up;
    default: return &L->w_down;
    }
}

sb_status sb_lora_merge_save_gguf(sb_model *m, const sb_lora *const *ads, int n_ad, const char *path, int type,
                                  sb_err *err) {
    const sb_model_config *c = &m->cfg;
    const int L = c->n_layer;
    sb_tensor *saved = sb_calloc((size_t)L * SB_LORA_N_MOD, sizeof *saved);
    float **bufs = sb_calloc((size_t)L * SB_LORA_N_MOD, sizeof *bufs);
    sb_status st = SB_OK;
    if (!saved || !bufs) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int a = 0; a < n_ad; a++)
        if (ads[a]->n_layer != L || strcmp(ads[a]->arch, c->arch)) {
            st = sb_err_set(err, SB_ERR_INVALID, "adapter %d does not fit this %s model", a, c->arch);
            goto done;
        }
    /* W' = W + sum over adapters of scale * B A, in f32; the saver converts to `type` */
    for (int l = 0; l < L; l++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            bool any = false;
            for (int a = 0; a < n_ad; a++) any |= mat_at(ads[a], l, mod)->A != NULL;
            if (!any) continue;
            sb_tensor *w = layer_weight(&m->layers[l], mod);
            const int64_t n_in = w->ne[0], n_out = w->ne[1];
            float *buf = sb_calloc((size_t)(n_in * n_out), sizeof(float));
            if (!buf) {
                st = sb_err_set(err, SB_ERR_NOMEM, "out of memory merging layer %d %s", l, sb_lora_mod_name(mod));
                goto done;
            }
            bufs[l * SB_LORA_N_MOD + mod] = buf;
            for (int64_t r = 0; r < n_out; r++) sb_get_row(w, r, buf + r * n_in);
            for (int a = 0; a < n_ad; a++) {
                const sb_lora_mat *lm = mat_at(ads[a], l, mod);
                if (!lm->A) continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_out, (int)n_in, ads[a]->cfg.r,
                            ads[a]->scale * ads[a]->user_scale, lm->B, ads[a]->cfg.r, lm->A, (int)n_in, 1.0f, buf,
                            (int)n_in);
            }
            saved[l * SB_LORA_N_MOD + mod] = *w;
            w->type = SB_F32;
            w->data = buf;
            w->nbytes = (size_t)(n_in * n_out) * sizeof(float);
        }
    /* a merged F32 matrix is written in the source's type unless one is asked for */
    if (type < 0) type = c->weight_type;
    st = sb_model_save_gguf(m, path, type, err);
done:
    for (int l = 0; l < L && bufs; l++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++)
            if (bufs[l * SB_LORA_N_MOD + mod]) {
                *layer_weight(&m->layers[l], mod) = saved[l * SB_LORA_N_MOD + mod];
                free(bufs[l * SB_LORA_N_MOD + mod]);
            }
    free(saved);
    free(bufs);
    return st;
}
