/*
 * store_pg.c - the store's PostgreSQL backend (libpq; optional at build
 * time): one database shared by any number of ingesters and read nodes.
 *
 * Tables (created idempotently, in one transaction under an advisory lock,
 * so that several processes may create them at once):
 *   sabio_meta(key, value)         the embedding model and its dimension
 *   sabio_documents(id, path, ...) one row per document
 *   sabio_chunks(id bigserial, doc_id, text, spans, embedding bytea, tsv)
 *                                  tsv = to_tsvector('english', text), GIN
 *                                  indexed: ts_rank_cd is the full-text list
 *   sabio_changes(seq bigserial, chunk_id, doc_id, added)
 *                                  the change sequence, written by a trigger
 *                                  on every chunk insert and delete
 * Each write of a document is one transaction that first takes an advisory
 * lock (so writers commit in the order of their change numbers: a reader that
 * has applied the changes up to seq N never misses one below N) and ends with
 * NOTIFY sabio_changes. Embedding is done before the transaction, so several
 * ingesters embed in parallel and only their short commits take turns.
 *
 * Each node (every sb_store handle) LISTENs; before a read it looks for a
 * notification without a round trip (and at least once a second asks the
 * table anyway, for connections that lose notifications), then applies the
 * changes since its last one to its chunk list, which its own HNSW index
 * (store_index.c, cached on local disk, see sb_store_index_path) follows.
 */
#include "rag/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool sb_store_is_pg(const char *loc) {
    return loc && (!strncmp(loc, "postgres://", 11) || !strncmp(loc, "postgresql://", 13));
}

/* The spans of url holding a password: the user:PASSWORD@ of the authority
 * and the value of each password= query parameter. Returns how many (at most
 * max), each as offset and length. Only reads within the string. */
static int password_spans(const char *url, size_t *off, size_t *len, int max) {
    int n = 0;
    const char *p = strstr(url, "://");
    if (!p) return 0;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth; i++)
        if (p[i] == '@') at = p + i; /* the last '@' ends the user info */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon && n < max) off[n] = (size_t)(colon + 1 - url), len[n++] = (size_t)(at - colon - 1);
    }
    const char *q = strchr(p + auth, '?');
    while (q && *q) {
        q++;
        size_t klen = strcspn(q, "=&#");
        if (klen == 8 && !strncmp(q, "password", 8) && q[8] == '=' && n < max) {
            off[n] = (size_t)(q + 9 - url);
            len[n++] = strcspn(q + 9, "&#");
        }
        q = strchr(q, '&');
    }
    return n;
}

char *sb_pg_redact(const char *url) {
    size_t off[8], len[8];
    int n = password_spans(url, off, len, 8);
    sb_buf b = {0};
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        sb_buf_append(&b, url + at, off[i] - at);
        sb_buf_puts(&b, "***");
        at = off[i] + len[i];
    }
    sb_buf_puts(&b, url + at);
    return b.data ? b.data : sb_strdup("");
}

#ifndef SB_HAVE_PQ

sb_status sb_store_pg_open(sb_store *s, const char *url, bool create, sb_err *err) {
    return sb_err_set(err, SB_ERR_UNSUPPORTED,
                      "%s: this sabio was built without PostgreSQL support (libpq); install libpq-dev "
                      "(scripts/setup) and rebuild",
                      s->dir);
}

#else

#include <endian.h>
#include <libpq-fe.h>

typedef struct pg_be {
    PGconn *c;
    char *secret[2]; /* the URL's passwords as written, scrubbed from libpq's messages */
    int64_t seq;     /* the change sequence applied to s->ids */
    bool loaded;     /* s->ids holds a full read */
    bool in_tx;      /* inside BEGIN ... COMMIT: a lost connection is not re-made (the rest would autocommit) */
    double last_poll;
} pg_be;

#define BE(s) ((pg_be *)(s)->be)

/* advisory lock keys: 0x5ab10001 schema creation, 0x5ab10002 document writes */
static const char *SCHEMA =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(1521549313);"
    "CREATE TABLE IF NOT EXISTS sabio_meta(key text PRIMARY KEY, value text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sabio_documents(id bigserial PRIMARY KEY, path text UNIQUE NOT NULL,"
    " hash text NOT NULL, mtime bigint, size bigint, type text, title text, added bigint);"
    "CREATE TABLE IF NOT EXISTS sabio_chunks(id bigserial PRIMARY KEY,"
    " doc_id bigint NOT NULL REFERENCES sabio_documents(id) ON DELETE CASCADE, seq int NOT NULL,"
    " text text NOT NULL, section text, page int, line_start int, line_end int, char_start bigint,"
    " char_end bigint, n_tokens int, embedding bytea NOT NULL,"
    " tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);"
    "CREATE INDEX IF NOT EXISTS sabio_chunks_doc ON sabio_chunks(doc_id);"
    "CREATE INDEX IF NOT EXISTS sabio_chunks_tsv ON sabio_chunks USING gin(tsv);"
    "CREATE TABLE IF NOT EXISTS sabio_changes(seq bigserial PRIMARY KEY, chunk_id bigint NOT NULL,"
    " doc_id bigint NOT NULL, added boolean NOT NULL);"
    "CREATE OR REPLACE FUNCTION sabio_log_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP = 'INSERT' THEN INSERT INTO sabio_changes(chunk_id, doc_id, added) VALUES (NEW.id, NEW.doc_id, true);"
    " ELSE INSERT INTO sabio_changes(chunk_id, doc_id, added) VALUES (OLD.id, OLD.doc_id, false); END IF;"
    " RETURN NULL; END $$;"
    "CREATE OR REPLACE TRIGGER sabio_chunks_change AFTER INSERT OR DELETE ON sabio_chunks"
    " FOR EACH ROW EXECUTE FUNCTION sabio_log_change();"
    "INSERT INTO sabio_meta(key, value) VALUES ('schema', '1') ON CONFLICT DO NOTHING;"
    "COMMIT;";

/* libpq's message on one line, without the URL's passwords */
static void clean_msg(const pg_be *b, const char *msg, char *out, size_t n) {
    size_t j = 0;
    for (size_t i = 0; msg && msg[i] && j + 4 < n;) {
        bool hit = false;
        for (int k = 0; k < 2 && !hit; k++) {
            size_t l = b && b->secret[k] ? strlen(b->secret[k]) : 0;
            if (l && !strncmp(msg + i, b->secret[k], l)) {
                memcpy(out + j, "***", 3), j += 3, i += l, hit = true;
            }
        }
        if (hit) continue;
        char c = msg[i++];
        if (c == '\n' || c == '\t') {
            if (j && out[j - 1] != ' ') out[j++] = ' ';
        } else {
            out[j++] = c;
        }
    }
    while (j && out[j - 1] == ' ') j--;
    out[j] = 0;
}

static sb_status pg_err(sb_store *s, sb_err *err, const char *what, const PGresult *r) {
    char m[600];
    clean_msg(BE(s), r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(BE(s)->c), m, sizeof m);
    return sb_err_set(err, SB_ERR_IO, "%s: %s: %s", s->dir, what, m);
}

/* The connection, re-established if it was lost (a server restart) outside
 * a transaction. */
static bool alive(sb_store *s) {
    pg_be *b = BE(s);
    if (PQstatus(b->c) == CONNECTION_OK) return true;
    if (b->in_tx) return false;
    PQreset(b->c);
    if (PQstatus(b->c) != CONNECTION_OK) return false;
    PQclear(PQexec(b->c, "LISTEN sabio_changes"));
    return true;
}

/* Runs sql with text parameters (NULL: SQL NULL); the result if it
 * succeeded, else NULL with err set. */
static PGresult *run(sb_store *s, const char *what, const char *sql, int n, const char *const *v, sb_err *err) {
    if (!alive(s)) {
        pg_err(s, err, what, NULL);
        return NULL;
    }
    PGresult *r = PQexecParams(BE(s)->c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) return r;
    pg_err(s, err, what, r);
    PQclear(r);
    return NULL;
}

static bool run_ok(sb_store *s, const char *what, const char *sql, sb_err *err) {
    PGresult *r = run(s, what, sql, 0, NULL, err);
    PQclear(r);
    return r != NULL;
}

static bool begin(sb_store *s, const char *what, const char *sql, sb_err *err) {
    return (BE(s)->in_tx = run_ok(s, what, sql, err));
}

/* COMMIT (commit true) or ROLLBACK */
static bool end(sb_store *s, bool commit, sb_err *err) {
    bool ok = commit ? run_ok(s, "committing", "COMMIT", err) : (PQclear(PQexec(BE(s)->c, "ROLLBACK")), true);
    BE(s)->in_tx = false;
    return ok;
}

static void close_pg(sb_store *s) {
    pg_be *b = BE(s);
    if (!b) return;
    PQfinish(b->c);
    free(b->secret[0]);
    free(b->secret[1]);
    free(b);
}

static char *meta_get(sb_store *s, const char *key) {
    const char *v[1] = {key};
    PGresult *r = run(s, "reading meta", "SELECT value FROM sabio_meta WHERE key = $1", 1, v, NULL);
    char *out = r && PQntuples(r) ? sb_strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return out;
}

/* set if absent: of two processes recording a value at once, the first wins */
static sb_status meta_set(sb_store *s, const char *key, const char *value, sb_err *err) {
    const char *v[2] = {key, value};
    PGresult *r = run(s, "writing meta", "INSERT INTO sabio_meta(key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                      2, v, err);
    PQclear(r);
    return r ? SB_OK : SB_ERR_IO;
}

static sb_status doc_hash(sb_store *s, const char *path, char **hash, sb_err *err) {
    *hash = NULL;
    const char *v[1] = {path};
    PGresult *r = run(s, "reading a document", "SELECT hash FROM sabio_documents WHERE path = $1", 1, v, err);
    if (!r) return SB_ERR_IO;
    if (PQntuples(r)) *hash = sb_strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return SB_OK;
}

static const char *LOCK_WRITE_SQL = "SELECT pg_advisory_xact_lock(1521549314)";

static sb_status put_doc(sb_store *s, const sb_doc *d, const char *hash, int64_t mtime, int64_t size,
                         const sb_chunk *ch, size_t n, const float *emb, int dim, sb_err *err) {
    if (!begin(s, "starting the ingest", "BEGIN", err)) return SB_ERR_IO;
    sb_status st = SB_ERR_IO;
    PGresult *r = NULL;
    char mt[24], sz[24];
    snprintf(mt, sizeof mt, "%lld", (long long)mtime);
    snprintf(sz, sizeof sz, "%lld", (long long)size);
    const char *del[1] = {d->path}, *ins[6] = {d->path, hash, mt, sz, d->type, d->title};
    if (!run_ok(s, "waiting for the write lock", LOCK_WRITE_SQL, err) ||
        !(r = run(s, "removing the old version", "DELETE FROM sabio_documents WHERE path = $1", 1, del, err)))
        goto out;
    PQclear(r);
    if (!(r = run(s, "adding the document",
                  "INSERT INTO sabio_documents(path, hash, mtime, size, type, title, added) VALUES ($1, $2, $3, $4, "
                  "$5, $6, extract(epoch FROM now())::bigint) RETURNING id",
                  6, ins, err)))
        goto out;
    char doc_id[24];
    snprintf(doc_id, sizeof doc_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    for (size_t i = 0; i < n; i++) {
        char sq[24], pg[16], l0[16], l1[16], c0[24], c1[24], nt[16];
        snprintf(sq, sizeof sq, "%zu", i);
        snprintf(pg, sizeof pg, "%d", ch[i].page);
        snprintf(l0, sizeof l0, "%d", ch[i].line_start);
        snprintf(l1, sizeof l1, "%d", ch[i].line_end);
        snprintf(c0, sizeof c0, "%zu", ch[i].start);
        snprintf(c1, sizeof c1, "%zu", ch[i].end);
        snprintf(nt, sizeof nt, "%d", ch[i].n_tokens);
        /* the text and the embedding go as binary parameters (text's binary
         * form is its bytes: no terminator needed) */
        const char *v[11] = {doc_id, sq, d->text + ch[i].start, ch[i].section, pg, l0, l1, c0, c1, nt,
                             (const char *)(emb + i * (size_t)dim)};
        int len[11] = {0, 0, (int)(ch[i].end - ch[i].start), 0, 0, 0, 0, 0, 0, 0, (int)(sizeof(float) * (size_t)dim)};
        int fmt[11] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
        r = PQexecParams(BE(s)->c,
                         "INSERT INTO sabio_chunks(doc_id, seq, text, section, page, line_start, line_end, char_start,"
                         " char_end, n_tokens, embedding) VALUES ($1, $2, $3::text, $4, $5, $6, $7, $8, $9, $10, "
                         "$11::bytea)",
                         11, NULL, v, len, fmt, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_err(s, err, "adding a chunk", r);
            goto out;
        }
        PQclear(r);
        r = NULL;
    }
    if (run_ok(s, "notifying the nodes", "NOTIFY sabio_changes", err) && end(s, true, err)) st = SB_OK;
out:
    PQclear(r);
    if (st != SB_OK) end(s, false, NULL);
    return st;
}

static sb_status remove_doc(sb_store *s, const char *path, bool *found, sb_err *err) {
    if (!begin(s, "starting the removal", "BEGIN", err)) return SB_ERR_IO;
    const char *v[1] = {path};
    PGresult *r = NULL;
    bool ok = run_ok(s, "waiting for the write lock", LOCK_WRITE_SQL, err) &&
              (r = run(s, "removing", "DELETE FROM sabio_documents WHERE path = $1", 1, v, err)) &&
              run_ok(s, "notifying the nodes", "NOTIFY sabio_changes", err) && end(s, true, err);
    *found = ok && atoll(PQcmdTuples(r)) > 0;
    PQclear(r);
    if (!ok) end(s, false, NULL);
    return ok ? SB_OK : SB_ERR_IO;
}

static sb_status each_doc(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                          sb_err *err) {
    PGresult *r = run(s, "listing",
                      "SELECT d.path, (SELECT count(*) FROM sabio_chunks c WHERE c.doc_id = d.id) FROM "
                      "sabio_documents d ORDER BY d.path COLLATE \"C\"",
                      0, NULL, err);
    if (!r) return SB_ERR_IO;
    for (int i = 0; i < PQntuples(r); i++) cb(PQgetvalue(r, i, 0), atoll(PQgetvalue(r, i, 1)), user);
    PQclear(r);
    return SB_OK;
}

static int64_t val_i64(const PGresult *r, int row, int col) { return strtoll(PQgetvalue(r, row, col), NULL, 10); }

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void changed(sb_store *s) {
    free(s->vecs);
    s->vecs = NULL;
    s->index_stale = true;
}

/* All chunk ids and the change number they are current to, in one snapshot. */
static sb_status full_load(sb_store *s, sb_err *err) {
    pg_be *b = BE(s);
    PGresult *r = NULL, *q = NULL;
    sb_status st = SB_ERR_IO;
    if (!begin(s, "reading chunk ids", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err)) return st;
    if ((r = run(s, "reading the change sequence", "SELECT coalesce(max(seq), 0) FROM sabio_changes", 0, NULL, err)) &&
        (q = run(s, "reading chunk ids", "SELECT id, doc_id FROM sabio_chunks ORDER BY id", 0, NULL, err))) {
        s->n_ids = 0;
        st = SB_OK;
        for (int i = 0; i < PQntuples(q) && st == SB_OK; i++)
            if (!sb_store_push_id(s, val_i64(q, i, 0), val_i64(q, i, 1)))
                st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        b->seq = val_i64(r, 0, 0);
        b->loaded = st == SB_OK;
    }
    PQclear(r);
    PQclear(q);
    end(s, false, NULL); /* read only: nothing to commit */
    changed(s);
    return st;
}

static sb_status refresh(sb_store *s, sb_err *err) {
    pg_be *b = BE(s);
    bool notified = false;
    if (PQconsumeInput(b->c)) {
        PGnotify *n;
        while ((n = PQnotifies(b->c))) {
            notified = true;
            PQfreemem(n);
        }
    }
    double now = sb_time_sec();
    if (b->loaded && !s->stale && !notified && now - b->last_poll < 1.0) return SB_OK;
    b->last_poll = now;
    s->stale = false;
    if (!b->loaded) return full_load(s, err);
    char after[24];
    snprintf(after, sizeof after, "%lld", (long long)b->seq);
    const char *v[1] = {after};
    PGresult *r = run(s, "reading the change sequence",
                      "SELECT seq, chunk_id, doc_id, added FROM sabio_changes WHERE seq > $1 ORDER BY seq", 1, v, err);
    if (!r) return SB_ERR_IO;
    int n = PQntuples(r);
    if (!n) {
        PQclear(r);
        return SB_OK;
    }
    /* ids never come back, so the result is (held + added) - removed in any order */
    int64_t *gone = malloc(sizeof(int64_t) * (size_t)n);
    int ng = 0;
    sb_status st = gone ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && st == SB_OK; i++)
        if (PQgetvalue(r, i, 3)[0] != 't') gone[ng++] = val_i64(r, i, 1);
    qsort(gone, (size_t)ng, sizeof *gone, cmp_i64);
    int64_t m = 0;
    for (int64_t i = 0; i < s->n_ids && st == SB_OK; i++)
        if (!bsearch(&s->ids[i], gone, (size_t)ng, sizeof *gone, cmp_i64))
            s->ids[m] = s->ids[i], s->doc_of[m++] = s->doc_of[i];
    s->n_ids = m;
    bool sorted = true;
    for (int i = 0; i < n && st == SB_OK; i++) {
        int64_t id = val_i64(r, i, 1);
        if (PQgetvalue(r, i, 3)[0] != 't' || bsearch(&id, gone, (size_t)ng, sizeof *gone, cmp_i64)) continue;
        sorted &= !s->n_ids || id > s->ids[s->n_ids - 1];
        if (!sb_store_push_id(s, id, val_i64(r, i, 2))) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    if (st == SB_OK) b->seq = val_i64(r, n - 1, 0);
    free(gone);
    PQclear(r);
    changed(s);
    if (st != SB_OK || !sorted) { /* not expected (writers commit in id order): read all again */
        b->loaded = false;
        if (st == SB_OK) st = full_load(s, err);
    }
    return st;
}

/* "{1,2,3}" */
static char *id_array(const int64_t *ids, size_t n) {
    sb_buf a = {0};
    sb_buf_puts(&a, "{");
    for (size_t i = 0; i < n; i++) sb_buf_printf(&a, i ? ",%lld" : "%lld", (long long)ids[i]);
    sb_buf_puts(&a, "}");
    return a.data;
}

static void rows_to_cb(const PGresult *r, sb_store_vec_cb cb, void *user) {
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetlength(r, i, 0) != 8) continue;
        uint64_t be;
        memcpy(&be, PQgetvalue(r, i, 0), 8);
        cb((int64_t)be64toh(be), PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), user);
    }
}

static sb_status vectors(sb_store *s, const int64_t *ids, size_t n, sb_store_vec_cb cb, void *user, sb_err *err) {
    pg_be *b = BE(s);
    if (!alive(s)) return pg_err(s, err, "reading embeddings", NULL);
    if (ids) { /* a batch of ids: one query, binary rows */
        char *arr = id_array(ids, n);
        if (!arr) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        const char *v[1] = {arr};
        PGresult *r = PQexecParams(b->c, "SELECT id, embedding FROM sabio_chunks WHERE id = ANY($1::bigint[])", 1,
                                   NULL, v, NULL, NULL, 1);
        free(arr);
        sb_status st = PQresultStatus(r) == PGRES_TUPLES_OK ? SB_OK : pg_err(s, err, "reading embeddings", r);
        if (st == SB_OK) rows_to_cb(r, cb, user);
        PQclear(r);
        return st;
    }
    /* all of them: streamed row by row, never the whole table in memory */
    if (!PQsendQueryParams(b->c, "SELECT id, embedding FROM sabio_chunks ORDER BY id", 0, NULL, NULL, NULL, NULL, 1))
        return pg_err(s, err, "reading embeddings", NULL);
    PQsetSingleRowMode(b->c);
    sb_status st = SB_OK;
    PGresult *r;
    while ((r = PQgetResult(b->c))) {
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_SINGLE_TUPLE) rows_to_cb(r, cb, user);
        else if (t != PGRES_TUPLES_OK && st == SB_OK) st = pg_err(s, err, "reading embeddings", r);
        PQclear(r);
    }
    return st;
}

/* A path glob (SQLite GLOB: * ? [...], [^...] or [!...]) as an anchored
 * POSIX regular expression; NULL for a malformed one. */
static char *glob_regex(const char *g) {
    sb_buf b = {0};
    sb_buf_puts(&b, "^");
    for (const char *p = g; *p; p++) {
        if (*p == '*') sb_buf_puts(&b, ".*");
        else if (*p == '?') sb_buf_puts(&b, ".");
        else if (*p == '[') {
            const char *e = p + 1;
            if (*e == '^' || *e == '!') e++;
            if (*e == ']') e++; /* a leading ] is a member */
            while (*e && *e != ']') e++;
            if (!*e) { /* no closing ]: a literal [ */
                sb_buf_puts(&b, "\\[");
                continue;
            }
            sb_buf_puts(&b, "[");
            const char *q = p + 1;
            if (*q == '^' || *q == '!') sb_buf_puts(&b, "^"), q++;
            for (; q < e; q++) {
                if (*q == '\\') sb_buf_puts(&b, "\\\\");
                else sb_buf_append(&b, q, 1);
            }
            sb_buf_puts(&b, "]");
            p = e;
        } else {
            if (strchr(".^$+(){}|\\", *p)) sb_buf_puts(&b, "\\");
            sb_buf_append(&b, p, 1);
        }
    }
    sb_buf_puts(&b, "$");
    return b.data;
}

#define FILTER_SQL                                                                                              \
    "($1::text IS NULL OR d.path ~ $1) AND ($2::text IS NULL OR d.type = $2) AND "                            \
    "($3::bigint IS NULL OR d.mtime >= $3) AND ($4::bigint IS NULL OR d.mtime <= $4)"

typedef struct filter_vals {
    char *re;
    char since[24], until[24];
    const char *v[6];
} filter_vals;

static void filter_fill(filter_vals *f, const sb_search_opts *o) {
    memset(f, 0, sizeof *f);
    f->re = o->path_glob ? glob_regex(o->path_glob) : NULL;
    snprintf(f->since, sizeof f->since, "%lld", (long long)o->since);
    snprintf(f->until, sizeof f->until, "%lld", (long long)o->until);
    f->v[0] = f->re;
    f->v[1] = o->type;
    f->v[2] = o->since ? f->since : NULL;
    f->v[3] = o->until ? f->until : NULL;
}

static sb_status filter_docs(sb_store *s, const sb_search_opts *o, int64_t **ids, size_t *n, sb_err *err) {
    *ids = NULL;
    *n = 0;
    filter_vals f;
    filter_fill(&f, o);
    PGresult *r = run(s, "filtering documents", "SELECT d.id FROM sabio_documents d WHERE " FILTER_SQL " ORDER BY d.id",
                      4, f.v, err);
    free(f.re);
    if (!r) return SB_ERR_IO;
    int m = PQntuples(r);
    *ids = malloc(sizeof(int64_t) * (size_t)(m ? m : 1));
    if (!*ids) {
        PQclear(r);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < m; i++) (*ids)[i] = val_i64(r, i, 0);
    *n = (size_t)m;
    PQclear(r);
    return SB_OK;
}

/* tsquery of the words, OR'ed, ranked by ts_rank_cd (cover density,
 * normalised by the log of the chunk's length) */
static sb_status text_search(sb_store *s, const char *query, int k, const sb_search_opts *o, int64_t *ids,
                             double *score, int *n, sb_err *err) {
    *n = 0;
    char *tq = sb_store_query_words(query, "'", "'", " | ");
    if (!tq) return SB_OK;
    filter_vals f;
    filter_fill(&f, o);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", k);
    f.v[4] = tq;
    f.v[5] = lim;
    const char *nf[2] = {tq, lim};
    bool filt = o->path_glob || o->type || o->since || o->until;
    PGresult *r = filt ? run(s, "full-text search",
                             "SELECT c.id, ts_rank_cd(c.tsv, q, 1) AS r FROM sabio_chunks c JOIN sabio_documents d ON "
                             "d.id = c.doc_id, to_tsquery('english', $5) q WHERE c.tsv @@ q AND " FILTER_SQL
                             " ORDER BY r DESC, c.id LIMIT $6::int",
                             6, f.v, err)
                       : run(s, "full-text search",
                             "SELECT c.id, ts_rank_cd(c.tsv, q, 1) AS r FROM sabio_chunks c, to_tsquery('english', $1) q"
                             " WHERE c.tsv @@ q ORDER BY r DESC, c.id LIMIT $2::int",
                             2, nf, err);
    free(f.re);
    free(tq);
    if (!r) return SB_ERR_IO;
    for (int i = 0; i < PQntuples(r) && *n < k; i++) {
        ids[*n] = val_i64(r, i, 0);
        score[(*n)++] = strtod(PQgetvalue(r, i, 1), NULL);
    }
    PQclear(r);
    return SB_OK;
}

static char *val_dup(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : sb_strdup(PQgetvalue(r, row, col));
}

static sb_status read_chunks(sb_store *s, const int64_t *ids, int n, sb_hit *hits, sb_store_span *spans,
                             sb_err *err) {
    for (int i = 0; i < n; i++) hits[i] = (sb_hit){.chunk_id = ids[i]};
    char *arr = id_array(ids, (size_t)n);
    if (!arr) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    const char *v[1] = {arr};
    PGresult *r = run(s, "reading chunks",
                      "SELECT c.id, d.path, c.section, c.text, c.line_start, c.line_end, c.page, c.doc_id, "
                      "c.char_start, c.char_end FROM sabio_chunks c JOIN sabio_documents d ON d.id = c.doc_id "
                      "WHERE c.id = ANY($1::bigint[])",
                      1, v, err);
    free(arr);
    if (!r) return SB_ERR_IO;
    sb_status st = SB_OK;
    for (int row = 0; row < PQntuples(r) && st == SB_OK; row++) {
        int64_t id = val_i64(r, row, 0);
        for (int i = 0; i < n; i++) {
            if (ids[i] != id || hits[i].path) continue;
            sb_hit *h = &hits[i];
            h->path = val_dup(r, row, 1);
            h->section = val_dup(r, row, 2);
            h->text = val_dup(r, row, 3);
            h->line_start = atoi(PQgetvalue(r, row, 4));
            h->line_end = atoi(PQgetvalue(r, row, 5));
            h->page = atoi(PQgetvalue(r, row, 6));
            if (spans) spans[i] = (sb_store_span){val_i64(r, row, 7), val_i64(r, row, 8), val_i64(r, row, 9)};
            if (!h->path || !h->text) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        }
    }
    PQclear(r);
    return st;
}

static sb_status counts(sb_store *s, int64_t *docs, int64_t *chunks, sb_err *err) {
    PGresult *r = run(s, "stats", "SELECT (SELECT count(*) FROM sabio_documents), (SELECT count(*) FROM sabio_chunks)",
                      0, NULL, err);
    if (!r) return SB_ERR_IO;
    *docs = val_i64(r, 0, 0);
    *chunks = val_i64(r, 0, 1);
    PQclear(r);
    return SB_OK;
}

static const sb_store_ops pg_ops = {close_pg,   meta_get, meta_set, doc_hash, put_doc,     remove_doc, each_doc,
                                    refresh,    vectors,  filter_docs, text_search, read_chunks, counts};

static void quiet(void *arg, const char *message) { sb_log(SB_LOG_DEBUG, "postgres: %s", message); }

/* mkdir -p */
static bool make_dirs(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        bool ok = mkdir(path, 0755) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok) return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

/* the node's index file: CACHE/pg-HASH/index.hnsw, HASH of the URL without
 * its password (the server, port, database, user and options) */
static char *index_file(const char *redacted) {
    const char *c = getenv("SABIO_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char *base = c && *c ? sb_strdup(c) : x && *x ? sb_aprintf("%s/sabio", x) : h && *h ? sb_aprintf("%s/.cache/sabio", h) : NULL;
    if (!base) return NULL;
    uint64_t fnv = 1469598103934665603ull;
    for (const char *p = redacted; *p; p++) fnv = (fnv ^ (uint8_t)*p) * 1099511628211ull;
    char *dir = sb_aprintf("%s/pg-%016llx", base, (unsigned long long)fnv);
    free(base);
    char *file = dir && make_dirs(dir) ? sb_path_join(dir, "index.hnsw") : NULL;
    if (dir && !file) sb_log(SB_LOG_WARN, "%s: cannot create the index cache folder; the index stays in memory", dir);
    free(dir);
    return file;
}

sb_status sb_store_pg_open(sb_store *s, const char *url, bool create, sb_err *err) {
    pg_be *b = calloc(1, sizeof *b);
    if (!b) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    s->be = b;
    s->ops = &pg_ops;
    size_t off[2], len[2];
    int np = password_spans(url, off, len, 2);
    for (int i = 0; i < np; i++) b->secret[i] = len[i] ? sb_strndup(url + off[i], len[i]) : NULL;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        char m[600];
        clean_msg(b, perr ? perr : "out of memory", m, sizeof m);
        PQfreemem(perr);
        return sb_err_set(err, SB_ERR_INVALID, "%s: not a valid PostgreSQL URL: %s", s->dir, m);
    }
    PQconninfoFree(opts);
    b->c = PQconnectdb(url);
    if (!b->c) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (PQstatus(b->c) != CONNECTION_OK) {
        char m[600];
        clean_msg(b, PQerrorMessage(b->c), m, sizeof m);
        return sb_err_set(err, SB_ERR_IO, "%s: cannot connect: %s", s->dir, m);
    }
    PQsetNoticeProcessor(b->c, quiet, NULL);
    PGresult *r = run(s, "reading the schema", "SELECT 1 FROM pg_trigger WHERE tgname = 'sabio_chunks_change'", 0, NULL,
                      err);
    if (!r) return SB_ERR_IO;
    bool present = PQntuples(r) > 0;
    PQclear(r);
    if (!present && !create)
        return sb_err_set(err, SB_ERR_NOT_FOUND, "%s: no store here (run `sabio ingest --store URL ...` first)",
                          s->dir);
    if (!present) { /* several statements: the simple query protocol */
        r = PQexec(b->c, SCHEMA);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) pg_err(s, err, "creating the schema", r);
        PQclear(r);
        if (!ok) {
            PQclear(PQexec(b->c, "ROLLBACK"));
            return SB_ERR_IO;
        }
    }
    if (!run_ok(s, "listening for changes", "LISTEN sabio_changes", err)) return SB_ERR_IO;
    s->index_path = index_file(s->dir);
    return SB_OK;
}

#endif
