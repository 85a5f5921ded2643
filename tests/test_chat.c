/*
 * test_chat.c - chat templates against the models' own Jinja templates as
 * rendered by jinja2 (tests/data/chat_ref.json, tools/gen_chat_ref.py):
 * recognition of each template, and byte-identical prompts. The reference
 * writes Phi-3's BOS as text ("<s>"); we leave BOS to the tokenizer, so the
 * comparison drops it and the BOS policy is checked separately.
 */
#include "test.h"
#include "text/chat.h"

#include <jansson.h>

int main(void) {
    json_error_t je;
    json_t *cases = json_load_file("tests/data/chat_ref.json", 0, &je);
    CHECK(cases != NULL, "chat_ref.json: %s", je.text);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "template"));
        const char *jinja = json_string_value(json_object_get(c, "jinja"));
        const char *want = json_string_value(json_object_get(c, "rendered"));
        const char *bos = json_string_value(json_object_get(c, "bos_text"));
        sb_chat_tmpl t = sb_chat_detect(jinja);
        CHECK(t == sb_chat_from_name(name), "case %zu: template detected as %s, want %s", i, sb_chat_name(t), name);
        sb_chat_msg msgs[8];
        size_t n = 0, k;
        json_t *m;
        json_array_foreach(json_object_get(c, "messages"), k, m) if (n < 8) msgs[n++] =
            (sb_chat_msg){json_string_value(json_object_get(m, "role")), json_string_value(json_object_get(m, "content"))};
        char *got = sb_chat_apply(t, msgs, n, true);
        size_t skip = bos && !strncmp(want, bos, strlen(bos)) ? strlen(bos) : 0;
        CHECK(got && !strcmp(got, want + skip), "case %zu (%s):\ngot:  %s\nwant: %s", i, name, got ? got : "", want + skip);
        free(got);
    }
    CHECK(json_array_size(cases) >= 4, "only %zu cases", json_array_size(cases));
    json_decref(cases);
    CHECK(sb_chat_detect("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}") == SB_CHAT_LLAMA2,
          "llama-2 template recognised");
    CHECK(sb_chat_detect("{{ messages }}") == SB_CHAT_UNKNOWN && sb_chat_from_name("nope") == SB_CHAT_UNKNOWN,
          "unknown templates");
    /* Llama-2 format, as its template writes it (system folded into the first turn). */
    sb_chat_msg l2[] = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
    char *s = sb_chat_apply(SB_CHAT_LLAMA2, l2, 4, true);
    CHECK(s && !strcmp(s, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]"), "llama2: %s", s);
    free(s);
    return TEST_END();
}
