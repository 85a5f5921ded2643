/*
 * test_tokenizer.c - tokenizers against llama.cpp's test vectors
 * (../shared/assets/vocab/NAME.inp and .out: strings separated by lines
 * "__ggml_vocab_test__", ids without BOS, special tokens parsed) and the
 * prompt ids of stories260K.greedy.json (llama.cpp's, BOS included).
 */
#include "formats/gguf.h"
#include "test.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#include <jansson.h>

#define SEP "\n__ggml_vocab_test__\n"

static char *slurp(const char *path) {
    char *text = NULL;
    sb_err e = {0};
    if (sb_read_file(path, 0, &text, NULL, &e) != SB_OK) return NULL;
    return text;
}

static void run_vectors(const char *vocab) {
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
        sb_status st = sb_tokenize(t, s, len, false, true, &ids, &e);
        char got[8192] = "";
        size_t at = 0;
        for (size_t i = 0; i < ids.n && at < sizeof got - 16; i++) at += (size_t)snprintf(got + at, sizeof got - at, " %d", ids.ids[i]);
        n_all++;
        bool same = st == SB_OK && !strcmp(got, o);
        n_ok += same;
        CHECK(same, "%s: '%.*s'\n   want:%s\n   got: %s", vocab, (int)len, s, o, got);
        sb_tokens_free(&ids);
        if (!end) break;
        s = end + strlen(SEP);
        o = eol ? eol + 1 : o + strlen(o);
    }
    fprintf(stderr, "%s: %d/%d vectors reproduced\n", vocab, n_ok, n_all);
    CHECK(n_all > 10, "%s: only %d vectors read", vocab, n_all);
    free(inp);
    free(out);
    sb_tokenizer_free(t);
    sb_gguf_free(g);
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
    run_vectors("ggml-vocab-llama-spm.gguf");
    run_vectors("ggml-vocab-phi-3.gguf");
    run_vectors("ggml-vocab-bert-bge.gguf");

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
