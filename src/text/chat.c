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
        /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST] */
        const char *sys = NULL;
        bool first = true;
        for (size_t i = 0; ok && i < n; i++) {
            if (!strcmp(msgs[i].role, "system")) {
                sys = msgs[i].content;
            } else if (!strcmp(msgs[i].role, "user")) {
                ok = sb_buf_puts(&b, first ? "[INST] " : "<s>[INST] ");
                if (ok && sys) ok = sb_buf_printf(&b, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
                sys = NULL;
                if (ok) ok = sb_buf_printf(&b, "%s [/INST]", msgs[i].content);
                first = false;
            } else {
                ok = sb_buf_printf(&b, " %s </s>", msgs[i].content);
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
