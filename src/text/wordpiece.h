/*
 * wordpiece.h - BERT's WordPiece tokenization (the embedding models' one),
 * as Hugging Face `tokenizers` does it (BertNormalizer, BertPreTokenizer,
 * WordPiece model), which is what sentence-transformers runs.
 *
 * The sb_tokenizer handle (text/tokenizer.h) holds the vocabulary; for a
 * WordPiece vocabulary sb_tokenize() calls sb_wpm_piece() (uncased BERT, the
 * setting of every uncased model: all-MiniLM, bge, e5, gte). Callers that
 * know the model's normalizer flags call sb_wpm_tokenize() with them.
 *
 * Vocabulary convention (llama.cpp's GGUF "bert" vocabularies): a
 * word-initial piece is stored with a U+2581 prefix ("\u2581hello"), a
 * continuation piece bare ("ing"); special tokens ("[CLS]") as they are.
 * vocab.txt / tokenizer.json spellings ("hello", "##ing") are converted to it
 * on load.
 */
#ifndef SB_WORDPIECE_H
#define SB_WORDPIECE_H

#include "base/base.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"

/* BertNormalizer's flags (tokenizer.json "normalizer"; tokenizer_config.json
 * do_lower_case / strip_accents / tokenize_chinese_chars). */
typedef struct sb_wpm_opts {
    bool clean_text;    /* drop NUL, U+FFFD, control/format/private-use characters; whitespace -> ' ' */
    bool handle_cjk;    /* every CJK ideograph is a word of its own */
    bool strip_accents; /* NFD, then drop nonspacing marks (Mn); BERT's default: same as lowercase */
    bool lowercase;     /* full lower-case mapping, character by character */
} sb_wpm_opts;

#define SB_WPM_UNCASED ((sb_wpm_opts){true, true, true, true})

/* Appends the WordPiece ids of text[0..len) (no special tokens, no [CLS]/
 * [SEP]) to out. Invalid UTF-8 bytes count as U+FFFD. A word longer than 100
 * characters, or with no complete segmentation, becomes [UNK]. */
sb_status sb_wpm_tokenize(const sb_tokenizer *t, const sb_wpm_opts *o, const char *text, size_t len,
                          sb_tokens *out, sb_err *err);

/* Normalizer flags of a Hugging Face folder: tokenizer.json's BertNormalizer
 * if there is one, else tokenizer_config.json's do_lower_case (default: true,
 * as BertTokenizer). Missing files are not an error; broken JSON is. */
sb_status sb_wpm_opts_from_hf(const char *dir, sb_wpm_opts *o, sb_err *err);
/* From a GGUF: tokenizer.ggml.normalizer.lowercase if present (default true). */
void sb_wpm_opts_from_gguf(const sb_gguf *g, sb_wpm_opts *o);

/* A WordPiece vocabulary from a vocab.txt (one token per line, id = line
 * number); [PAD] [UNK] [CLS] [SEP] [MASK] are special. NULL on error. */
sb_tokenizer *sb_wpm_from_vocab_txt(const char *path, sb_err *err);

#endif
