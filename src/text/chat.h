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
 * to be tokenized with parse_special = true.
 *
 * BOS: never written here. Templates that print {{ bos_token }} (Phi-3's,
 * Llama-2's first turn) get it from the tokenizer instead: tokenize the
 * prompt with add_bos = true (the vocabulary's add_bos_token decides), so
 * there is exactly one BOS. Llama-2's later turns keep their literal "<s>",
 * which parse_special turns into the BOS id, as the template means.
 *
 * System messages: Phi-3 writes them as "<|system|>\n...<|end|>\n" (as
 * llama.cpp and the Phi-3.5 templates do), even though the original Phi-3
 * mini template (in ggml-vocab-phi-3.gguf) silently drops them. */
char *sb_chat_apply(sb_chat_tmpl t, const sb_chat_msg *msgs, size_t n, bool add_generation_prompt);

/* The default system prompt a template inserts when the conversation starts
 * without one (SmolLM2's ChatML: "You are a helpful AI assistant named
 * SmolLM, trained by Hugging Face"), as a heap string; NULL if none. */
char *sb_chat_default_system(const char *jinja);

/* sb_chat_apply with the format recognised in jinja, plus the template's
 * default system prompt when msgs has no system message first. NULL if the
 * template is not recognised (or on allocation failure). */
char *sb_chat_apply_jinja(const char *jinja, const sb_chat_msg *msgs, size_t n, bool add_generation_prompt);

#endif
