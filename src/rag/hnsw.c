/*
 * hnsw.c - the HNSW index of hnsw.h: graph construction and search (as in
 * the paper and hnswlib), int8 quantization, tombstones, compaction, and the
 * checked file format.
 *
 * Node i owns:
 *   l0 + i * rec0:  u32 count, u32 links[M0], then its vector:
 *                   F32: float[dim]; I8: float scale, float |x|^2, int8[dim] (padded to 4)
 *   upper[i]:       level[i] blocks of (u32 count, u32 links[M]) for levels 1..level[i]
 *   f32 + i * dim:  the exact vector (I8 with rerank only)
 * Labels map to node ids through an open-addressing table.
 */
#include "rag/hnsw.h"

#include "base/threadpool.h"
#include "rag/vecdist.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEVEL 30
#define NONE UINT32_MAX

typedef struct visited {
    uint32_t *tag;
    uint32_t epoch;
    size_t size;
} visited;

struct sb_hnsw {
    int dim;
    sb_hnsw_params p;
    int M0;
    double mult; /* level draw: floor(-ln(U) * mult), mult = 1 / ln(M) */
    const sb_vecdist *k;
    size_t rec0, vbytes; /* level-0 record bytes and the vector's bytes in it */
    uint32_t n, cap;
    uint8_t *l0;
    uint32_t **upper;
    uint8_t *level;
    int64_t *labels;
    uint8_t *deleted;
    uint8_t *locks;
    float *f32;
    int64_t n_deleted;
    int max_level; /* -1: empty */
    uint32_t entry;
    uint32_t *map; /* label -> node id + 0, NONE empty; map_cap a power of two */
    size_t map_cap;
    uint64_t rng;
    pthread_mutex_t glock; /* entry point and max level during a threaded build */
    pthread_mutex_t vlock; /* the pool of visited sets */
    visited **vpool;
    int n_vpool, cap_vpool;
};

/* ---- small helpers ---- */

static inline void spin_lock(uint8_t *l) {
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) __builtin_ia32_pause();
}
static inline void spin_unlock(uint8_t *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static inline uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint32_t *links_of(const sb_hnsw *h, uint32_t i, int lev) {
    return lev == 0 ? (uint32_t *)(h->l0 + (size_t)i * h->rec0) : h->upper[i] + (size_t)(lev - 1) * (1 + h->p.M);
}
static inline const uint8_t *vec_of(const sb_hnsw *h, uint32_t i) {
    return h->l0 + (size_t)i * h->rec0 + sizeof(uint32_t) * (1 + (size_t)h->M0);
}

/* distance between two vectors in the index's storage form */
static inline float dist(const sb_hnsw *h, const uint8_t *a, const uint8_t *b) {
    if (h->p.type == SB_VEC_F32) {
        if (h->p.metric == SB_METRIC_L2) return h->k->l2_f32((const float *)a, (const float *)b, h->dim);
        return 1.0f - h->k->dot_f32((const float *)a, (const float *)b, h->dim);
    }
    float sa, sb, na, nb;
    memcpy(&sa, a, 4);
    memcpy(&sb, b, 4);
    float d = sa * sb * (float)h->k->dot_i8((const int8_t *)(a + 8), (const int8_t *)(b + 8), h->dim);
    if (h->p.metric != SB_METRIC_L2) return 1.0f - d;
    memcpy(&na, a + 4, 4);
    memcpy(&nb, b + 4, 4);
    return na + nb - 2.0f * d;
}
static inline float dist_to(const sb_hnsw *h, const uint8_t *q, uint32_t i) { return dist(h, q, vec_of(h, i)); }

/* v as the index stores it: normalised for cosine, quantized for int8.
 * For int8, xf (dim floats) receives the normalised float vector. */
static void encode(const sb_hnsw *h, const float *v, uint8_t *out, float *xf) {
    float *x = h->p.type == SB_VEC_F32 ? (float *)out : xf;
    memcpy(x, v, sizeof(float) * (size_t)h->dim);
    if (h->p.metric == SB_METRIC_COSINE) {
        double ss = 0;
        for (int j = 0; j < h->dim; j++) ss += (double)x[j] * x[j];
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (int j = 0; j < h->dim; j++) x[j] *= inv;
        }
    }
    if (h->p.type == SB_VEC_F32) return;
    float amax = 0;
    for (int j = 0; j < h->dim; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0, norm = 0;
    int8_t *q = (int8_t *)(out + 8);
    for (int j = 0; j < h->dim; j++) {
        int r = (int)lrintf(x[j] * inv);
        r = r > 127 ? 127 : r < -127 ? -127 : r;
        q[j] = (int8_t)r;
        norm += (scale * r) * (scale * r);
    }
    for (size_t j = 8 + (size_t)h->dim; j < h->vbytes; j++) out[j] = 0;
    memcpy(out, &scale, 4);
    memcpy(out + 4, &norm, 4);
}

static void decode(const sb_hnsw *h, uint32_t i, float *out) {
    if (h->p.type == SB_VEC_F32) {
        memcpy(out, vec_of(h, i), sizeof(float) * (size_t)h->dim);
    } else if (h->f32) {
        memcpy(out, h->f32 + (size_t)i * h->dim, sizeof(float) * (size_t)h->dim);
    } else {
        const uint8_t *v = vec_of(h, i);
        float s;
        memcpy(&s, v, 4);
        for (int j = 0; j < h->dim; j++) out[j] = s * (float)((const int8_t *)(v + 8))[j];
    }
}

/* ---- label map ---- */

static uint32_t map_find(const sb_hnsw *h, int64_t label) {
    if (!h->map_cap) return NONE;
    size_t mask = h->map_cap - 1;
    for (size_t j = mix64((uint64_t)label) & mask;; j = (j + 1) & mask) {
        uint32_t id = h->map[j];
        if (id == NONE || h->labels[id] == label) return id;
    }
}

static void map_put(sb_hnsw *h, uint32_t id) {
    size_t mask = h->map_cap - 1, j = mix64((uint64_t)h->labels[id]) & mask;
    while (h->map[j] != NONE) j = (j + 1) & mask;
    h->map[j] = id;
}

static bool map_grow(sb_hnsw *h, size_t need) {
    if (need * 2 <= h->map_cap) return true;
    size_t cap = h->map_cap ? h->map_cap : 1024;
    while (cap < need * 2) cap *= 2;
    uint32_t *m = sb_realloc_array(NULL, cap, sizeof *m);
    if (!m) return false;
    memset(m, 0xff, cap * sizeof *m);
    free(h->map);
    h->map = m;
    h->map_cap = cap;
    for (uint32_t i = 0; i < h->n; i++) map_put(h, i);
    return true;
}

/* ---- life cycle ---- */

static bool params_ok(int dim, sb_hnsw_params *p, sb_err *err) {
    if (!p->M) p->M = 16;
    if (!p->ef_construction) p->ef_construction = 200;
    if (!p->ef_search) p->ef_search = 64;
    if (!p->seed) p->seed = 100;
    if (dim < 1 || dim > 65536) return sb_err_set(err, SB_ERR_INVALID, "hnsw: dimension %d out of range", dim), false;
    if (p->M < 2 || p->M > 512) return sb_err_set(err, SB_ERR_INVALID, "hnsw: M %d out of 2..512", p->M), false;
    if (p->ef_construction < 1 || p->ef_construction > 1 << 16 || p->ef_search < 1 || p->ef_search > 1 << 16)
        return sb_err_set(err, SB_ERR_INVALID, "hnsw: ef out of 1..65536"), false;
    if ((unsigned)p->metric > SB_METRIC_L2 || (unsigned)p->type > SB_VEC_I8)
        return sb_err_set(err, SB_ERR_INVALID, "hnsw: unknown metric or vector type"), false;
    if (p->type == SB_VEC_F32) p->rerank = false;
    return true;
}

sb_hnsw *sb_hnsw_new(int dim, const sb_hnsw_params *params, sb_err *err) {
    sb_hnsw_params p = params ? *params : (sb_hnsw_params){0};
    if (!params_ok(dim, &p, err)) return NULL;
    sb_hnsw *h = calloc(1, sizeof *h);
    if (!h) return sb_err_set(err, SB_ERR_NOMEM, "out of memory"), NULL;
    h->dim = dim;
    h->p = p;
    h->M0 = 2 * p.M;
    h->mult = 1.0 / log((double)p.M);
    h->k = sb_vecdist_get();
    h->vbytes = p.type == SB_VEC_F32 ? sizeof(float) * (size_t)dim : 8 + (((size_t)dim + 3) & ~(size_t)3);
    h->rec0 = sizeof(uint32_t) * (1 + (size_t)h->M0) + h->vbytes;
    h->max_level = -1;
    h->entry = NONE;
    h->rng = mix64(p.seed);
    pthread_mutex_init(&h->glock, NULL);
    pthread_mutex_init(&h->vlock, NULL);
    return h;
}

static void free_arrays(sb_hnsw *h) {
    for (uint32_t i = 0; h->upper && i < h->n; i++) free(h->upper[i]);
    free(h->upper);
    free(h->l0);
    free(h->level);
    free(h->labels);
    free(h->deleted);
    free(h->locks);
    free(h->f32);
    free(h->map);
    for (int i = 0; i < h->n_vpool; i++) {
        free(h->vpool[i]->tag);
        free(h->vpool[i]);
    }
    free(h->vpool);
}

void sb_hnsw_free(sb_hnsw *h) {
    if (!h) return;
    free_arrays(h);
    pthread_mutex_destroy(&h->glock);
    pthread_mutex_destroy(&h->vlock);
    free(h);
}

int sb_hnsw_dim(const sb_hnsw *h) { return h->dim; }
const sb_hnsw_params *sb_hnsw_params_get(const sb_hnsw *h) { return &h->p; }
int64_t sb_hnsw_count(const sb_hnsw *h) { return h->n; }
int64_t sb_hnsw_deleted(const sb_hnsw *h) { return h->n_deleted; }

bool sb_hnsw_contains(const sb_hnsw *h, int64_t label) {
    uint32_t id = map_find(h, label);
    return id != NONE && !h->deleted[id];
}

bool sb_hnsw_get(const sb_hnsw *h, int64_t label, float *out) {
    uint32_t id = map_find(h, label);
    if (id == NONE || h->deleted[id]) return false;
    decode(h, id, out);
    return true;
}

void sb_hnsw_each(const sb_hnsw *h, void (*cb)(int64_t label, void *user), void *user) {
    for (uint32_t i = 0; i < h->n; i++)
        if (!h->deleted[i]) cb(h->labels[i], user);
}

#define GROW(ptr, count)                                                                                     \
    do {                                                                                                     \
        void *np_ = sb_realloc_array((ptr), (count), sizeof *(ptr));                                         \
        if (!np_) return false;                                                                              \
        (ptr) = np_;                                                                                         \
    } while (0)

static bool reserve(sb_hnsw *h, size_t need) {
    if (need > NONE - 1) return false;
    if (!map_grow(h, need)) return false;
    if (need <= h->cap) return true;
    size_t cap = h->cap ? h->cap : 256;
    while (cap < need) cap += cap / 2;
    if (cap > NONE - 1) cap = NONE - 1;
    size_t bytes;
    if (!sb_mul_ok(cap, h->rec0, &bytes)) return false;
    uint8_t *l0 = realloc(h->l0, bytes);
    if (!l0) return false;
    h->l0 = l0;
    GROW(h->upper, cap);
    GROW(h->level, cap);
    GROW(h->labels, cap);
    GROW(h->deleted, cap);
    GROW(h->locks, cap);
    if (h->p.rerank) GROW(h->f32, cap * (size_t)h->dim);
    h->cap = (uint32_t)cap;
    return true;
}

/* ---- visited sets (an epoch per search: no clearing) ---- */

static visited *visited_get(sb_hnsw *h) {
    pthread_mutex_lock(&h->vlock);
    visited *v = h->n_vpool ? h->vpool[--h->n_vpool] : calloc(1, sizeof *v);
    pthread_mutex_unlock(&h->vlock);
    if (!v) return NULL;
    if (v->size < h->n) {
        free(v->tag);
        v->size = h->cap;
        v->tag = calloc(v->size, sizeof *v->tag);
        v->epoch = 0;
        if (!v->tag) {
            free(v);
            return NULL;
        }
    }
    if (++v->epoch == 0) {
        memset(v->tag, 0, v->size * sizeof *v->tag);
        v->epoch = 1;
    }
    return v;
}

static void visited_put(sb_hnsw *h, visited *v) {
    pthread_mutex_lock(&h->vlock);
    if (h->n_vpool == h->cap_vpool) {
        int cap = h->cap_vpool ? h->cap_vpool * 2 : 8;
        visited **np = sb_realloc_array(h->vpool, (size_t)cap, sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&h->vlock);
            free(v->tag);
            free(v);
            return;
        }
        h->vpool = np;
        h->cap_vpool = cap;
    }
    h->vpool[h->n_vpool++] = v;
    pthread_mutex_unlock(&h->vlock);
}

/* ---- heaps of (distance, node): max-heap; a min-heap stores -distance ---- */

typedef struct cand {
    float d;
    uint32_t id;
} cand;

typedef struct heap {
    cand *a;
    int n, cap;
} heap;

static inline void heap_push(heap *hp, float d, uint32_t id) {
    if (hp->n == hp->cap) { /* rare: the scratch is sized for typical searches */
        cand *na = sb_realloc_array(hp->a, (size_t)hp->cap * 2, sizeof *na);
        if (!na) return;
        hp->a = na;
        hp->cap *= 2;
    }
    int i = hp->n++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (hp->a[p].d >= d) break;
        hp->a[i] = hp->a[p];
        i = p;
    }
    hp->a[i] = (cand){d, id};
}

static inline void heap_pop(heap *hp) {
    cand last = hp->a[--hp->n];
    int i = 0, n = hp->n;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hp->a[c + 1].d > hp->a[c].d) c++;
        if (hp->a[c].d <= last.d) break;
        hp->a[i] = hp->a[c];
        i = c;
    }
    if (n) hp->a[i] = last;
}

static int cmp_cand(const void *a, const void *b) {
    float x = ((const cand *)a)->d, y = ((const cand *)b)->d;
    return x < y ? -1 : x > y;
}

/* ---- search ---- */

typedef struct search_ctx {
    const uint8_t *q; /* query in storage form */
    visited *vis;
    bool building; /* take node locks while reading links */
    sb_hnsw_filter keep;
    void *user;
    heap top, cands; /* scratch of capacity ef + 1 and (ef * M0 + 1) */
} search_ctx;

/* Greedy descent from (ep, d) through levels from..to+1 (Algorithm 2, ef = 1). */
static uint32_t descend(const sb_hnsw *h, const uint8_t *q, uint32_t ep, float *d, int from, int to, bool lock) {
    uint32_t buf[1 + 512];
    for (int lev = from; lev > to; lev--) {
        for (bool changed = true; changed;) {
            changed = false;
            const uint32_t *l = links_of(h, ep, lev);
            if (lock) {
                spin_lock(&h->locks[ep]);
                memcpy(buf, l, sizeof(uint32_t) * (1 + l[0]));
                spin_unlock(&h->locks[ep]);
                l = buf;
            }
            for (uint32_t j = 1; j <= l[0]; j++) {
                float dj = dist_to(h, q, l[j]);
                if (dj < *d) {
                    *d = dj;
                    ep = l[j];
                    changed = true;
                }
            }
        }
    }
    return ep;
}

/* Beam search of width ef on one level (Algorithm 2), as hnswlib's
 * searchBaseLayer: deleted or filtered-out nodes route but are not kept.
 * Leaves the nearest found in c->top (a max-heap). */
static void search_layer(const sb_hnsw *h, search_ctx *c, uint32_t ep, float d_ep, int ef, int lev) {
    uint32_t buf[1 + 1024];
    visited *v = c->vis;
    c->top.n = c->cands.n = 0;
    float bound = INFINITY;
    if (!h->deleted[ep] && (!c->keep || c->keep(h->labels[ep], c->user))) {
        heap_push(&c->top, d_ep, ep);
        bound = d_ep;
    }
    heap_push(&c->cands, -d_ep, ep);
    v->tag[ep] = v->epoch;
    bool all_kept = !h->n_deleted && !c->keep;
    while (c->cands.n) {
        cand cur = c->cands.a[0];
        if (-cur.d > bound && (c->top.n == ef || all_kept)) break;
        heap_pop(&c->cands);
        const uint32_t *l = links_of(h, cur.id, lev);
        if (c->building) {
            spin_lock(&h->locks[cur.id]);
            memcpy(buf, l, sizeof(uint32_t) * (1 + l[0]));
            spin_unlock(&h->locks[cur.id]);
            l = buf;
        }
        uint32_t nl = l[0];
        if (nl) __builtin_prefetch(vec_of(h, l[1]));
        for (uint32_t j = 1; j <= nl; j++) {
            uint32_t e = l[j];
            if (j < nl) __builtin_prefetch(vec_of(h, l[j + 1]));
            if (v->tag[e] == v->epoch) continue;
            v->tag[e] = v->epoch;
            float d = dist_to(h, c->q, e);
            if (c->top.n < ef || d < bound) {
                heap_push(&c->cands, -d, e);
                if (!h->deleted[e] && (!c->keep || c->keep(h->labels[e], c->user))) {
                    heap_push(&c->top, d, e);
                    if (c->top.n > ef) heap_pop(&c->top);
                }
                if (c->top.n) bound = c->top.a[0].d;
            }
        }
    }
}

static bool ctx_init(sb_hnsw *h, search_ctx *c, int ef) {
    memset(c, 0, sizeof *c);
    c->vis = visited_get(h);
    c->top.cap = ef + 2;
    c->cands.cap = (ef + 2) * 4 > h->M0 + 2 ? (ef + 2) * 4 : h->M0 + 2;
    c->top.a = malloc(sizeof(cand) * (size_t)c->top.cap);
    c->cands.a = malloc(sizeof(cand) * (size_t)c->cands.cap);
    return c->vis && c->top.a && c->cands.a;
}

static void ctx_free(sb_hnsw *h, search_ctx *c) {
    if (c->vis) visited_put(h, c->vis);
    free(c->top.a);
    free(c->cands.a);
}

int sb_hnsw_search(const sb_hnsw *hc, const float *q, int k, int ef, sb_hnsw_filter keep, void *user,
                   int64_t *labels, float *dists) {
    sb_hnsw *h = (sb_hnsw *)hc; /* only the visited-set pool changes, under its lock */
    if (k <= 0 || h->max_level < 0 || h->n_deleted >= (int64_t)h->n) return 0;
    if (ef <= 0) ef = h->p.ef_search;
    if (ef < k) ef = k;
    uint8_t *qv = malloc(h->vbytes);
    float *qf = h->p.type == SB_VEC_I8 ? malloc(sizeof(float) * (size_t)h->dim) : NULL;
    search_ctx c = {0};
    int n = 0;
    if (!qv || (h->p.type == SB_VEC_I8 && !qf) || !ctx_init(h, &c, ef)) goto out;
    encode(h, q, qv, qf);
    c.q = qv;
    c.keep = keep;
    c.user = user;
    float d = dist_to(h, qv, h->entry);
    uint32_t ep = descend(h, qv, h->entry, &d, h->max_level, 0, false);
    search_layer(h, &c, ep, d, ef, 0);
    cand *r = c.top.a;
    n = c.top.n;
    if (h->p.rerank)
        for (int i = 0; i < n; i++) {
            const float *x = h->f32 + (size_t)r[i].id * h->dim;
            r[i].d = h->p.metric == SB_METRIC_L2 ? h->k->l2_f32(qf, x, h->dim) : 1.0f - h->k->dot_f32(qf, x, h->dim);
        }
    qsort(r, (size_t)n, sizeof *r, cmp_cand);
    if (n > k) n = k;
    for (int i = 0; i < n; i++) {
        labels[i] = h->labels[r[i].id];
        if (dists) dists[i] = r[i].d;
    }
out:
    ctx_free(h, &c);
    free(qv);
    free(qf);
    return n;
}

/* ---- construction ---- */

/* The paper's neighbour heuristic (Algorithm 4, as hnswlib's
 * getNeighborsByHeuristic2): walk the candidates nearest first and keep one
 * only if it is nearer to the base than to every one kept. c sorted ascending;
 * returns the count kept (in place, at most m). */
static int select_neighbors(const sb_hnsw *h, cand *c, int n, int m) {
    if (n <= m) return n;
    int kept = 0;
    for (int i = 0; i < n && kept < m; i++) {
        const uint8_t *vi = vec_of(h, c[i].id);
        bool good = true;
        for (int j = 0; j < kept && good; j++) good = dist(h, vi, vec_of(h, c[j].id)) >= c[i].d;
        if (good) c[kept++] = c[i];
    }
    return kept;
}

/* Links node id at level lev to the best of the candidates in c->top and
 * those back to it, shrinking full neighbour lists with the same heuristic
 * (hnswlib's mutuallyConnectNewElement). Returns the nearest selected. */
static uint32_t connect(sb_hnsw *h, search_ctx *c, uint32_t id, int lev) {
    int mcap = lev ? h->p.M : h->M0;
    cand *sel = c->top.a;
    qsort(sel, (size_t)c->top.n, sizeof *sel, cmp_cand);
    int ns = select_neighbors(h, sel, c->top.n, h->p.M);
    uint32_t *own = links_of(h, id, lev);
    own[0] = (uint32_t)ns;
    for (int i = 0; i < ns; i++) own[1 + i] = sel[i].id;
    cand *tmp = c->cands.a; /* scratch: at least M0 + 1 entries */
    for (int i = 0; i < ns; i++) {
        uint32_t s = sel[i].id;
        spin_lock(&h->locks[s]);
        uint32_t *l = links_of(h, s, lev);
        if (l[0] < (uint32_t)mcap) {
            l[1 + l[0]++] = id;
        } else {
            const uint8_t *vs = vec_of(h, s);
            int nt = 0;
            for (uint32_t j = 1; j <= l[0]; j++) tmp[nt++] = (cand){dist(h, vs, vec_of(h, l[j])), l[j]};
            tmp[nt++] = (cand){sel[i].d, id};
            qsort(tmp, (size_t)nt, sizeof *tmp, cmp_cand);
            int nk = select_neighbors(h, tmp, nt, mcap);
            l[0] = (uint32_t)nk;
            for (int j = 0; j < nk; j++) l[1 + j] = tmp[j].id;
        }
        spin_unlock(&h->locks[s]);
    }
    return ns ? sel[0].id : NONE;
}

static int draw_level(sb_hnsw *h) {
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    double u = (double)((h->rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
    int l = (int)(-log(u > 0 ? u : 0x1.0p-53) * h->mult);
    return l > MAX_LEVEL ? MAX_LEVEL : l;
}

/* Inserts prepared node id (vector, level, label in place; Algorithm 1). */
static bool insert(sb_hnsw *h, search_ctx *c, uint32_t id) {
    int lev = h->level[id];
    spin_lock(&h->locks[id]);
    pthread_mutex_lock(&h->glock);
    int maxl = h->max_level;
    uint32_t ep = h->entry;
    if (lev <= maxl) pthread_mutex_unlock(&h->glock);
    if (maxl >= 0) {
        const uint8_t *q = vec_of(h, id);
        c->q = q;
        float d = dist_to(h, q, ep);
        ep = descend(h, q, ep, &d, maxl, lev, true);
        for (int l = lev < maxl ? lev : maxl; l >= 0; l--) {
            if (++c->vis->epoch == 0) {
                memset(c->vis->tag, 0, c->vis->size * sizeof *c->vis->tag);
                c->vis->epoch = 1;
            }
            search_layer(h, c, ep, d, h->p.ef_construction, l);
            if (!c->top.n) { /* everything reachable is deleted: link to the entry itself */
                c->top.a[0] = (cand){d, ep};
                c->top.n = 1;
            }
            uint32_t next = connect(h, c, id, l);
            if (next != NONE) {
                ep = next;
                d = dist_to(h, q, ep);
            }
        }
    }
    if (lev > maxl) {
        h->entry = id;
        h->max_level = lev;
        pthread_mutex_unlock(&h->glock);
    }
    spin_unlock(&h->locks[id]);
    return true;
}

/* Claims node ids n..n+count-1 for the labels (sequentially: the label map
 * and level draws are not shared between threads). */
static sb_status prepare(sb_hnsw *h, const int64_t *labels, const float *v, int64_t count, float *xf, sb_err *err) {
    if (count < 0 || !reserve(h, (size_t)h->n + (size_t)count))
        return sb_err_set(err, SB_ERR_NOMEM, "hnsw: out of memory for %lld more vectors", (long long)count);
    uint32_t first = h->n;
    for (int64_t i = 0; i < count; i++) {
        if (map_find(h, labels[i]) != NONE)
            return sb_err_set(err, SB_ERR_INVALID, "hnsw: label %lld is already held", (long long)labels[i]);
        uint32_t id = first + (uint32_t)i;
        int lev = draw_level(h);
        h->upper[id] = NULL;
        if (lev && !(h->upper[id] = calloc((size_t)lev * (1 + h->p.M), sizeof(uint32_t))))
            return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        h->level[id] = (uint8_t)lev;
        h->labels[id] = labels[i];
        h->deleted[id] = 0;
        h->locks[id] = 0;
        uint8_t *rec = h->l0 + (size_t)id * h->rec0;
        memset(rec, 0, sizeof(uint32_t) * (1 + (size_t)h->M0));
        encode(h, v + (size_t)i * h->dim, rec + sizeof(uint32_t) * (1 + (size_t)h->M0),
               h->f32 ? h->f32 + (size_t)id * h->dim : xf);
        /* map the label now: a duplicate inside the batch is caught above */
        h->n = id + 1;
        map_put(h, id);
    }
    return SB_OK;
}

typedef struct build_job {
    sb_hnsw *h;
    uint32_t first, count;
    uint32_t next; /* atomic */
    bool failed;
} build_job;

static void build_worker(void *arg, int ith, int nth) {
    build_job *j = arg;
    search_ctx c;
    if (!ctx_init(j->h, &c, j->h->p.ef_construction)) {
        j->failed = true;
        ctx_free(j->h, &c);
        return;
    }
    c.building = true;
    for (;;) {
        uint32_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->count) break;
        insert(j->h, &c, j->first + i);
    }
    ctx_free(j->h, &c);
}

sb_status sb_hnsw_add_batch(sb_hnsw *h, const int64_t *labels, const float *v, int64_t n, int n_threads,
                            sb_err *err) {
    uint32_t first = h->n;
    float *xf = malloc(sizeof(float) * (size_t)h->dim);
    sb_status st = xf ? prepare(h, labels, v, n, xf, err) : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    free(xf);
    if (st != SB_OK) { /* undo the claimed nodes */
        for (uint32_t i = first; i < h->n; i++) free(h->upper[i]);
        h->n = first;
        if (h->map_cap) memset(h->map, 0xff, h->map_cap * sizeof *h->map);
        for (uint32_t i = 0; i < h->n; i++) map_put(h, i);
        return st;
    }
    build_job j = {h, first, (uint32_t)n, 0, false};
    sb_pool *pool = n_threads > 1 && n > 1 ? sb_pool_new(n_threads) : NULL;
    sb_pool_run(pool, build_worker, &j);
    sb_pool_free(pool);
    if (j.failed) return sb_err_set(err, SB_ERR_NOMEM, "hnsw: out of memory while building");
    return SB_OK;
}

sb_status sb_hnsw_add(sb_hnsw *h, int64_t label, const float *v, sb_err *err) {
    return sb_hnsw_add_batch(h, &label, v, 1, 1, err);
}

sb_status sb_hnsw_delete(sb_hnsw *h, int64_t label, sb_err *err) {
    uint32_t id = map_find(h, label);
    if (id == NONE || h->deleted[id])
        return sb_err_set(err, SB_ERR_NOT_FOUND, "hnsw: label %lld is not in the index", (long long)label);
    h->deleted[id] = 1;
    h->n_deleted++;
    return SB_OK;
}

sb_status sb_hnsw_compact(sb_hnsw *h, int n_threads, sb_err *err) {
    if (!h->n_deleted) return SB_OK;
    size_t live = (size_t)(h->n - h->n_deleted);
    int64_t *labels = malloc(sizeof(int64_t) * (live ? live : 1));
    float *v = sb_realloc_array(NULL, live ? live * (size_t)h->dim : 1, sizeof(float));
    sb_hnsw *nh = sb_hnsw_new(h->dim, &h->p, err);
    sb_status st = labels && v && nh ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    size_t m = 0;
    for (uint32_t i = 0; st == SB_OK && i < h->n; i++)
        if (!h->deleted[i]) {
            labels[m] = h->labels[i];
            decode(h, i, v + m++ * (size_t)h->dim);
        }
    if (st == SB_OK) st = sb_hnsw_add_batch(nh, labels, v, (int64_t)m, n_threads, err);
    free(labels);
    free(v);
    if (st != SB_OK) {
        sb_hnsw_free(nh);
        return st;
    }
    free_arrays(h);
    pthread_mutex_destroy(&nh->glock);
    pthread_mutex_destroy(&nh->vlock);
    pthread_mutex_t g = h->glock, vl = h->vlock;
    *h = *nh;
    h->glock = g;
    h->vlock = vl;
    free(nh);
    return SB_OK;
}

/* ---- file format ----
 * Little-endian (the machines we build for). Every section is padded to
 * 8 bytes; the checksum runs over all bytes before the trailer as 64-bit
 * words. */

#define MAGIC "SBHNSW01"
#define VERSION 1

typedef struct file_header {
    char magic[8];
    uint32_t version, dim, metric, type, rerank, M, ef_construction, ef_search;
    int32_t max_level;
    uint32_t entry;
    uint64_t n, n_deleted, n_upper; /* n_upper: u32 words of upper-level links */
    int64_t last_id;
    uint64_t rng;
    uint32_t model_len, pad;
} file_header;

static inline uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static uint64_t hash_words(uint64_t hsh, const uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        hsh = (hsh ^ w) * 0x9e3779b97f4a7c15ull;
        hsh ^= hsh >> 29;
    }
    if (i < n) { /* the zero padding of a section */
        uint64_t w = 0;
        memcpy(&w, p + i, n - i);
        hsh = (hsh ^ w) * 0x9e3779b97f4a7c15ull;
        hsh ^= hsh >> 29;
    }
    return hsh;
}

#define HASH_SEED 0x6a09e667f3bcc908ull

uint64_t sb_hnsw_checksum(const void *data, size_t n) { return hash_words(HASH_SEED, data, n); }

static bool put(sb_afile *f, uint64_t *hsh, const void *p, size_t n) {
    static const uint8_t zero[8];
    if (!n) return true;
    *hsh = hash_words(*hsh, p, n);
    return sb_afile_write(f, p, n) && sb_afile_write(f, zero, pad8(n) - n);
}

static uint64_t upper_words(const sb_hnsw *h) {
    uint64_t w = 0;
    for (uint32_t i = 0; i < h->n; i++) w += (uint64_t)h->level[i] * (1 + (uint64_t)h->p.M);
    return w;
}

sb_status sb_hnsw_save(const sb_hnsw *h, const char *path, const sb_hnsw_meta *meta, sb_err *err) {
    file_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, MAGIC, 8);
    hd.version = VERSION;
    hd.dim = (uint32_t)h->dim;
    hd.metric = h->p.metric;
    hd.type = h->p.type;
    hd.rerank = h->p.rerank;
    hd.M = (uint32_t)h->p.M;
    hd.ef_construction = (uint32_t)h->p.ef_construction;
    hd.ef_search = (uint32_t)h->p.ef_search;
    hd.max_level = h->max_level;
    hd.entry = h->entry;
    hd.n = h->n;
    hd.n_deleted = (uint64_t)h->n_deleted;
    hd.n_upper = upper_words(h);
    hd.last_id = meta ? meta->last_id : 0;
    hd.rng = h->rng;
    hd.model_len = meta ? (uint32_t)strnlen(meta->model, sizeof meta->model - 1) : 0;
    uint32_t *up = malloc(sizeof(uint32_t) * (hd.n_upper ? hd.n_upper : 1));
    if (!up) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    size_t w = 0;
    for (uint32_t i = 0; i < h->n; w += (size_t)h->level[i] * (1 + h->p.M), i++)
        if (h->level[i]) memcpy(up + w, h->upper[i], sizeof(uint32_t) * h->level[i] * (1 + h->p.M));
    sb_afile f;
    sb_status st = sb_afile_open(&f, path, err);
    if (st != SB_OK) {
        free(up);
        return st;
    }
    uint64_t hsh = HASH_SEED;
    bool ok = put(&f, &hsh, &hd, sizeof hd) && put(&f, &hsh, meta ? meta->model : "", hd.model_len) &&
              put(&f, &hsh, h->labels, sizeof(int64_t) * h->n) && put(&f, &hsh, h->level, h->n) &&
              put(&f, &hsh, h->deleted, h->n) && put(&f, &hsh, h->l0, h->rec0 * h->n) &&
              put(&f, &hsh, up, sizeof(uint32_t) * hd.n_upper) &&
              (!h->p.rerank || put(&f, &hsh, h->f32, sizeof(float) * (size_t)h->dim * h->n));
    free(up);
    if (!ok || !sb_afile_write(&f, &hsh, 8)) {
        sb_afile_abort(&f);
        return sb_err_set(err, SB_ERR_IO, "%s: write failed", path);
    }
    return sb_afile_commit(&f, err);
}

typedef struct reader {
    const uint8_t *p;
    size_t n, off;
} reader;

static const uint8_t *take(reader *r, uint64_t n) {
    uint64_t padded = pad8(n);
    if (padded < n || padded > r->n - r->off) return NULL;
    const uint8_t *p = r->p + r->off;
    r->off += padded;
    return p;
}

#define BAD(...) (sb_err_set(err, SB_ERR_FORMAT, __VA_ARGS__), sb_hnsw_free(h), (sb_hnsw *)NULL)

sb_hnsw *sb_hnsw_load_mem(const void *data, size_t size, sb_hnsw_meta *meta, sb_err *err) {
    sb_hnsw *h = NULL;
    file_header hd;
    if (size < sizeof hd + 8) return BAD("hnsw index: %zu bytes, too short for a header", size);
    memcpy(&hd, data, sizeof hd);
    if (memcmp(hd.magic, MAGIC, 8)) return BAD("hnsw index: not an index file (bad magic)");
    if (hd.version != VERSION) return BAD("hnsw index: version %u, expected %u", hd.version, VERSION);
    uint64_t want;
    memcpy(&want, (const uint8_t *)data + size - 8, 8);
    if (sb_hnsw_checksum(data, size - 8) != want) return BAD("hnsw index: checksum mismatch (corrupt or truncated)");
    sb_hnsw_params p = {(int)hd.M, (int)hd.ef_construction, (int)hd.ef_search, (sb_metric)hd.metric,
                        (sb_vec_type)hd.type, hd.rerank != 0, 1};
    if (hd.M > 512 || hd.ef_construction > 1 << 16 || hd.ef_search > 1 << 16 || hd.dim > 65536 || hd.rerank > 1 ||
        hd.M < 2 || hd.metric > SB_METRIC_L2 || hd.type > SB_VEC_I8 || (hd.type == SB_VEC_F32 && hd.rerank))
        return BAD("hnsw index: bad parameters (dim %u, M %u, metric %u, type %u)", hd.dim, hd.M, hd.metric, hd.type);
    if (!(h = sb_hnsw_new((int)hd.dim, &p, err))) return NULL;
    h->rng = hd.rng;
    if (hd.n > NONE - 1 || hd.n_deleted > hd.n) return BAD("hnsw index: %llu nodes, %llu deleted", (unsigned long long)hd.n, (unsigned long long)hd.n_deleted);
    if (hd.model_len >= sizeof meta->model) return BAD("hnsw index: model name of %u bytes", hd.model_len);
    reader r = {data, size - 8, 0};
    take(&r, sizeof hd);
    const uint8_t *model = take(&r, hd.model_len), *labels = model ? take(&r, 8 * hd.n) : NULL;
    const uint8_t *levels = labels ? take(&r, hd.n) : NULL, *deleted = levels ? take(&r, hd.n) : NULL;
    uint64_t l0_bytes = 0, up_bytes = 0, f32_bytes = 0;
    if (__builtin_mul_overflow(hd.n, (uint64_t)h->rec0, &l0_bytes) ||
        __builtin_mul_overflow(hd.n_upper, (uint64_t)4, &up_bytes) ||
        __builtin_mul_overflow(hd.n, (uint64_t)hd.dim * 4 * hd.rerank, &f32_bytes))
        return BAD("hnsw index: sizes overflow");
    const uint8_t *l0 = deleted ? take(&r, l0_bytes) : NULL, *up = l0 ? take(&r, up_bytes) : NULL;
    const uint8_t *f32 = up ? take(&r, f32_bytes) : NULL;
    if (!f32 || r.off != r.n)
        return BAD("hnsw index: %zu bytes do not match the header (%llu nodes of dimension %u)", size,
                   (unsigned long long)hd.n, hd.dim);
    if (!reserve(h, (size_t)hd.n)) return BAD("hnsw index: out of memory for %llu nodes", (unsigned long long)hd.n);
    if (hd.n) { /* (an empty index allocates nothing) */
        memcpy(h->labels, labels, 8 * hd.n);
        memcpy(h->level, levels, hd.n);
        memcpy(h->deleted, deleted, hd.n);
        memcpy(h->l0, l0, l0_bytes);
        if (hd.rerank) memcpy(h->f32, f32, f32_bytes);
        memset(h->locks, 0, hd.n);
    }
    /* levels and upper links */
    uint64_t w = 0, dels = 0;
    int top = -1;
    for (uint64_t i = 0; i < hd.n; i++) {
        h->upper[i] = NULL;
        h->n = (uint32_t)i; /* free_arrays frees upper[0..n) */
        if (h->level[i] > MAX_LEVEL) return BAD("hnsw index: node %llu has level %u", (unsigned long long)i, h->level[i]);
        if (h->deleted[i] > 1) return BAD("hnsw index: node %llu: bad deletion flag", (unsigned long long)i);
        dels += h->deleted[i];
        top = h->level[i] > top ? h->level[i] : top;
        uint64_t nw = (uint64_t)h->level[i] * (1 + h->p.M);
        if (nw > hd.n_upper - w) return BAD("hnsw index: upper links exceed the %llu stored", (unsigned long long)hd.n_upper);
        if (nw && !(h->upper[i] = malloc(4 * nw))) return BAD("hnsw index: out of memory");
        if (nw) memcpy(h->upper[i], up + 4 * w, 4 * nw);
        w += nw;
    }
    h->n = (uint32_t)hd.n;
    if (w != hd.n_upper) return BAD("hnsw index: %llu upper link words, the levels need %llu", (unsigned long long)hd.n_upper, (unsigned long long)w);
    if (dels != hd.n_deleted) return BAD("hnsw index: %llu deletion flags, header says %llu", (unsigned long long)dels, (unsigned long long)hd.n_deleted);
    if (hd.n ? (hd.entry >= hd.n || hd.max_level != top || h->level[hd.entry] != top) : hd.max_level != -1)
        return BAD("hnsw index: entry point %u / max level %d do not match the nodes", hd.entry, hd.max_level);
    for (uint32_t i = 0; i < h->n; i++)
        for (int lev = 0; lev <= h->level[i]; lev++) {
            const uint32_t *l = links_of(h, i, lev);
            if (l[0] > (uint32_t)(lev ? h->p.M : h->M0))
                return BAD("hnsw index: node %u level %d has %u links", i, lev, l[0]);
            for (uint32_t j = 1; j <= l[0]; j++)
                if (l[j] >= h->n || l[j] == i || h->level[l[j]] < lev)
                    return BAD("hnsw index: node %u level %d links to %u (bad)", i, lev, l[j]);
        }
    h->max_level = hd.max_level;
    h->entry = hd.n ? hd.entry : NONE;
    h->n_deleted = (int64_t)hd.n_deleted;
    if (h->map_cap) memset(h->map, 0xff, h->map_cap * sizeof *h->map);
    for (uint32_t i = 0; i < h->n; i++) {
        if (map_find(h, h->labels[i]) != NONE) return BAD("hnsw index: label %lld appears twice", (long long)h->labels[i]);
        map_put(h, i);
    }
    if (meta) {
        meta->last_id = hd.last_id;
        memcpy(meta->model, model, hd.model_len);
        meta->model[hd.model_len] = 0;
    }
    return h;
}

sb_hnsw *sb_hnsw_load(const char *path, sb_hnsw_meta *meta, sb_err *err) {
    sb_mmap m;
    if (sb_mmap_open(&m, path, err) != SB_OK) return NULL;
    sb_hnsw *h = sb_hnsw_load_mem(m.data, m.size, meta, err);
    if (!h) sb_err_prefix(err, "%s", path);
    sb_mmap_close(&m);
    return h;
}
