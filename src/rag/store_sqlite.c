/*
 * store_sqlite.c - the store's SQLite backend: one database (WAL) per store
 * folder, DIR/store.db, with FTS5 (BM25) over the chunks, and the HNSW index
 * beside it in DIR/index.hnsw. Chunk ids only grow (a high-water mark in
 * meta), so an id the index has seen never comes back with other content.
 */
#include "rag/store_impl.h"

#include <errno.h>
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

#define DB(s) ((sqlite3 *)(s)->be)

static sb_status db_err(sb_store *s, sb_err *err, const char *what) {
    return sb_err_set(err, SB_ERR_IO, "%s/store.db: %s: %s", s->dir, what, sqlite3_errmsg(DB(s)));
}

static bool exec(sb_store *s, const char *sql, sb_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(DB(s), sql, NULL, NULL, &msg) != SQLITE_OK) {
        sb_err_set(err, SB_ERR_IO, "%s/store.db: %s", s->dir, msg ? msg : "error");
        sqlite3_free(msg);
        return false;
    }
    return true;
}

static char *meta_get(sb_store *s, const char *key) {
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(DB(s), "SELECT value FROM meta WHERE key=?", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) v = sb_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

static bool meta_put(sb_store *s, const char *key, const char *value) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(DB(s), "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* set if absent: of two processes recording a value at once, the first wins */
static sb_status meta_set(sb_store *s, const char *key, const char *value, sb_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(DB(s), "INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        return db_err(s, err, "writing meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok ? SB_OK : db_err(s, err, "writing meta");
}

/* the schema's last object exists: the whole schema does (one transaction),
 * and readers need not take the write lock to create it */
static bool schema_present(sb_store *s) {
    sqlite3_stmt *q;
    bool found = false;
    if (sqlite3_prepare_v2(DB(s), "SELECT 1 FROM sqlite_master WHERE name = 'chunks_ad'", -1, &q, NULL) == SQLITE_OK) {
        found = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
    }
    return found;
}

static void close_db(sb_store *s) { sqlite3_close(DB(s)); }

static sb_status doc_hash(sb_store *s, const char *path, char **hash, sb_err *err) {
    *hash = NULL;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s), "SELECT hash FROM documents WHERE path=?", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading a document");
    sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) *hash = sb_strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return SB_OK;
}

static sb_status put_doc(sb_store *s, const sb_doc *d, const char *hash, int64_t mtime, int64_t size,
                         const sb_chunk *ch, size_t n, const float *emb, int dim, sb_err *err) {
    if (!exec(s, "BEGIN IMMEDIATE", err)) return SB_ERR_IO;
    sqlite3_stmt *del = NULL, *ins = NULL, *ic = NULL;
    sb_status st = SB_OK;
    if (sqlite3_prepare_v2(DB(s), "DELETE FROM documents WHERE path=?", -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(DB(s),
                           "INSERT INTO documents(path, hash, mtime, size, type, title, added) "
                           "VALUES(?, ?, ?, ?, ?, ?, strftime('%s','now'))",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(DB(s),
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
    sqlite3_bind_int64(ins, 3, mtime);
    sqlite3_bind_int64(ins, 4, size);
    sqlite3_bind_text(ins, 5, d->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 6, d->title, -1, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) {
        st = db_err(s, err, "adding the document");
        goto out;
    }
    sqlite3_int64 doc_id = sqlite3_last_insert_rowid(DB(s));
    /* chunk ids never come back (the index keys on them): above both the
     * largest present and the high-water mark of all ever given */
    char *hwm = meta_get(s, "chunk_hwm");
    sqlite3_int64 next = hwm ? atoll(hwm) : 0;
    free(hwm);
    sqlite3_stmt *mx;
    if (sqlite3_prepare_v2(DB(s), "SELECT coalesce(max(id), 0) FROM chunks", -1, &mx, NULL) == SQLITE_OK) {
        if (sqlite3_step(mx) == SQLITE_ROW && sqlite3_column_int64(mx, 0) > next) next = sqlite3_column_int64(mx, 0);
        sqlite3_finalize(mx);
    }
    char hv[32];
    snprintf(hv, sizeof hv, "%lld", (long long)(next + (sqlite3_int64)n));
    if (!meta_put(s, "chunk_hwm", hv)) {
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
    if (st != SB_OK) sqlite3_exec(DB(s), "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static sb_status remove_doc(sb_store *s, const char *path, bool *found, sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s), "DELETE FROM documents WHERE path=?", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "removing");
    sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_err(s, err, "removing");
    *found = sqlite3_changes(DB(s)) > 0;
    return SB_OK;
}

static sb_status each_doc(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                          sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s),
                           "SELECT d.path, (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d "
                           "ORDER BY d.path",
                           -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "listing");
    while (sqlite3_step(q) == SQLITE_ROW) cb((const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1), user);
    sqlite3_finalize(q);
    return SB_OK;
}

static sb_status refresh(sb_store *s, sb_err *err) {
    if (!s->stale) return SB_OK;
    free(s->vecs);
    s->vecs = NULL;
    s->n_ids = 0;
    s->index_stale = true;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s), "SELECT id, doc_id FROM chunks ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading chunk ids");
    while (sqlite3_step(q) == SQLITE_ROW)
        if (!sb_store_push_id(s, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1))) {
            sqlite3_finalize(q);
            return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
    sqlite3_finalize(q);
    s->stale = false;
    return SB_OK;
}

static sb_status vectors(sb_store *s, const int64_t *ids, size_t n, sb_store_vec_cb cb, void *user, sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s),
                           ids ? "SELECT id, embedding FROM chunks WHERE id = ?"
                               : "SELECT id, embedding FROM chunks ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading embeddings");
    for (size_t i = 0; ids ? i < n : true; i++) {
        if (ids) {
            sqlite3_reset(q);
            sqlite3_bind_int64(q, 1, ids[i]);
        }
        if (sqlite3_step(q) != SQLITE_ROW) {
            if (ids) continue;
            break;
        }
        cb(sqlite3_column_int64(q, 0), sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), user);
    }
    sqlite3_finalize(q);
    return SB_OK;
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

static sb_status filter_docs(sb_store *s, const sb_search_opts *o, int64_t **ids, size_t *n, sb_err *err) {
    sqlite3_stmt *q;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(DB(s), "SELECT d.id FROM documents d WHERE " FILTER_SQL " ORDER BY d.id", -1, &q, NULL) !=
        SQLITE_OK)
        return db_err(s, err, "filtering documents");
    bind_filter(q, o);
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *np = sb_realloc_array(*ids, cap, sizeof *np);
            if (!np) {
                sqlite3_finalize(q);
                return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            }
            *ids = np;
        }
        (*ids)[(*n)++] = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    return SB_OK;
}

/* FTS5 BM25: each word quoted, OR'ed */
static sb_status text_search(sb_store *s, const char *query, int k, const sb_search_opts *o, int64_t *ids,
                             double *score, int *n, sb_err *err) {
    *n = 0;
    char *fq = sb_store_query_words(query, "\"", "\"", " OR ");
    if (!fq) return SB_OK; /* no words: nothing matches */
    sqlite3_stmt *q;
    const char *sql = has_filter(o) ? "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?5 AND "
                                      "rowid IN (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE " FILTER_SQL
                                      ") ORDER BY bm25(chunks_fts) LIMIT ?6"
                                    : "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?5 "
                                      "ORDER BY bm25(chunks_fts) LIMIT ?6";
    if (sqlite3_prepare_v2(DB(s), sql, -1, &q, NULL) != SQLITE_OK) {
        free(fq);
        return db_err(s, err, "full-text search");
    }
    if (has_filter(o)) bind_filter(q, o);
    sqlite3_bind_text(q, 5, fq, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 6, k);
    while (sqlite3_step(q) == SQLITE_ROW && *n < k) {
        ids[*n] = sqlite3_column_int64(q, 0);
        score[(*n)++] = -sqlite3_column_double(q, 1);
    }
    sqlite3_finalize(q);
    free(fq);
    return SB_OK;
}

static char *col_dup(sqlite3_stmt *q, int i) {
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? sb_strdup((const char *)t) : NULL;
}

static sb_status read_chunks(sb_store *s, const int64_t *ids, int n, sb_hit *hits, sb_store_span *spans,
                             sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s),
                           "SELECT d.path, c.section, c.text, c.line_start, c.line_end, c.page, c.doc_id, c.char_start,"
                           " c.char_end FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return db_err(s, err, "reading chunks");
    sb_status st = SB_OK;
    for (int i = 0; i < n; i++) hits[i] = (sb_hit){.chunk_id = ids[i]};
    for (int i = 0; i < n && st == SB_OK; i++) {
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, ids[i]);
        if (sqlite3_step(q) != SQLITE_ROW) continue;
        hits[i].path = col_dup(q, 0);
        hits[i].section = col_dup(q, 1);
        hits[i].text = col_dup(q, 2);
        hits[i].line_start = sqlite3_column_int(q, 3);
        hits[i].line_end = sqlite3_column_int(q, 4);
        hits[i].page = sqlite3_column_int(q, 5);
        if (spans) spans[i] = (sb_store_span){sqlite3_column_int64(q, 6), sqlite3_column_int64(q, 7), sqlite3_column_int64(q, 8)};
        if (!hits[i].path || !hits[i].text) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    sqlite3_finalize(q);
    return st;
}

static sb_status counts(sb_store *s, int64_t *docs, int64_t *chunks, sb_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(DB(s), "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)", -1, &q,
                           NULL) != SQLITE_OK)
        return db_err(s, err, "stats");
    if (sqlite3_step(q) == SQLITE_ROW) {
        *docs = sqlite3_column_int64(q, 0);
        *chunks = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    return SB_OK;
}

static const sb_store_ops sqlite_ops = {close_db,   meta_get, meta_set,    doc_hash,    put_doc,
                                        remove_doc, each_doc, refresh,     vectors,     filter_docs,
                                        text_search, read_chunks, counts};

sb_status sb_store_sqlite_open(sb_store *s, const char *dir, bool create, sb_err *err) {
    if (create && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sb_err_set(err, SB_ERR_IO, "%s: cannot create the store folder: %s", dir, strerror(errno));
    char *path = sb_path_join(dir, "store.db");
    if (!path || !(s->index_path = sb_path_join(dir, "index.hnsw"))) {
        free(path);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    if (!create && !sb_file_exists(path)) {
        free(path);
        return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no store here (run `sabio ingest --store %s ...` first)", dir,
                          dir);
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0), NULL);
    free(path);
    s->ops = &sqlite_ops;
    s->be = db;
    if (rc != SQLITE_OK)
        return sb_err_set(err, SB_ERR_IO, "%s/store.db: cannot open: %s", dir, db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_busy_timeout(db, 10000);
    /* WAL: readers never block the writer, and a killed writer loses only its
     * open transaction. synchronous=FULL: a committed document survives power loss. */
    if (!exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err) ||
        (!schema_present(s) && !exec(s, SCHEMA, err)))
        return SB_ERR_IO;
    return SB_OK;
}
