/*
 * test_store.c - the knowledge store end to end on a small folder of real
 * file types: loading (including a binary file that must fail alone),
 * chunk source positions, dense/BM25/hybrid retrieval of the one document
 * that holds a fact, re-ingest of unchanged/changed/deleted files, refusing
 * another embedding model, and the database's integrity afterwards.
 * All of it twice: on a SQLite store folder and on a PostgreSQL database of
 * the server tests/with_pg starts (skipped, saying why, without one). Then
 * what only PostgreSQL has: URLs whose password never reaches a message,
 * connection errors naming the server, a database without the schema.
 */
#include "rag/store_impl.h"
#include "test.h"
#include "test_pg.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENC "models/all-MiniLM-L6-v2"

static char root[64];

static void write_file(const char *name, const char *content, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/docs/%s", root, name);
    FILE *f = fopen(p, "wb");
    fwrite(content, 1, n, f);
    fclose(f);
}

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int top_is(sb_store *s, sb_encoder *e, const char *q, sb_search_mode m, const char *want, sb_hit *out) {
    sb_hit *h;
    int n;
    sb_err err = {0};
    if (sb_store_search(s, e, q, 3, m, &h, &n, &err) != SB_OK) {
        fprintf(stderr, "search: %s\n", err.msg);
        return 0;
    }
    int ok = n > 0 && !strcmp(base(h[0].path), want);
    if (!ok) fprintf(stderr, "  query '%s' mode %d: top hit %s\n", q, m, n ? h[0].path : "(none)");
    if (ok && out) {
        *out = h[0];
        out->path = sb_strdup(h[0].path);
        out->section = h[0].section ? sb_strdup(h[0].section) : NULL;
        out->text = sb_strdup(h[0].text);
    }
    sb_hits_free(h, n);
    return ok;
}

static void on_file(const char *path, sb_status st, const char *msg, const sb_ingest_stats *s, int total, void *u) {
    if (st != SB_OK) *(int *)u += strstr(msg, "binary") && strstr(msg, "e.txt") ? 1 : 0;
}

/* PostgreSQL's counterpart of SQLite's integrity checks: no document without
 * its chunks, every chunk's tsvector that of its text, and the change
 * sequence replaying to exactly the chunks held. */
static void pg_integrity(const char *url) {
#ifdef SB_HAVE_PQ
    PGconn *c = PQconnectdb(url);
    const char *q[][2] = {
        {"SELECT count(*) FROM sabio_documents d WHERE NOT EXISTS (SELECT 1 FROM sabio_chunks c WHERE c.doc_id = d.id)",
         "documents without chunks"},
        {"SELECT count(*) FROM sabio_chunks WHERE tsv IS DISTINCT FROM to_tsvector('english', text)",
         "chunks whose tsvector is not their text's"},
        {"SELECT count(*) FROM (SELECT chunk_id FROM sabio_changes GROUP BY chunk_id HAVING bool_and(added)) a "
         "FULL JOIN sabio_chunks c ON c.id = a.chunk_id WHERE a.chunk_id IS NULL OR c.id IS NULL",
         "chunks where the change sequence disagrees"}};
    for (int i = 0; i < 3; i++) {
        PGresult *r = PQexec(c, q[i][0]);
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "0"), "%s: %s", q[i][1],
              PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
#endif
}

static void sqlite_integrity(const char *store) {
    char dbp[600];
    snprintf(dbp, sizeof dbp, "%s/store.db", store);
    sqlite3 *db;
    sqlite3_stmt *q;
    CHECK(sqlite3_open(dbp, &db) == SQLITE_OK, "open db");
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "ok"), "integrity_check");
    sqlite3_finalize(q);
    sqlite3_prepare_v2(db, "INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check')", -1, &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_DONE, "FTS5 index agrees with the chunks: %s", sqlite3_errmsg(db));
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* The suite on one store: a folder (SQLite) or a postgres:// URL. */
static void run(const char *where) {
    bool pg = sb_store_is_pg(where);
    snprintf(root, sizeof root, "/tmp/sb_store_XXXXXX");
    if (!mkdtemp(root)) return;
    char docs[128], store[512];
    snprintf(docs, sizeof docs, "%s/docs", root);
    if (pg) snprintf(store, sizeof store, "%s", where);
    else snprintf(store, sizeof store, "%s/store", root);
    mkdir(docs, 0755);
    const char *a = "Field notes\n\nThe red kite nests in tall oak trees near the river.\n"
                    "Zebrafish embryos hatch after about three days at 28 degrees Celsius.\n"
                    "Otters were seen twice in March.\n";
    write_file("a.txt", a, strlen(a));
    const char *b = "# Guide\n\nThis guide explains the tool.\n\n## Install\n\n"
                    "Run the installer with administrator rights, then restart the spectrometer.\n\n"
                    "## Usage\n\nPress the green button to start a measurement.\n";
    write_file("b.md", b, strlen(b));
    const char *c = "{\"text\": \"The cafeteria serves lentil soup every Thursday.\"}\n"
                    "{\"text\": \"Parking permits are renewed in January.\"}\n";
    write_file("c.jsonl", c, strlen(c));
    const char *d = "city,population,river\nVienna,1900000,Danube\nPrague,1300000,Vltava\n";
    write_file("d.csv", d, strlen(d));
    const char bin[] = "\x7f" "ELF\x02\x01\x01\x00\x00\x00\x00\xff\xfe\x00garbage";
    write_file("e.txt", bin, sizeof bin);

    sb_err err = {0};
    sb_encoder *enc = sb_encoder_open(ENC, &err);
    sb_store *s = sb_store_open(store, true, &err);
    CHECK(enc && s, "%s", err.msg);
    if (!enc || !s) return;
    CHECK(sb_store_bind_model(s, "all-MiniLM-L6-v2", sb_encoder_dim(enc), &err) == SB_OK, "%s", err.msg);
    const char *paths[1] = {docs};
    sb_ingest_stats st;
    int binary_reported = 0;
    CHECK(sb_store_ingest(s, enc, paths, 1, NULL, &st, on_file, &binary_reported, &err) == SB_OK, "%s", err.msg);
    CHECK(st.files_seen == 5 && st.files_added == 4 && st.files_failed == 1, "first ingest: %d seen %d added %d failed",
          st.files_seen, st.files_added, st.files_failed);
    CHECK(binary_reported == 1, "the binary file's error names it and says binary");

    for (int m = 0; m < 3; m++) {
        CHECK(top_is(s, enc, "When do zebrafish embryos hatch?", (sb_search_mode)m, "a.txt", NULL), "zebrafish, mode %d", m);
        CHECK(top_is(s, enc, "lentil soup cafeteria Thursday", (sb_search_mode)m, "c.jsonl", NULL), "soup, mode %d", m);
        CHECK(top_is(s, enc, "Which river flows through Prague?", (sb_search_mode)m, "d.csv", NULL), "Prague, mode %d", m);
    }
    sb_hit h = {0};
    CHECK(top_is(s, enc, "How do I install it? administrator rights installer", SB_SEARCH_BM25, "b.md", &h), "install");
    CHECK(h.section && !strcmp(h.section, "Guide > Install"), "section path: %s", h.section ? h.section : "(null)");
    /* the section's chunk runs from its heading (line 5) to its text (line 7) */
    CHECK(h.line_start == 5 && h.line_end == 7, "install chunk lines %d-%d (want 5-7)", h.line_start, h.line_end);
    free(h.path);
    free(h.section);
    free(h.text);
    memset(&h, 0, sizeof h);
    CHECK(top_is(s, enc, "zebrafish hatch", SB_SEARCH_BM25, "a.txt", &h), "zebrafish bm25");
    CHECK(h.text && strstr(h.text, "Zebrafish embryos hatch") && h.line_start >= 1 && h.line_end <= 5,
          "a.txt chunk lines %d-%d", h.line_start, h.line_end);
    free(h.path);
    free(h.section);
    free(h.text);

    /* unchanged, changed, deleted */
    CHECK(sb_store_ingest(s, enc, paths, 1, NULL, &st, NULL, NULL, &err) == SB_OK, "%s", err.msg);
    CHECK(st.files_unchanged == 4 && st.files_added == 0 && st.chunks_added == 0, "re-ingest: %d unchanged",
          st.files_unchanged);
    const char *a2 = "Field notes, revised\n\nThe heron colony moved to the northern marsh this spring.\n";
    write_file("a.txt", a2, strlen(a2));
    char cpath[160];
    snprintf(cpath, sizeof cpath, "%s/c.jsonl", docs);
    unlink(cpath);
    CHECK(sb_store_ingest(s, enc, paths, 1, NULL, &st, NULL, NULL, &err) == SB_OK, "%s", err.msg);
    CHECK(st.files_updated == 1 && st.files_removed == 1 && st.files_unchanged == 2,
          "after edits: %d updated %d removed %d unchanged", st.files_updated, st.files_removed, st.files_unchanged);
    CHECK(top_is(s, enc, "heron colony marsh", SB_SEARCH_HYBRID, "a.txt", NULL), "the new content is found");
    sb_hit *hh;
    int n;
    sb_store_search(s, enc, "zebrafish embryos", 5, SB_SEARCH_BM25, &hh, &n, &err);
    bool stale = false;
    for (int i = 0; i < n; i++) stale |= strstr(hh[i].text, "Zebrafish") != NULL;
    CHECK(!stale, "the old version's text is gone");
    sb_hits_free(hh, n);
    sb_store_stats ss;
    sb_store_stats_get(s, &ss, &err);
    CHECK(ss.documents == 3, "%lld documents", (long long)ss.documents);

    /* another embedding model is refused */
    CHECK(sb_store_bind_model(s, "bge-small-en-v1.5", 384, &err) == SB_ERR_INVALID && strstr(err.msg, "all-MiniLM-L6-v2"),
          "model mismatch: %s", err.msg);
    sb_store_close(s);

    /* reopened: same content, database intact */
    s = sb_store_open(store, false, &err);
    CHECK(s && sb_store_stats_get(s, &ss, &err) == SB_OK && ss.documents == 3, "reopen: %s", err.msg);
    sb_store_close(s);
    if (pg) pg_integrity(store);
    else sqlite_integrity(store);
    CHECK(sb_store_open("/nonexistent/store", false, &err) == NULL && strstr(err.msg, "no store"), "missing store: %s",
          err.msg);
    sb_encoder_free(enc);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0, "cleanup");
}

/* the password of each URL is replaced, nothing else, and no read strays */
static void redaction(void) {
    const char *cases[][2] = {
        {"postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"},
        {"postgresql://u@h/db", "postgresql://u@h/db"},
        {"postgres://h/db?password=pw&sslmode=disable", "postgres://h/db?password=***&sslmode=disable"},
        {"postgres://u:a@b@h/db", "postgres://u:***@h/db"},
        {"postgres://u:@h/db", "postgres://u:***@h/db"},
        {"postgres://:p@", "postgres://:***@"},
        {"postgres://", "postgres://"},
        {"postgres://u:p", "postgres://u:p"},
        {"postgres://h?password=", "postgres://h?password=***"},
        {"postgres://h/d?x=1&password=p#f", "postgres://h/d?x=1&password=***#f"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *r = sb_pg_redact(cases[i][0]);
        CHECK(r && !strcmp(r, cases[i][1]), "redact %s: %s (want %s)", cases[i][0], r ? r : "(null)", cases[i][1]);
        free(r);
    }
    CHECK(sb_store_is_pg("postgresql://x") && sb_store_is_pg("postgres://") && !sb_store_is_pg("postgres:/x") &&
              !sb_store_is_pg("store/postgres://"),
          "which locations are PostgreSQL");
}

/* what only a server store has: connection errors and a database without the schema */
static void pg_errors(const char *url) {
    sb_err err = {0};
    const char *at = strrchr(url, '@'), *colon = strchr(url + 11, ':');
    char bad[600];
    /* the wrong password: named as an authentication failure, the password nowhere */
    snprintf(bad, sizeof bad, "postgres://sabio:wrong-Pa55word%.*s", (int)(strlen(at)), at);
    CHECK(sb_store_open(bad, false, &err) == NULL && strstr(err.msg, "password authentication failed") &&
              !strstr(err.msg, "wrong-Pa55word") && strstr(err.msg, "***"),
          "wrong password: %s", err.msg);
    /* nothing listening: the host and port named, the real password nowhere */
    char pw[128];
    snprintf(pw, sizeof pw, "%.*s", (int)(at - colon - 1), colon + 1);
    snprintf(bad, sizeof bad, "%.*s@127.0.0.1:1/x", (int)(at - url), url);
    CHECK(sb_store_open(bad, false, &err) == NULL && strstr(err.msg, "127.0.0.1") && strstr(err.msg, "port 1") &&
              !strstr(err.msg, pw),
          "refused connection: %s", err.msg);
    snprintf(bad, sizeof bad, "postgres://sabio:%%zz%s@127.0.0.1:1/x", pw);
    CHECK(sb_store_open(bad, false, &err) == NULL && !strstr(err.msg, pw), "malformed URL: %s", err.msg);
    /* a database without the schema is not a store, unless asked to create one */
    const char *why = NULL, *empty = test_pg_db("sb_empty", &why);
    CHECK(empty && sb_store_open(empty, false, &err) == NULL && strstr(err.msg, "no store here") && !strstr(err.msg, pw),
          "empty database: %s", err.msg);
}

/* Two handles on one PostgreSQL store, as two nodes: what one ingests the
 * other finds on its next search, told by NOTIFY (the search comes within
 * the second in which a handle does not otherwise look at the change table). */
static void two_handles(const char *url) {
    sb_err err = {0};
    sb_encoder *enc = sb_encoder_open(ENC, &err);
    sb_store *a = sb_store_open(url, false, &err), *b = sb_store_open(url, false, &err);
    CHECK(enc && a && b, "two handles: %s", err.msg);
    if (!enc || !a || !b) return;
    sb_hit *h;
    int n;
    double t0 = sb_time_sec();
    CHECK(sb_store_search(b, enc, "osprey", 1, SB_SEARCH_BM25, &h, &n, &err) == SB_OK, "%s", err.msg);
    sb_hits_free(h, n);
    char dir[64], file[96];
    snprintf(dir, sizeof dir, "/tmp/sb_store_two.%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/osprey.txt", dir);
    FILE *f = fopen(file, "w");
    fputs("An osprey pair returned to the platform above the fish ladder in April.\n", f);
    fclose(f);
    const char *paths[1] = {dir};
    CHECK(sb_store_ingest(a, enc, paths, 1, NULL, NULL, NULL, NULL, &err) == SB_OK, "%s", err.msg);
    n = 0;
    CHECK(sb_store_search(b, enc, "osprey", 1, SB_SEARCH_DENSE, &h, &n, &err) == SB_OK, "%s", err.msg);
    double dt = sb_time_sec() - t0;
    bool found = n == 1 && strstr(h[0].path, "osprey.txt");
    sb_hits_free(h, n);
    if (dt < 0.9) CHECK(found, "the other handle finds the new document at once (%.2f s after its last look)", dt);
    else SKIP("the ingest took %.2f s: the once-a-second look, not NOTIFY, may have found it", dt);
    sb_store_close(a);
    sb_store_close(b);
    sb_encoder_free(enc);
    unlink(file);
    rmdir(dir);
}

int main(void) {
    redaction();
    if (!sb_is_dir(ENC)) {
        SKIP("%s absent (scripts/setup fetches it)", ENC);
        return TEST_END();
    }
    run(NULL);
    const char *why = NULL, *url = test_pg_db("sb_store", &why);
    if (!url) {
        TEST_PG_MISSING(why);
        return TEST_END();
    }
    char cache[64];
    snprintf(cache, sizeof cache, "/tmp/sb_store_cache.%d", (int)getpid());
    setenv("SABIO_CACHE", cache, 1);
    char u[512];
    snprintf(u, sizeof u, "%s", url);
    run(u);
    two_handles(u);
    pg_errors(u);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    CHECK(system(cmd) == 0, "cleanup");
    return TEST_END();
}
