/*
 * store.c - the knowledge store of store.h over its backends (store_impl.h):
 * opening by location (a folder: SQLite; postgres://...: PostgreSQL), the
 * embedding model, ingest (one transaction per document), and dense / BM25 /
 * hybrid search.
 *
 * Dense search: below SABIO_HNSW_MIN chunks the embeddings are read into
 * one matrix (re-read after a change) and scored by inner product (the
 * encoders' vectors are L2-normalised, so this is cosine); from there the
 * HNSW index of store_index.c answers. Chunk ids only grow, so an id the
 * index has seen never comes back with other content.
 */
#include "rag/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

sb_store *sb_store_open(const char *loc, bool create, sb_err *err) {
    sb_store *s = calloc(1, sizeof *s);
    bool pg = sb_store_is_pg(loc);
    if (!s || !(s->dir = pg ? sb_pg_redact(loc) : sb_strdup(loc))) {
        free(s);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->stale = true;
    const char *min = getenv("SABIO_HNSW_MIN");
    s->index_min = min && *min ? atoll(min) : 4096;
    if ((pg ? sb_store_pg_open(s, loc, create, err) : sb_store_sqlite_open(s, loc, create, err)) != SB_OK) {
        sb_store_close(s);
        return NULL;
    }
    s->model = s->ops->meta_get(s, "embedding_model");
    char *dim = s->ops->meta_get(s, "embedding_dim");
    s->dim = dim ? atoi(dim) : 0;
    free(dim);
    return s;
}

void sb_store_close(sb_store *s) {
    if (!s) return;
    if (s->ops) s->ops->close(s);
    free(s->dir);
    free(s->index_path);
    free(s->model);
    free(s->vecs);
    free(s->ids);
    free(s->doc_of);
    sb_hnsw_free(s->index);
    free(s);
}

const char *sb_store_errmsg(const sb_store *s) { return s->err.msg; }
const char *sb_store_model(const sb_store *s) { return s->model; }
const char *sb_store_name(const sb_store *s) { return s->dir; }
const char *sb_store_index_path(const sb_store *s) { return s->index_path; }

sb_status sb_store_bind_model(sb_store *s, const char *model_id, int dim, sb_err *err) {
    if (!model_id) return SB_OK;
    if (s->model) {
        if (strcmp(s->model, model_id) || s->dim != dim)
            return sb_err_set(err, SB_ERR_INVALID,
                              "%s: the store was built with the embedding model %s (%d dimensions), not %s (%d); "
                              "use that model or a new store",
                              s->dir, s->model, s->dim, model_id, dim);
        return SB_OK;
    }
    char d[32];
    snprintf(d, sizeof d, "%d", dim);
    sb_status st = s->ops->meta_set(s, "embedding_model", model_id, err);
    if (st == SB_OK) st = s->ops->meta_set(s, "embedding_dim", d, err);
    if (st != SB_OK) return st;
    /* another ingester may have recorded its model first: read what won */
    s->model = s->ops->meta_get(s, "embedding_model");
    char *got = s->ops->meta_get(s, "embedding_dim");
    s->dim = got ? atoi(got) : 0;
    free(got);
    if (!s->model) return sb_err_set(err, SB_ERR_IO, "%s: the embedding model was not recorded", s->dir);
    return sb_store_bind_model(s, model_id, dim, err);
}

/* ---- ingest ---- */

/* Content hash for change detection: 64-bit FNV-1a and the length. */
static void content_hash(const char *data, size_t n, char out[40]) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)data[i]) * 1099511628211ull;
    snprintf(out, 40, "fnv1a64:%016llx:%zu", (unsigned long long)h, n);
}

typedef struct pathlist {
    char **p;
    size_t n, cap;
} pathlist;

static bool pl_push(pathlist *l, char *p) {
    if (!p) return false;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        char **np = sb_realloc_array(l->p, l->cap, sizeof *np);
        if (!np) return false;
        l->p = np;
    }
    l->p[l->n++] = p;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void walk(const char *path, pathlist *files, int depth) {
    if (depth > 64) return;
    if (sb_is_dir(path)) {
        DIR *d = opendir(path);
        if (!d) return;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue; /* hidden files, . and .. */
            char *p = sb_path_join(path, e->d_name);
            if (p) walk(p, files, depth + 1);
            free(p);
        }
        closedir(d);
    } else if (sb_file_exists(path) && sb_doc_supported(path)) {
        char *abs = realpath(path, NULL);
        if (abs && !pl_push(files, abs)) free(abs);
    }
}

/* Returns SB_OK with *unchanged set when the stored hash matches. */
static sb_status ingest_file(sb_store *s, sb_encoder *enc, const char *path, const sb_ingest_opts *o, bool *unchanged,
                             bool *existed, int64_t *n_chunks, sb_err *err) {
    struct stat fst;
    if (stat(path, &fst) != 0) return sb_err_set(err, SB_ERR_IO, "%s: %s", path, strerror(errno));
    sb_doc d;
    sb_status st = sb_doc_load(path, &o->loader, &d, err);
    if (st != SB_OK) return st;
    char hash[40];
    content_hash(d.text, d.len, hash);
    *unchanged = *existed = false;
    char *old = NULL;
    if ((st = s->ops->doc_hash(s, path, &old, err)) != SB_OK) {
        sb_doc_free(&d);
        return st;
    }
    *existed = old != NULL;
    *unchanged = old && !strcmp(old, hash);
    free(old);
    if (*unchanged) {
        sb_doc_free(&d);
        return SB_OK;
    }
    sb_chunk *ch = NULL;
    size_t n = 0;
    float *emb = NULL;
    const char **texts = NULL;
    char **owned = NULL;
    st = sb_chunk_doc(&d, sb_encoder_tokenizer(enc), &o->chunk, &ch, &n, err);
    int dim = sb_encoder_dim(enc);
    if (st == SB_OK && n) {
        emb = malloc(sizeof(float) * n * (size_t)dim);
        texts = calloc(n, sizeof *texts);
        owned = calloc(n, sizeof *owned);
        if (!emb || !texts || !owned) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == SB_OK && i < n; i++) {
            /* the section path helps retrieval: embed it with the chunk */
            owned[i] = ch[i].section ? sb_aprintf("%s\n%.*s", ch[i].section, (int)(ch[i].end - ch[i].start),
                                                  d.text + ch[i].start)
                                     : sb_strndup(d.text + ch[i].start, ch[i].end - ch[i].start);
            if (!(texts[i] = owned[i])) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
        if (st == SB_OK) st = sb_encoder_embed(enc, texts, (int)n, true, emb, err);
    }
    if (st == SB_OK) {
        st = s->ops->put_doc(s, &d, hash, (int64_t)fst.st_mtime, (int64_t)fst.st_size, ch, n, emb, dim, err);
        s->stale = true;
    }
    *n_chunks = st == SB_OK ? (int64_t)n : 0;
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(texts);
    free(emb);
    free(ch);
    sb_doc_free(&d);
    return st;
}

typedef struct missing_ctx {
    const char *root;
    size_t rl;
    const pathlist *seen;
    pathlist gone;
} missing_ctx;

static void find_missing(const char *p, int64_t chunks, void *user) {
    missing_ctx *m = user;
    if (strncmp(p, m->root, m->rl) || (p[m->rl] != '/' && p[m->rl])) return;
    if (bsearch(&p, m->seen->p, m->seen->n, sizeof(char *), cmp_str)) return;
    pl_push(&m->gone, sb_strdup(p));
}

/* Documents under the folder root whose files are gone. */
static int remove_missing(sb_store *s, const char *root, const pathlist *seen) {
    char *abs = realpath(root, NULL);
    if (!abs) return 0;
    missing_ctx m = {abs, strlen(abs), seen, {0}};
    s->ops->each_doc(s, find_missing, &m, NULL);
    int removed = 0;
    for (size_t i = 0; i < m.gone.n; i++) {
        removed += sb_store_remove(s, m.gone.p[i], NULL) == SB_OK;
        free(m.gone.p[i]);
    }
    free(m.gone.p);
    free(abs);
    return removed;
}

sb_status sb_store_ingest(sb_store *s, sb_encoder *enc, const char *const *paths, int n_paths,
                          const sb_ingest_opts *opts, sb_ingest_stats *stats, sb_ingest_cb cb, void *user,
                          sb_err *err) {
    sb_ingest_stats z = {0};
    if (!stats) stats = &z;
    memset(stats, 0, sizeof *stats);
    sb_ingest_opts defaults = {0};
    if (!opts) opts = &defaults;
    pathlist files = {0};
    for (int i = 0; i < n_paths; i++) {
        if (!sb_is_dir(paths[i]) && !sb_file_exists(paths[i])) {
            sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no such file or folder", paths[i]);
            for (size_t k = 0; k < files.n; k++) free(files.p[k]);
            free(files.p);
            return SB_ERR_NOT_FOUND;
        }
        walk(paths[i], &files, 0);
    }
    qsort(files.p, files.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < files.n; i++) {
        bool unchanged = false, existed = false;
        int64_t nc = 0;
        sb_err fe = {0};
        sb_status st = ingest_file(s, enc, files.p[i], opts, &unchanged, &existed, &nc, &fe);
        stats->files_seen++;
        if (st != SB_OK) stats->files_failed++;
        else if (unchanged) stats->files_unchanged++;
        else if (existed) stats->files_updated++;
        else stats->files_added++;
        stats->chunks_added += nc;
        if (cb) cb(files.p[i], st, fe.msg, stats, (int)files.n, user);
        if (st == SB_ERR_IO || st == SB_ERR_NOMEM) { /* the store itself failed: stop */
            sb_err_set(err, st, "%s", fe.msg);
            for (size_t k = 0; k < files.n; k++) free(files.p[k]);
            free(files.p);
            return st;
        }
    }
    for (int i = 0; i < n_paths; i++)
        if (sb_is_dir(paths[i])) stats->files_removed += remove_missing(s, paths[i], &files);
    for (size_t k = 0; k < files.n; k++) free(files.p[k]);
    free(files.p);
    /* the index follows the store: brought up to date and saved now */
    sb_status st = sb_store_load_ids(s, err);
    if (st == SB_OK && s->n_ids >= s->index_min && s->model) st = sb_store_index_sync(s, NULL, err);
    return st;
}

sb_status sb_store_remove(sb_store *s, const char *path, sb_err *err) {
    char *abs = realpath(path, NULL);
    bool found = false;
    sb_status st = s->ops->remove_doc(s, abs ? abs : path, &found, err);
    free(abs);
    s->stale = true;
    if (st != SB_OK) return st;
    if (!found) return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: not in the store", path);
    return SB_OK;
}

/* ---- search ---- */

sb_status sb_store_load_ids(sb_store *s, sb_err *err) { return s->ops->refresh(s, err); }

bool sb_store_push_id(sb_store *s, int64_t id, int64_t doc) {
    if (s->n_ids == s->cap_ids) {
        int64_t cap = s->cap_ids ? s->cap_ids * 2 : 1024;
        int64_t *ids = sb_realloc_array(s->ids, (size_t)cap, sizeof(int64_t));
        if (ids) s->ids = ids;
        int64_t *docs = sb_realloc_array(s->doc_of, (size_t)cap, sizeof(int64_t));
        if (docs) s->doc_of = docs;
        if (!ids || !docs) return false;
        s->cap_ids = cap;
    }
    s->ids[s->n_ids] = id;
    s->doc_of[s->n_ids++] = doc;
    return true;
}

int64_t sb_store_find_id(const sb_store *s, int64_t id) {
    int64_t lo = 0, hi = s->n_ids - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] == id) return mid;
        if (s->ids[mid] < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void put_vector(int64_t id, const void *blob, size_t bytes, void *user) {
    sb_store *s = user;
    int64_t i = sb_store_find_id(s, id);
    if (i < 0 || bytes != sizeof(float) * (size_t)s->dim) return;
    memcpy(s->vecs + (size_t)i * (size_t)s->dim, blob, bytes);
}

/* The exact scan's matrix, in the order of s->ids (a vector of the wrong
 * size reads as zeros: it never matches). */
static sb_status load_vectors(sb_store *s, sb_err *err) {
    sb_status st = sb_store_load_ids(s, err);
    if (st != SB_OK || s->vecs) return st;
    s->vecs = sb_calloc((size_t)(s->n_ids ? s->n_ids : 1) * (size_t)s->dim, sizeof(float));
    if (!s->vecs) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    st = s->ops->vectors(s, NULL, 0, put_vector, s, err);
    if (st != SB_OK) {
        free(s->vecs);
        s->vecs = NULL;
    }
    return st;
}

typedef struct scored {
    int64_t id;
    double score;
} scored;

static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

static bool has_filter(const sb_search_opts *o) { return o->path_glob || o->type || o->since || o->until; }

/* the documents passing the filters, ascending */
typedef struct doc_set {
    int64_t *ids;
    size_t n;
} doc_set;

static sb_status filter_docs(sb_store *s, const sb_search_opts *o, doc_set *ds, sb_err *err) {
    return s->ops->filter_docs(s, o, &ds->ids, &ds->n, err);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool doc_allowed(const doc_set *ds, int64_t doc) {
    return !ds || (ds->n && bsearch(&doc, ds->ids, ds->n, sizeof doc, cmp_i64));
}

typedef struct chunk_filter {
    const sb_store *s;
    const doc_set *ds;
} chunk_filter;

static bool chunk_allowed(int64_t chunk, void *user) {
    const chunk_filter *f = user;
    int64_t i = sb_store_find_id(f->s, chunk);
    return i >= 0 && doc_allowed(f->ds, f->s->doc_of[i]);
}

/* ---- dense, BM25, fusion ---- */

static sb_status dense(sb_store *s, sb_encoder *enc, const char *query, int k, bool exact, const doc_set *ds,
                       scored **out, int *n, sb_err *err) {
    *out = NULL;
    *n = 0;
    sb_status st = sb_store_load_ids(s, err);
    if (st != SB_OK) return st;
    bool use_index = !exact && s->n_ids >= s->index_min;
    if (use_index ? (st = sb_store_index_sync(s, NULL, err)) != SB_OK : (st = load_vectors(s, err)) != SB_OK)
        return st;
    float *qv = malloc(sizeof(float) * (size_t)s->dim);
    scored *all = malloc(sizeof(scored) * (size_t)(use_index ? (k > 0 ? k : 1) : s->n_ids ? s->n_ids : 1));
    int64_t *labels = use_index ? malloc(sizeof(int64_t) * (size_t)(k > 0 ? k : 1)) : NULL;
    float *dist = use_index ? malloc(sizeof(float) * (size_t)(k > 0 ? k : 1)) : NULL;
    const char *texts[1] = {query};
    if (!qv || !all || (use_index && (!labels || !dist))) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    else st = sb_encoder_embed(enc, texts, 1, true, qv, err);
    if (st == SB_OK && use_index) {
        chunk_filter f = {s, ds};
        int ef = k * 2 > 64 ? k * 2 : 64;
        int m = sb_hnsw_search(s->index, qv, k, ef, ds ? chunk_allowed : NULL, &f, labels, dist);
        for (int i = 0; i < m; i++) all[i] = (scored){labels[i], 1.0 - dist[i]};
        *n = m;
    } else if (st == SB_OK) {
        int64_t m = 0;
        for (int64_t i = 0; i < s->n_ids; i++) {
            if (!doc_allowed(ds, s->doc_of[i])) continue;
            const float *v = s->vecs + (size_t)i * (size_t)s->dim;
            double dot = 0;
            for (int j = 0; j < s->dim; j++) dot += (double)v[j] * qv[j];
            all[m++] = (scored){s->ids[i], dot};
        }
        qsort(all, (size_t)m, sizeof *all, cmp_scored);
        *n = m < k ? (int)m : k;
    }
    free(qv);
    free(labels);
    free(dist);
    if (st != SB_OK) {
        free(all);
        *n = 0;
        return st;
    }
    *out = all;
    return SB_OK;
}

static bool word_byte(char c) {
    return (unsigned char)c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char *sb_store_query_words(const char *q, const char *open, const char *close, const char *sep) {
    sb_buf b = {0};
    const char *p = q;
    while (*p) {
        while (*p && !word_byte(*p)) p++;
        const char *w = p;
        while (*p && word_byte(*p)) p++;
        if (p > w) {
            if (b.len) sb_buf_puts(&b, sep);
            sb_buf_printf(&b, "%s%.*s%s", open, (int)(p - w), w, close);
        }
    }
    return b.data;
}

static sb_status bm25(sb_store *s, const char *query, int k, const sb_search_opts *o, scored **out, int *n,
                      sb_err *err) {
    *out = malloc(sizeof(scored) * (size_t)(k > 0 ? k : 1));
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(k > 0 ? k : 1));
    double *sc = malloc(sizeof(double) * (size_t)(k > 0 ? k : 1));
    *n = 0;
    sb_status st = *out && ids && sc ? s->ops->text_search(s, query, k, o, ids, sc, n, err)
                                     : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (int i = 0; st == SB_OK && i < *n; i++) (*out)[i] = (scored){ids[i], sc[i]};
    if (st != SB_OK) *n = 0;
    free(ids);
    free(sc);
    return st;
}

/* min-max normalised score of entry i of a list (descending scores) */
static double norm_score(const double *sc, int n, int i) {
    double hi = sc[0], lo = sc[n - 1];
    return hi > lo ? (sc[i] - lo) / (hi - lo) : 1.0;
}

int sb_fuse(sb_fusion f, const int64_t *a, const double *sa, int na, double wa, const int64_t *b, const double *sb,
            int nb, double wb, int64_t *out, double *score) {
    scored *r = malloc(sizeof(scored) * (size_t)(na + nb + 1));
    if (!r) return -1;
    int nr = 0;
    for (int i = 0; i < na; i++)
        r[nr++] = (scored){a[i], f == SB_FUSION_CONVEX ? wa * norm_score(sa, na, i) : wa / (60 + i + 1)};
    for (int i = 0; i < nb; i++) {
        int j = 0;
        while (j < nr && r[j].id != b[i]) j++;
        if (j == nr) r[nr++] = (scored){b[i], 0};
        r[j].score += f == SB_FUSION_CONVEX ? wb * norm_score(sb, nb, i) : wb / (60 + i + 1);
    }
    qsort(r, (size_t)nr, sizeof *r, cmp_scored);
    for (int i = 0; i < nr; i++) {
        out[i] = r[i].id;
        if (score) score[i] = r[i].score;
    }
    free(r);
    return nr;
}

void sb_hits_free(sb_hit *hits, int n) {
    for (int i = 0; i < n; i++) {
        free(hits[i].path);
        free(hits[i].section);
        free(hits[i].text);
    }
    free(hits);
}

/* does chunk x (of text) repeat or overlap by more than half a kept hit? */
static bool overlaps(const sb_store_span *kept, const sb_hit *hits, int n, sb_store_span x, const char *text) {
    for (int i = 0; i < n; i++) {
        if (!strcmp(hits[i].text, text)) return true;
        if (kept[i].doc != x.doc) continue;
        int64_t lo = kept[i].start > x.start ? kept[i].start : x.start;
        int64_t hi = kept[i].end < x.end ? kept[i].end : x.end;
        int64_t shorter = kept[i].end - kept[i].start < x.end - x.start ? kept[i].end - kept[i].start : x.end - x.start;
        if (hi > lo && 2 * (hi - lo) > shorter) return true;
    }
    return false;
}

sb_status sb_store_get_chunk(sb_store *s, int64_t chunk_id, sb_hit *out, sb_err *err) {
    memset(out, 0, sizeof *out);
    sb_status st = s->ops->read_chunks(s, &chunk_id, 1, out, NULL, err);
    if (st != SB_OK || !out->path) {
        free(out->path);
        free(out->section);
        free(out->text);
        memset(out, 0, sizeof *out);
    }
    if (st != SB_OK) return st;
    if (!out->path) return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no chunk %lld", s->dir, (long long)chunk_id);
    return SB_OK;
}

sb_status sb_store_search(sb_store *s, sb_encoder *enc, const char *query, int k, sb_search_mode mode, sb_hit **hits,
                          int *n_hits, sb_err *err) {
    sb_search_opts o = {.mode = mode, .k = k};
    return sb_store_search_opts(s, enc, query, &o, hits, n_hits, err);
}

sb_status sb_store_search_opts(sb_store *s, sb_encoder *enc, const char *query, const sb_search_opts *o,
                               sb_hit **hits, int *n_hits, sb_err *err) {
    *hits = NULL;
    *n_hits = 0;
    int k = o->k;
    sb_search_mode mode = o->mode;
    if (k <= 0) return SB_OK;
    if (!s->model) return sb_err_set(err, SB_ERR_INVALID, "%s: the store is empty", s->dir);
    if (sb_encoder_dim(enc) != s->dim)
        return sb_err_set(err, SB_ERR_INVALID, "%s: the store's vectors have %d dimensions, the encoder gives %d",
                          s->dir, s->dim, sb_encoder_dim(enc));
    /* each list longer than k: fusion and the overlap filter need spares */
    int pool = k * 4 > 50 ? k * 4 : 50, want = mode == SB_SEARCH_HYBRID ? pool : o->keep_overlaps ? k : 2 * k + 8;
    scored *d = NULL, *b = NULL;
    int64_t *ids = NULL, *da = NULL, *ba = NULL;
    double *sc = NULL, *dsc = NULL, *bsc = NULL;
    int nd = 0, nb = 0, nr = 0;
    doc_set ds = {0};
    bool filtered = has_filter(o);
    sb_status st = filtered ? filter_docs(s, o, &ds, err) : SB_OK;
    if (st == SB_OK && mode != SB_SEARCH_BM25)
        st = dense(s, enc, query, want, o->exact, filtered ? &ds : NULL, &d, &nd, err);
    if (st == SB_OK && mode != SB_SEARCH_DENSE) st = bm25(s, query, want, o, &b, &nb, err);
    if (st != SB_OK) goto out;
    ids = malloc(sizeof(int64_t) * (size_t)(nd + nb + 1));
    sc = malloc(sizeof(double) * (size_t)(nd + nb + 1));
    da = malloc(sizeof(int64_t) * (size_t)(nd + 1));
    ba = malloc(sizeof(int64_t) * (size_t)(nb + 1));
    dsc = malloc(sizeof(double) * (size_t)(nd + 1));
    bsc = malloc(sizeof(double) * (size_t)(nb + 1));
    if (!ids || !sc || !da || !ba || !dsc || !bsc) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nd; i++) da[i] = d[i].id, dsc[i] = d[i].score;
    for (int i = 0; i < nb; i++) ba[i] = b[i].id, bsc[i] = b[i].score;
    if (mode == SB_SEARCH_HYBRID) {
        bool convex = o->fusion == SB_FUSION_CONVEX;
        double w = o->dense_weight > 0 ? o->dense_weight : convex ? 0.4 : 0.3;
        nr = sb_fuse(o->fusion, da, dsc, nd, w, ba, bsc, nb, convex ? 1 - w : 1.0, ids, sc);
        if (nr < 0) {
            st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto out;
        }
    } else {
        const scored *l = mode == SB_SEARCH_DENSE ? d : b;
        nr = mode == SB_SEARCH_DENSE ? nd : nb;
        for (int i = 0; i < nr; i++) ids[i] = l[i].id, sc[i] = l[i].score;
    }
    *hits = calloc((size_t)k, sizeof **hits);
    sb_store_span *kept = malloc(sizeof(sb_store_span) * (size_t)k);
    if (!*hits || !kept) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        free(kept);
        goto out;
    }
    /* the candidates' rows, a window at a time, until k are kept */
    enum { WIN = 32 };
    sb_hit win[WIN];
    sb_store_span sp[WIN];
    for (int at = 0; at < nr && *n_hits < k && st == SB_OK; at += WIN) {
        int m = nr - at < WIN ? nr - at : WIN;
        st = s->ops->read_chunks(s, ids + at, m, win, sp, err);
        for (int i = 0; i < m; i++) {
            sb_hit *w = &win[i];
            if (st == SB_OK && w->path && w->text && *n_hits < k &&
                (o->keep_overlaps || !overlaps(kept, *hits, *n_hits, sp[i], w->text))) {
                kept[*n_hits] = sp[i];
                w->score = sc[at + i];
                (*hits)[(*n_hits)++] = *w;
            } else {
                free(w->path);
                free(w->section);
                free(w->text);
            }
        }
    }
    free(kept);
out:
    free(d);
    free(b);
    free(ids);
    free(sc);
    free(da);
    free(ba);
    free(dsc);
    free(bsc);
    free(ds.ids);
    if (st != SB_OK) {
        sb_hits_free(*hits, *n_hits);
        *hits = NULL;
        *n_hits = 0;
    }
    return st;
}

sb_status sb_store_stats_get(sb_store *s, sb_store_stats *out, sb_err *err) {
    out->dim = s->dim;
    return s->ops->counts(s, &out->documents, &out->chunks, err);
}

sb_status sb_store_list(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                        sb_err *err) {
    return s->ops->each_doc(s, cb, user, err);
}
