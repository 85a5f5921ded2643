/*
 * tokenizer.h - text <-> token ids for the decoder models.
 *
 * Two algorithms behind one handle:
 *  - SentencePiece-BPE (Llama-2 / Phi-3 "llama" vocab in GGUF; tokenizer.json
 *    BPE with byte_fallback): scores, byte fallback tokens <0xXX>, the
 *    leading-space rule, "\u2581" for spaces.
 *  - byte-level BPE (GPT-2 style pre-tokenizer + merges; SmolLM2, Phi-4-mini),
 *    from GGUF (tokenizer.ggml.model = "gpt2") or tokenizer.json.
 * Special/control tokens written in the text ("<|user|>") are recognised only
 * when the caller asks (parse_special); otherwise they are plain text.
 */
#ifndef SB_TOKENIZER_H
#define SB_TOKENIZER_H

#include "base/base.h"
#include "formats/gguf.h"

typedef struct sb_tokenizer sb_tokenizer;

/* From a GGUF's tokenizer.ggml.* keys. NULL on error. */
sb_tokenizer *sb_tokenizer_from_gguf(const sb_gguf *g, sb_err *err);
/* From a Hugging Face folder: tokenizer.json (+ tokenizer_config.json for
 * special tokens and the chat template). NULL on error. */
sb_tokenizer *sb_tokenizer_from_hf(const char *dir, sb_err *err);
void sb_tokenizer_free(sb_tokenizer *t);

/* A growable array of token ids. */
typedef struct sb_tokens {
    int32_t *ids;
    size_t n, cap;
} sb_tokens;
bool sb_tokens_push(sb_tokens *t, int32_t id);
void sb_tokens_free(sb_tokens *t);

/* Appends the tokens of text[0..len) to out. add_bos adds the BOS token if
 * the vocabulary wants one (tokenizer.ggml.add_bos_token). */
sb_status sb_tokenize(const sb_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, sb_tokens *out, sb_err *err);

/* The bytes one token stands for, as it appears in decoded text (spaces
 * restored, byte tokens as their byte). Control tokens give their text only
 * if render_special. Returns the length; writes at most cap bytes. */
size_t sb_token_to_piece(const sb_tokenizer *t, int32_t id, bool render_special, char *buf,
                         size_t cap);
/* Decodes ids into a heap string (NULL on failure), as llama.cpp's
 * llama_detokenize(remove_special = false): when the vocabulary adds a space
 * prefix, one leading space of the first token's piece is dropped (so a BOS
 * at ids[0] keeps the next token's space: decode ids without BOS to get the
 * encoded text back). Control/unknown tokens only if render_special. */
char *sb_detokenize(const sb_tokenizer *t, const int32_t *ids, size_t n, bool render_special);

int32_t sb_tokenizer_n_vocab(const sb_tokenizer *t);
int32_t sb_tokenizer_bos(const sb_tokenizer *t);  /* -1 if none */
int32_t sb_tokenizer_eos(const sb_tokenizer *t);  /* -1 if none */
/* Whether generation should stop at this id: EOS, EOT (<|end|>, <|im_end|>,
 * <|eot_id|>) and the like as the vocabulary marks them. */
bool sb_tokenizer_is_eog(const sb_tokenizer *t, int32_t id);
const char *sb_tokenizer_token_text(const sb_tokenizer *t, int32_t id); /* raw vocab text */
int32_t sb_tokenizer_find(const sb_tokenizer *t, const char *text); /* -1 if absent */
/* Writes the tokenizer.ggml.* keys (and the chat template) that
 * sb_tokenizer_from_gguf reads back. */
sb_status sb_tokenizer_write_gguf(const sb_tokenizer *t, sb_gguf_writer *w, sb_err *err);
/* The Jinja chat template the model ships (NULL if none). */
const char *sb_tokenizer_chat_template(const sb_tokenizer *t);

#endif
