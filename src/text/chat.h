/*
 * chat.h - chat templates: Phi-3, ChatML, Llama-2, recognised from the
 * model's tokenizer.chat_template (a Jinja string) or chosen by name.
 */
#ifndef SB_CHAT_H
#define SB_CHAT_H

#include "base/base.h"

typedef enum sb_chat_tmpl {
    SB_CHAT_UNKNOWN = 0,
    SB_CHAT_PHI3,   /* <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n */
    SB_CHAT_CHATML, /* <|im_start|>role\n...<|im_end|>\n */
    SB_CHAT_LLAMA2, /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
} sb_chat_tmpl;

typedef struct sb_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} sb_chat_msg;

/* Recognises a Jinja template by its markers; SB_CHAT_UNKNOWN if none match. */
sb_chat_tmpl sb_chat_detect(const char *jinja);
/* "phi3", "chatml", "llama2"; SB_CHAT_UNKNOWN otherwise. */
sb_chat_tmpl sb_chat_from_name(const char *name);
const char *sb_chat_name(sb_chat_tmpl t);
/* Renders messages into the prompt text, ending with the assistant header
 * when add_generation_prompt. Heap string (NULL on failure). The output is
 * to be tokenized with parse_special = true. */
char *sb_chat_apply(sb_chat_tmpl t, const sb_chat_msg *msgs, size_t n, bool add_generation_prompt);

#endif
