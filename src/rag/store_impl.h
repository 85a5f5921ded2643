/*
 * store_impl.h - the knowledge store's handle and its backends. store.c holds
 * what every backend shares (opening by location, the embedding model,
 * ingest, dense / BM25 / hybrid search and their fusion); store_index.c the
 * derived HNSW index; a backend (store_sqlite.c: one SQLite file per folder;
 * store_pg.c: a PostgreSQL database shared by several nodes) the tables,
 * transactions and full-text ranking behind the operations below.
 * Private to src/rag.
 */
#ifndef SB_STORE_IMPL_H
#define SB_STORE_IMPL_H

#include "rag/hnsw.h"
#include "rag/store.h"

/* a chunk's span in its document, for dropping overlapping hits */
typedef struct sb_store_span {
    int64_t doc, start, end;
} sb_store_span;

typedef void (*sb_store_vec_cb)(int64_t id, const void *blob, size_t bytes, void *user);

/* What a backend does. Every write of a document is one transaction: a
 * reader (in this process or another) sees all of it or none. */
typedef struct sb_store_ops {
    void (*close)(sb_store *s);
    /* the meta table: a heap string or NULL */
    char *(*meta_get)(sb_store *s, const char *key);
    sb_status (*meta_set)(sb_store *s, const char *key, const char *value, sb_err *err);
    /* the stored content hash of a document (*hash NULL if absent) */
    sb_status (*doc_hash)(sb_store *s, const char *path, char **hash, sb_err *err);
    /* replaces (or adds) a document with its chunks and their embeddings */
    sb_status (*put_doc)(sb_store *s, const sb_doc *d, const char *hash, int64_t mtime, int64_t size,
                         const sb_chunk *ch, size_t n, const float *emb, int dim, sb_err *err);
    sb_status (*remove_doc)(sb_store *s, const char *path, bool *found, sb_err *err);
    /* cb(path, n_chunks) for each document, by path */
    sb_status (*each_doc)(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                          sb_err *err);
    /* Brings s->ids / s->doc_of up to date with the store (when s->stale or
     * the store changed underneath); on a change frees s->vecs and sets
     * s->index_stale. */
    sb_status (*refresh)(sb_store *s, sb_err *err);
    /* cb(id, embedding bytes) for the chunks of ids (NULL: all, by id); a
     * chunk that is gone is skipped */
    sb_status (*vectors)(sb_store *s, const int64_t *ids, size_t n, sb_store_vec_cb cb, void *user, sb_err *err);
    /* the documents passing o's filters, ascending (heap array) */
    sb_status (*filter_docs)(sb_store *s, const sb_search_opts *o, int64_t **ids, size_t *n, sb_err *err);
    /* full-text top k (best first, higher score better), under o's filters */
    sb_status (*text_search)(sb_store *s, const char *query, int k, const sb_search_opts *o, int64_t *ids,
                             double *score, int *n, sb_err *err);
    /* hits[i] (path, section, text, lines, page) and spans[i] of chunk ids[i];
     * hits[i].path NULL: no such chunk. The caller frees the strings. */
    sb_status (*read_chunks)(sb_store *s, const int64_t *ids, int n, sb_hit *hits, sb_store_span *spans,
                             sb_err *err);
    sb_status (*counts)(sb_store *s, int64_t *docs, int64_t *chunks, sb_err *err);
} sb_store_ops;

struct sb_store {
    const sb_store_ops *ops;
    void *be;          /* the backend's state */
    char *dir;         /* names the store in messages (a URL without its password) */
    char *index_path;  /* where the derived HNSW index is kept (NULL: in memory only) */
    char *model;
    int dim;
    /* the chunks as of the last read: ids ascending, the document of each,
     * and for the exact scan their vectors (n_ids x dim) */
    int64_t *ids, *doc_of;
    int64_t n_ids, cap_ids;
    bool stale;  /* this handle wrote: re-read before the next search */
    float *vecs; /* NULL until the exact scan needs them */
    /* the HNSW index: NULL until first used */
    sb_hnsw *index;
    bool index_stale;  /* the chunks changed since the index was brought up to date */
    int64_t index_min; /* chunks from which dense search uses the index */
    sb_err err;
};

/* The backends' openers: s has dir, index_min and stale set; they set ops,
 * be and index_path. */
sb_status sb_store_sqlite_open(sb_store *s, const char *dir, bool create, sb_err *err);
sb_status sb_store_pg_open(sb_store *s, const char *url, bool create, sb_err *err);
/* true for a postgres:// or postgresql:// location */
bool sb_store_is_pg(const char *loc);
/* url with the password (user:PASSWORD@ and password=... parameters)
 * replaced by "***"; heap string */
char *sb_pg_redact(const char *url);

/* Reads the chunk ids (and documents) if stale. */
sb_status sb_store_load_ids(sb_store *s, sb_err *err);
/* Appends (id, doc) to s->ids / s->doc_of (growing them). */
bool sb_store_push_id(sb_store *s, int64_t id, int64_t doc);
/* The words of free text (runs of ASCII letters and digits and non-ASCII
 * bytes), each between open and close, joined by sep; NULL if none. */
char *sb_store_query_words(const char *q, const char *open, const char *close, const char *sep);
/* Loads or builds the index and brings it up to date (saving it when it
 * changed). r may be NULL. */
sb_status sb_store_index_sync(sb_store *s, sb_index_report *r, sb_err *err);
/* Position of chunk id in s->ids, or -1. */
int64_t sb_store_find_id(const sb_store *s, int64_t id);

#endif
