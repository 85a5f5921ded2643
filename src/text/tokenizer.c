/*
 * tokenizer.c - vocabulary, special-token partitioning and the two BPE
 * algorithms of tokenizer.h.
 *
 * SentencePiece-BPE (Llama-2, Phi-3): the text (with a leading space when the
 * vocabulary asks for one, and after each special token) has its spaces
 * replaced by U+2581, is split into UTF-8 characters, and adjacent symbols are
 * merged greedily: always the pair whose concatenation is the vocabulary
 * entry of highest score (leftmost on ties), as SentencePiece does. A final
 * symbol missing from the vocabulary is spelled with byte tokens <0xXX>.
 *
 * Byte-level BPE (GPT-2 family: SmolLM2, Phi-4-mini): the text is split by
 * the pre-tokenizer's regular expressions (PCRE2, Unicode properties), each
 * piece's bytes are mapped to printable characters (GPT-2's bytes_to_unicode),
 * and the pair of lowest merge rank is merged until none applies.
 *
 * Both run with a binary heap of candidate pairs: O(n log n) per piece.
 */
#include "text/tokenizer_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable token arrays ---- */

bool sb_tokens_push(sb_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *ids = sb_realloc_array(t->ids, cap, sizeof *ids);
        if (!ids) return false;
        t->ids = ids;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return true;
}

void sb_tokens_free(sb_tokens *t) {
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

/* ---- hash maps: text -> id, (left, right) -> merge rank ---- */

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int32_t sb_vocab_lookup(const sb_tokenizer *t, const char *s, size_t n) {
    if (!t->hash_cap) return -1;
    size_t mask = t->hash_cap - 1;
    for (size_t i = fnv1a(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->hash[i];
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->text[id], s, n)) return id;
    }
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static size_t pair_hash(uint64_t k) { return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17); }

int32_t sb_merge_rank(const sb_tokenizer *t, int32_t a, int32_t b) {
    if (!t->merge_cap) return -1;
    uint64_t k = pair_key(a, b);
    size_t mask = t->merge_cap - 1;
    for (size_t i = pair_hash(k) & mask;; i = (i + 1) & mask) {
        if (t->merge_rank[i] < 0) return -1;
        if (t->merge_key[i] == k) return t->merge_rank[i];
    }
}

sb_status sb_tokenizer_build_index(sb_tokenizer *t, sb_err *err) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2) cap *= 2;
    t->hash = malloc(cap * sizeof *t->hash);
    if (!t->hash) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->hash, 0xff, cap * sizeof *t->hash);
    t->hash_cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (sb_vocab_lookup(t, t->text[id], t->len[id]) >= 0) continue; /* first wins */
        size_t mask = cap - 1, i = fnv1a(t->text[id], t->len[id]) & mask;
        while (t->hash[i] >= 0) i = (i + 1) & mask;
        t->hash[i] = id;
    }
    /* Special tokens for partitioning, longest first. */
    t->n_special = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->type[id] == SB_TOK_CONTROL || t->type[id] == SB_TOK_USER_DEFINED) && t->len[id] > 0) t->n_special++;
    t->special = calloc((size_t)t->n_special + 1, sizeof *t->special);
    if (!t->special) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    int k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->type[id] == SB_TOK_CONTROL || t->type[id] == SB_TOK_USER_DEFINED) && t->len[id] > 0)
            t->special[k++] = id;
    for (int i = 1; i < t->n_special; i++) { /* insertion sort by length desc, id asc */
        int32_t x = t->special[i];
        int j = i - 1;
        while (j >= 0 && t->len[t->special[j]] < t->len[x]) {
            t->special[j + 1] = t->special[j];
            j--;
        }
        t->special[j + 1] = x;
    }
    return SB_OK;
}

sb_status sb_tokenizer_add_merge(sb_tokenizer *t, int32_t a, int32_t b, int32_t rank, sb_err *err) {
    if (t->n_merges * 2 >= t->merge_cap) {
        size_t cap = t->merge_cap ? t->merge_cap * 2 : 1024;
        uint64_t *keys = malloc(cap * sizeof *keys);
        int32_t *ranks = malloc(cap * sizeof *ranks);
        if (!keys || !ranks) {
            free(keys);
            free(ranks);
            return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
        }
        memset(ranks, 0xff, cap * sizeof *ranks);
        for (size_t i = 0; i < t->merge_cap; i++) {
            if (t->merge_rank[i] < 0) continue;
            size_t j = pair_hash(t->merge_key[i]) & (cap - 1);
            while (ranks[j] >= 0) j = (j + 1) & (cap - 1);
            keys[j] = t->merge_key[i];
            ranks[j] = t->merge_rank[i];
        }
        free(t->merge_key);
        free(t->merge_rank);
        t->merge_key = keys;
        t->merge_rank = ranks;
        t->merge_cap = cap;
    }
    uint64_t k = pair_key(a, b);
    size_t mask = t->merge_cap - 1, i = pair_hash(k) & mask;
    while (t->merge_rank[i] >= 0) {
        if (t->merge_key[i] == k) return SB_OK; /* duplicate: keep the first (lowest) rank */
        i = (i + 1) & mask;
    }
    t->merge_key[i] = k;
    t->merge_rank[i] = rank;
    t->n_merges++;
    return SB_OK;
}

void sb_tokenizer_free(sb_tokenizer *t) {
    if (!t) return;
    if (t->text)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->attr_rstrip);
    free(t->hash);
    free(t->special);
    free(t->merge_key);
    free(t->merge_rank);
    for (int i = 0; i < t->n_regex; i++) sb_regex_free(t->regex[i]);
    free(t->chat_template);
    free(t->eog);
    free(t);
}

/* ---- GPT-2 byte <-> unicode mapping ---- */

static void byte_map_init(sb_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        t->byte_to_cp[b] = printable ? b : 256 + n++;
    }
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the UTF-8 character starting at s (1 for invalid lead bytes),
 * never past n. */
static size_t utf8_len(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return l < n ? l : n;
}

/* ---- the merge engine shared by both algorithms ---- */

typedef struct sym {
    int prev, next;
    size_t start, n; /* bytes in the working text */
} sym;

typedef struct pair {
    int left, right;
    float score; /* higher first */
    size_t size; /* bytes of the merged text when it was queued */
} pair;

typedef struct heap {
    pair *a;
    size_t n, cap;
} heap;

static bool pair_before(const pair *x, const pair *y) {
    if (x->score != y->score) return x->score > y->score;
    return x->left < y->left;
}

static bool heap_push(heap *h, pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        pair *a = sb_realloc_array(h->a, cap, sizeof *a);
        if (!a) return false;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = p;
    return true;
}

static pair heap_pop(heap *h) {
    pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const pair *bp = &last;
        if (l < h->n && pair_before(&h->a[l], bp)) best = l, bp = &h->a[l];
        if (r < h->n && pair_before(&h->a[r], bp)) best = r;
        if (best == i) break;
        h->a[i] = h->a[best];
        i = best;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct work {
    sym *syms;
    size_t n_syms, cap_syms;
    heap h;
    sb_buf text; /* the working text (escaped / byte-mapped) */
} work;

static bool work_reserve(work *w, size_t n) {
    if (n <= w->cap_syms) return true;
    size_t cap = w->cap_syms ? w->cap_syms : 64;
    while (cap < n) cap *= 2;
    sym *s = sb_realloc_array(w->syms, cap, sizeof *s);
    if (!s) return false;
    w->syms = s;
    w->cap_syms = cap;
    return true;
}

/* Queues the merge of symbols l and r if the algorithm allows it. */
static bool try_pair(const sb_tokenizer *t, work *w, int l, int r) {
    if (l < 0 || r < 0) return true;
    const char *txt = w->text.data;
    size_t a = w->syms[l].start, n = w->syms[l].n + w->syms[r].n;
    float score;
    if (t->algo == SB_TOK_SPM) {
        int32_t id = sb_vocab_lookup(t, txt + a, n);
        if (id < 0) return true;
        score = t->score[id];
    } else {
        int32_t il = sb_vocab_lookup(t, txt + a, w->syms[l].n);
        int32_t ir = sb_vocab_lookup(t, txt + w->syms[r].start, w->syms[r].n);
        if (il < 0 || ir < 0) return true;
        int32_t rank = sb_merge_rank(t, il, ir);
        if (rank < 0) return true;
        score = -(float)rank;
    }
    return heap_push(&w->h, (pair){l, r, score, n});
}

/* Splits w->text into characters, merges, and appends the ids. */
static sb_status merge_and_emit(const sb_tokenizer *t, work *w, sb_tokens *out, sb_err *err) {
    const char *txt = w->text.data;
    size_t n = w->text.len;
    w->n_syms = 0;
    w->h.n = 0;
    if (!work_reserve(w, n + 1)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t off = 0; off < n;) {
        size_t l = utf8_len(txt + off, n - off);
        int i = (int)w->n_syms++;
        w->syms[i] = (sym){i - 1, -1, off, l};
        if (i > 0) w->syms[i - 1].next = i;
        off += l;
    }
    for (size_t i = 1; i < w->n_syms; i++)
        if (!try_pair(t, w, (int)i - 1, (int)i)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    while (w->h.n) {
        pair p = heap_pop(&w->h);
        sym *l = &w->syms[p.left], *r = &w->syms[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size || l->next != p.right) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = p.left;
        if (!try_pair(t, w, l->prev, p.left) || !try_pair(t, w, p.left, l->next))
            return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int i = w->n_syms ? 0 : -1; i >= 0; i = w->syms[i].next) {
        const sym *s = &w->syms[i];
        int32_t id = sb_vocab_lookup(t, txt + s->start, s->n);
        if (id >= 0) {
            if (!sb_tokens_push(out, id)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            continue;
        }
        /* Byte fallback: <0xXX> per byte, or the unknown token. */
        for (size_t k = 0; k < s->n; k++) {
            int32_t b = t->byte_token[(uint8_t)txt[s->start + k]];
            if (b < 0) b = t->unk;
            if (b < 0) continue;
            if (!sb_tokens_push(out, b)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            if (b == t->unk) break; /* one unknown for the whole symbol */
        }
    }
    return SB_OK;
}

/* ---- raw text pieces ---- */

static sb_status spm_piece(const sb_tokenizer *t, work *w, const char *s, size_t n, bool prefix_space,
                           sb_tokens *out, sb_err *err) {
    w->text.len = 0;
    bool ok = true;
    if (prefix_space) ok = sb_buf_append(&w->text, "\xE2\x96\x81", 3);
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] == ' ' ? sb_buf_append(&w->text, "\xE2\x96\x81", 3) : sb_buf_append(&w->text, s + i, 1);
    if (!ok) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    if (w->text.len == 0) return SB_OK;
    return merge_and_emit(t, w, out, err);
}

/* One pre-tokenized word of byte-level BPE. */
static sb_status bpe_word(const sb_tokenizer *t, work *w, const char *s, size_t n, sb_tokens *out, sb_err *err) {
    w->text.len = 0;
    if (t->byte_level) {
        char enc[4];
        for (size_t i = 0; i < n; i++) {
            size_t k = utf8_encode(t->byte_to_cp[(uint8_t)s[i]], enc);
            if (!sb_buf_append(&w->text, enc, k)) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
        }
    } else if (!sb_buf_append(&w->text, s, n)) {
        return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (w->text.len == 0) return SB_OK;
    /* Whole word in the vocabulary: done (also what HF's BPE cache gives). */
    int32_t id = t->ignore_merges ? sb_vocab_lookup(t, w->text.data, w->text.len) : -1;
    if (id >= 0) return sb_tokens_push(out, id) ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    return merge_and_emit(t, w, out, err);
}

typedef struct split_ctx {
    const sb_tokenizer *t;
    work *w;
    sb_tokens *out;
    sb_err *err;
    sb_status st;
} split_ctx;

static void on_word(const char *s, size_t n, void *user) {
    split_ctx *c = user;
    if (c->st == SB_OK) c->st = bpe_word(c->t, c->w, s, n, c->out, c->err);
}

static sb_status bpe_piece(const sb_tokenizer *t, work *w, const char *s, size_t n, sb_tokens *out, sb_err *err) {
    split_ctx c = {t, w, out, err, SB_OK};
    if (t->n_regex == 0) {
        on_word(s, n, &c);
        return c.st;
    }
    sb_status st = sb_regex_split_chain(t->regex, t->n_regex, s, n, on_word, &c, err);
    return st != SB_OK ? st : c.st;
}

/* ---- partitioning on special tokens, then the algorithm ---- */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

sb_status sb_tokenize(const sb_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                      sb_tokens *out, sb_err *err) {
    work w = {0};
    sb_status st = SB_OK;
    if (add_bos && t->add_bos && t->bos >= 0 && !sb_tokens_push(out, t->bos))
        return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    bool prev_special = true; /* SentencePiece: a space before the text and after special tokens */
    size_t pos = 0;
    while (pos <= len && st == SB_OK) {
        /* Find the earliest special token at or after pos (longest at a position). */
        size_t hit_at = len;
        int32_t hit = -1;
        for (int k = 0; k < t->n_special; k++) {
            int32_t id = t->special[k];
            if (!parse_special && t->type[id] == SB_TOK_CONTROL) continue;
            const char *p = memmem(text + pos, len - pos, t->text[id], t->len[id]);
            if (p && (size_t)(p - text) < hit_at) {
                hit_at = (size_t)(p - text);
                hit = id;
            }
        }
        size_t seg_end = hit_at, next = hit >= 0 ? hit_at + t->len[hit] : len + 1;
        if (hit >= 0 && t->attr_rstrip && t->attr_rstrip[hit])
            while (next < len && is_ws(text[next])) next++;
        if (seg_end > pos) {
            if (t->algo == SB_TOK_WPM)
                st = sb_wpm_piece(t, text + pos, seg_end - pos, out, err);
            else if (t->algo == SB_TOK_SPM || (!t->byte_level && t->n_regex == 0))
                st = spm_piece(t, &w, text + pos, seg_end - pos, t->add_space_prefix && prev_special, out, err);
            else
                st = bpe_piece(t, &w, text + pos, seg_end - pos, out, err);
            prev_special = false;
        }
        if (st == SB_OK && hit >= 0) {
            if (!sb_tokens_push(out, hit)) st = sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
            prev_special = true;
        }
        if (hit < 0) break;
        pos = next;
    }
    if (st == SB_OK && add_bos && t->add_eos && t->eos >= 0 && !sb_tokens_push(out, t->eos))
        st = sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    free(w.syms);
    free(w.h.a);
    sb_buf_free(&w.text);
    return st;
}

/* ---- decoding ---- */

static size_t put_bytes(char *buf, size_t cap, size_t at, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (at + i < cap) buf[at + i] = s[i];
    return at + n;
}

size_t sb_token_to_piece(const sb_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    const char *s = t->text[id];
    size_t n = t->len[id];
    /* As llama.cpp's token_to_piece: control and unknown tokens only when
     * rendering specials, and then (like user-defined ones) as their raw
     * vocabulary text, never byte-mapped or unescaped. */
    switch (t->type[id]) {
    case SB_TOK_CONTROL:
    case SB_TOK_UNKNOWN:
        return render_special ? put_bytes(buf, cap, 0, s, n) : 0;
    case SB_TOK_USER_DEFINED:
        return put_bytes(buf, cap, 0, s, n);
    case SB_TOK_UNUSED:
        return 0;
    case SB_TOK_BYTE: {
        /* "<0xAB>" */
        char b = 0;
        if (n == 6) b = (char)strtol(s + 3, NULL, 16);
        return put_bytes(buf, cap, 0, &b, 1);
    }
    default: break;
    }
    size_t at = 0;
    if (t->algo == SB_TOK_SPM || !t->byte_level) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                at = put_bytes(buf, cap, at, " ", 1);
                i += 3;
            } else {
                at = put_bytes(buf, cap, at, s + i, 1);
                i++;
            }
        }
        return at;
    }
    /* byte-level: each character is one byte (via the inverse mapping) */
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(s + i, n - i);
        uint32_t cp = (unsigned char)s[i];
        if (l == 2) cp = ((cp & 0x1F) << 6) | (s[i + 1] & 0x3F);
        else if (l == 3) cp = ((cp & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
        else if (l == 4) cp = ((cp & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
        int b = cp < 512 ? t->cp_to_byte[cp] : -1;
        if (b >= 0) {
            char c = (char)b;
            at = put_bytes(buf, cap, at, &c, 1);
        } else {
            at = put_bytes(buf, cap, at, s + i, l);
        }
        i += l;
    }
    return at;
}

char *sb_detokenize(const sb_tokenizer *t, const int32_t *ids, size_t n, bool render_special) {
    sb_buf b = {0};
    char piece[512];
    for (size_t i = 0; i < n; i++) {
        size_t k = sb_token_to_piece(t, ids[i], render_special, piece, sizeof piece);
        char *p = piece;
        if (k > sizeof piece) {
            if (!(p = malloc(k))) goto fail;
            sb_token_to_piece(t, ids[i], render_special, p, k);
        }
        /* The space the encoder put before the text is not part of it: as
         * llama.cpp's llama_detokenize, one leading space of the FIRST
         * token's piece goes (whatever the token; a BOS in front, rendered
         * or not, uses up the rule). */
        size_t skip = i == 0 && t->add_space_prefix && k > 0 && p[0] == ' ';
        bool ok = sb_buf_append(&b, p + skip, k - skip);
        if (p != piece) free(p);
        if (!ok) goto fail;
    }
    if (!b.data && !sb_buf_append(&b, "", 0)) goto fail;
    return b.data;
fail:
    sb_buf_free(&b);
    return NULL;
}

/* ---- accessors ---- */

int32_t sb_tokenizer_n_vocab(const sb_tokenizer *t) { return t->n_vocab; }
int32_t sb_tokenizer_bos(const sb_tokenizer *t) { return t->bos; }
int32_t sb_tokenizer_eos(const sb_tokenizer *t) { return t->eos; }
const char *sb_tokenizer_chat_template(const sb_tokenizer *t) { return t->chat_template; }

bool sb_tokenizer_is_eog(const sb_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return false;
    return t->eog[id];
}

const char *sb_tokenizer_token_text(const sb_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

int32_t sb_tokenizer_find(const sb_tokenizer *t, const char *text) {
    return sb_vocab_lookup(t, text, strlen(text));
}

/* Marks end-of-generation tokens: eos, eot and the end-of-turn markers that
 * chat vocabularies use. */
sb_status sb_tokenizer_finish(sb_tokenizer *t, sb_err *err) {
    /* may run again after the vocabulary changed: rebuild everything derived */
    free(t->hash);
    t->hash = NULL;
    t->hash_cap = 0;
    free(t->special);
    t->special = NULL;
    free(t->eog);
    t->eog = NULL;
    byte_map_init(t);
    memset(t->cp_to_byte, 0xff, sizeof t->cp_to_byte);
    for (int b = 0; b < 256; b++) t->cp_to_byte[t->byte_to_cp[b]] = (int16_t)b;
    sb_status st = sb_tokenizer_build_index(t, err);
    if (st != SB_OK) return st;
    t->eog = calloc((size_t)t->n_vocab, 1);
    if (!t->eog) return sb_err_set(err, SB_ERR_NOMEM, "tokenizer: out of memory");
    /* End-of-turn markers known by their text, as llama.cpp's vocabulary
     * loader lists them; like llama.cpp, a marker that the vocabulary did not
     * type as a control token becomes one (so "</s>", user-defined in Phi-3's
     * GGUF, is no longer matched in plain text nor printed unless asked). */
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                            "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                            "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"};
    bool retyped = false;
    for (size_t i = 0; i < sizeof eot_names / sizeof eot_names[0]; i++) {
        int32_t id = sb_vocab_lookup(t, eot_names[i], strlen(eot_names[i]));
        if (id < 0) continue;
        t->eog[id] = 1;
        if (t->type[id] != SB_TOK_CONTROL) t->type[id] = SB_TOK_CONTROL, retyped = true;
    }
    if (retyped) { /* the special-token list depends on the types */
        free(t->hash);
        free(t->special);
        if ((st = sb_tokenizer_build_index(t, err)) != SB_OK) return st;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_token[b] = sb_vocab_lookup(t, name, 6);
    }
    if (t->eos >= 0 && t->eos < t->n_vocab) t->eog[t->eos] = 1;
    if (t->eot >= 0 && t->eot < t->n_vocab) t->eog[t->eot] = 1;
    return SB_OK;
}
