/*
 * test_pg.h - the PostgreSQL server of tests/with_pg for the C tests.
 * test_pg_db(name) makes a fresh, empty database and returns its URL (a
 * static buffer), or NULL with the reason in *why (no server: the test skips).
 */
#ifndef SB_TEST_PG_H
#define SB_TEST_PG_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef SB_HAVE_PQ
#include <libpq-fe.h>
#endif

#ifdef SB_HAVE_PQ
static void test_pg_quiet(void *arg, const char *msg) {}
#endif

static const char *test_pg_db(const char *name, const char **why) {
    const char *base = getenv("SABIO_TEST_PG");
    if (!base || !*base) {
        *why = "no PostgreSQL server (run the test through tests/with_pg, as make test does)";
        return NULL;
    }
#ifndef SB_HAVE_PQ
    *why = "built without libpq";
    return NULL;
#else
    static char url[512];
    char admin[512], sql[256];
    snprintf(admin, sizeof admin, "%s/postgres", base);
    PGconn *c = PQconnectdb(admin);
    if (PQstatus(c) != CONNECTION_OK) {
        *why = "cannot connect to the test server";
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, test_pg_quiet, NULL);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s_%d", name, (int)getpid());
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s_%d", name, (int)getpid());
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    if (!ok) {
        *why = "CREATE DATABASE failed";
        return NULL;
    }
    snprintf(url, sizeof url, "%s/%s_%d", base, name, (int)getpid());
    return url;
#endif
}

/* test_pg_db gave no database: a failure where a server and libpq are
 * there (a broken set-up must not pass as a skip), else a skip */
#ifdef SB_HAVE_PQ
#define TEST_PG_MISSING(why)                                                                        \
    do {                                                                                            \
        const char *pg_ = getenv("SABIO_TEST_PG");                                                  \
        if (pg_ && *pg_) CHECK(0, "the PostgreSQL store: %s", why);                                \
        else SKIP("the PostgreSQL store: %s", why);                                                 \
    } while (0)
#else
#define TEST_PG_MISSING(why) SKIP("the PostgreSQL store: %s", why)
#endif

#endif
