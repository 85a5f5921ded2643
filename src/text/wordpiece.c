/*
 * wordpiece.c - BERT's WordPiece tokenization (the embedding models' one).
 *
 * Basic tokenizer, as BERT defines it: Unicode NFD, drop NUL, U+FFFD, control
 * and format characters and combining marks (accent stripping), lower-case;
 * whitespace separates words; every punctuation character (and ASCII symbol)
 * and every CJK ideograph is a word of its own. Then WordPiece: greedy longest
 * match from the start of each word, continuation pieces after the first; a
 * word with no complete segmentation becomes [UNK].
 *
 * Vocabulary convention (llama.cpp's GGUF "bert" vocabularies): a word-initial
 * piece is stored with a U+2581 prefix ("\u2581hello"), a continuation piece
 * bare ("ing"); vocab.txt / tokenizer.json spellings ("hello", "##ing") are
 * converted to it on load.
 */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define WPM_MAX_WORD_CHARS 100 /* longer words are [UNK], as in BERT */

static bool is_cjk(utf8proc_int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_space(utf8proc_int32_t c, utf8proc_category_t cat) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || cat == UTF8PROC_CATEGORY_ZS ||
           cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP || c == 0x85;
}

static bool is_punct(utf8proc_int32_t c, utf8proc_category_t cat) {
    if (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO) return true;
    return c < 0x7F && cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
}

/* Greedy longest-match WordPiece of one word (bytes, lower-cased, no accents). */
static sb_status wpm_word(const sb_tokenizer *t, const char *w, size_t n, size_t n_chars, sb_buf *tmp,
                          sb_tokens *out, sb_err *err) {
    size_t start_count = out->n;
    if (n_chars <= WPM_MAX_WORD_CHARS) {
        tmp->len = 0;
        if (!sb_buf_append(tmp, "\xE2\x96\x81", 3) || !sb_buf_append(tmp, w, n))
            return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
        const char *s = tmp->data;
        size_t len = tmp->len;
        for (size_t i = 0; i < len;) {
            size_t j = len;
            int32_t id = -1;
            for (; j > i; j--)
                if ((id = sb_vocab_lookup(t, s + i, j - i)) >= 0) break;
            if (id < 0) {
                out->n = start_count; /* no segmentation: the whole word is unknown */
                break;
            }
            if (!sb_tokens_push(out, id)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            i = j;
        }
    }
    if (out->n == start_count && t->unk >= 0 && !sb_tokens_push(out, t->unk))
        return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    return SB_OK;
}

sb_status sb_wpm_piece(const sb_tokenizer *t, const char *text, size_t len, sb_tokens *out, sb_err *err) {
    if (len == 0) return SB_OK;
    utf8proc_int32_t *cps = NULL;
    /* Decompose (NFD); invalid UTF-8 is replaced byte by byte with U+FFFD first. */
    sb_buf clean = {0}, word = {0}, tmp = {0};
    sb_status st = SB_OK;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) {
            k = 1;
            c = 0xFFFD;
        }
        char enc[4];
        utf8proc_ssize_t m = utf8proc_encode_char(c, (utf8proc_uint8_t *)enc);
        if (!sb_buf_append(&clean, enc, (size_t)m)) goto nomem;
        i += (size_t)k;
    }
    utf8proc_ssize_t ncp = utf8proc_decompose((const utf8proc_uint8_t *)clean.data, (utf8proc_ssize_t)clean.len, NULL, 0,
                                              UTF8PROC_DECOMPOSE);
    if (ncp < 0) {
        st = sb_err_set(err, SB_ERR_FORMAT, "tokenizer: cannot normalise the text (%s)", utf8proc_errmsg(ncp));
        goto done;
    }
    cps = malloc(sizeof *cps * (size_t)(ncp + 1));
    if (!cps) goto nomem;
    utf8proc_decompose((const utf8proc_uint8_t *)clean.data, (utf8proc_ssize_t)clean.len, cps, ncp, UTF8PROC_DECOMPOSE);
    size_t n_chars = 0;
    for (utf8proc_ssize_t i = 0; i <= ncp; i++) {
        utf8proc_int32_t c = i < ncp ? cps[i] : ' ';
        utf8proc_category_t cat = utf8proc_category(c);
        bool split = i == ncp || is_space(c, cat);
        bool alone = !split && (is_punct(c, cat) || is_cjk(c));
        if (!split && !alone &&
            (c == 0 || c == 0xFFFD || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
             cat == UTF8PROC_CATEGORY_MN))
            continue; /* dropped: NUL, replacement, control/format characters, combining marks */
        if ((split || alone) && word.len) {
            if ((st = wpm_word(t, word.data, word.len, n_chars, &tmp, out, err)) != SB_OK) goto done;
            word.len = 0;
            n_chars = 0;
        }
        if (split) continue;
        char enc[4];
        utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(c), (utf8proc_uint8_t *)enc);
        if (!sb_buf_append(&word, enc, (size_t)m)) goto nomem;
        n_chars++;
        if (alone) {
            if ((st = wpm_word(t, word.data, word.len, n_chars, &tmp, out, err)) != SB_OK) goto done;
            word.len = 0;
            n_chars = 0;
        }
    }
    goto done;
nomem:
    st = sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
done:
    free(cps);
    sb_buf_free(&clean);
    sb_buf_free(&word);
    sb_buf_free(&tmp);
    return st;
}
