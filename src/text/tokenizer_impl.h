/*
 * tokenizer_impl.h - the tokenizer's internals, shared by the algorithms
 * (tokenizer.c), the loaders (tokenizer_load.c) and the regex splitter
 * (regex.c). Not part of the public API.
 */
#ifndef SB_TOKENIZER_IMPL_H
#define SB_TOKENIZER_IMPL_H

#include "text/tokenizer.h"

#include <stdio.h>

/* GGUF tokenizer.ggml.token_type values. */
enum {
    SB_TOK_NORMAL = 1,
    SB_TOK_UNKNOWN = 2,
    SB_TOK_CONTROL = 3,
    SB_TOK_USER_DEFINED = 4,
    SB_TOK_UNUSED = 5,
    SB_TOK_BYTE = 6,
};

typedef enum { SB_TOK_SPM = 1, SB_TOK_BPE = 2, SB_TOK_WPM = 3 } sb_tok_algo;

typedef struct sb_regex sb_regex;
sb_regex *sb_regex_new(const char *pattern, sb_err *err);
void sb_regex_free(sb_regex *r);
/* Splits text with each regex in turn: every match and every gap between
 * matches becomes a piece that the next regex splits again; the last level's
 * pieces go to cb. */
sb_status sb_regex_split_chain(sb_regex *const *re, int n, const char *text, size_t len,
                               void (*cb)(const char *s, size_t n, void *user), void *user, sb_err *err);

#define SB_TOK_MAX_REGEX 4

struct sb_tokenizer {
    sb_tok_algo algo;
    int32_t n_vocab;
    char **text;   /* NUL-terminated token texts */
    size_t *len;
    float *score;  /* SPM merge scores */
    int32_t *type; /* SB_TOK_* */
    uint8_t *attr_rstrip; /* special token swallows the whitespace after it (may be NULL) */
    int32_t *hash; /* open addressing over ids, -1 empty */
    size_t hash_cap;
    int32_t *special; /* control and user-defined tokens, longest first */
    int n_special;
    uint64_t *merge_key; /* BPE merges: (left id, right id) -> rank */
    int32_t *merge_rank;
    size_t merge_cap, n_merges;
    sb_regex *regex[SB_TOK_MAX_REGEX];
    int n_regex;
    bool byte_level;      /* GPT-2 byte-to-unicode mapping */
    bool ignore_merges;   /* a whole word found in the vocabulary is one token */
    bool add_space_prefix, add_bos, add_eos;
    int32_t bos, eos, eot, unk;
    int32_t byte_token[256]; /* <0xXX> ids, -1 if absent */
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[512];
    uint8_t *eog;
    char *chat_template;
};

int32_t sb_vocab_lookup(const sb_tokenizer *t, const char *s, size_t n);
int32_t sb_merge_rank(const sb_tokenizer *t, int32_t a, int32_t b);
sb_status sb_tokenizer_build_index(sb_tokenizer *t, sb_err *err);
sb_status sb_tokenizer_add_merge(sb_tokenizer *t, int32_t a, int32_t b, int32_t rank, sb_err *err);
/* WordPiece (BERT) tokenization of a text segment without special tokens. */
sb_status sb_wpm_piece(const sb_tokenizer *t, const char *text, size_t len, sb_tokens *out, sb_err *err);
/* A SentencePiece tokenizer.model file (BPE models). */
sb_tokenizer *sb_tokenizer_from_spm_model(const char *path, sb_err *err);
/* The same from bytes in memory; path names the source in messages. */
sb_tokenizer *sb_tokenizer_from_spm_memory(const void *data, size_t len, const char *path, sb_err *err);
/* After the vocabulary is filled (or changed): indexes, byte tokens,
 * end-of-generation set, all rebuilt from scratch. */
sb_status sb_tokenizer_finish(sb_tokenizer *t, sb_err *err);

#endif
