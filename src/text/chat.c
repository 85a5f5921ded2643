/*
 * chat.c - rendering a conversation in a model's chat format.
 *
 * The Jinja templates models ship are recognised by their markers rather
 * than interpreted (as llama.cpp does): Phi-3 (<|role|>\n...<|end|>\n),
 * ChatML (<|im_start|>role\n...<|im_end|>\n) and Llama-2 ([INST] ... [/INST]).
 * BOS is not written here: the tokenizer adds it when the vocabulary asks.
 */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

sb_chat_tmpl sb_chat_detect(const char *jinja) {
    if (!jinja) return SB_CHAT_UNKNOWN;
    if (strstr(jinja, "<|assistant|>") && strstr(jinja, "<|end|>")) return SB_CHAT_PHI3;
    if (strstr(jinja, "<|im_start|>")) return SB_CHAT_CHATML;
    if (strstr(jinja, "[INST]")) return SB_CHAT_LLAMA2;
    return SB_CHAT_UNKNOWN;
}

static const char *const names[] = {"unknown", "phi3", "chatml", "llama2"};

sb_chat_tmpl sb_chat_from_name(const char *name) {
    for (int i = 1; i < 4; i++)
        if (!strcmp(name, names[i])) return (sb_chat_tmpl)i;
    if (!strcmp(name, "phi-3")) return SB_CHAT_PHI3;
    if (!strcmp(name, "llama-2")) return SB_CHAT_LLAMA2;
    return SB_CHAT_UNKNOWN;
}

const char *sb_chat_name(sb_chat_tmpl t) { return (unsigned)t < 4 ? names[t] : "unknown"; }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Python's str.strip() on b->data[at..len) in place. */
static void strip_tail(sb_buf *b, size_t at) {
    size_t s = at, e = b->len;
    while (s < e && is_space(b->data[s])) s++;
    while (e > s && is_space(b->data[e - 1])) e--;
    memmove(b->data + at, b->data + s, e - s);
    b->len = at + (e - s);
    b->data[b->len] = 0;
}

char *sb_chat_apply(sb_chat_tmpl t, const sb_chat_msg *msgs, size_t n, bool add_generation_prompt) {
    sb_buf b = {0};
    bool ok = sb_buf_append(&b, "", 0);
    switch (t) {
    case SB_CHAT_PHI3:
        for (size_t i = 0; ok && i < n; i++)
            ok = sb_buf_printf(&b, "<|%s|>\n%s<|end|>\n", msgs[i].role, msgs[i].content);
        if (ok && add_generation_prompt) ok = sb_buf_puts(&b, "<|assistant|>\n");
        break;
    case SB_CHAT_CHATML:
        for (size_t i = 0; ok && i < n; i++)
            ok = sb_buf_printf(&b, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
        if (ok && add_generation_prompt) ok = sb_buf_puts(&b, "<|im_start|>assistant\n");
        break;
    case SB_CHAT_LLAMA2: {
        /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST]
         * (Meta's template strips each turn's content; the system text
         * joins the first user turn's before the strip). */
        const char *sys = NULL;
        bool first = true;
        for (size_t i = 0; ok && i < n; i++) {
            if (!strcmp(msgs[i].role, "system")) {
                sys = msgs[i].content;
            } else if (!strcmp(msgs[i].role, "user")) {
                ok = sb_buf_puts(&b, first ? "[INST] " : "<s>[INST] ");
                size_t at = b.len;
                if (ok && sys) ok = sb_buf_printf(&b, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
                sys = NULL;
                if (ok) ok = sb_buf_puts(&b, msgs[i].content);
                if (ok) strip_tail(&b, at);
                if (ok) ok = sb_buf_puts(&b, " [/INST]");
                first = false;
            } else {
                ok = sb_buf_puts(&b, " ");
                size_t at = b.len;
                if (ok) ok = sb_buf_puts(&b, msgs[i].content);
                if (ok) strip_tail(&b, at);
                if (ok) ok = sb_buf_puts(&b, " </s>");
            }
        }
        break;
    }
    default: ok = false; break;
    }
    if (!ok) {
        sb_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* SmolLM2's template: {% if loop.first and messages[0]['role'] != 'system' %}
 * {{ '<|im_start|>system\n...<|im_end|>\n' }}{% endif %}. The text is taken
 * only when it is one plain string literal (no quotes or Jinja inside). */
char *sb_chat_default_system(const char *jinja) {
    if (!jinja || sb_chat_detect(jinja) != SB_CHAT_CHATML) return NULL;
    const char *cond = strstr(jinja, "messages[0]['role'] != 'system'");
    if (!cond) cond = strstr(jinja, "messages[0][\"role\"] != \"system\"");
    if (!cond) return NULL;
    const char *p = strstr(cond, "<|im_start|>system");
    const char *endif = strstr(cond, "{% endif %}");
    if (!p || (endif && endif < p)) return NULL;
    p += strlen("<|im_start|>system");
    if (*p == '\n') p++;
    else if (p[0] == '\\' && p[1] == 'n') p += 2;
    else return NULL;
    const char *e = strstr(p, "<|im_end|>");
    if (!e) return NULL;
    sb_buf b = {0};
    if (!sb_buf_append(&b, "", 0)) return NULL;
    for (const char *q = p; q < e; q++) {
        if (*q == '\'' || *q == '"' || *q == '{' || *q == '}') { /* not a plain literal */
            sb_buf_free(&b);
            return NULL;
        }
        char c = *q;
        if (c == '\\' && q + 1 < e) { /* Jinja string escapes */
            q++;
            c = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
        }
        if (!sb_buf_append(&b, &c, 1)) {
            sb_buf_free(&b);
            return NULL;
        }
    }
    return b.data;
}

char *sb_chat_apply_jinja(const char *jinja, const sb_chat_msg *msgs, size_t n, bool add_generation_prompt) {
    sb_chat_tmpl t = sb_chat_detect(jinja);
    if (t == SB_CHAT_UNKNOWN) return NULL;
    char *sys = n && !strcmp(msgs[0].role, "system") ? NULL : sb_chat_default_system(jinja);
    if (!sys) return sb_chat_apply(t, msgs, n, add_generation_prompt);
    sb_chat_msg *all = calloc(n + 1, sizeof *all);
    char *out = NULL;
    if (all) {
        all[0] = (sb_chat_msg){"system", sys};
        if (n) memcpy(all + 1, msgs, n * sizeof *msgs);
        out = sb_chat_apply(t, all, n + 1, add_generation_prompt);
    }
    free(all);
    free(sys);
    return out;
}
