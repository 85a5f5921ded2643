/*
 * eval.c - the metrics and question sets of eval.h.
 *
 * Normalisation is SQuAD v1.1's normalize_answer, step by step on code
 * points: lower(), then drop string.punctuation (ASCII only), then
 * re.sub(r'\b(a|an|the)\b', ' ') with Python's notion of a word character
 * (letters, numbers, '_'), then ' '.join(text.split()) with Python's white
 * space. tools/squad_ref.py runs the official functions on the strings of
 * tests/data/squad_ref.jsonl; test_eval checks that we agree.
 */
#include "rag/eval.h"
#include "rag/ask.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- normalisation ---- */

static bool is_word_cp(int32_t c) {
    if (c == '_') return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return true;
    default:
        return false;
    }
}

/* str.split()'s white space: the ASCII separators and Unicode's Zs, line
 * and paragraph separators, NEL. */
static bool is_space_cp(int32_t c) {
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85) return true;
    if (c < 0xa0) return false;
    return utf8proc_category(c) == UTF8PROC_CATEGORY_ZS || c == 0x2028 || c == 0x2029;
}

/* string.punctuation */
static bool is_punct_ascii(int32_t c) { return c > 0 && c < 128 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c); }

char *sb_eval_normalize(const char *s) {
    size_t len = strlen(s);
    int32_t *cp = sb_calloc(len + 1, sizeof *cp);
    if (!cp) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) { /* invalid UTF-8: keep the byte as a code point of its own */
            c = (unsigned char)s[i];
            k = 1;
        }
        i += (size_t)k;
        c = utf8proc_tolower(c);
        if (!is_punct_ascii(c)) cp[n++] = c;
    }
    /* Articles: a word-character run "a", "an" or "the" becomes a space. */
    for (size_t i = 0; i < n; i++) {
        if (!is_word_cp(cp[i]) || (i > 0 && is_word_cp(cp[i - 1]))) continue;
        size_t j = i;
        while (j < n && is_word_cp(cp[j])) j++;
        size_t w = j - i;
        bool art = (w == 1 && cp[i] == 'a') || (w == 2 && cp[i] == 'a' && cp[i + 1] == 'n') ||
                   (w == 3 && cp[i] == 't' && cp[i + 1] == 'h' && cp[i + 2] == 'e');
        if (art) {
            cp[i] = ' ';
            memmove(cp + i + 1, cp + j, (n - j) * sizeof *cp);
            n -= w - 1;
        }
        else i = j - 1;
    }
    sb_buf b = {0};
    bool ok = true, pending = false;
    for (size_t i = 0; i < n && ok; i++) {
        if (is_space_cp(cp[i])) {
            pending = b.len > 0;
            continue;
        }
        if (pending) ok = sb_buf_puts(&b, " ");
        pending = false;
        utf8proc_uint8_t u[4];
        utf8proc_ssize_t k = utf8proc_encode_char(cp[i], u);
        ok = ok && sb_buf_append(&b, u, (size_t)k);
    }
    free(cp);
    if (!ok) {
        sb_buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : sb_strdup("");
}

/* ---- words ---- */

typedef struct words {
    char *text; /* the normalised string, cut at the spaces */
    char **w;
    int n;
} words;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool words_of(const char *s, bool sorted, words *out) {
    memset(out, 0, sizeof *out);
    out->text = sb_eval_normalize(s);
    if (!out->text) return false;
    size_t cap = 1;
    for (const char *p = out->text; *p; p++) cap += *p == ' ';
    out->w = sb_calloc(cap, sizeof *out->w);
    if (!out->w) {
        free(out->text);
        return false;
    }
    for (char *p = out->text; *p;) {
        out->w[out->n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    if (sorted) qsort(out->w, (size_t)out->n, sizeof *out->w, cmp_str);
    return true;
}

static void words_free(words *w) {
    free(w->text);
    free(w->w);
}

bool sb_eval_exact(const char *pred, const char *ref) {
    char *a = sb_eval_normalize(pred), *b = sb_eval_normalize(ref);
    bool eq = a && b && !strcmp(a, b);
    free(a);
    free(b);
    return eq;
}

double sb_eval_f1(const char *pred, const char *ref) {
    words p, r;
    if (!words_of(pred, true, &p)) return 0;
    if (!words_of(ref, true, &r)) {
        words_free(&p);
        return 0;
    }
    int same = 0;
    for (int i = 0, j = 0; i < p.n && j < r.n;) { /* bag intersection of two sorted lists */
        int c = strcmp(p.w[i], r.w[j]);
        if (!c) {
            same++;
            i++;
            j++;
        } else if (c < 0) i++;
        else j++;
    }
    double f1 = 0;
    if (same) {
        double prec = (double)same / p.n, rec = (double)same / r.n;
        f1 = 2 * prec * rec / (prec + rec);
    }
    words_free(&p);
    words_free(&r);
    return f1;
}

bool sb_eval_exact_max(const char *pred, const char *const *refs, int n) {
    for (int i = 0; i < n; i++)
        if (sb_eval_exact(pred, refs[i])) return true;
    return false;
}

double sb_eval_f1_max(const char *pred, const char *const *refs, int n) {
    double best = 0;
    for (int i = 0; i < n; i++) best = fmax(best, sb_eval_f1(pred, refs[i]));
    return best;
}

/* Is needle a run of whole words of hay (both normalised)? */
static bool has_words(const char *hay, const char *needle) {
    size_t nl = strlen(needle);
    if (!nl) return true;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        if ((p == hay || p[-1] == ' ') && (p[nl] == 0 || p[nl] == ' ')) return true;
    return false;
}

bool sb_eval_context_recall(const char *context, const char *const *refs, int n) {
    char *ctx = sb_eval_normalize(context);
    bool found = false;
    for (int i = 0; ctx && i < n && !found; i++) {
        char *r = sb_eval_normalize(refs[i]);
        found = r && *r && has_words(ctx, r);
        free(r);
    }
    free(ctx);
    return found;
}

double sb_eval_support(const char *answer, const char *context) {
    words a, c;
    if (!words_of(answer, false, &a)) return 0;
    if (!words_of(context, true, &c)) {
        words_free(&a);
        return 0;
    }
    int in = 0;
    for (int i = 0; i < a.n; i++)
        in += bsearch(&a.w[i], c.w, (size_t)c.n, sizeof *c.w, cmp_str) != NULL;
    double s = a.n ? (double)in / a.n : 1.0;
    words_free(&a);
    words_free(&c);
    return s;
}

void sb_eval_citations(const char *answer, int n_sources, int *n_cited, int *n_invalid) {
    *n_cited = *n_invalid = 0;
    long v;
    for (const char *c = answer; sb_ask_next_citation(&c, &v);) {
        ++*n_cited;
        if (v < 1 || v > n_sources) ++*n_invalid;
    }
}

/* Length of a citation list "[1]" or "[1, 2]" at s, else 0. */
static size_t citation_len(const char *s) {
    if (*s != '[') return 0;
    const char *c = s + 1;
    for (;;) {
        while (*c == ' ') c++;
        if (!isdigit((unsigned char)*c)) return 0;
        while (isdigit((unsigned char)*c)) c++;
        while (*c == ' ') c++;
        if (*c == ']') return (size_t)(c + 1 - s);
        if (*c++ != ',') return 0;
    }
}

char *sb_eval_strip_citations(const char *answer) {
    sb_buf b = {0};
    for (const char *c = answer; *c;) {
        size_t k = citation_len(c);
        if (k) c += k;
        else if (!sb_buf_append(&b, c++, 1)) {
            sb_buf_free(&b);
            return NULL;
        }
    }
    return b.data ? b.data : sb_strdup("");
}

char *sb_eval_valid_utf8(const char *s) {
    sb_buf b = {0};
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        bool ok = k > 0 ? sb_buf_append(&b, s + i, (size_t)k) : sb_buf_append(&b, "\xEF\xBF\xBD", 3);
        if (!ok) {
            sb_buf_free(&b);
            return NULL;
        }
        i += k > 0 ? (size_t)k : 1;
    }
    return b.data ? b.data : sb_strdup("");
}

bool sb_eval_citations_ok(const char *answer, int n_sources) {
    int cited, invalid;
    sb_eval_citations(answer, n_sources, &cited, &invalid);
    return cited > 0 && invalid == 0;
}

/* ---- question sets ---- */

void sb_eval_questions_free(sb_eval_question *q, int n) {
    for (int i = 0; i < n; i++) {
        free(q[i].id);
        free(q[i].question);
        for (int j = 0; j < q[i].n_answers; j++) free(q[i].answers[j]);
        free(q[i].answers);
        free(q[i].doc);
    }
    free(q);
}

static sb_status parse_question(json_t *o, int line, const char *path, sb_eval_question *q, sb_err *err) {
    if (!json_is_object(o)) return sb_err_set(err, SB_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
    const char *text = json_string_value(json_object_get(o, "question"));
    if (!text || !*text) return sb_err_set(err, SB_ERR_FORMAT, "%s:%d: no \"question\" (a non-empty string)", path, line);
    json_t *a = json_object_get(o, "answer");
    if (!a) a = json_object_get(o, "answers");
    size_t na = json_is_array(a) ? json_array_size(a) : json_is_string(a) ? 1 : 0;
    if (!na)
        return sb_err_set(err, SB_ERR_FORMAT, "%s:%d: no \"answer\" (a string or a non-empty array of strings)", path,
                          line);
    q->answers = sb_calloc(na, sizeof *q->answers);
    if (!q->answers) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < na; i++) {
        const char *s = json_string_value(json_is_array(a) ? json_array_get(a, i) : a);
        if (!s || !*s)
            return sb_err_set(err, SB_ERR_FORMAT, "%s:%d: answer %zu is not a non-empty string", path, line, i + 1);
        if (!(q->answers[q->n_answers++] = sb_strdup(s))) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    json_t *id = json_object_get(o, "id");
    const char *doc = json_string_value(json_object_get(o, "doc"));
    q->id = json_is_string(id) ? sb_strdup(json_string_value(id))
            : json_is_integer(id) ? sb_aprintf("%lld", (long long)json_integer_value(id))
                                  : sb_aprintf("line%d", line);
    q->question = sb_strdup(text);
    q->doc = doc ? sb_strdup(doc) : NULL;
    if (!q->id || !q->question || (doc && !q->doc)) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    return SB_OK;
}

sb_status sb_eval_parse(const char *text, size_t len, const char *path, sb_eval_question **out, int *n,
                        sb_err *err) {
    *out = NULL;
    *n = 0;
    char *data = sb_strndup(text, len); /* a copy cut at NUL bytes: lines are split in place */
    if (!data) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    sb_status st = SB_OK;
    sb_eval_question *qs = NULL;
    int nq = 0, cap = 0, line = 0;
    for (char *p = data, *next; p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        if (strspn(p, " \t\r") == strlen(p)) continue;
        json_error_t je;
        json_t *o = json_loads(p, 0, &je);
        if (!o) {
            st = sb_err_set(err, SB_ERR_FORMAT, "%s:%d: bad JSON: %s", path, line, je.text);
            break;
        }
        if (nq == cap) {
            int nc = cap ? cap * 2 : 64;
            sb_eval_question *g = sb_realloc_array(qs, (size_t)nc, sizeof *g);
            if (!g) {
                json_decref(o);
                st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                break;
            }
            qs = g;
            cap = nc;
        }
        memset(&qs[nq], 0, sizeof qs[nq]);
        st = parse_question(o, line, path, &qs[nq], err);
        nq++;
        json_decref(o);
        if (st != SB_OK) break;
    }
    free(data);
    if (st == SB_OK && !nq) st = sb_err_set(err, SB_ERR_FORMAT, "%s: no questions", path);
    if (st != SB_OK) {
        sb_eval_questions_free(qs, nq);
        return st;
    }
    *out = qs;
    *n = nq;
    return SB_OK;
}

sb_status sb_eval_load(const char *path, sb_eval_question **out, int *n, sb_err *err) {
    *out = NULL;
    *n = 0;
    char *data;
    size_t len;
    sb_status st = sb_read_file(path, 0, &data, &len, err);
    if (st != SB_OK) return st;
    st = sb_eval_parse(data, len, path, out, n, err);
    free(data);
    return st;
}

/* ---- sampling and statistics ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias. */
static uint64_t below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    while ((x = splitmix64(s)) >= lim) {
    }
    return x % n;
}

int *sb_eval_shuffle(int n, uint64_t seed) {
    int *p = sb_calloc(n > 0 ? (size_t)n : 1, sizeof *p);
    if (!p) return NULL;
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)below(&seed, (uint64_t)i + 1);
        int t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile_sorted(const double *v, int n, double p) {
    if (n <= 0) return NAN;
    double r = p / 100.0 * (n - 1);
    int lo = (int)floor(r), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (r - lo);
}

double sb_eval_percentile(const double *v, int n, double p) {
    if (n <= 0) return NAN;
    double *c = sb_calloc((size_t)n, sizeof *c);
    if (!c) return NAN;
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    double x = percentile_sorted(c, n, p);
    free(c);
    return x;
}

sb_status sb_eval_bootstrap_diff(const double *a, const double *b, int n, int iters, uint64_t seed, double *diff,
                                 double *lo, double *hi, sb_err *err) {
    if (n <= 0 || iters <= 0) return sb_err_set(err, SB_ERR_INVALID, "bootstrap: no questions or no resamples");
    double *d = sb_calloc((size_t)iters, sizeof *d);
    if (!d) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    double sum = 0;
    for (int i = 0; i < n; i++) sum += a[i] - b[i];
    *diff = sum / n;
    for (int it = 0; it < iters; it++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            int j = (int)below(&seed, (uint64_t)n);
            s += a[j] - b[j];
        }
        d[it] = s / n;
    }
    qsort(d, (size_t)iters, sizeof *d, cmp_double);
    *lo = percentile_sorted(d, iters, 2.5);
    *hi = percentile_sorted(d, iters, 97.5);
    free(d);
    return SB_OK;
}
