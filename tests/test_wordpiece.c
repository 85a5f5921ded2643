/*
 * test_wordpiece.c - BERT WordPiece against independent references:
 *  - llama.cpp's test vectors for the bge vocabulary
 *    (../shared/assets/vocab/ggml-vocab-bert-bge.gguf.inp/.out), split and
 *    tokenized as llama.cpp's tests/test-tokenizer-0 does (strings separated
 *    by "\n__ggml_vocab_test__\n", the last one keeping its final newline; no
 *    [CLS]/[SEP]; special tokens not parsed);
 *  - Hugging Face `tokenizers` on all-MiniLM-L6-v2's tokenizer.json
 *    (tests/data/embed_wordpiece_ref.bin, tools/gen_wordpiece_ref.py): the
 *    200 texts of the embedding test with [CLS]/[SEP], and every code point
 *    of the sweep's ranges for three normalizer settings, with the vocabulary
 *    read from tokenizer.json, from vocab.txt and from the bge GGUF.
 */
#include "test.h"
#include "text/wordpiece.h"

#include <unistd.h>

#define MODEL "models/all-MiniLM-L6-v2"
#define SEP "\n__ggml_vocab_test__\n"

static void llama_vectors(const sb_tokenizer *t) {
    char path[512];
    char *inp = NULL, *out = NULL;
    size_t inp_len = 0;
    sb_err e = {0};
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-bert-bge.gguf.inp", test_assets());
    CHECK(sb_read_file(path, 0, &inp, &inp_len, &e) == SB_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-bert-bge.gguf.out", test_assets());
    CHECK(sb_read_file(path, 0, &out, NULL, &e) == SB_OK, "%s", e.msg);
    int n_ok = 0, n_all = 0;
    size_t pos = 0;
    char *o = out;
    while (inp && out && pos < inp_len && *o) {
        char *hit = strstr(inp + pos, SEP);
        size_t len = hit ? (size_t)(hit - (inp + pos)) : inp_len - pos;
        char *eol = strchr(o, '\n');
        if (eol) *eol = 0;
        char want[4096];
        const char *w0 = o;
        while (*w0 == ' ') w0++; /* llama.cpp strips the expected line */
        snprintf(want, sizeof want, "%s", w0);
        size_t wl = strlen(want);
        while (wl && (want[wl - 1] == ' ' || want[wl - 1] == '\r')) want[--wl] = 0;
        sb_tokens ids = {0};
        sb_status st = sb_tokenize(t, inp + pos, len, false, false, &ids, &e);
        char got[4096] = "";
        size_t at = 0;
        for (size_t i = 0; i < ids.n && at < sizeof got - 16; i++)
            at += (size_t)snprintf(got + at, sizeof got - at, "%s%d", i ? " " : "", ids.ids[i]);
        bool same = st == SB_OK && !strcmp(got, want);
        n_ok += same;
        n_all++;
        CHECK(same, "bge vector '%.*s'\n   want: %s\n   got:  %s", (int)len, inp + pos, want, got);
        sb_tokens_free(&ids);
        pos = hit ? (size_t)(hit - inp) + strlen(SEP) : inp_len;
        o = eol ? eol + 1 : o + strlen(o);
    }
    CHECK(n_all >= 40 && pos >= inp_len && !*o, "read %d vectors; inputs and outputs must end together", n_all);
    fprintf(stderr, "ggml-vocab-bert-bge: %d/%d llama.cpp vectors reproduced\n", n_ok, n_all);
    free(inp);
    free(out);
}

/* Reads the little-endian u32/u16 at *p, advancing; false past end. */
static bool rd32(const char **p, const char *end, uint32_t *v) {
    if (end - *p < 4) return false;
    memcpy(v, *p, 4);
    *p += 4;
    return true;
}
static bool rd16(const char **p, const char *end, uint16_t *v) {
    if (end - *p < 2) return false;
    memcpy(v, *p, 2);
    *p += 2;
    return true;
}

static size_t put_utf8(char *s, uint32_t c) {
    if (c < 0x80) return s[0] = (char)c, 1;
    if (c < 0x800) return s[0] = (char)(0xC0 | c >> 6), s[1] = (char)(0x80 | (c & 63)), 2;
    if (c < 0x10000)
        return s[0] = (char)(0xE0 | c >> 12), s[1] = (char)(0x80 | (c >> 6 & 63)), s[2] = (char)(0x80 | (c & 63)), 3;
    s[0] = (char)(0xF0 | c >> 18), s[1] = (char)(0x80 | (c >> 12 & 63)), s[2] = (char)(0x80 | (c >> 6 & 63));
    s[3] = (char)(0x80 | (c & 63));
    return 4;
}

static bool same_ids(const sb_tokens *a, const int32_t *want, size_t n) {
    if (a->n != n) return false;
    for (size_t i = 0; i < n; i++)
        if (a->ids[i] != want[i]) return false;
    return true;
}

static void show(const char *what, const char *text, size_t len, const sb_tokens *got, const int32_t *want, size_t n) {
    fprintf(stderr, "   %s '", what);
    for (size_t i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20) fprintf(stderr, "\\x%02x", c); else fputc(c, stderr);
    }
    fprintf(stderr, "'\n   want:");
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", want[i]);
    fprintf(stderr, "\n   got: ");
    for (size_t i = 0; i < got->n && i < 40; i++) fprintf(stderr, " %d", got->ids[i]);
    fputc('\n', stderr);
}

/* Every check of the reference file with one vocabulary (name says which). */
static void hf_reference(const sb_tokenizer *t, const char *name, const char *ref, size_t ref_len) {
    const char *p = ref + 8, *end = ref + ref_len;
    uint32_t n_texts = 0;
    CHECK(ref_len > 8 && !memcmp(ref, "SBWPM1", 6) && rd32(&p, end, &n_texts), "bad reference file");
    sb_err e = {0};
    int ok = 0, shown = 0;
    int32_t *want = malloc(sizeof(int32_t) * 65536);
    for (uint32_t k = 0; k < n_texts; k++) {
        uint32_t bl, n;
        if (!rd32(&p, end, &bl) || (size_t)(end - p) < bl) break;
        const char *text = p;
        p += bl;
        if (!rd32(&p, end, &n) || n > 65536 || (size_t)(end - p) < 4 * (size_t)n) break;
        for (uint32_t i = 0; i < n; i++) rd32(&p, end, (uint32_t *)&want[i]);
        sb_tokens got = {0};
        sb_status st = sb_tokenize(t, text, bl, true, true, &got, &e);
        bool same = st == SB_OK && same_ids(&got, want, n);
        ok += same;
        if (!same && shown++ < 5) show(name, text, bl, &got, want, n);
        sb_tokens_free(&got);
    }
    CHECK(ok == 200 && n_texts == 200, "%s: %d of %u texts tokenized as tokenizers does", name, ok, n_texts);
    fprintf(stderr, "%s: %d/%u texts (with [CLS]/[SEP]) equal to tokenizers'\n", name, ok, n_texts);

    /* The code-point sweep. */
    uint32_t n_ranges = 0, chunk = 0, n_settings = 0;
    uint32_t first[64], last[64];
    rd32(&p, end, &n_ranges);
    for (uint32_t r = 0; r < n_ranges && r < 64; r++) rd32(&p, end, &first[r]), rd32(&p, end, &last[r]);
    rd32(&p, end, &chunk);
    rd32(&p, end, &n_settings);
    CHECK(n_ranges > 0 && n_ranges <= 64 && chunk > 0 && chunk <= 64 && n_settings > 0, "bad sweep header");
    if (!(n_ranges > 0 && n_ranges <= 64 && chunk > 0 && chunk <= 64)) goto done;
    for (uint32_t s = 0; s < n_settings; s++) {
        if (end - p < 10) break;
        sb_wpm_opts o = {true, true, (bool)p[1], (bool)p[0]};
        p += 2;
        uint32_t upto = 0, n_chunks = 0;
        rd32(&p, end, &upto);
        rd32(&p, end, &n_chunks);
        uint32_t r = 0, c = first[0];
        int n_ok = 0, n_bad = 0;
        shown = 0;
        for (uint32_t k = 0; k < n_chunks; k++) {
            char text[64 * 5];
            size_t len = 0;
            uint32_t c0 = c;
            for (uint32_t i = 0; i < chunk && r < n_ranges && c <= upto; i++) {
                text[len++] = 'a';
                len += put_utf8(text + len, c);
                if (c++ == last[r] && ++r < n_ranges) c = first[r];
            }
            uint16_t n, id = 0;
            if (!rd16(&p, end, &n)) break;
            for (uint16_t i = 0; i < n; i++) rd16(&p, end, &id), want[i] = id;
            sb_tokens got = {0};
            sb_status st = sb_wpm_tokenize(t, &o, text, len, &got, &e);
            bool same = st == SB_OK && same_ids(&got, want, n);
            n_ok += same, n_bad += !same;
            if (!same && shown++ < 8) {
                fprintf(stderr, "%s (lowercase %d, strip_accents %d): chunk from U+%04X\n", name, o.lowercase,
                        o.strip_accents, c0);
                show(name, text, len, &got, want, n);
            }
            sb_tokens_free(&got);
        }
        CHECK(n_bad == 0, "%s (lowercase %d, strip_accents %d): %d of %u chunks of %u code points differ", name,
              o.lowercase, o.strip_accents, n_bad, n_chunks, chunk);
        fprintf(stderr, "%s (lowercase %d, strip_accents %d): %d/%u chunks (%u code points each) equal\n", name,
                o.lowercase, o.strip_accents, n_ok, n_chunks, chunk);
    }
    CHECK(p == end, "reference file: %td bytes left over", end - p);
done:
    free(want);
}

static void options(void) {
    char dir[] = "/tmp/sb_wpm_XXXXXX";
    if (!mkdtemp(dir)) return;
    char p[600];
    sb_err e = {0};
    sb_wpm_opts o;
    CHECK(sb_wpm_opts_from_hf(dir, &o, &e) == SB_OK && o.lowercase && o.strip_accents && o.clean_text && o.handle_cjk,
          "no files: uncased defaults");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"do_lower_case\": false}", f);
    fclose(f);
    CHECK(sb_wpm_opts_from_hf(dir, &o, &e) == SB_OK && !o.lowercase && !o.strip_accents, "do_lower_case false");
    char q[600];
    snprintf(q, sizeof q, "%s/tokenizer.json", dir);
    f = fopen(q, "w");
    fputs("{\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": false,"
          " \"strip_accents\": true, \"lowercase\": false}}", f);
    fclose(f);
    CHECK(sb_wpm_opts_from_hf(dir, &o, &e) == SB_OK && !o.lowercase && o.strip_accents && !o.handle_cjk,
          "tokenizer.json normalizer flags");
    f = fopen(q, "w");
    fputs("{\"normalizer\": ", f);
    fclose(f);
    CHECK(sb_wpm_opts_from_hf(dir, &o, &e) == SB_ERR_FORMAT && strstr(e.msg, "tokenizer.json"), "broken JSON: %s",
          e.msg);
    unlink(p);
    unlink(q);
    /* vocab.txt that is no vocabulary */
    snprintf(p, sizeof p, "%s/vocab.txt", dir);
    f = fopen(p, "w");
    fclose(f);
    sb_tokenizer *t = sb_wpm_from_vocab_txt(p, &e);
    CHECK(!t && strstr(e.msg, "vocab.txt"), "empty vocab.txt: %s", e.msg);
    sb_tokenizer_free(t);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    sb_err e = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-bert-bge.gguf", test_assets());
    sb_gguf *g = sb_gguf_open(path, &e);
    sb_tokenizer *tg = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(tg != NULL, "%s: %s", path, e.msg);
    char *ref = NULL;
    size_t ref_len = 0;
    CHECK(sb_read_file("tests/data/embed_wordpiece_ref.bin", 0, &ref, &ref_len, &e) == SB_OK, "%s", e.msg);
    if (tg) llama_vectors(tg);
    if (tg && ref) hf_reference(tg, "bge GGUF vocab", ref, ref_len);
    if (!sb_is_dir(MODEL)) {
        SKIP("%s absent (scripts/setup fetches it): tokenizer.json and vocab.txt not checked", MODEL);
    } else if (ref) {
        sb_tokenizer *tj = sb_tokenizer_from_hf(MODEL, &e);
        CHECK(tj != NULL, "%s: %s", MODEL, e.msg);
        if (tj) hf_reference(tj, "tokenizer.json", ref, ref_len);
        sb_tokenizer_free(tj);
        sb_tokenizer *tv = sb_wpm_from_vocab_txt(MODEL "/vocab.txt", &e);
        CHECK(tv != NULL, "%s: %s", MODEL, e.msg);
        if (tv) hf_reference(tv, "vocab.txt", ref, ref_len);
        sb_tokenizer_free(tv);
    }
    options();
    free(ref);
    sb_tokenizer_free(tg);
    sb_gguf_free(g);
    return TEST_END();
}
