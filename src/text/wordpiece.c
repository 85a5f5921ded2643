/*
 * wordpiece.c - BERT's WordPiece tokenization, as Hugging Face `tokenizers`
 * does it (see wordpiece.h for the vocabulary convention).
 *
 * Three stages over the code points of the text, in tokenizers' order:
 *  1. BertNormalizer: clean_text drops NUL, U+FFFD and "other" characters
 *     (Cc, Cf, Co, Cs; not tab/newline/return) and turns whitespace into
 *     ' '; handle_chinese_chars makes each CJK ideograph a word of its own;
 *     strip_accents decomposes (NFD) and drops nonspacing marks (Mn);
 *     lowercase maps each character to its full lower case.
 *  2. BertPreTokenizer: whitespace separates words; each punctuation
 *     character (ASCII punctuation and symbols, Unicode P*) is a word.
 *  3. WordPiece: greedy longest match from the start of each word,
 *     continuation pieces after the first; a word over 100 characters or
 *     with no complete segmentation becomes [UNK].
 *
 * Where tokenizers and Google's original Python BERT disagree, we follow
 * tokenizers (the library sentence-transformers runs): e.g. U+00A0, U+2028
 * are whitespace (Rust's char::is_whitespace), vertical tab and U+0085 are
 * dropped as controls, unassigned code points (Cn) are kept, Greek capital
 * sigma always lower-cases to σ, and the CJK ranges are tokenizers' (which
 * skip U+2B820..U+2B91F). Punctuation, nonspacing marks and "other"
 * characters come from tables measured on tokenizers itself
 * (wordpiece_tables.h), because its Unicode tables are older than
 * utf8proc's; decomposition and lower case come from utf8proc.
 */
#include "text/wordpiece.h"
#include "text/tokenizer_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/wordpiece_tables.h"

#define WPM_MAX_WORD_CHARS 100 /* longer words are [UNK], as in BERT */

/* ---- character classes ---- */

static bool is_cjk(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Rust's char::is_whitespace (Unicode White_Space). */
static bool is_space(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool in_table(const uint32_t (*t)[2], size_t n, int32_t c) {
    size_t lo = 0, hi = n; /* first range with last >= c */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid][1] < (uint32_t)c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo][0] <= (uint32_t)c;
}
#define IN(table, c) in_table(table, sizeof table / sizeof table[0], c)

/* "Other" characters clean_text drops (NUL and U+FFFD included); tab,
 * newline and return are whitespace. */
static bool is_control(int32_t c) { return IN(wpm_other, c); }
static bool is_punct(int32_t c) { return IN(wpm_punct, c); }
static bool is_mark(int32_t c) { return IN(wpm_mark, c); }

/* ---- stage 1: normalised code points, each flagged "a word by itself" ---- */

typedef struct cps {
    int32_t *c;
    uint8_t *alone;
    size_t n, cap;
} cps;

static bool cps_push(cps *b, int32_t c, bool alone) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        int32_t *c2 = sb_realloc_array(b->c, cap, sizeof *c2);
        if (!c2) return false;
        b->c = c2;
        uint8_t *a2 = sb_realloc_array(b->alone, cap, 1);
        if (!a2) return false;
        b->alone = a2;
        b->cap = cap;
    }
    b->c[b->n] = c;
    b->alone[b->n++] = alone;
    return true;
}

/* Lower case of one character, then pushed. Only U+0130 has a lower case of
 * more than one character (SpecialCasing.txt: "i" + U+0307). */
static bool push_lower(cps *b, const sb_wpm_opts *o, int32_t c, bool alone) {
    if (!o->lowercase) return cps_push(b, c, alone);
    if (c == 0x130) return cps_push(b, 'i', alone) && cps_push(b, 0x307, alone);
    return cps_push(b, utf8proc_tolower(c), alone);
}

static sb_status normalise(const sb_wpm_opts *o, const char *text, size_t len, cps *b, sb_err *err) {
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) k = 1, c = 0xFFFD;
        i += (size_t)k;
        if (o->clean_text && is_control(c)) continue;
        if (is_space(c)) {
            if (!cps_push(b, ' ', false)) goto nomem;
            continue;
        }
        bool alone = o->handle_cjk && is_cjk(c);
        if (!o->strip_accents) {
            if (!push_lower(b, o, c, alone)) goto nomem;
            continue;
        }
        utf8proc_int32_t d[32];
        int last = 0;
        utf8proc_ssize_t nd = utf8proc_decompose_char(c, d, 32, UTF8PROC_DECOMPOSE, &last);
        if (nd < 0 || nd > 32) d[0] = c, nd = 1;
        for (utf8proc_ssize_t j = 0; j < nd; j++)
            if (!is_mark(d[j]) && !push_lower(b, o, d[j], alone)) goto nomem;
    }
    return SB_OK;
nomem:
    return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
}

/* ---- stage 3: greedy longest-match WordPiece of one word ---- */

static sb_status wpm_word(const sb_tokenizer *t, const int32_t *w, size_t n_chars, sb_buf *tmp, sb_tokens *out,
                          sb_err *err) {
    size_t start_count = out->n;
    if (n_chars <= WPM_MAX_WORD_CHARS) {
        /* "\u2581" + the word in UTF-8: the first piece includes the prefix */
        tmp->len = 0;
        if (!sb_buf_append(tmp, "\xE2\x96\x81", 3)) goto nomem;
        for (size_t i = 0; i < n_chars; i++) {
            char enc[4];
            utf8proc_ssize_t m = utf8proc_encode_char(w[i], (utf8proc_uint8_t *)enc);
            if (!sb_buf_append(tmp, enc, (size_t)m)) goto nomem;
        }
        const char *s = tmp->data;
        size_t len = tmp->len;
        for (size_t i = 0; i < len;) {
            size_t j = len;
            int32_t id = -1;
            for (; j > i; j--)
                if ((id = sb_vocab_lookup(t, s + i, j - i)) >= 0) break;
            if (id < 0) {
                out->n = start_count; /* no segmentation: the whole word is unknown */
                break;
            }
            if (!sb_tokens_push(out, id)) goto nomem;
            i = j;
        }
    }
    if (out->n == start_count && t->unk >= 0 && !sb_tokens_push(out, t->unk)) goto nomem;
    return SB_OK;
nomem:
    return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
}

/* ---- stage 2 and the whole ---- */

sb_status sb_wpm_tokenize(const sb_tokenizer *t, const sb_wpm_opts *o, const char *text, size_t len,
                          sb_tokens *out, sb_err *err) {
    cps b = {0};
    sb_buf tmp = {0};
    sb_status st = normalise(o, text, len, &b, err);
    size_t word = 0; /* start of the current word in b */
    for (size_t i = 0; st == SB_OK && i <= b.n; i++) {
        bool end = i == b.n || b.c[i] == ' ';
        bool alone = !end && (b.alone[i] || is_punct(b.c[i]));
        if ((end || alone) && i > word) st = wpm_word(t, b.c + word, i - word, &tmp, out, err);
        if (st == SB_OK && alone) st = wpm_word(t, b.c + i, 1, &tmp, out, err);
        if (end || alone) word = i + 1;
    }
    free(b.c);
    free(b.alone);
    sb_buf_free(&tmp);
    return st;
}

sb_status sb_wpm_piece(const sb_tokenizer *t, const char *text, size_t len, sb_tokens *out, sb_err *err) {
    const sb_wpm_opts o = SB_WPM_UNCASED;
    return sb_wpm_tokenize(t, &o, text, len, out, err);
}

/* ---- configuration and vocab.txt ---- */

static json_t *json_file(const char *dir, const char *name, sb_err *err, bool *broken) {
    char *p = sb_path_join(dir, name);
    json_t *j = NULL;
    *broken = false;
    if (p && sb_file_exists(p)) {
        json_error_t je;
        if (!(j = json_load_file(p, 0, &je))) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: JSON error at line %d: %s", p, je.line, je.text);
            *broken = true;
        }
    }
    free(p);
    return j;
}

sb_status sb_wpm_opts_from_hf(const char *dir, sb_wpm_opts *o, sb_err *err) {
    *o = SB_WPM_UNCASED;
    bool broken;
    json_t *tj = json_file(dir, "tokenizer.json", err, &broken);
    if (broken) return SB_ERR_FORMAT;
    json_t *norm = json_object_get(tj, "normalizer");
    const char *type = json_string_value(json_object_get(norm, "type"));
    if (type && !strcmp(type, "BertNormalizer")) {
        json_t *v;
        if (json_is_boolean(v = json_object_get(norm, "clean_text"))) o->clean_text = json_is_true(v);
        if (json_is_boolean(v = json_object_get(norm, "handle_chinese_chars"))) o->handle_cjk = json_is_true(v);
        if (json_is_boolean(v = json_object_get(norm, "lowercase"))) o->lowercase = json_is_true(v);
        v = json_object_get(norm, "strip_accents"); /* null: same as lowercase */
        o->strip_accents = json_is_boolean(v) ? json_is_true(v) : o->lowercase;
        json_decref(tj);
        return SB_OK;
    }
    json_decref(tj);
    json_t *cfg = json_file(dir, "tokenizer_config.json", err, &broken);
    if (broken) return SB_ERR_FORMAT;
    json_t *v;
    if (json_is_boolean(v = json_object_get(cfg, "do_lower_case"))) o->lowercase = json_is_true(v);
    if (json_is_boolean(v = json_object_get(cfg, "tokenize_chinese_chars"))) o->handle_cjk = json_is_true(v);
    v = json_object_get(cfg, "strip_accents");
    o->strip_accents = json_is_boolean(v) ? json_is_true(v) : o->lowercase;
    json_decref(cfg);
    return SB_OK;
}

void sb_wpm_opts_from_gguf(const sb_gguf *g, sb_wpm_opts *o) {
    *o = SB_WPM_UNCASED;
    bool b;
    if (sb_gguf_get_bool(g, "tokenizer.ggml.normalizer.lowercase", &b)) o->lowercase = o->strip_accents = b;
}

sb_tokenizer *sb_wpm_from_vocab_txt(const char *path, sb_err *err) {
    char *data = NULL;
    size_t len = 0;
    if (sb_read_file(path, 64u << 20, &data, &len, err) != SB_OK) return NULL;
    int32_t n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\n';
    if (len && data[len - 1] != '\n') n++;
    sb_tokenizer *t = calloc(1, sizeof *t);
    if (n <= 0 || n > (1 << 24)) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: %d lines is not a vocabulary", path, n);
        goto fail;
    }
    if (!t || !(t->text = calloc((size_t)n, sizeof *t->text)) || !(t->len = calloc((size_t)n, sizeof *t->len)) ||
        !(t->score = calloc((size_t)n, sizeof *t->score)) || !(t->type = calloc((size_t)n, sizeof *t->type)))
        goto nomem;
    t->n_vocab = n;
    t->algo = SB_TOK_WPM;
    t->bos = t->eos = t->eot = t->unk = -1;
    char *line = data;
    for (int32_t id = 0; id < n; id++) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        if (ll && line[ll - 1] == '\r') ll--;
        static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        bool special = false;
        for (size_t k = 0; k < 5; k++) special |= ll == strlen(specials[k]) && !memcmp(line, specials[k], ll);
        if (special)
            t->text[id] = sb_strndup(line, ll);
        else if (ll > 2 && !memcmp(line, "##", 2))
            t->text[id] = sb_strndup(line + 2, ll - 2);
        else
            t->text[id] = sb_aprintf("\xE2\x96\x81%.*s", (int)ll, line);
        if (!t->text[id]) goto nomem;
        t->len[id] = strlen(t->text[id]);
        t->type[id] = special ? SB_TOK_CONTROL : SB_TOK_NORMAL;
        line = nl ? nl + 1 : data + len;
    }
    t->add_bos = t->add_eos = true; /* [CLS] text [SEP] */
    t->add_space_prefix = true;
    if (sb_tokenizer_build_index(t, err) != SB_OK) goto fail;
    t->unk = sb_vocab_lookup(t, "[UNK]", 5);
    t->bos = sb_vocab_lookup(t, "[CLS]", 5);
    t->eos = sb_vocab_lookup(t, "[SEP]", 5);
    if (sb_tokenizer_finish(t, err) != SB_OK) goto fail;
    free(data);
    return t;
nomem:
    sb_err_set(err, SB_ERR_NOMEM, "%s: out of memory", path);
fail:
    free(data);
    sb_tokenizer_free(t);
    return NULL;
}
