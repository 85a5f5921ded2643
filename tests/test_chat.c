/*
 * test_chat.c - chat templates against the models' own Jinja templates as
 * rendered by jinja2 the way transformers does, and against llama.cpp's
 * llama_chat_apply_template (tests/data/chat_ref.json, tools/gen_chat_ref.py):
 * recognition of each template, and byte-identical prompts. Each case names
 * the reference we follow ("want"); the Jinja output writes BOS as text
 * ("<s>"), which we leave to the tokenizer, so the comparison drops it and
 * the BOS policy is checked with the Phi-3 vocabulary: our prompt tokenized
 * with add_bos gives the same ids as the template's text with its "<s>".
 */
#include "formats/gguf.h"
#include "test.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#include <jansson.h>

static sb_tokenizer *phi3_vocab(sb_gguf **g) {
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-phi-3.gguf", test_assets());
    sb_err e = {0};
    *g = sb_gguf_open(path, &e);
    sb_tokenizer *t = *g ? sb_tokenizer_from_gguf(*g, &e) : NULL;
    CHECK(t != NULL, "phi-3 vocab: %s", e.msg);
    return t;
}

static bool same_ids(const sb_tokens *a, const sb_tokens *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->ids, b->ids, a->n * sizeof *a->ids));
}

int main(void) {
    json_error_t je;
    json_t *cases = json_load_file("tests/data/chat_ref.json", 0, &je);
    CHECK(cases != NULL, "chat_ref.json: %s", je.text);
    sb_gguf *g = NULL;
    sb_tokenizer *phi3 = phi3_vocab(&g);
    size_t i;
    json_t *c;
    int n_ok = 0, n_bos = 0;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "template"));
        const char *jinja = json_string_value(json_object_get(c, "jinja"));
        const char *which = json_string_value(json_object_get(c, "want"));
        bool from_jinja = !strcmp(which, "jinja");
        const char *want = json_string_value(json_object_get(c, from_jinja ? "rendered" : "llama_cpp"));
        const char *bos = json_string_value(json_object_get(c, "bos_text"));
        bool add_gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        sb_chat_tmpl t = sb_chat_detect(jinja);
        CHECK(t == sb_chat_from_name(name), "case %zu: template detected as %s, want %s", i, sb_chat_name(t), name);
        sb_chat_msg msgs[8];
        size_t n = 0, k;
        json_t *m;
        json_array_foreach(json_object_get(c, "messages"), k, m) if (n < 8) msgs[n++] =
            (sb_chat_msg){json_string_value(json_object_get(m, "role")), json_string_value(json_object_get(m, "content"))};
        char *got = sb_chat_apply_jinja(jinja, msgs, n, add_gen);
        size_t skip = bos && *bos && !strncmp(want, bos, strlen(bos)) ? strlen(bos) : 0;
        bool same = got && !strcmp(got, want + skip);
        n_ok += same;
        CHECK(same, "case %zu (%s, %zu messages, reference %s):\ngot:  %s\nwant: %s", i, name, n, which,
              got ? got : "", want + skip);
        /* one BOS, from the tokenizer, where the template printed it as text */
        if (phi3 && got && skip && t == SB_CHAT_PHI3) {
            sb_tokens a = {0}, b = {0};
            sb_err e = {0};
            sb_tokenize(phi3, got, strlen(got), true, true, &a, &e);
            sb_tokenize(phi3, want, strlen(want), false, true, &b, &e);
            CHECK(same_ids(&a, &b) && a.n && a.ids[0] == sb_tokenizer_bos(phi3) && (a.n < 2 || a.ids[1] != a.ids[0]),
                  "case %zu: prompt + tokenizer BOS (%zu ids) != template text with <s> (%zu ids)", i, a.n, b.n);
            n_bos++;
            sb_tokens_free(&a);
            sb_tokens_free(&b);
        }
        free(got);
    }
    fprintf(stderr, "chat_ref.json: %d/%zu prompts byte-identical; BOS policy checked on %d\n", n_ok,
            json_array_size(cases), n_bos);
    CHECK(json_array_size(cases) >= 18, "only %zu cases", json_array_size(cases));
    CHECK(!phi3 || n_bos >= 3, "BOS policy checked on %d cases only", n_bos);
    json_decref(cases);
    sb_tokenizer_free(phi3);
    sb_gguf_free(g);

    CHECK(sb_chat_detect("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}") == SB_CHAT_LLAMA2,
          "llama-2 template recognised");
    CHECK(sb_chat_detect("{{ messages }}") == SB_CHAT_UNKNOWN && sb_chat_from_name("nope") == SB_CHAT_UNKNOWN,
          "unknown templates");
    CHECK(sb_chat_apply_jinja("{{ messages }}", NULL, 0, true) == NULL, "unknown template: NULL");
    CHECK(sb_chat_default_system("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}") == NULL,
          "plain ChatML has no default system prompt");
    return TEST_END();
}
