/*
 * chunk.c - cutting a document into token-sized chunks at natural
 * boundaries.
 *
 * The text is split into units that end at a sentence end (". ", "? ", "! "),
 * a line end, or a hard boundary (section or page start); units longer than
 * the target are split again at spaces. Each unit's tokens are counted with
 * the embedding model's tokenizer, then units are gathered greedily up to the
 * target, preferring to stop at a paragraph end when one falls in the last
 * 40% of the chunk. The next chunk starts with the trailing units of the
 * previous one that fit in the overlap, unless a hard boundary lies between.
 */
#include "rag/doc.h"

#include <stdlib.h>
#include <string.h>

typedef struct unit {
    size_t a, b;
    int tokens;
    bool para_end; /* followed by a blank line */
    bool hard;     /* a section or page starts right after it */
} unit;

static int count_tokens(const sb_tokenizer *tok, const char *s, size_t n) {
    sb_tokens t = {0};
    if (sb_tokenize(tok, s, n, false, false, &t, NULL) != SB_OK) t.n = n / 4 + 1;
    int c = (int)t.n;
    sb_tokens_free(&t);
    return c;
}

/* hard[off] is 1 where a section or page starts. */
static bool is_hard(const uint8_t *hard, const sb_doc *d, size_t off) { return off <= d->len && hard[off]; }

static size_t utf8_back(const char *s, size_t i) {
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static bool push_unit(unit **u, size_t *n, size_t *cap, unit x) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        unit *nu = sb_realloc_array(*u, *cap, sizeof *nu);
        if (!nu) return false;
        *u = nu;
    }
    (*u)[(*n)++] = x;
    return true;
}

/* Splits [a, b) into units, appending them. */
static bool split_units(const sb_doc *d, const uint8_t *hard, const sb_tokenizer *tok, int target, size_t a,
                        size_t b, unit **u, size_t *n, size_t *cap) {
    const char *s = d->text;
    size_t start = a;
    for (size_t i = a; i < b; i++) {
        bool cut = false;
        if (s[i] == '\n') cut = true;
        else if ((s[i] == '.' || s[i] == '?' || s[i] == '!') && i + 1 < b && (s[i + 1] == ' ' || s[i + 1] == '\n'))
            cut = true;
        if (i + 1 < b && is_hard(hard, d, i + 1)) cut = true;
        if (!cut && i + 1 != b) continue;
        size_t end = i + 1;
        /* swallow following spaces into this unit */
        while (end < b && s[end] == ' ' && !is_hard(hard, d, end)) end++;
        if (end > start) {
            int t = count_tokens(tok, s + start, end - start);
            if (t > target) {
                /* too long: cut at spaces into pieces of about target tokens */
                size_t step = (end - start) * (size_t)target / (size_t)t, p = start;
                if (step < 16) step = 16;
                while (p < end) {
                    size_t q = p + step < end ? p + step : end;
                    if (q < end) {
                        size_t sp = q;
                        while (sp > p + step / 2 && s[sp] != ' ') sp--;
                        q = s[sp] == ' ' ? sp + 1 : utf8_back(s, q);
                        if (q <= p) q = p + step;
                    }
                    unit x = {p, q, count_tokens(tok, s + p, q - p), false, false};
                    if (!push_unit(u, n, cap, x)) return false;
                    p = q;
                }
            } else {
                unit x = {start, end, t, false, false};
                if (!push_unit(u, n, cap, x)) return false;
            }
            unit *last = &(*u)[*n - 1];
            last->para_end = end + 1 < b && s[end - 1] == '\n' && s[end] == '\n';
            last->hard = end < d->len && is_hard(hard, d, end);
        }
        start = end;
        i = end - 1;
    }
    return true;
}

static int line_of(const size_t *starts, size_t n, size_t off) {
    size_t lo = 0, hi = n; /* last start <= off */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (starts[mid] <= off) lo = mid;
        else hi = mid;
    }
    return (int)lo + 1;
}

sb_status sb_chunk_doc(const sb_doc *d, const sb_tokenizer *tok, const sb_chunk_params *p, sb_chunk **out, size_t *n_out,
                       sb_err *err) {
    int target = p && p->target_tokens > 0 ? p->target_tokens : 200;
    int overlap = p && p->overlap_tokens >= 0 ? p->overlap_tokens : 32;
    if (overlap >= target / 2) overlap = target / 2;
    *out = NULL;
    *n_out = 0;
    unit *u = NULL;
    size_t nu = 0, cap = 0;
    size_t *lines = NULL, n_lines = 0;
    sb_chunk *ch = NULL;
    size_t nc = 0, cc = 0;
    uint8_t *hard = calloc(d->len + 1, 1);
    if (!hard) goto nomem;
    for (size_t k = 0; k < d->n_sections; k++)
        if (d->sections[k].offset <= d->len) hard[d->sections[k].offset] = 1;
    for (size_t k = 0; k < d->n_pages; k++)
        if (d->pages[k] <= d->len) hard[d->pages[k]] = 1;
    bool split_ok = split_units(d, hard, tok, target, 0, d->len, &u, &nu, &cap);
    free(hard);
    if (!split_ok) goto nomem;
    size_t sec = 0, page = 0;
    lines = malloc(sizeof *lines * (d->len + 2));
    if (!lines) goto nomem;
    lines[n_lines++] = 0;
    for (size_t i = 0; i < d->len; i++)
        if (d->text[i] == '\n') lines[n_lines++] = i + 1;
    for (size_t i = 0; i < nu;) {
        /* skip units that are only whitespace at a chunk start */
        size_t first = i;
        int tokens = 0;
        size_t j = i, best_para = 0;
        while (j < nu && (j == i || tokens + u[j].tokens <= target)) {
            tokens += u[j].tokens;
            if (u[j].para_end && tokens * 10 >= target * 6) best_para = j + 1;
            if (u[j].hard) {
                j++;
                break;
            }
            j++;
        }
        size_t end = j;
        if (end < nu && best_para > first && !u[end - 1].hard) end = best_para;
        int t = 0;
        for (size_t k = first; k < end; k++) t += u[k].tokens;
        size_t a = u[first].a, b = u[end - 1].b;
        while (a < b && (d->text[a] == ' ' || d->text[a] == '\n' || d->text[a] == '\r' || d->text[a] == '\t')) a++;
        while (b > a && (d->text[b - 1] == ' ' || d->text[b - 1] == '\n' || d->text[b - 1] == '\r' || d->text[b - 1] == '\t')) b--;
        if (b > a) {
            if (nc == cc) {
                cc = cc ? cc * 2 : 64;
                sb_chunk *nch = sb_realloc_array(ch, cc, sizeof *nch);
                if (!nch) goto nomem;
                ch = nch;
            }
            sb_chunk c = {a, b, line_of(lines, n_lines, a), line_of(lines, n_lines, b - 1), 0, NULL, t};
            while (sec < d->n_sections && d->sections[sec].offset <= a) sec++;
            while (page < d->n_pages && d->pages[page] <= a) page++;
            c.section = sec ? d->sections[sec - 1].label : NULL;
            c.page = (int)page;
            ch[nc++] = c;
        }
        if (end >= nu) break;
        /* next chunk: back up over trailing units within the overlap */
        size_t next = end;
        int back = 0;
        while (next > first + 1 && !u[next - 1].hard && back + u[next - 1].tokens <= overlap) {
            back += u[next - 1].tokens;
            next--;
        }
        i = next;
    }
    free(u);
    free(lines);
    *out = ch;
    *n_out = nc;
    return SB_OK;
nomem:
    free(u);
    free(lines);
    free(ch);
    return sb_err_set(err, SB_ERR_NOMEM, "chunker: out of memory");
}
