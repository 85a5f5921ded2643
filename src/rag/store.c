/*
 * store.c - the SQLite knowledge store of store.h: schema, per-document
 * ingest transactions, and dense / BM25 / hybrid search.
 *
 * Dense search: below SABIO_HNSW_MIN chunks the embeddings are read into
 * one matrix (re-read after a write) and scored by inner product (the
 * encoders' vectors are L2-normalised, so this is cosine); from there the
 * HNSW index of store_index.c answers. Chunk ids only grow (a high-water mark
 * in meta), so an id the index has seen never comes back with other content.
 */
#include "rag/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


/* one transaction: a kill while creating it leaves no half schema */
static const char *SCHEMA =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS documents(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,"
    " hash TEXT NOT NULL, mtime INTEGER, size INTEGER, type TEXT, title TEXT, added INTEGER);"
    "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY,"
    " doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE, seq INTEGER NOT NULL,"
    " text TEXT NOT NULL, section TEXT, page INTEGER, line_start INTEGER, line_end INTEGER,"
    " char_start INTEGER, char_end INTEGER, n_tokens INTEGER, embedding BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='id');"
    "CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN"
    " INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN"
    " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES('delete', old.id, old.text); END;"
    "COMMIT;";

sb_status sb_store_db_err(sb_store *s, sb_err *err, const char *what) {
    return sb_err_set(err, SB_ERR_IO, "%s/store.db: %s: %s", s->dir, what, sqlite3_errmsg(s->db));
}
#define db_err sb_store_db_err

static bool exec(sb_store *s, const char *sql, sb_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sb_err_set(err, SB_ERR_IO, "%s/store.db: %s", s->dir, msg ? msg : "error");
        sqlite3_free(msg);
        return false;
    }
    return true;
}

static char *meta_get(sb_store *s, const char *key) {
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) v = sb_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

static bool meta_set(sb_store *s, const char *key, const char *value) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* the schema's last object exists: the whole schema does (one transaction),
 * and readers need not take the write lock to create it */
static bool schema_present(sb_store *s) {
    sqlite3_stmt *q;
    bool found = false;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE name = 'chunks_ad'", -1, &q, NULL) == SQLITE_OK) {
        found = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
    }
    return found;
}

sb_store *sb_store_open(const char *dir, bool create, sb_err *err) {
    if (create && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        sb_err_set(err, SB_ERR_IO, "%s: cannot create the store folder: %s", dir, strerror(errno));
        return NULL;
    }
    char *path = sb_path_join(dir, "store.db");
    if (!path) return NULL;
    if (!create && !sb_file_exists(path)) {
        sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no store here (run `sabio ingest --store %s ...` first)", dir, dir);
        free(path);
        return NULL;
    }
    sb_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = sb_strdup(dir))) {
        free(s);
        free(path);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->stale = true;
    const char *min = getenv("SABIO_HNSW_MIN");
    s->index_min = min && *min ? atoll(min) : 4096;
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0), NULL);
    free(path);
    if (rc != SQLITE_OK) {
        sb_err_set(err, SB_ERR_IO, "%s/store.db: cannot open: %s", dir, s->db ? sqlite3_errmsg(s->db) : "no memory");
        sb_store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL: readers never block the writer, and a killed writer loses only its
     * open transaction. synchronous=FULL: a committed document survives power loss. */
    if (!exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err) ||
        (!schema_present(s) && !exec(s, SCHEMA, err))) {
        sb_store_close(s);
        return NULL;
    }
    s->model = meta_get(s, "embedding_model");
    char *dim = meta_get(s, "embedding_dim");
    s->dim = dim ? atoi(dim) : 0;
    free(dim);
    return s;
}

void sb_store_close(sb_store *s) {
    if (!s) return;
    sqlite3_close(s->db);
    free(s->dir);
    free(s->model);
    free(s->vecs);
    free(s->ids);
    free(s->doc_of);
    sb_hnsw_free(s->index);
    free(s);
}

const char *sb_store_errmsg(const sb_store *s) { return s->err.msg; }
const char *sb_store_model(const sb_store *s) { return s->model; }

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
    if (!meta_set(s, "embedding_model", model_id) || !meta_set(s, "embedding_dim", d))
        return db_err(s, err, "recording the embedding model");
    s->model = sb_strdup(model_id);
    s->dim = dim;
    return SB_OK;
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

static sb_status store_doc(sb_store *s, const sb_doc *d, const char *hash, const struct stat *fst,
                           const sb_chunk *ch, size_t n, const float *emb, int dim, sb_err *err) {
    if (!exec(s, "BEGIN IMMEDIATE", err)) return SB_ERR_IO;
    sqlite3_stmt *del = NULL, *ins = NULL, *ic = NULL;
    sb_status st = SB_OK;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM documents WHERE path=?", -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO documents(path, hash, mtime, size, type, title, added) "
                           "VALUES(?, ?, ?, ?, ?, ?, strftime('%s','now'))",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO chunks(doc_id, seq, text, section, page, line_start, line_end, char_start,"
                           " char_end, n_tokens, embedding, id) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &ic, NULL) != SQLITE_OK) {
        st = db_err(s, err, "preparing the ingest");
        goto out;
    }
    sqlite3_bind_text(del, 1, d->path, -1, SQLITE_STATIC);
    if (sqlite3_step(del) != SQLITE_DONE) {
        st = db_err(s, err, "removing the old version");
        goto out;
    }
    sqlite3_bind_text(ins, 1, d->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, (sqlite3_int64)fst->st_mtime);
    sqlite3_bind_int64(ins, 4, (sqlite3_int64)fst->st_size);
    sqlite3_bind_text(ins, 5, d->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 6, d->title, -1, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) {
        st = db_err(s, err, "adding the document");
        goto out;
    }
    sqlite3_int64 doc_id = sqlite3_last_insert_rowid(s->db);
    /* chunk ids never come back (the index keys on them): above both the
     * largest present and the high-water mark of all ever given */
    char *hwm = meta_get(s, "chunk_hwm");
    sqlite3_int64 next = hwm ? atoll(hwm) : 0;
    free(hwm);
    sqlite3_stmt *mx;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(id), 0) FROM chunks", -1, &mx, NULL) == SQLITE_OK) {
        if (sqlite3_step(mx) == SQLITE_ROW && sqlite3_column_int64(mx, 0) > next) next = sqlite3_column_int64(mx, 0);
        sqlite3_finalize(mx);
    }
    char hv[32];
    snprintf(hv, sizeof hv, "%lld", (long long)(next + (sqlite3_int64)n));
    if (!meta_set(s, "chunk_hwm", hv)) {
        st = db_err(s, err, "recording the chunk id mark");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(ic);
        sqlite3_bind_int64(ic, 12, next + 1 + (sqlite3_int64)i);
        sqlite3_bind_int64(ic, 1, doc_id);
        sqlite3_bind_int64(ic, 2, (sqlite3_int64)i);
        sqlite3_bind_text(ic, 3, d->text + ch[i].start, (int)(ch[i].end - ch[i].start), SQLITE_STATIC);
        if (ch[i].section) sqlite3_bind_text(ic, 4, ch[i].section, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ic, 4);
        sqlite3_bind_int(ic, 5, ch[i].page);
        sqlite3_bind_int(ic, 6, ch[i].line_start);
        sqlite3_bind_int(ic, 7, ch[i].line_end);
        sqlite3_bind_int64(ic, 8, (sqlite3_int64)ch[i].start);
        sqlite3_bind_int64(ic, 9, (sqlite3_int64)ch[i].end);
        sqlite3_bind_int(ic, 10, ch[i].n_tokens);
        sqlite3_bind_blob(ic, 11, emb + i * (size_t)dim, (int)(sizeof(float) * (size_t)dim), SQLITE_STATIC);
        if (sqlite3_step(ic) != SQLITE_DONE) {
            st = db_err(s, err, "adding a chunk");
            goto out;
        }
    }
out:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    sqlite3_finalize(ic);
    if (st == SB_OK && !exec(s, "COMMIT", err)) st = SB_ERR_IO;
    if (st != SB_OK) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->stale = true;
    return st;
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
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT hash FROM documents WHERE path=?", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW) {
            *existed = true;
            *unchanged = !strcmp((const char *)sqlite3_column_text(q, 0), hash);
        }
        sqlite3_finalize(q);
    }
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
    if (st == SB_OK) st = store_doc(s, &d, hash, &fst, ch, n, emb, dim, err);
    *n_chunks = st == SB_OK ? (int64_t)n : 0;
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(texts);
    free(emb);
    free(ch);
    sb_doc_free(&d);
    return st;
}

/* Documents under the folder root whose files are gone. */
static int remove_missing(sb_store *s, const char *root, const pathlist *seen) {
    char *abs = realpath(root, NULL);
    if (!abs) return 0;
    size_t rl = strlen(abs);
    sqlite3_stmt *q;
    pathlist gone = {0};
    if (sqlite3_prepare_v2(s->db, "SELECT path FROM documents", -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *p = (const char *)sqlite3_column_text(q, 0);
            if (strncmp(p, abs, rl) || (p[rl] != '/' && p[rl])) continue;
            if (bsearch(&p, seen->p, seen->n, sizeof(char *), cmp_str)) continue;
            pl_push(&gone, sb_strdup(p));
        }
        sqlite3_finalize(q);
    }
    int removed = 0;
    for (size_t i = 0; i < gone.n; i++) {
        removed += sb_store_remove(s, gone.p[i], NULL) == SB_OK;
        free(gone.p[i]);
    }
    free(gone.p);
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
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM documents WHERE path=?", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "removing");
    char *abs = realpath(path, NULL);
    sqlite3_bind_text(q, 1, abs ? abs : path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    free(abs);
    if (rc != SQLITE_DONE) return db_err(s, err, "removing");
    s->stale = true;
    if (sqlite3_changes(s->db) == 0) return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: not in the store", path);
    return SB_OK;
}

/* ---- search ---- */

sb_status sb_store_load_ids(sb_store *s, sb_err *err) {
    if (!s->stale) return SB_OK;
    free(s->vecs);
    s->vecs = NULL;
    s->n_ids = 0;
    s->index_stale = true;
    sqlite3_stmt *q;
    int64_t n = 0, cap = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT id, doc_id FROM chunks ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading chunk ids");
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            int64_t *ids = sb_realloc_array(s->ids, (size_t)cap, sizeof(int64_t));
            if (ids) s->ids = ids;
            int64_t *docs = sb_realloc_array(s->doc_of, (size_t)cap, sizeof(int64_t));
            if (docs) s->doc_of = docs;
            if (!ids || !docs) {
                sqlite3_finalize(q);
                return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            }
        }
        s->ids[n] = sqlite3_column_int64(q, 0);
        s->doc_of[n++] = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    s->n_ids = n;
    s->stale = false;
    return SB_OK;
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

/* The exact scan's matrix, in the order of s->ids (a vector of the wrong
 * size reads as zeros: it never matches). */
static sb_status load_vectors(sb_store *s, sb_err *err) {
    sb_status st = sb_store_load_ids(s, err);
    if (st != SB_OK || s->vecs) return st;
    s->vecs = sb_calloc((size_t)(s->n_ids ? s->n_ids : 1) * (size_t)s->dim, sizeof(float));
    if (!s->vecs) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT id, embedding FROM chunks ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading embeddings");
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t i = sb_store_find_id(s, sqlite3_column_int64(q, 0));
        if (i < 0 || sqlite3_column_bytes(q, 1) != (int)(sizeof(float) * (size_t)s->dim)) continue;
        memcpy(s->vecs + (size_t)i * (size_t)s->dim, sqlite3_column_blob(q, 1), sizeof(float) * (size_t)s->dim);
    }
    sqlite3_finalize(q);
    return SB_OK;
}

typedef struct scored {
    int64_t id;
    double score;
} scored;

static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* ---- metadata filters ---- */

#define FILTER_SQL                                                                                           \
    "(?1 IS NULL OR d.path GLOB ?1) AND (?2 IS NULL OR d.type = ?2) AND (?3 IS NULL OR d.mtime >= ?3) AND "  \
    "(?4 IS NULL OR d.mtime <= ?4)"

static bool has_filter(const sb_search_opts *o) { return o->path_glob || o->type || o->since || o->until; }

static void bind_filter(sqlite3_stmt *q, const sb_search_opts *o) {
    if (o->path_glob) sqlite3_bind_text(q, 1, o->path_glob, -1, SQLITE_STATIC);
    if (o->type) sqlite3_bind_text(q, 2, o->type, -1, SQLITE_STATIC);
    if (o->since) sqlite3_bind_int64(q, 3, o->since);
    if (o->until) sqlite3_bind_int64(q, 4, o->until);
}

/* the documents passing the filters, ascending */
typedef struct doc_set {
    int64_t *ids;
    size_t n;
} doc_set;

static sb_status filter_docs(sb_store *s, const sb_search_opts *o, doc_set *ds, sb_err *err) {
    sqlite3_stmt *q;
    size_t cap = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT d.id FROM documents d WHERE " FILTER_SQL " ORDER BY d.id", -1, &q, NULL) !=
        SQLITE_OK)
        return db_err(s, err, "filtering documents");
    bind_filter(q, o);
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (ds->n == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *np = sb_realloc_array(ds->ids, cap, sizeof *np);
            if (!np) {
                sqlite3_finalize(q);
                return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            }
            ds->ids = np;
        }
        ds->ids[ds->n++] = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    return SB_OK;
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

/* FTS5 query from free text: each word quoted, OR'ed (BM25 ranks them). */
static char *fts_query(const char *q) {
    sb_buf b = {0};
    const char *p = q;
    while (*p) {
        while (*p && !((unsigned char)*p >= 0x80 || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                       (*p >= 'A' && *p <= 'Z')))
            p++;
        const char *w = p;
        while ((unsigned char)*p >= 0x80 || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
               (*p >= 'A' && *p <= 'Z'))
            p++;
        if (p > w) {
            if (b.len) sb_buf_puts(&b, " OR ");
            sb_buf_printf(&b, "\"%.*s\"", (int)(p - w), w);
        }
    }
    return b.data;
}

static sb_status bm25(sb_store *s, const char *query, int k, const sb_search_opts *o, scored **out, int *n,
                      sb_err *err) {
    *out = malloc(sizeof(scored) * (size_t)(k > 0 ? k : 1));
    *n = 0;
    if (!*out) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    char *fq = fts_query(query);
    if (!fq) return SB_OK; /* no words: nothing matches */
    sqlite3_stmt *q;
    const char *sql = has_filter(o) ? "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?5 AND "
                                      "rowid IN (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE " FILTER_SQL
                                      ") ORDER BY bm25(chunks_fts) LIMIT ?6"
                                    : "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?5 "
                                      "ORDER BY bm25(chunks_fts) LIMIT ?6";
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        free(fq);
        return db_err(s, err, "full-text search");
    }
    if (has_filter(o)) bind_filter(q, o);
    sqlite3_bind_text(q, 5, fq, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 6, k);
    while (sqlite3_step(q) == SQLITE_ROW && *n < k)
        (*out)[(*n)++] = (scored){sqlite3_column_int64(q, 0), -sqlite3_column_double(q, 1)};
    sqlite3_finalize(q);
    free(fq);
    return SB_OK;
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

/* kept hits' spans, for dropping overlapping chunks */
typedef struct span {
    int64_t doc, start, end;
} span;

static bool overlaps(const span *kept, const sb_hit *hits, int n, span x, const char *text) {
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

static const char HIT_SQL[] = "SELECT d.path, c.section, c.text, c.line_start, c.line_end, c.page FROM chunks c "
                              "JOIN documents d ON d.id = c.doc_id WHERE c.id = ?";

/* Fills h (score 0) from chunk id with the prepared HIT_SQL; false if absent. */
static bool read_hit(sqlite3_stmt *q, int64_t id, sb_hit *h) {
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, id);
    if (sqlite3_step(q) != SQLITE_ROW) return false;
    *h = (sb_hit){.chunk_id = id};
    h->path = sb_strdup((const char *)sqlite3_column_text(q, 0));
    h->section = sqlite3_column_text(q, 1) ? sb_strdup((const char *)sqlite3_column_text(q, 1)) : NULL;
    h->text = sb_strdup((const char *)sqlite3_column_text(q, 2));
    h->line_start = sqlite3_column_int(q, 3);
    h->line_end = sqlite3_column_int(q, 4);
    h->page = sqlite3_column_int(q, 5);
    return true;
}

sb_status sb_store_get_chunk(sb_store *s, int64_t chunk_id, sb_hit *out, sb_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, HIT_SQL, -1, &q, NULL) != SQLITE_OK) return db_err(s, err, "reading a chunk");
    bool found = read_hit(q, chunk_id, out);
    sqlite3_finalize(q);
    if (!found) return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no chunk %lld", s->dir, (long long)chunk_id);
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
    span *kept = malloc(sizeof(span) * (size_t)k);
    sqlite3_stmt *q = NULL;
    if (!*hits || !kept ||
        sqlite3_prepare_v2(s->db,
                           "SELECT d.path, c.section, c.text, c.line_start, c.line_end, c.page, c.doc_id, c.char_start,"
                           " c.char_end FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?",
                           -1, &q, NULL) != SQLITE_OK) {
        st = *hits && kept ? db_err(s, err, "reading hits") : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        free(kept);
        goto out;
    }
    for (int i = 0; i < nr && *n_hits < k; i++) {
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, ids[i]);
        if (sqlite3_step(q) != SQLITE_ROW) continue;
        span x = {sqlite3_column_int64(q, 6), sqlite3_column_int64(q, 7), sqlite3_column_int64(q, 8)};
        const char *text = (const char *)sqlite3_column_text(q, 2);
        if (!o->keep_overlaps && overlaps(kept, *hits, *n_hits, x, text)) continue;
        kept[*n_hits] = x;
        sb_hit *h = &(*hits)[(*n_hits)++];
        h->chunk_id = ids[i];
        h->score = sc[i];
        h->path = sb_strdup((const char *)sqlite3_column_text(q, 0));
        h->section = sqlite3_column_text(q, 1) ? sb_strdup((const char *)sqlite3_column_text(q, 1)) : NULL;
        h->text = sb_strdup(text);
        h->line_start = sqlite3_column_int(q, 3);
        h->line_end = sqlite3_column_int(q, 4);
        h->page = sqlite3_column_int(q, 5);
        if (!h->path || !h->text) {
            st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            break;
        }
    }
    sqlite3_finalize(q);
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
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)", -1, &q,
                           NULL) != SQLITE_OK)
        return db_err(s, err, "stats");
    if (sqlite3_step(q) == SQLITE_ROW) {
        out->documents = sqlite3_column_int64(q, 0);
        out->chunks = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    out->dim = s->dim;
    return SB_OK;
}

sb_status sb_store_list(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                        sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT d.path, (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d "
                           "ORDER BY d.path",
                           -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "listing");
    while (sqlite3_step(q) == SQLITE_ROW) cb((const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1), user);
    sqlite3_finalize(q);
    return SB_OK;
}
