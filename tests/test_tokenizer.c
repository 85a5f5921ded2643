/*
 * test_tokenizer.c - tokenizers against llama.cpp's test vectors
 * (../shared/assets/vocab/NAME.inp and .out: strings separated by lines
 * "__ggml_vocab_test__", ids without BOS; llama.cpp's test-tokenizer-0 runs
 * them with add_special = false, parse_special = false, and we also check
 * parse_special = true, which no vector string is affected by), reference ids
 * for more strings from Hugging Face `tokenizers` and llama.cpp's
 * llama-tokenize (tests/data/tok_*.json, tools/gen_tokenizer_ref.py), and the
 * prompt ids of stories260K.greedy.json (llama.cpp's, BOS included).
 */
#include "formats/gguf.h"
#include "test.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SEP "\n__ggml_vocab_test__\n"

static char *slurp(const char *path) {
    char *text = NULL;
    sb_err e = {0};
    if (sb_read_file(path, 0, &text, NULL, &e) != SB_OK) return NULL;
    return text;
}

static void run_vectors(const char *vocab, bool parse_special) {
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/%s", test_assets(), vocab);
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open(path, &e);
    CHECK(g != NULL, "%s", e.msg);
    if (!g) return;
    sb_tokenizer *t = sb_tokenizer_from_gguf(g, &e);
    CHECK(t != NULL, "%s: %s", vocab, e.msg);
    if (!t) {
        sb_gguf_free(g);
        return;
    }
    snprintf(path, sizeof path, "%s/vocab/%s.inp", test_assets(), vocab);
    char *inp = slurp(path);
    snprintf(path, sizeof path, "%s/vocab/%s.out", test_assets(), vocab);
    char *out = slurp(path);
    CHECK(inp && out, "cannot read the vectors of %s", vocab);
    int n_ok = 0, n_all = 0;
    char *s = inp, *o = out;
    while (s && o && *o) {
        /* llama.cpp's test reads strings split on the separator line, the
         * last one ending at the file's final newline. */
        char *end = strstr(s, SEP);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (!end && len && s[len - 1] == '\n') len--;
        char *eol = strchr(o, '\n');
        if (eol) *eol = 0;
        sb_tokens ids = {0};
        sb_status st = sb_tokenize(t, s, len, false, parse_special, &ids, &e);
        char got[8192] = "";
        size_t at = 0;
        for (size_t i = 0; i < ids.n && at < sizeof got - 16; i++) at += (size_t)snprintf(got + at, sizeof got - at, " %d", ids.ids[i]);
        n_all++;
        bool same = st == SB_OK && !strcmp(got, o);
        n_ok += same;
        CHECK(same, "%s (parse_special %d): '%.*s'\n   want:%s\n   got: %s", vocab, parse_special, (int)len, s, o, got);
        sb_tokens_free(&ids);
        if (!end) break;
        s = end + strlen(SEP);
        o = eol ? eol + 1 : o + strlen(o);
    }
    fprintf(stderr, "%s (parse_special %d): %d/%d vectors reproduced\n", vocab, parse_special, n_ok, n_all);
    CHECK(n_all > 10, "%s: only %d vectors read", vocab, n_all);
    free(inp);
    free(out);
    sb_tokenizer_free(t);
    sb_gguf_free(g);
}

static bool ids_equal(const sb_tokens *got, json_t *want) {
    if (got->n != json_array_size(want)) return false;
    for (size_t i = 0; i < got->n; i++)
        if (got->ids[i] != json_integer_value(json_array_get(want, i))) return false;
    return true;
}

static void ids_str(const int32_t *ids, size_t n, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && at + 16 < cap; i++) at += (size_t)snprintf(buf + at, cap - at, " %d", ids[i]);
}

/* tests/data/tok_NAME.json: per string, the ids with special tokens parsed
 * ("special"), with them left as text ("plain"), and the decoding of the
 * special ids with control tokens rendered ("decoded", where recorded). */
static void run_ref_file(const char *ref_path, const char *vocab) {
    if (!sb_file_exists(vocab)) {
        SKIP("%s absent (scripts/setup fetches it): %s not checked", vocab, ref_path);
        return;
    }
    json_error_t je;
    json_t *ref = json_load_file(ref_path, 0, &je);
    CHECK(ref != NULL, "%s: %s", ref_path, je.text);
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open(vocab, &e);
    sb_tokenizer *t = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(t != NULL, "%s: %s", vocab, e.msg);
    if (!ref || !t) goto done;
    int n_ids = 0, n_ids_ok = 0, n_dec = 0, n_dec_ok = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(ref, "cases"), i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t len = strlen(text);
        static const char *const modes[2] = {"plain", "special"};
        for (int ps = 0; ps < 2; ps++) {
            json_t *want = json_object_get(c, modes[ps]);
            sb_tokens ids = {0};
            sb_status st = sb_tokenize(t, text, len, false, ps, &ids, &e);
            bool same = st == SB_OK && ids_equal(&ids, want);
            n_ids++;
            n_ids_ok += same;
            if (!same) {
                char got[4096];
                ids_str(ids.ids, ids.n, got, sizeof got);
                char *w = json_dumps(want, JSON_COMPACT);
                CHECK(false, "%s case %zu (%s) '%.60s':\n   want: %s\n   got: %s", ref_path, i, modes[ps], text, w, got);
                free(w);
            }
            sb_tokens_free(&ids);
        }
        const char *dec = json_string_value(json_object_get(c, "decoded"));
        if (dec) {
            json_t *want = json_object_get(c, "special");
            size_t n = json_array_size(want);
            int32_t *v = calloc(n + 1, sizeof *v);
            for (size_t k = 0; k < n; k++) v[k] = (int32_t)json_integer_value(json_array_get(want, k));
            char *got = sb_detokenize(t, v, n, true);
            bool same = got && !strcmp(got, dec);
            n_dec++;
            n_dec_ok += same;
            CHECK(same, "%s case %zu: decoded '%s', want '%s'", ref_path, i, got ? got : "(null)", dec);
            free(got);
            free(v);
        }
    }
    fprintf(stderr, "%s: %d/%d id lists, %d/%d decodings match\n", ref_path, n_ids_ok, n_ids, n_dec_ok, n_dec);
    CHECK(n_ids >= 100, "%s: only %d id lists", ref_path, n_ids);
done:
    json_decref(ref);
    sb_tokenizer_free(t);
    sb_gguf_free(g);
}

/* A 1 MB document tokenizes in well under a second or two (no quadratic
 * merge loop), and arbitrary bytes (invalid UTF-8, NULs) neither crash nor
 * lose anything a byte-capable vocabulary can spell. */
static void check_long_and_hostile(const char *vocab) {
    if (!sb_file_exists(vocab)) {
        SKIP("%s absent: long-input check skipped", vocab);
        return;
    }
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open(vocab, &e);
    sb_tokenizer *t = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(t != NULL, "%s: %s", vocab, e.msg);
    if (!t) {
        sb_gguf_free(g);
        return;
    }
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    /* mixed prose, then one run of a single letter (the worst case of a
     * naive merge loop: every pair is a candidate) */
    static const char prose[] = "The quick brown fox, 12345 caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 jumps\n\tover it. ";
    for (size_t i = 0; i < n / 2; i++) big[i] = prose[i % (sizeof prose - 1)];
    memset(big + n / 2, 'a', n - n / 2);
    big[n] = 0;
    sb_tokens ids = {0};
    double t0 = sb_time_sec();
    sb_status st = sb_tokenize(t, big, n, false, false, &ids, &e);
    double dt = sb_time_sec() - t0;
    fprintf(stderr, "%s: 1 MiB -> %zu tokens in %.3f s\n", vocab, ids.n, dt);
    CHECK(st == SB_OK && ids.n > 1000, "1 MiB tokenization: %s", e.msg);
    CHECK(dt < 20.0, "1 MiB took %.1f s (quadratic?)", dt);
    char *back = sb_detokenize(t, ids.ids, ids.n, false);
    /* the prose ends with a space before the run of 'a's: SentencePiece
     * turns nothing into anything else, so the round trip is exact */
    CHECK(back && strlen(back) == n && !memcmp(back, big, n), "1 MiB round trip differs");
    free(back);
    sb_tokens_free(&ids);
    /* every byte value, including NUL and lone continuation bytes */
    unsigned char bytes[512];
    for (int i = 0; i < 512; i++) bytes[i] = (unsigned char)(i < 256 ? i : 255 - (i - 256));
    st = sb_tokenize(t, (const char *)bytes, sizeof bytes, false, false, &ids, &e);
    CHECK(st == SB_OK && ids.n > 0, "all bytes: %s", e.msg);
    back = sb_detokenize(t, ids.ids, ids.n, false);
    CHECK(back != NULL, "all bytes: decode");
    if (back && sb_tokenizer_find(t, "<0x00>") >= 0) /* byte fallback spells everything */
        CHECK(!memcmp(back, bytes, sizeof bytes), "all bytes: byte-fallback round trip differs");
    free(back);
    sb_tokens_free(&ids);
    free(big);
    sb_tokenizer_free(t);
    sb_gguf_free(g);
}

/* tokenizer.json merges in the older "left right" string form (tokenizers
 * before 0.20 wrote them so): the byte-level reference tokenizer of
 * tests/data/hf_tok with its [left, right] pairs rewritten as strings must
 * still give the `tokenizers` library's ids (tests/data/hf_tok/cases.json). */
static void check_string_merges(void) {
    json_error_t je;
    json_t *tj = json_load_file("tests/data/hf_tok/bytelevel/tokenizer.json", 0, &je);
    json_t *cases = json_load_file("tests/data/hf_tok/cases.json", 0, &je);
    CHECK(tj && cases, "hf_tok: %s", je.text);
    if (!tj || !cases) goto done;
    json_t *merges = json_object_get(json_object_get(tj, "model"), "merges"), *m;
    size_t i;
    json_array_foreach(merges, i, m) {
        if (!json_is_array(m)) continue;
        char *joined = sb_aprintf("%s %s", json_string_value(json_array_get(m, 0)), json_string_value(json_array_get(m, 1)));
        json_array_set_new(merges, i, json_string(joined));
        free(joined);
    }
    char dir[] = "/tmp/sb_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *path = sb_path_join(dir, "tokenizer.json");
    CHECK(json_dump_file(tj, path, JSON_COMPACT) == 0, "writing %s", path);
    sb_err e = {0};
    sb_tokenizer *t = sb_tokenizer_from_hf(dir, &e);
    CHECK(t != NULL, "string-merges tokenizer.json: %s", e.msg);
    int n = 0, ok = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        if (!t || strcmp(json_string_value(json_object_get(c, "tokenizer")), "bytelevel")) continue;
        const char *text = json_string_value(json_object_get(c, "text"));
        sb_tokens ids = {0};
        sb_tokenize(t, text, strlen(text), false, true, &ids, &e);
        bool same = ids_equal(&ids, json_object_get(c, "ids"));
        n++;
        ok += same;
        CHECK(same, "string merges: '%s' differs from tokenizers' ids", text);
        sb_tokens_free(&ids);
    }
    fprintf(stderr, "tokenizer.json with \"a b\" merges: %d/%d cases\n", ok, n);
    CHECK(n >= 10, "only %d byte-level cases", n);
    sb_tokenizer_free(t);
    remove(path);
    rmdir(dir);
    free(path);
done:
    json_decref(tj);
    json_decref(cases);
}

/* SmolLM2 (byte-level BPE): the chat prompt rendered by transformers'
 * apply_chat_template and its ids (tests/data/smollm2_ref.json) against our
 * ChatML rendering and tokenizer; the reference's greedy ids decoded. */
static void check_smollm2(void) {
    const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!sb_file_exists(model)) {
        SKIP("%s absent (scripts/setup fetches it)", model);
        return;
    }
    json_error_t je;
    json_t *ref = json_load_file("tests/data/smollm2_ref.json", 0, &je);
    CHECK(ref != NULL, "smollm2_ref.json: %s", je.text);
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open(model, &e);
    sb_tokenizer *t = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(t != NULL, "%s", e.msg);
    if (!ref || !t) goto done;
    CHECK(sb_chat_detect(sb_tokenizer_chat_template(t)) == SB_CHAT_CHATML, "SmolLM2 template is ChatML");
    json_t *jm = json_object_get(ref, "messages"), *v;
    sb_chat_msg msgs[8];
    size_t n = 0, i;
    json_array_foreach(jm, i, v) if (n < 8) msgs[n++] = (sb_chat_msg){json_string_value(json_object_get(v, "role")),
                                                                       json_string_value(json_object_get(v, "content"))};
    char *prompt = sb_chat_apply(SB_CHAT_CHATML, msgs, n, true);
    sb_tokens ids = {0};
    sb_tokenize(t, prompt, strlen(prompt), true, true, &ids, &e);
    json_t *want = json_object_get(ref, "prompt_ids");
    bool same = ids.n == json_array_size(want);
    for (i = 0; same && i < ids.n; i++) same = ids.ids[i] == json_integer_value(json_array_get(want, i));
    CHECK(same, "SmolLM2 chat prompt: %zu ids vs %zu from transformers", ids.n, json_array_size(want));
    sb_tokens_free(&ids);
    free(prompt);
    json_t *gi = json_object_get(ref, "greedy_ids");
    int32_t gen[256];
    size_t ng = 0;
    json_array_foreach(gi, i, v) if (ng < 256) gen[ng++] = (int32_t)json_integer_value(v);
    char *text = sb_detokenize(t, gen, ng, true);
    const char *wt = json_string_value(json_object_get(ref, "greedy_text"));
    CHECK(text && wt && !strcmp(text, wt), "decoded greedy ids:\n%s\nwant:\n%s", text ? text : "", wt ? wt : "");
    free(text);
    /* byte-level BPE round trip on awkward text */
    const char *odd = "  leading spaces, tabs\t\tand 12345 digits; caf\xc3\xa9 \xf0\x9f\xa6\x99 \xe4\xb8\xad\xe6\x96\x87\n\n";
    sb_tokenize(t, odd, strlen(odd), false, false, &ids, &e);
    text = sb_detokenize(t, ids.ids, ids.n, false);
    CHECK(text && !strcmp(text, odd), "byte-level round trip: '%s'", text ? text : "");
    free(text);
    sb_tokens_free(&ids);
    /* Invalid UTF-8 and NUL bytes do not break it. Bytes 0xfe/0xff never
     * occur in UTF-8 and SmolLM2's vocabulary has no symbol for them, so they
     * become the unknown token; everything else survives. */
    const char bad[] = "a\xff\xfe b\x00" "c\xc3";
    CHECK(sb_tokenize(t, bad, sizeof bad - 1, false, false, &ids, &e) == SB_OK, "%s", e.msg);
    text = sb_detokenize(t, ids.ids, ids.n, false);
    CHECK(text && !memcmp(text, "a b\0c\xc3", 6), "invalid UTF-8: the rest survives");
    free(text);
    sb_tokens_free(&ids);
done:
    json_decref(ref);
    sb_tokenizer_free(t);
    sb_gguf_free(g);
}

int main(void) {
    for (int ps = 0; ps < 2; ps++) {
        run_vectors("ggml-vocab-llama-spm.gguf", ps);
        run_vectors("ggml-vocab-phi-3.gguf", ps);
        run_vectors("ggml-vocab-bert-bge.gguf", ps);
    }
    char vp[512];
    snprintf(vp, sizeof vp, "%s/vocab/ggml-vocab-phi-3.gguf", test_assets());
    run_ref_file("tests/data/tok_phi3.json", vp);
    run_ref_file("tests/data/tok_smollm2.json", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    check_long_and_hostile(vp);
    check_long_and_hostile("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    check_string_merges();

    /* Phi-3 vocabulary facts from its tokenizer: end-of-turn markers. */
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-phi-3.gguf", test_assets());
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open(path, &e);
    sb_tokenizer *t = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(t != NULL, "%s", e.msg);
    if (t) {
        CHECK(sb_tokenizer_is_eog(t, 32000) && sb_tokenizer_is_eog(t, 32007), "phi-3 EOG tokens");
        CHECK(!sb_tokenizer_is_eog(t, 32010), "<|user|> is not an end of generation");
        /* special tokens only when asked */
        sb_tokens a = {0}, b = {0};
        const char *txt = "<|user|>\nHi<|end|>\n<|assistant|>\n";
        sb_tokenize(t, txt, strlen(txt), true, true, &a, &e);
        sb_tokenize(t, txt, strlen(txt), true, false, &b, &e);
        CHECK(a.n >= 5 && a.ids[0] == 1 && a.ids[1] == 32010, "parse_special: first ids %d %d", a.n ? a.ids[0] : -1,
              a.n > 1 ? a.ids[1] : -1);
        bool any = false;
        for (size_t i = 0; i < b.n; i++) any |= b.ids[i] >= 32000;
        CHECK(!any, "special tokens must stay text unless parse_special");
        char *back = sb_detokenize(t, b.ids + 1, b.n - 1, false);
        CHECK(back && !strcmp(back, txt), "round trip: '%s'", back ? back : "(null)");
        free(back);
        sb_tokens_free(&a);
        sb_tokens_free(&b);
        sb_tokenizer_free(t);
    }
    sb_gguf_free(g);

    /* stories260K: llama.cpp's prompt ids (with BOS). */
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", test_assets());
    g = sb_gguf_open(path, &e);
    t = g ? sb_tokenizer_from_gguf(g, &e) : NULL;
    CHECK(t != NULL, "%s", e.msg);
    if (t) {
        static const struct {
            const char *text;
            int32_t ids[8];
            int n;
        } cases[] = {{"Zoo", {1, 410, 469, 347}, 4},
                     {"Once upon a time", {1, 403, 407, 261, 378}, 5},
                     {"Lily and Ben", {1, 317, 269, 368, 302}, 5},
                     {"The cat", {1, 291, 280, 294}, 4}};
        for (int c = 0; c < 4; c++) {
            sb_tokens ids = {0};
            sb_tokenize(t, cases[c].text, strlen(cases[c].text), true, false, &ids, &e);
            CHECK(ids.n == (size_t)cases[c].n && !memcmp(ids.ids, cases[c].ids, sizeof(int32_t) * ids.n),
                  "stories260K '%s': %zu ids", cases[c].text, ids.n);
            sb_tokens_free(&ids);
        }
        sb_tokenizer_free(t);
    }
    sb_gguf_free(g);
    check_smollm2();
    return TEST_END();
}
