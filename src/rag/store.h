/*
 * store.h - the knowledge store: one SQLite database (WAL) per store folder
 * holding documents (path, content hash, mtime), their chunks (text, source
 * spans, embedding) and an FTS5 index of the chunks for BM25.
 *
 * The database is the source of truth and every document is written in one
 * transaction, so a crash (kill -9 included) leaves each document either
 * fully stored or absent. A store remembers the embedding model it was built
 * with and refuses to mix in vectors from another.
 */
#ifndef SB_STORE_H
#define SB_STORE_H

#include "model/encoder.h"
#include "rag/doc.h"

typedef struct sb_store sb_store;

/* Opens DIR/store.db, creating DIR and the schema when create is true. */
sb_store *sb_store_open(const char *dir, bool create, sb_err *err);
void sb_store_close(sb_store *s);
const char *sb_store_errmsg(const sb_store *s);

/* The embedding model: recorded on first use; later a different model or
 * dimension is an error naming both. model_id may be NULL to only read it. */
sb_status sb_store_bind_model(sb_store *s, const char *model_id, int dim, sb_err *err);
/* The model path the store was built with (NULL if none yet). */
const char *sb_store_model(const sb_store *s);

typedef struct sb_ingest_opts {
    sb_chunk_params chunk;
    sb_loader_opts loader;
} sb_ingest_opts;

typedef struct sb_ingest_stats {
    int files_seen, files_added, files_updated, files_unchanged, files_removed, files_failed;
    int64_t chunks_added;
} sb_ingest_stats;

/* Called after each file: path, its status (SB_OK or the error) and message. */
typedef void (*sb_ingest_cb)(const char *path, sb_status st, const char *msg, const sb_ingest_stats *stats,
                             int files_total, void *user);

/* Ingests files and folders (recursively, supported types only): new files
 * are added, changed ones (content hash) replaced, unchanged ones skipped, and
 * documents under a given folder whose file is gone are removed. A file that
 * fails to load is reported through cb and counted; the others go on. */
sb_status sb_store_ingest(sb_store *s, sb_encoder *enc, const char *const *paths, int n_paths,
                          const sb_ingest_opts *opts, sb_ingest_stats *stats, sb_ingest_cb cb, void *user,
                          sb_err *err);

typedef enum { SB_SEARCH_HYBRID = 0, SB_SEARCH_DENSE, SB_SEARCH_BM25 } sb_search_mode;

typedef struct sb_hit {
    int64_t chunk_id;
    double score;
    char *path, *section, *text;
    int line_start, line_end, page;
} sb_hit;

/* Top k chunks for a query. *hits is a heap array of *n (free with
 * sb_hits_free). Hybrid: reciprocal-rank fusion (k = 60) of dense and BM25. */
sb_status sb_store_search(sb_store *s, sb_encoder *enc, const char *query, int k, sb_search_mode mode,
                          sb_hit **hits, int *n, sb_err *err);
void sb_hits_free(sb_hit *hits, int n);
/* One chunk by id (score 0); SB_ERR_NOT_FOUND if there is none. The caller
 * frees out->path, out->section and out->text. */
sb_status sb_store_get_chunk(sb_store *s, int64_t chunk_id, sb_hit *out, sb_err *err);

typedef struct sb_store_stats {
    int64_t documents, chunks;
    int dim;
} sb_store_stats;
sb_status sb_store_stats_get(sb_store *s, sb_store_stats *st, sb_err *err);
/* Lists documents: cb(path, n_chunks) for each. */
sb_status sb_store_list(sb_store *s, void (*cb)(const char *path, int64_t chunks, void *user), void *user,
                        sb_err *err);
/* Removes a document by path; SB_ERR_NOT_FOUND if absent. */
sb_status sb_store_remove(sb_store *s, const char *path, sb_err *err);

#endif
