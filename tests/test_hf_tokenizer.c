/*
 * test_hf_tokenizer.c - tokenizers loaded from Hugging Face tokenizer.json
 * files against the `tokenizers` library's own ids and decoding
 * (tests/data/hf_tok, made by tools/gen_hf_tokenizer_ref.py): a GPT-2 style
 * byte-level BPE and a SentencePiece-style BPE with byte fallback.
 */
#include "formats/gguf.h"
#include "test.h"
#include "text/tokenizer.h"

#include <jansson.h>
#include <unistd.h>

/* Writes t as GGUF keys, reads them back as a new tokenizer. */
static sb_tokenizer *via_gguf(const sb_tokenizer *t, void **buf, sb_gguf **g) {
    sb_gguf_writer *w = sb_gguf_writer_new();
    sb_err e = {0};
    size_t len = 0;
    *buf = NULL;
    *g = NULL;
    if (sb_tokenizer_write_gguf(t, w, &e) == SB_OK && sb_gguf_writer_to_memory(w, buf, &len, &e) == SB_OK)
        *g = sb_gguf_open_memory(*buf, len, &e);
    sb_gguf_writer_free(w);
    sb_tokenizer *r = *g ? sb_tokenizer_from_gguf(*g, &e) : NULL;
    CHECK(r != NULL, "tokenizer via GGUF: %s", e.msg);
    return r;
}

int main(void) {
    json_error_t je;
    json_t *cases = json_load_file("tests/data/hf_tok/cases.json", 0, &je);
    CHECK(cases != NULL, "cases.json: %s", je.text);
    sb_err e = {0};
    sb_tokenizer *bl = sb_tokenizer_from_hf("tests/data/hf_tok/bytelevel", &e);
    CHECK(bl != NULL, "bytelevel: %s", e.msg);
    sb_tokenizer *ms = sb_tokenizer_from_hf("tests/data/hf_tok/metaspace", &e);
    CHECK(ms != NULL, "metaspace: %s", e.msg);
    size_t i;
    json_t *c;
    int n_match = 0;
    json_array_foreach(cases, i, c) {
        const char *which = json_string_value(json_object_get(c, "tokenizer"));
        const char *text = json_string_value(json_object_get(c, "text"));
        const char *decoded = json_string_value(json_object_get(c, "decoded"));
        json_t *want = json_object_get(c, "ids");
        sb_tokenizer *t = !strcmp(which, "bytelevel") ? bl : ms;
        if (!t) continue;
        sb_tokens ids = {0};
        sb_status st = sb_tokenize(t, text, strlen(text), false, true, &ids, &e);
        bool same = st == SB_OK && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        n_match += same;
        char got[2048] = "";
        for (size_t k = 0, at = 0; k < ids.n && at < sizeof got - 12; k++)
            at += (size_t)snprintf(got + at, sizeof got - at, " %d", ids.ids[k]);
        CHECK(same, "%s '%s': got%s (%zu ids, want %zu)", which, text, got, ids.n, json_array_size(want));
        /* decode the reference ids */
        size_t n = json_array_size(want);
        int32_t *ref = calloc(n + 1, sizeof *ref);
        for (size_t k = 0; k < n; k++) ref[k] = (int32_t)json_integer_value(json_array_get(want, k));
        char *back = sb_detokenize(t, ref, n, true);
        CHECK(back && !strcmp(back, decoded), "%s decode of '%s': got '%s' want '%s'", which, text,
              back ? back : "(null)", decoded);
        free(back);
        free(ref);
        sb_tokens_free(&ids);
    }
    fprintf(stderr, "tokenizer.json cases: %d/%zu ids match\n", n_match, json_array_size(cases));
    /* The same cases after writing each tokenizer as GGUF keys and reading them back
     * (what `sabio convert` does for a Hugging Face folder). */
    void *buf[2];
    sb_gguf *gg[2];
    sb_tokenizer *rt[2] = {bl ? via_gguf(bl, &buf[0], &gg[0]) : NULL, ms ? via_gguf(ms, &buf[1], &gg[1]) : NULL};
    int n_rt = 0;
    json_array_foreach(cases, i, c) {
        const char *which = json_string_value(json_object_get(c, "tokenizer"));
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        sb_tokenizer *t = rt[strcmp(which, "bytelevel") ? 1 : 0];
        if (!t) continue;
        sb_tokens ids = {0};
        sb_tokenize(t, text, strlen(text), false, true, &ids, &e);
        bool same = ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        n_rt += same;
        CHECK(same, "%s via GGUF '%s': %zu ids, want %zu", which, text, ids.n, json_array_size(want));
        sb_tokens_free(&ids);
    }
    fprintf(stderr, "tokenizer.json via GGUF: %d/%zu ids match\n", n_rt, json_array_size(cases));
    for (int k = 0; k < 2; k++) {
        sb_tokenizer_free(rt[k]);
        sb_gguf_free(gg[k]);
        free(buf[k]);
    }
    CHECK(json_array_size(cases) >= 30, "only %zu cases", json_array_size(cases));
    if (bl) CHECK(sb_tokenizer_is_eog(bl, sb_tokenizer_find(bl, "<|endoftext|>")), "eos from tokenizer_config.json");
    /* SentencePiece tokenizer.model (+ added_tokens.json), against the sentencepiece library */
    json_t *spm_cases = json_load_file("tests/data/spm/cases.json", 0, &je);
    sb_tokenizer *sp = sb_tokenizer_from_hf("tests/data/spm", &e);
    CHECK(sp && spm_cases, "tokenizer.model: %s", e.msg);
    int n_spm = 0;
    json_array_foreach(spm_cases, i, c) {
        if (!sp) break;
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        sb_tokens ids = {0};
        sb_tokenize(sp, text, strlen(text), false, false, &ids, &e);
        bool same = ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        n_spm += same;
        CHECK(same, "tokenizer.model '%s': %zu ids, want %zu", text, ids.n, json_array_size(want));
        char *back = sb_detokenize(sp, ids.ids, ids.n, false);
        const char *dec = json_string_value(json_object_get(c, "decoded"));
        CHECK(back && dec && !strcmp(back, dec), "tokenizer.model decode '%s': '%s'", text, back ? back : "");
        free(back);
        sb_tokens_free(&ids);
    }
    fprintf(stderr, "tokenizer.model cases: %d/%zu ids match\n", n_spm, json_array_size(spm_cases));
    if (sp) {
        sb_tokens ids = {0};
        sb_tokenize(sp, "<|user|>\nhi", 11, true, true, &ids, &e);
        CHECK(ids.n >= 3 && ids.ids[0] == 1 && ids.ids[1] == 801, "added tokens from added_tokens.json, BOS first");
        sb_tokens_free(&ids);
    }
    sb_tokenizer_free(sp);
    json_decref(spm_cases);
    /* a corrupt tokenizer.model */
    char tmpd[] = "/tmp/sb_spm_XXXXXX";
    if (mkdtemp(tmpd)) {
        char p[600];
        snprintf(p, sizeof p, "%s/tokenizer.model", tmpd);
        FILE *f = fopen(p, "wb");
        fwrite("\x0a\xff\xff\xff\xff\x0f", 1, 6, f);
        fclose(f);
        sb_tokenizer *bad = sb_tokenizer_from_hf(tmpd, &e);
        CHECK(!bad && strstr(e.msg, "tokenizer.model"), "corrupt tokenizer.model: %s", e.msg);
        sb_tokenizer_free(bad);
        unlink(p);
        rmdir(tmpd);
    }
    /* malformed inputs: clear errors */
    sb_tokenizer *bad = sb_tokenizer_from_hf("tests/data/st", &e);
    CHECK(!bad && strstr(e.msg, "tokenizer.json"), "missing tokenizer.json: %s", e.msg);
    sb_tokenizer_free(bad);
    sb_tokenizer_free(bl);
    sb_tokenizer_free(ms);
    json_decref(cases);
    return TEST_END();
}
