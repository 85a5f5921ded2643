/*
 * test_index.c - the store's HNSW index and retrieval extras end to end:
 * the index is built by an ingest, agrees with the store (same ids, same
 * vectors), answers dense queries as the exact scan does, follows later
 * ingests and removals, and a corrupt, truncated or foreign index file is
 * rebuilt from the store. Metadata filters (path glob, type, date) and the
 * dropping of repeated chunks. Twice: on a SQLite store folder, and on a
 * PostgreSQL database of tests/with_pg's server (whose index is this node's
 * own, in a cache folder).
 */
#include "rag/hnsw.h"
#include "rag/store.h"
#include "test.h"
#include "test_pg.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENC "models/all-MiniLM-L6-v2"

static char root[64], docs[96], store[512], index_path[600];

static void write_file(const char *name, const char *content) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", docs, name);
    FILE *f = fopen(p, "w");
    fputs(content, f);
    fclose(f);
}

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static const char *facts[][2] = {
    {"a.txt", "Zebrafish embryos hatch about three days after fertilisation at 28 degrees."},
    {"b.md", "# Install\n\nRun the installer with administrator rights, then reboot the machine."},
    {"c.txt", "The Vltava river flows through Prague and joins the Elbe at Melnik."},
    {"d.txt", "Lentil soup is served in the cafeteria every Thursday at noon."},
    {"e.md", "# Tides\n\nSpring tides happen near new and full moon, when sun and moon align."},
    {"f.txt", "A heron colony nests in the reed marsh north of the old mill every spring."},
};

/* top hit of a query; mode dense; exact or through the index */
static int top_ids(sb_store *s, sb_encoder *e, const char *q, bool exact, int64_t *ids, char *first, size_t fl) {
    sb_search_opts o = {.mode = SB_SEARCH_DENSE, .k = 3, .exact = exact};
    sb_hit *h;
    int n = 0;
    sb_err err = {0};
    if (sb_store_search_opts(s, e, q, &o, &h, &n, &err) != SB_OK) {
        fprintf(stderr, "search: %s\n", err.msg);
        return 0;
    }
    for (int i = 0; i < n; i++) ids[i] = h[i].chunk_id;
    if (first) snprintf(first, fl, "%s", n ? base(h[0].path) : "");
    sb_hits_free(h, n);
    return n;
}

static bool agrees(sb_store *s, sb_index_report *r) {
    sb_err err = {0};
    bool ok = sb_store_index_check(s, r, &err) == SB_OK;
    if (!ok) fprintf(stderr, "  index check: %s\n", err.msg);
    return ok;
}

static sb_store *reopen(sb_store *s) {
    sb_store_close(s);
    return sb_store_open(store, false, NULL);
}

/* The suite on one store: a folder (SQLite, where is NULL) or a postgres:// URL. */
static void run(const char *where) {
    snprintf(root, sizeof root, "/tmp/test_index.%d", (int)getpid());
    snprintf(docs, sizeof docs, "%s/docs", root);
    if (where) snprintf(store, sizeof store, "%s", where);
    else snprintf(store, sizeof store, "%s/store", root);
    mkdir(root, 0755);
    mkdir(docs, 0755);
    for (size_t i = 0; i < sizeof facts / sizeof *facts; i++) write_file(facts[i][0], facts[i][1]);
    sb_err err = {0};
    sb_encoder *enc = sb_encoder_open(ENC, &err);
    sb_store *s = sb_store_open(store, true, &err);
    if (!enc || !s) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    snprintf(index_path, sizeof index_path, "%s", sb_store_index_path(s) ? sb_store_index_path(s) : "");
    sb_store_bind_model(s, "all-MiniLM-L6-v2", sb_encoder_dim(enc), &err);
    const char *paths[1] = {docs};
    sb_ingest_opts io = {.chunk = {64, 8}};
    CHECK(sb_store_ingest(s, enc, paths, 1, &io, NULL, NULL, NULL, &err) == SB_OK, "ingest: %s", err.msg);
    CHECK(sb_file_exists(index_path), "the ingest wrote %s", index_path);
    sb_index_report r;
    CHECK(agrees(s, &r) && r.vectors == 6 && !r.rebuilt && r.added == 0, "index of the ingest agrees (%lld vectors)",
          (long long)r.vectors);

    const char *queries[][2] = {{"When do zebrafish embryos hatch?", "a.txt"},
                                {"Which river flows through Prague?", "c.txt"},
                                {"What is for lunch on Thursday?", "d.txt"},
                                {"When are spring tides?", "e.md"}};
    for (int i = 0; i < 4; i++) {
        int64_t a[3], b[3];
        char first[64];
        int na = top_ids(s, enc, queries[i][0], false, a, first, sizeof first);
        int nb = top_ids(s, enc, queries[i][0], true, b, NULL, 0);
        CHECK(na == 3 && na == nb && !memcmp(a, b, sizeof a) && !strcmp(first, queries[i][1]),
              "'%s': index and exact scan give the same top 3, first %s", queries[i][0], first);
    }

    /* a later ingest: the index follows (and is saved) */
    write_file("g.txt", "Basalt columns form when thick lava flows cool slowly and crack into hexagons.");
    CHECK(sb_store_ingest(s, enc, paths, 1, &io, NULL, NULL, NULL, &err) == SB_OK, "second ingest: %s", err.msg);
    s = reopen(s);
    CHECK(s && agrees(s, &r) && r.vectors == 7 && r.added == 0 && !r.rebuilt,
          "after the second ingest the saved index holds all 7 (%lld, %lld added on open)", (long long)r.vectors,
          (long long)r.added);
    int64_t ids[3];
    char first[64];
    top_ids(s, enc, "How do hexagonal basalt columns form?", false, ids, first, sizeof first);
    CHECK(!strcmp(first, "g.txt"), "the new document is found through the index (%s)", first);

    /* removal outside an ingest: tombstoned when the index next syncs */
    char gone[256];
    snprintf(gone, sizeof gone, "%s/a.txt", docs);
    CHECK(sb_store_remove(s, gone, &err) == SB_OK, "remove: %s", err.msg);
    top_ids(s, enc, "When do zebrafish embryos hatch?", false, ids, first, sizeof first);
    CHECK(strcmp(first, "a.txt") != 0, "a removed document is not returned (%s)", first);
    s = reopen(s);
    CHECK(s && agrees(s, &r) && r.vectors == 6, "after removal: %lld vectors, %lld removed on open",
          (long long)r.vectors, (long long)r.removed);

    /* corrupt, truncated and foreign files are rebuilt */
    sb_store_close(s);
    char *data;
    size_t len;
    sb_read_file(index_path, 0, &data, &len, &err);
    data[len / 2] ^= 0x40;
    sb_write_file_atomic(index_path, data, len, &err);
    s = sb_store_open(store, false, &err);
    CHECK(s && agrees(s, &r) && r.rebuilt && r.vectors == 6, "a corrupt index file is rebuilt");
    sb_store_close(s);
    sb_write_file_atomic(index_path, data, len / 3, &err);
    s = sb_store_open(store, false, &err);
    CHECK(s && agrees(s, &r) && r.rebuilt, "a truncated index file is rebuilt");
    sb_store_close(s);
    free(data);
    {
        sb_hnsw *h = sb_hnsw_new(sb_encoder_dim(enc), NULL, &err);
        sb_hnsw_meta meta = {.last_id = 1 << 30};
        snprintf(meta.model, sizeof meta.model, "some-other-model");
        sb_hnsw_save(h, index_path, &meta, &err);
        sb_hnsw_free(h);
    }
    s = sb_store_open(store, false, &err);
    CHECK(s && agrees(s, &r) && r.rebuilt && r.vectors == 6, "an index of another model is rebuilt");

    /* metadata filters */
    sb_search_opts o = {.mode = SB_SEARCH_HYBRID, .k = 10, .type = "md"};
    sb_hit *h;
    int n;
    bool ok = sb_store_search_opts(s, enc, "spring", &o, &h, &n, &err) == SB_OK && n == 2;
    for (int i = 0; ok && i < n; i++) ok = strstr(h[i].path, ".md") != NULL;
    CHECK(ok, "--type md: only the 2 Markdown documents (%d hits)", n);
    sb_hits_free(h, n);
    for (int m = 0; m < 3; m++) {
        o = (sb_search_opts){.mode = (sb_search_mode)m, .k = 10, .path_glob = "*/c.*"};
        ok = sb_store_search_opts(s, enc, "river Prague soup", &o, &h, &n, &err) == SB_OK && n == 1 &&
             !strcmp(base(h[0].path), "c.txt");
        CHECK(ok, "--path '*/c.*', mode %d: only c.txt (%d hits)", m, n);
        sb_hits_free(h, n);
    }
    o = (sb_search_opts){.mode = SB_SEARCH_HYBRID, .k = 10, .since = time(NULL) + 86400};
    CHECK(sb_store_search_opts(s, enc, "river", &o, &h, &n, &err) == SB_OK && n == 0,
          "--since tomorrow: nothing (%d hits)", n);
    sb_hits_free(h, n);
    o.since = 0, o.until = time(NULL) + 86400;
    CHECK(sb_store_search_opts(s, enc, "river", &o, &h, &n, &err) == SB_OK && n == 6, "--until tomorrow: all 6 (%d)", n);
    sb_hits_free(h, n);

    /* a copy of a document: its repeated chunk is dropped unless asked */
    write_file("c-copy.txt", facts[2][1]);
    CHECK(sb_store_ingest(s, enc, paths, 1, &io, NULL, NULL, NULL, &err) == SB_OK, "ingest the copy: %s", err.msg);
    int counts[2];
    for (int keep = 0; keep < 2; keep++) {
        o = (sb_search_opts){.mode = SB_SEARCH_HYBRID, .k = 5, .keep_overlaps = keep};
        sb_store_search_opts(s, enc, "Which river flows through Prague?", &o, &h, &n, &err);
        counts[keep] = 0;
        for (int i = 0; i < n; i++) counts[keep] += strstr(h[i].text, "Vltava") != NULL;
        sb_hits_free(h, n);
    }
    CHECK(counts[0] == 1 && counts[1] == 2, "the repeated chunk: %d hit deduplicated, %d kept", counts[0], counts[1]);

    sb_store_close(s);
    sb_encoder_free(enc);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

int main(void) {
    if (!sb_is_dir(ENC)) {
        SKIP("%s absent (scripts/setup fetches it)", ENC);
        return TEST_END();
    }
    setenv("SABIO_HNSW_MIN", "1", 1); /* the index from the first chunk */
    run(NULL);
    const char *why = NULL, *url = test_pg_db("sb_index", &why);
    if (!url) {
        TEST_PG_MISSING(why);
        return TEST_END();
    }
    char cache[64], u[512];
    snprintf(cache, sizeof cache, "/tmp/test_index_cache.%d", (int)getpid());
    setenv("SABIO_CACHE", cache, 1);
    snprintf(u, sizeof u, "%s", url);
    run(u);
    CHECK(!strncmp(index_path, cache, strlen(cache)), "the PostgreSQL store's index is in the node's cache: %s",
          index_path);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return TEST_END();
}
