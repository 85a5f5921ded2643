/*
 * store.c - the SQLite knowledge store of store.h: schema, per-document
 * ingest transactions, and dense / BM25 / hybrid search.
 *
 * Dense search is exact for now: the embeddings are read into one matrix
 * (rebuilt after an ingest) and scored by inner product (the encoders'
 * vectors are L2-normalised, so this is cosine). An HNSW index derived from
 * the store replaces the scan for large stores.
 */
#include "rag/store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sb_store {
    sqlite3 *db;
    char *dir;
    char *model;
    int dim;
    /* dense matrix cache */
    float *vecs;
    int64_t *ids;
    int64_t n_vecs;
    bool stale;
    sb_err err;
};

static const char *SCHEMA =
    "PRAGMA foreign_keys=ON;"
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
    " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES('delete', old.id, old.text); END;";

static sb_status db_err(sb_store *s, sb_err *err, const char *what) {
    return sb_err_set(err, SB_ERR_IO, "%s/store.db: %s: %s", s->dir, what, sqlite3_errmsg(s->db));
}

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
    if (!exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err) || !exec(s, SCHEMA, err)) {
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
                           " char_end, n_tokens, embedding) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(ic);
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
    return SB_OK;
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

static sb_status load_vectors(sb_store *s, sb_err *err) {
    if (!s->stale) return SB_OK;
    free(s->vecs);
    free(s->ids);
    s->vecs = NULL;
    s->ids = NULL;
    s->n_vecs = 0;
    sqlite3_stmt *q;
    int64_t n = 0, cap = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT id, embedding FROM chunks", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading embeddings");
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (sqlite3_column_bytes(q, 1) != (int)(sizeof(float) * (size_t)s->dim)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            float *v = sb_realloc_array(s->vecs, (size_t)cap * (size_t)s->dim, sizeof(float));
            int64_t *ids = sb_realloc_array(s->ids, (size_t)cap, sizeof(int64_t));
            if (v) s->vecs = v;
            if (ids) s->ids = ids;
            if (!v || !ids) {
                sqlite3_finalize(q);
                return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            }
        }
        s->ids[n] = sqlite3_column_int64(q, 0);
        memcpy(s->vecs + (size_t)n * (size_t)s->dim, sqlite3_column_blob(q, 1), sizeof(float) * (size_t)s->dim);
        n++;
    }
    sqlite3_finalize(q);
    s->n_vecs = n;
    s->stale = false;
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

static sb_status dense(sb_store *s, sb_encoder *enc, const char *query, int k, scored **out, int *n, sb_err *err) {
    sb_status st = load_vectors(s, err);
    if (st != SB_OK) return st;
    float *qv = malloc(sizeof(float) * (size_t)s->dim);
    scored *all = malloc(sizeof(scored) * (size_t)(s->n_vecs ? s->n_vecs : 1));
    if (!qv || !all) {
        free(qv);
        free(all);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    const char *texts[1] = {query};
    if ((st = sb_encoder_embed(enc, texts, 1, true, qv, err)) != SB_OK) {
        free(qv);
        free(all);
        return st;
    }
    for (int64_t i = 0; i < s->n_vecs; i++) {
        const float *v = s->vecs + (size_t)i * (size_t)s->dim;
        double dot = 0;
        for (int j = 0; j < s->dim; j++) dot += (double)v[j] * qv[j];
        all[i] = (scored){s->ids[i], dot};
    }
    qsort(all, (size_t)s->n_vecs, sizeof *all, cmp_scored);
    *n = s->n_vecs < k ? (int)s->n_vecs : k;
    *out = all;
    free(qv);
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

static sb_status bm25(sb_store *s, const char *query, int k, scored **out, int *n, sb_err *err) {
    *out = malloc(sizeof(scored) * (size_t)(k > 0 ? k : 1));
    *n = 0;
    if (!*out) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    char *fq = fts_query(query);
    if (!fq) return SB_OK; /* no words: nothing matches */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                           "ORDER BY bm25(chunks_fts) LIMIT ?",
                           -1, &q, NULL) != SQLITE_OK) {
        free(fq);
        return db_err(s, err, "full-text search");
    }
    sqlite3_bind_text(q, 1, fq, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, k);
    while (sqlite3_step(q) == SQLITE_ROW && *n < k)
        (*out)[(*n)++] = (scored){sqlite3_column_int64(q, 0), -sqlite3_column_double(q, 1)};
    sqlite3_finalize(q);
    free(fq);
    return SB_OK;
}

void sb_hits_free(sb_hit *hits, int n) {
    for (int i = 0; i < n; i++) {
        free(hits[i].path);
        free(hits[i].section);
        free(hits[i].text);
    }
    free(hits);
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
    *hits = NULL;
    *n_hits = 0;
    if (k <= 0) return SB_OK;
    if (!s->model) return sb_err_set(err, SB_ERR_INVALID, "%s: the store is empty", s->dir);
    if (sb_encoder_dim(enc) != s->dim)
        return sb_err_set(err, SB_ERR_INVALID, "%s: the store's vectors have %d dimensions, the encoder gives %d",
                          s->dir, s->dim, sb_encoder_dim(enc));
    int pool = k * 4 > 50 ? k * 4 : 50;
    scored *d = NULL, *b = NULL, *res = NULL;
    int nd = 0, nb = 0, nr = 0;
    sb_status st = SB_OK;
    if (mode != SB_SEARCH_BM25 && (st = dense(s, enc, query, mode == SB_SEARCH_DENSE ? k : pool, &d, &nd, err)) != SB_OK)
        goto out;
    if (mode != SB_SEARCH_DENSE && (st = bm25(s, query, mode == SB_SEARCH_BM25 ? k : pool, &b, &nb, err)) != SB_OK)
        goto out;
    if (mode == SB_SEARCH_DENSE) res = d, nr = nd, d = NULL;
    else if (mode == SB_SEARCH_BM25) res = b, nr = nb, b = NULL;
    else {
        /* reciprocal-rank fusion (Cormack et al. 2009): score = sum 1 / (60 + rank) */
        res = malloc(sizeof(scored) * (size_t)(nd + nb + 1));
        if (!res) {
            st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < nd; i++) res[nr++] = (scored){d[i].id, 1.0 / (60 + i + 1)};
        for (int i = 0; i < nb; i++) {
            int j = 0;
            while (j < nr && res[j].id != b[i].id) j++;
            if (j == nr) res[nr++] = (scored){b[i].id, 0};
            res[j].score += 1.0 / (60 + i + 1);
        }
        qsort(res, (size_t)nr, sizeof *res, cmp_scored);
    }
    if (nr > k) nr = k;
    *hits = calloc((size_t)(nr ? nr : 1), sizeof **hits);
    sqlite3_stmt *q = NULL;
    if (!*hits || sqlite3_prepare_v2(s->db, HIT_SQL, -1, &q, NULL) != SQLITE_OK) {
        st = *hits ? db_err(s, err, "reading hits") : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nr; i++) {
        sb_hit *h = &(*hits)[*n_hits];
        if (!read_hit(q, res[i].id, h)) continue;
        h->score = res[i].score;
        (*n_hits)++;
    }
    sqlite3_finalize(q);
out:
    free(d);
    free(b);
    free(res);
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
