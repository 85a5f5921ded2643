/*
 * store_index.c - the store's derived HNSW index (kept where the backend
 * says: DIR/index.hnsw beside a SQLite store, a per-node cache folder for a
 * PostgreSQL one): loaded and checked on first use, brought up to date from the store
 * (chunks added since are inserted, chunks gone are tombstoned, many
 * tombstones compacted), rebuilt when missing, corrupt or built with another
 * embedding model, and saved atomically whenever it changed. The database
 * stays the source of truth: nothing here can lose a document.
 */
#include "rag/store_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const sb_hnsw_params index_params = {.M = 16, .ef_construction = 200, .ef_search = 64,
                                            .metric = SB_METRIC_COSINE, .type = SB_VEC_F32};

static int build_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

typedef struct id_list {
    int64_t *v;
    size_t n, cap;
} id_list;

static bool push_id(id_list *l, int64_t id) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        int64_t *np = sb_realloc_array(l->v, l->cap, sizeof *np);
        if (!np) return false;
        l->v = np;
    }
    l->v[l->n++] = id;
    return true;
}

typedef struct gone_ctx {
    const sb_store *s;
    id_list gone;
    bool oom;
} gone_ctx;

static void find_gone(int64_t label, void *user) {
    gone_ctx *g = user;
    if (sb_store_find_id(g->s, label) < 0 && !push_id(&g->gone, label)) g->oom = true;
}

typedef struct batch_ctx {
    sb_store *s;
    float *v;
    int64_t *lab;
    int m;
} batch_ctx;

static void take_vector(int64_t id, const void *blob, size_t bytes, void *user) {
    batch_ctx *b = user;
    if (bytes != sizeof(float) * (size_t)b->s->dim) return; /* a malformed row is left out, as the exact scan does */
    memcpy(b->v + (size_t)b->m * (size_t)b->s->dim, blob, bytes);
    b->lab[b->m++] = id;
}

/* Inserts the chunks of ids (their embeddings read from the store). */
static sb_status add_chunks(sb_store *s, const int64_t *ids, size_t n, sb_err *err) {
    enum { BATCH = 4096 };
    batch_ctx b = {s, sb_realloc_array(NULL, (size_t)BATCH * (size_t)s->dim, sizeof(float)),
                   malloc(sizeof(int64_t) * BATCH), 0};
    sb_status st = SB_OK;
    if (!b.v || !b.lab) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (n > BATCH) sb_log(SB_LOG_INFO, "%s: indexing %zu vectors", s->dir, n);
    for (size_t i = 0; st == SB_OK && i < n; i += BATCH) {
        b.m = 0;
        st = s->ops->vectors(s, ids + i, n - i < BATCH ? n - i : BATCH, take_vector, &b, err);
        if (st == SB_OK) st = sb_hnsw_add_batch(s->index, b.lab, b.v, b.m, build_threads(), err);
    }
    free(b.v);
    free(b.lab);
    return st;
}

static sb_status rebuild(sb_store *s, sb_index_report *r, sb_err *err) {
    sb_hnsw_free(s->index);
    if (!(s->index = sb_hnsw_new(s->dim, &index_params, err))) return err ? err->code : SB_ERR_NOMEM;
    r->rebuilt = true;
    r->added = s->n_ids;
    return add_chunks(s, s->ids, (size_t)s->n_ids, err);
}

sb_status sb_store_index_sync(sb_store *s, sb_index_report *rep, sb_err *err) {
    sb_index_report dummy;
    sb_index_report *r = rep ? rep : &dummy;
    memset(r, 0, sizeof *r);
    sb_status st = sb_store_load_ids(s, err);
    if (st != SB_OK || !s->model) return st;
    if (s->index && !s->index_stale) goto report;
    const char *path = s->index_path;
    bool dirty = false;
    if (!s->index) {
        sb_hnsw_meta meta = {0};
        sb_err e = {0};
        if (path && sb_file_exists(path)) {
            s->index = sb_hnsw_load(path, &meta, &e);
            if (!s->index) {
                sb_log(SB_LOG_WARN, "%s; rebuilding the index from the store", e.msg);
            } else if (strcmp(meta.model, s->model) || sb_hnsw_dim(s->index) != s->dim) {
                sb_log(SB_LOG_WARN, "%s: built for %s (%d dimensions), the store holds %s (%d); rebuilding", path,
                       meta.model, sb_hnsw_dim(s->index), s->model, s->dim);
                sb_hnsw_free(s->index);
                s->index = NULL;
            }
        }
        if (!s->index) {
            st = rebuild(s, r, err);
            dirty = true;
        }
    }
    if (st == SB_OK && !r->rebuilt) {
        /* tombstone what the store no longer holds, add what it gained */
        gone_ctx g = {s, {0}, false};
        sb_hnsw_each(s->index, find_gone, &g);
        id_list add = {0};
        for (int64_t i = 0; i < s->n_ids && !g.oom; i++)
            if (!sb_hnsw_contains(s->index, s->ids[i]) && !push_id(&add, s->ids[i])) g.oom = true;
        if (g.oom) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == SB_OK && i < g.gone.n; i++) st = sb_hnsw_delete(s->index, g.gone.v[i], err);
        r->removed = (int64_t)g.gone.n;
        if (st == SB_OK && add.n) {
            r->added = (int64_t)add.n;
            st = add_chunks(s, add.v, add.n, err);
            /* a tombstoned id back in the store (a store from before ids
             * were made to grow only): the graph cannot take it again */
            if (st == SB_ERR_INVALID) st = rebuild(s, r, err);
        }
        dirty = g.gone.n || add.n;
        free(g.gone.v);
        free(add.v);
        if (st == SB_OK && sb_hnsw_deleted(s->index) * 4 > sb_hnsw_count(s->index))
            st = sb_hnsw_compact(s->index, build_threads(), err);
    }
    if (st == SB_OK && dirty && path) {
        sb_hnsw_meta meta = {.last_id = s->n_ids ? s->ids[s->n_ids - 1] : 0};
        snprintf(meta.model, sizeof meta.model, "%s", s->model);
        sb_err e = {0};
        /* the index is derived: failing to save it costs a rebuild later, not data */
        if (sb_hnsw_save(s->index, path, &meta, &e) != SB_OK) sb_log(SB_LOG_WARN, "%s", e.msg);
    }
    if (st != SB_OK) {
        sb_hnsw_free(s->index);
        s->index = NULL;
        return st;
    }
    s->index_stale = false;
report:
    r->vectors = sb_hnsw_count(s->index) - sb_hnsw_deleted(s->index);
    r->deleted = sb_hnsw_deleted(s->index);
    return SB_OK;
}

typedef struct check_ctx {
    sb_store *s;
    float *x;
    sb_status st;
    sb_err *err;
} check_ctx;

/* one stored embedding against the index's vector of that chunk */
static void check_vector(int64_t id, const void *blob, size_t bytes, void *user) {
    check_ctx *c = user;
    const sb_store *s = c->s;
    float *x = c->x;
    if (c->st != SB_OK) return;
    if (!sb_hnsw_get(s->index, id, x)) {
        c->st = sb_err_set(c->err, SB_ERR_FORMAT, "%s: chunk %lld is not in the index", s->dir, (long long)id);
        return;
    }
    if (bytes != sizeof(float) * (size_t)s->dim) return;
    memcpy(x + s->dim, blob, bytes);
    double ss = 0, diff = 0;
    for (int j = 0; j < s->dim; j++) ss += (double)x[s->dim + j] * x[s->dim + j];
    for (int j = 0; j < s->dim; j++) { /* the index keeps vectors normalised (cosine) */
        double e = fabs(x[j] - (ss > 0 ? x[s->dim + j] / sqrt(ss) : 0));
        diff = e > diff ? e : diff;
    }
    if (diff > 1e-5)
        c->st = sb_err_set(c->err, SB_ERR_FORMAT, "%s: chunk %lld: the index's vector differs from the store's by %g",
                           s->dir, (long long)id, diff);
}

sb_status sb_store_index_check(sb_store *s, sb_index_report *r, sb_err *err) {
    sb_status st = sb_store_load_ids(s, err);
    if (st != SB_OK) return st;
    if (!s->model) { /* nothing embedded yet: an empty index agrees */
        memset(r, 0, sizeof *r);
        return s->n_ids ? sb_err_set(err, SB_ERR_FORMAT, "%s: chunks but no embedding model", s->dir) : SB_OK;
    }
    s->index_stale = true;
    if ((st = sb_store_index_sync(s, r, err)) != SB_OK) return st;
    if (r->vectors != s->n_ids)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: the index holds %lld vectors, the store %lld chunks", s->dir,
                          (long long)r->vectors, (long long)s->n_ids);
    check_ctx c = {s, malloc(sizeof(float) * 2 * (size_t)s->dim), SB_OK, err};
    if (!c.x) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    st = s->ops->vectors(s, NULL, 0, check_vector, &c, err);
    free(c.x);
    return st == SB_OK ? c.st : st;
}
