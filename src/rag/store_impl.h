/*
 * store_impl.h - the knowledge store's handle, shared by store.c (schema,
 * ingest, search) and store_index.c (the HNSW index beside the database).
 * Private to src/rag.
 */
#ifndef SB_STORE_IMPL_H
#define SB_STORE_IMPL_H

#include "rag/hnsw.h"
#include "rag/store.h"

#include <sqlite3.h>

struct sb_store {
    sqlite3 *db;
    char *dir;
    char *model;
    int dim;
    /* the chunks as of the last read (stale after any write): ids ascending,
     * the document of each, and for the exact scan their vectors (n_ids x dim) */
    int64_t *ids, *doc_of;
    int64_t n_ids;
    bool stale;
    float *vecs; /* NULL until the exact scan needs them */
    /* the HNSW index: NULL until first used */
    sb_hnsw *index;
    bool index_stale;  /* the chunks changed since the index was brought up to date */
    int64_t index_min; /* chunks from which dense search uses the index */
    sb_err err;
};

sb_status sb_store_db_err(sb_store *s, sb_err *err, const char *what);
/* Reads the chunk ids (and documents) if stale. */
sb_status sb_store_load_ids(sb_store *s, sb_err *err);
/* Loads or builds the index and brings it up to date (saving it when it
 * changed). r may be NULL. */
sb_status sb_store_index_sync(sb_store *s, sb_index_report *r, sb_err *err);
/* Position of chunk id in s->ids, or -1. */
int64_t sb_store_find_id(const sb_store *s, int64_t id);

#endif
