/*
 * tokenizer_load.c - building a tokenizer from a GGUF's tokenizer.ggml.* keys
 * or from a Hugging Face tokenizer.json (+ tokenizer_config.json).
 */
#include "text/tokenizer_impl.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenizer; the llama.cpp "smollm"/"starcoder" family splits
 * digits one by one first. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static sb_tokenizer *tok_alloc(int32_t n_vocab, sb_err *err) {
    sb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->n_vocab = n_vocab;
    t->text = calloc((size_t)n_vocab, sizeof *t->text);
    t->len = calloc((size_t)n_vocab, sizeof *t->len);
    t->score = calloc((size_t)n_vocab, sizeof *t->score);
    t->type = calloc((size_t)n_vocab, sizeof *t->type);
    t->bos = t->eos = t->eot = t->unk = -1;
    if (!t->text || !t->len || !t->score || !t->type) goto nomem;
    for (int32_t i = 0; i < n_vocab; i++) t->type[i] = SB_TOK_NORMAL;
    return t;
nomem:
    sb_tokenizer_free(t);
    sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    return NULL;
}

static bool add_regex(sb_tokenizer *t, const char *pattern, sb_err *err) {
    if (t->n_regex == SB_TOK_MAX_REGEX) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "tokenizer: more than %d pre-tokenizer regexes", SB_TOK_MAX_REGEX);
        return false;
    }
    sb_regex *r = sb_regex_new(pattern, err);
    if (!r) return false;
    t->regex[t->n_regex++] = r;
    return true;
}

static int32_t gguf_id(const sb_gguf *g, const char *key, int32_t n_vocab) {
    int64_t v;
    if (!sb_gguf_get_int(g, key, &v) || v < 0 || v >= n_vocab) return -1;
    return (int32_t)v;
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return true;
    return false;
}

sb_tokenizer *sb_tokenizer_from_gguf(const sb_gguf *g, sb_err *err) {
    const sb_gguf_value *model = sb_gguf_get(g, "tokenizer.ggml.model");
    const sb_gguf_value *tokens = sb_gguf_get(g, "tokenizer.ggml.tokens");
    if (!model || model->type != SB_GGUF_STRING) {
        sb_err_set(err, SB_ERR_NOT_FOUND, "tokenizer: no tokenizer.ggml.model in the GGUF");
        return NULL;
    }
    char algo[32] = {0};
    memcpy(algo, model->str.ptr, model->str.len < 31 ? (size_t)model->str.len : 31);
    bool spm = !strcmp(algo, "llama"), bpe = !strcmp(algo, "gpt2"), wpm = !strcmp(algo, "bert");
    if (!spm && !bpe && !wpm) {
        sb_err_set(err, SB_ERR_UNSUPPORTED,
                   "tokenizer: tokenizer.ggml.model '%s' is not supported (llama, gpt2, bert)", algo);
        return NULL;
    }
    if (!tokens || tokens->type != SB_GGUF_ARRAY || tokens->arr.type != SB_GGUF_STRING || tokens->arr.n == 0 ||
        tokens->arr.n > (1u << 24)) {
        sb_err_set(err, SB_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is missing or not a string array");
        return NULL;
    }
    int32_t nv = (int32_t)tokens->arr.n;
    sb_tokenizer *t = tok_alloc(nv, err);
    if (!t) return NULL;
    t->algo = spm ? SB_TOK_SPM : bpe ? SB_TOK_BPE : SB_TOK_WPM;
    const sb_gguf_value *scores = sb_gguf_get(g, "tokenizer.ggml.scores");
    const sb_gguf_value *types = sb_gguf_get(g, "tokenizer.ggml.token_type");
    if (scores && (scores->type != SB_GGUF_ARRAY || scores->arr.n != (uint64_t)nv)) scores = NULL;
    if (types && (types->type != SB_GGUF_ARRAY || types->arr.n != (uint64_t)nv)) types = NULL;
    for (int32_t i = 0; i < nv; i++) {
        const sb_gguf_value *s = &tokens->arr.items[i];
        t->text[i] = sb_strndup(s->str.ptr, (size_t)s->str.len);
        if (!t->text[i]) {
            sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        t->len[i] = (size_t)s->str.len;
        double sc;
        if (scores && sb_gguf_arr_float(scores, (uint64_t)i, &sc)) t->score[i] = (float)sc;
        int64_t ty;
        if (types && sb_gguf_arr_int(types, (uint64_t)i, &ty) && ty >= 1 && ty <= 6) t->type[i] = (int32_t)ty;
    }
    t->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", nv);
    t->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", nv);
    t->eot = gguf_id(g, "tokenizer.ggml.eot_token_id", nv);
    t->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", nv);
    bool b;
    t->add_space_prefix = spm;
    if (sb_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;
    t->add_bos = spm;
    if (sb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (sb_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    t->chat_template = sb_gguf_get_str_dup(g, "tokenizer.chat_template");
    if (wpm) { /* BERT: [CLS] text [SEP]; llama.cpp spells the key "seperator" */
        int32_t cls = gguf_id(g, "tokenizer.ggml.cls_token_id", nv);
        int32_t sep = gguf_id(g, "tokenizer.ggml.seperator_token_id", nv);
        if (sep < 0) sep = gguf_id(g, "tokenizer.ggml.separator_token_id", nv);
        t->bos = cls >= 0 ? cls : t->bos;
        t->eos = sep >= 0 ? sep : t->eos;
        t->add_bos = t->add_eos = true;
        t->add_space_prefix = true;
    }

    if (bpe) {
        t->byte_level = true;
        const sb_gguf_value *merges = sb_gguf_get(g, "tokenizer.ggml.merges");
        if (!merges || merges->type != SB_GGUF_ARRAY || merges->arr.type != SB_GGUF_STRING) {
            sb_err_set(err, SB_ERR_FORMAT, "tokenizer: gpt2 vocabulary without tokenizer.ggml.merges");
            goto fail;
        }
        if (sb_tokenizer_build_index(t, err) != SB_OK) goto fail;
        for (uint64_t i = 0; i < merges->arr.n; i++) {
            const sb_gguf_value *m = &merges->arr.items[i];
            const char *sp = memchr(m->str.ptr, ' ', (size_t)m->str.len);
            if (!sp) continue;
            size_t ln = (size_t)(sp - m->str.ptr);
            int32_t a = sb_vocab_lookup(t, m->str.ptr, ln);
            int32_t c = sb_vocab_lookup(t, sp + 1, (size_t)m->str.len - ln - 1);
            if (a < 0 || c < 0) continue;
            if (sb_tokenizer_add_merge(t, a, c, (int32_t)i, err) != SB_OK) goto fail;
        }
        char pre[64] = "default";
        const sb_gguf_value *pv = sb_gguf_get(g, "tokenizer.ggml.pre");
        if (pv && pv->type == SB_GGUF_STRING && pv->str.len < sizeof pre) {
            memcpy(pre, pv->str.ptr, (size_t)pv->str.len);
            pre[pv->str.len] = 0;
        }
        bool ok;
        if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact") ||
            !strcmp(pre, "codeshell") || !strcmp(pre, "command-r") || !strcmp(pre, "exaone") ||
            !strcmp(pre, "minerva-7b"))
            ok = add_regex(t, "\\p{N}", err) && add_regex(t, RE_GPT2, err);
        else if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "dbrx") ||
                 !strcmp(pre, "smaug-bpe"))
            ok = add_regex(t, RE_LLAMA3, err), t->ignore_merges = true;
        else {
            if (strcmp(pre, "default") && strcmp(pre, "gpt2") && strcmp(pre, "gpt-2"))
                sb_log(SB_LOG_WARN, "tokenizer: pre-tokenizer '%s' not known; using GPT-2's", pre);
            ok = add_regex(t, RE_GPT2, err);
        }
        if (!ok) goto fail;
    }
    if (sb_tokenizer_finish(t, err) != SB_OK) goto fail;
    /* Phi-3's added tokens swallow the whitespace after them (rstrip in its
     * tokenizer.json; llama.cpp applies the same rule by model name). */
    char *name = sb_gguf_get_str_dup(g, "general.name");
    if (spm && name && (contains_ci(name, "phi3") || contains_ci(name, "phi-3"))) {
        t->attr_rstrip = calloc((size_t)nv, 1);
        if (t->attr_rstrip) {
            for (int k = 0; k < t->n_special; k++) t->attr_rstrip[t->special[k]] = 1;
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (int k = 0; k < 3; k++) {
                int32_t id = sb_vocab_lookup(t, keep[k], strlen(keep[k]));
                if (id >= 0) t->attr_rstrip[id] = 0;
            }
            int32_t id = sb_vocab_lookup(t, "</s>", 4);
            if (id >= 0) t->attr_rstrip[id] = 1;
        }
    }
    free(name);
    return t;
fail:
    sb_tokenizer_free(t);
    return NULL;
}

/* ---------------------------- tokenizer.json ---------------------------- */

static char *read_json_text(const char *dir, const char *name, sb_err *err, bool required) {
    char *path = sb_path_join(dir, name);
    char *text = NULL;
    if (!path) return NULL;
    if (!sb_file_exists(path)) {
        if (required) sb_err_set(err, SB_ERR_NOT_FOUND, "%s: not found", path);
    } else if (sb_read_file(path, 256u << 20, &text, NULL, err) != SB_OK) {
        text = NULL;
    }
    free(path);
    return text;
}

/* A token text in tokenizer_config.json may be a string or {"content": ...}. */
static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* Finds a Split-with-Regex pattern or ByteLevel in a pre_tokenizer tree. */
static bool walk_pre(sb_tokenizer *t, json_t *pre, bool *byte_level, sb_err *err) {
    if (!json_is_object(pre)) return true;
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (!type) return true;
    if (!strcmp(type, "Sequence")) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(pre, "pretokenizers"), i, p) if (!walk_pre(t, p, byte_level, err)) return false;
        return true;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(pre, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (re) return add_regex(t, re, err);
        const char *s = json_string_value(json_object_get(pat, "String"));
        if (s) return true; /* plain string splits: none in the models we target */
        return true;
    }
    if (!strcmp(type, "Digits")) {
        json_t *ind = json_object_get(pre, "individual_digits");
        return add_regex(t, json_is_true(ind) ? "\\p{N}" : "\\p{N}+", err);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(pre, "prepend_scheme"));
        t->add_space_prefix = !scheme || strcmp(scheme, "never") != 0;
        return true;
    }
    if (!strcmp(type, "ByteLevel")) {
        *byte_level = true;
        json_t *use = json_object_get(pre, "use_regex");
        if (!use || json_is_true(use)) return add_regex(t, RE_GPT2, err);
        return true;
    }
    return true;
}

static sb_tokenizer *load_tokenizer_json(const char *dir, sb_err *err) {
    char *text = read_json_text(dir, "tokenizer.json", err, true);
    if (!text) return NULL;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    if (!root) {
        sb_err_set(err, SB_ERR_FORMAT, "%s/tokenizer.json: JSON error at line %d: %s", dir, je.line, je.text);
        return NULL;
    }
    sb_tokenizer *t = NULL;
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    bool wordpiece = mtype && !strcmp(mtype, "WordPiece");
    if (!mtype || (strcmp(mtype, "BPE") && !wordpiece) || !json_is_object(vocab)) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s/tokenizer.json: model type '%s' is not supported (BPE, WordPiece)",
                   dir, mtype ? mtype : "?");
        goto done;
    }
    /* Vocabulary size: the largest id in vocab or added_tokens, plus one. */
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            sb_err_set(err, SB_ERR_FORMAT, "%s/tokenizer.json: vocab['%.100s'] is not a valid id", dir, key);
            goto done;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    json_t *added = json_object_get(root, "added_tokens");
    size_t i;
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (id < 0 || id >= (1 << 24)) {
            sb_err_set(err, SB_ERR_FORMAT, "%s/tokenizer.json: added_tokens[%zu] has a bad id", dir, i);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) {
        sb_err_set(err, SB_ERR_FORMAT, "%s/tokenizer.json: empty vocabulary", dir);
        goto done;
    }
    t = tok_alloc((int32_t)max_id + 1, err);
    if (!t) goto done;
    t->algo = wordpiece ? SB_TOK_WPM : SB_TOK_BPE;
    const char *cont = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    if (!cont) cont = "##";
    size_t cont_len = strlen(cont);
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        free(t->text[id]);
        /* WordPiece: word-initial pieces get the U+2581 prefix, continuations lose "##"
         * (the GGUF convention wordpiece.c works with). */
        if (wordpiece && cont_len && !strncmp(key, cont, cont_len) && key[cont_len])
            t->text[id] = sb_strdup(key + cont_len);
        else if (wordpiece)
            t->text[id] = sb_aprintf("\xE2\x96\x81%s", key);
        else
            t->text[id] = sb_strdup(key);
        t->len[id] = t->text[id] ? strlen(t->text[id]) : 0;
    }
    json_array_foreach(added, i, val) {
        int32_t id = (int32_t)json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!content) continue;
        free(t->text[id]);
        t->text[id] = sb_strdup(content);
        t->len[id] = strlen(content);
        t->type[id] = json_is_true(json_object_get(val, "special")) ? SB_TOK_CONTROL : SB_TOK_USER_DEFINED;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->text[id]) { /* a hole in the id space */
            t->text[id] = sb_aprintf("[UNUSED%d]", id);
            t->type[id] = SB_TOK_UNUSED;
            t->len[id] = t->text[id] ? strlen(t->text[id]) : 0;
        }
        if (!t->text[id]) {
            sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        /* byte-fallback vocabularies mark <0xXX> as byte tokens */
        if (t->len[id] == 6 && !strncmp(t->text[id], "<0x", 3) && t->text[id][5] == '>' &&
            isxdigit((unsigned char)t->text[id][3]) && isxdigit((unsigned char)t->text[id][4]))
            t->type[id] = SB_TOK_BYTE;
    }
    bool byte_level = false;
    if (wordpiece) {
        const char *unk = json_string_value(json_object_get(model, "unk_token"));
        t->add_space_prefix = true;
        t->add_bos = t->add_eos = true; /* [CLS] text [SEP] */
        if (sb_tokenizer_build_index(t, err) != SB_OK) goto fail;
        if (unk) t->unk = sb_vocab_lookup(t, unk, strlen(unk));
        int32_t cls = sb_vocab_lookup(t, "[CLS]", 5), sep = sb_vocab_lookup(t, "[SEP]", 5);
        t->bos = cls;
        t->eos = sep;
        if (sb_tokenizer_finish(t, err) != SB_OK) goto fail;
        goto done;
    }
    if (!walk_pre(t, json_object_get(root, "pre_tokenizer"), &byte_level, err)) goto fail;
    t->byte_level = byte_level;
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    /* SentencePiece-style normalizer (Prepend "\u2581", Replace " " -> "\u2581"):
     * handled as the space rules of the SPM path, merging by rank. */
    json_t *norm = json_object_get(root, "normalizer");
    if (!byte_level && json_is_object(norm)) {
        char *dump = json_dumps(norm, JSON_COMPACT);
        if (dump && strstr(dump, "Prepend")) t->add_space_prefix = true;
        free(dump);
    }
    if (sb_tokenizer_build_index(t, err) != SB_OK) goto fail;
    json_t *merges = json_object_get(model, "merges");
    json_array_foreach(merges, i, val) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (json_is_string(val)) {
            const char *s = json_string_value(val), *sp = strchr(s, ' ');
            if (!sp) continue;
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(sp + 1);
        } else if (json_is_array(val) && json_array_size(val) == 2) {
            a = json_string_value(json_array_get(val, 0));
            b = json_string_value(json_array_get(val, 1));
            if (!a || !b) continue;
            la = strlen(a), lb = strlen(b);
        } else {
            continue;
        }
        int32_t ia = sb_vocab_lookup(t, a, la), ib = sb_vocab_lookup(t, b, lb);
        if (ia >= 0 && ib >= 0 && sb_tokenizer_add_merge(t, ia, ib, (int32_t)i, err) != SB_OK) goto fail;
    }
    if (sb_tokenizer_finish(t, err) != SB_OK) goto fail;
    goto done;
fail:
    sb_tokenizer_free(t);
    t = NULL;
done:
    json_decref(root);
    return t;
}

/* tokenizer.model has no added tokens: added_tokens.json ({"<|user|>": 32010, ...})
 * appends them, as control tokens. */
static sb_tokenizer *add_added_tokens(sb_tokenizer *t, const char *dir, sb_err *err) {
    char *text = read_json_text(dir, "added_tokens.json", err, false);
    if (!text) return t;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    const char *key;
    json_t *val;
    int64_t max_id = t->n_vocab - 1;
    json_object_foreach(root, key, val) {
        json_int_t id = json_integer_value(val);
        if (json_is_integer(val) && id > max_id && id < (1 << 24)) max_id = id;
    }
    int32_t old = t->n_vocab, nv = (int32_t)max_id + 1;
    if (nv > old) {
        char **tx = sb_realloc_array(t->text, (size_t)nv, sizeof *tx);
        if (tx) t->text = tx;
        size_t *ln = sb_realloc_array(t->len, (size_t)nv, sizeof *ln);
        if (ln) t->len = ln;
        float *sc = sb_realloc_array(t->score, (size_t)nv, sizeof *sc);
        if (sc) t->score = sc;
        int32_t *ty = sb_realloc_array(t->type, (size_t)nv, sizeof *ty);
        if (ty) t->type = ty;
        if (!tx || !ln || !sc || !ty) {
            json_decref(root);
            sb_tokenizer_free(t);
            sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            return NULL;
        }
        for (int32_t i = old; i < nv; i++) {
            t->text[i] = sb_aprintf("[UNUSED%d]", i);
            t->len[i] = t->text[i] ? strlen(t->text[i]) : 0;
            t->score[i] = 0;
            t->type[i] = SB_TOK_UNUSED;
        }
        t->n_vocab = nv;
    }
    json_object_foreach(root, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= t->n_vocab) continue;
        free(t->text[id]);
        t->text[id] = sb_strdup(key);
        t->len[id] = strlen(key);
        t->type[id] = SB_TOK_CONTROL;
    }
    json_decref(root);
    if (sb_tokenizer_finish(t, err) != SB_OK) {
        sb_tokenizer_free(t);
        return NULL;
    }
    return t;
}

sb_tokenizer *sb_tokenizer_from_hf(const char *dir, sb_err *err) {
    sb_tokenizer *t = NULL;
    char *model = sb_path_join(dir, "tokenizer.model"), *tj = sb_path_join(dir, "tokenizer.json");
    if (!model || !tj) sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    else if (!sb_file_exists(tj) && sb_file_exists(model)) {
        t = sb_tokenizer_from_spm_model(model, err);
        if (t) t = add_added_tokens(t, dir, err);
    } else {
        t = load_tokenizer_json(dir, err);
    }
    free(model);
    free(tj);
    if (!t) return NULL;
    json_error_t je;
    json_t *cfg = NULL;
    size_t i;
    json_t *val;
    /* tokenizer_config.json: special tokens, BOS policy, chat template. */
    char *text = read_json_text(dir, "tokenizer_config.json", err, false);
    if (text) {
        cfg = json_loads(text, 0, &je);
        free(text);
    }
    if (cfg) {
        const char *s;
        if ((s = token_content(json_object_get(cfg, "bos_token")))) t->bos = sb_vocab_lookup(t, s, strlen(s));
        if ((s = token_content(json_object_get(cfg, "eos_token")))) {
            t->eos = sb_vocab_lookup(t, s, strlen(s));
            if (t->eos >= 0) t->eog[t->eos] = 1;
        }
        if ((s = token_content(json_object_get(cfg, "unk_token")))) t->unk = sb_vocab_lookup(t, s, strlen(s));
        json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
        if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
        if (json_is_boolean(ae)) t->add_eos = json_is_true(ae);
        const char *ct = json_string_value(json_object_get(cfg, "chat_template"));
        if (ct) t->chat_template = sb_strdup(ct);
    }
    /* generation_config.json lists the ids that end generation (Phi-3: 32000, 32001, 32007). */
    text = read_json_text(dir, "generation_config.json", err, false);
    if (text) {
        json_t *gc = json_loads(text, 0, &je);
        free(text);
        json_t *eos = json_object_get(gc, "eos_token_id");
        if (json_is_integer(eos) && json_integer_value(eos) >= 0 && json_integer_value(eos) < t->n_vocab)
            t->eog[json_integer_value(eos)] = 1;
        json_array_foreach(eos, i, val) {
            json_int_t id = json_integer_value(val);
            if (id >= 0 && id < t->n_vocab) t->eog[id] = 1;
        }
        json_decref(gc);
    }
    sb_err_clear(err);
    json_decref(cfg);
    return t;
}
