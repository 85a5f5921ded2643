/*
 * regex.c - pre-tokenizer splitting with PCRE2 (UTF + Unicode properties,
 * JIT where available). Invalid UTF-8 in the input is tolerated
 * (PCRE2_MATCH_INVALID_UTF): it simply never matches and stays in the gaps.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer_impl.h"

#include <pcre2.h>
#include <stdlib.h>

struct sb_regex {
    pcre2_code *code;
    pcre2_match_data *md;
};

sb_regex *sb_regex_new(const char *pattern, sb_err *err) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        sb_err_set(err, SB_ERR_FORMAT, "tokenizer: pre-tokenizer regex at offset %zu: %s", (size_t)eo, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional speed-up */
    sb_regex *r = calloc(1, sizeof *r);
    if (r) r->md = pcre2_match_data_create_from_pattern(code, NULL);
    if (!r || !r->md) {
        free(r);
        pcre2_code_free(code);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->code = code;
    return r;
}

void sb_regex_free(sb_regex *r) {
    if (!r) return;
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->code);
    free(r);
}

typedef void (*piece_cb)(const char *s, size_t n, void *user);

static sb_status split(sb_regex *const *re, int n, const char *text, size_t len, piece_cb cb, void *user,
                       sb_err *err) {
    if (n == 0) {
        if (len) cb(text, len, user);
        return SB_OK;
    }
    sb_regex *r = re[0];
    size_t pos = 0, gap = 0;
    while (pos < len) {
        int rc = pcre2_match(r->code, (PCRE2_SPTR)text, len, pos, 0, r->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sb_err_set(err, SB_ERR_FORMAT, "tokenizer: regex match failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
        size_t s = ov[0], e = ov[1];
        if (e == s) { /* empty match: step over one character */
            pos = s + 1;
            while (pos < len && ((unsigned char)text[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        sb_status st;
        if (s > gap && (st = split(re + 1, n - 1, text + gap, s - gap, cb, user, err)) != SB_OK) return st;
        if ((st = split(re + 1, n - 1, text + s, e - s, cb, user, err)) != SB_OK) return st;
        gap = pos = e;
    }
    if (gap < len) return split(re + 1, n - 1, text + gap, len - gap, cb, user, err);
    return SB_OK;
}

sb_status sb_regex_split_chain(sb_regex *const *re, int n, const char *text, size_t len, piece_cb cb, void *user,
                               sb_err *err) {
    return split(re, n, text, len, cb, user, err);
}
