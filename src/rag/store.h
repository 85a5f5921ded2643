/*
 * store.h - the knowledge store: documents (path, content hash, mtime), their
 * chunks (text, source spans, embedding) and a full-text index of the chunks.
 * Two backends behind one interface, chosen by the location:
 *   DIR             one SQLite database (WAL) in the folder, FTS5 BM25
 *   postgres://...  a PostgreSQL database (also postgresql://), shared by any
 *                   number of nodes and ingesters: tsvector + ts_rank_cd for
 *                   the full-text list, a change sequence that each node's
 *                   own HNSW index follows (woken by LISTEN/NOTIFY)
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

/* Opens the store at loc (a folder: DIR/store.db; or a postgres:// URL),
 * creating the folder and the schema when create is true. Messages name a
 * PostgreSQL store by its URL without the password. */
sb_store *sb_store_open(const char *loc, bool create, sb_err *err);
void sb_store_close(sb_store *s);
const char *sb_store_errmsg(const sb_store *s);

/* The embedding model: recorded on first use; later a different model or
 * dimension is an error naming both. model_id may be NULL to only read it. */
sb_status sb_store_bind_model(sb_store *s, const char *model_id, int dim, sb_err *err);
/* The store's name for messages: its folder, or its URL with the password
 * replaced by "***". */
const char *sb_store_name(const sb_store *s);
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
/* How hybrid search fuses the dense and BM25 lists (top max(4k, 50) each):
 *   RRF:    w / (60 + dense rank) + 1 / (60 + BM25 rank), w = dense_weight (default 0.3)
 *   CONVEX: a * dense score + (1 - a) * BM25 score, each min-max normalised over
 *           its list, a = dense_weight (default 0.4; Bruch et al. 2023, "An
 *           Analysis of Fusion Functions for Hybrid Retrieval")
 * The defaults were chosen on the even lines of COVID-QA's dev questions and
 * checked on the odd ones (bench/README.md). */
typedef enum { SB_FUSION_RRF = 0, SB_FUSION_CONVEX } sb_fusion;

typedef struct sb_hit {
    int64_t chunk_id;
    double score;
    char *path, *section, *text;
    int line_start, line_end, page;
} sb_hit;

/* Top k chunks for a query. *hits is a heap array of *n (free with
 * sb_hits_free). Hybrid: weighted reciprocal-rank fusion (k = 60) of dense and BM25.
 * The same as sb_store_search_opts with {mode, k} and the other fields 0. */
sb_status sb_store_search(sb_store *s, sb_encoder *enc, const char *query, int k, sb_search_mode mode,
                          sb_hit **hits, int *n, sb_err *err);
void sb_hits_free(sb_hit *hits, int n);
/* One chunk by id (score 0); SB_ERR_NOT_FOUND if there is none. The caller
 * frees out->path, out->section and out->text. */
sb_status sb_store_get_chunk(sb_store *s, int64_t chunk_id, sb_hit *out, sb_err *err);

typedef struct sb_search_opts {
    sb_search_mode mode;
    int k;
    /* metadata filters (NULL / 0: no filter): documents whose path matches the
     * glob (SQLite GLOB: * ? [..], case-sensitive), of this type ("pdf", "md",
     * ...), whose file was modified in [since, until] (Unix seconds) */
    const char *path_glob, *type;
    int64_t since, until;
    bool keep_overlaps; /* false: a chunk overlapping a better one of the same
                         * document by more than half, or repeating its text, is dropped */
    bool exact;         /* dense by exact scan even where the HNSW index is used */
    sb_fusion fusion;    /* hybrid: how the lists are fused */
    double dense_weight; /* hybrid: the dense list's weight (0: the fusion's default) */
} sb_search_opts;
sb_status sb_store_search_opts(sb_store *s, sb_encoder *enc, const char *query, const sb_search_opts *o,
                               sb_hit **hits, int *n, sb_err *err);

/* Fusion of two ranked lists (ids, scores descending) into out / score
 * (capacity na + nb), by descending fused score; returns the count (-1: no
 * memory). Reciprocal-rank fusion (Cormack et al. 2009): wa / (60 + rank in a)
 * + wb / (60 + rank in b), ranks from 1. Convex: wa * norm(score in a) +
 * wb * norm(score in b), norm min-max over the list (1 for a single entry). */
int sb_fuse(sb_fusion f, const int64_t *a, const double *sa, int na, double wa, const int64_t *b, const double *sb,
            int nb, double wb, int64_t *out, double *score);

/* ---- the HNSW index (rag/hnsw.h), derived, one per node: see sb_store_index_path ----
 * Derived from the store, never trusted blindly: on first use it is loaded
 * and checked (header, sizes, checksum, links; the store's embedding model),
 * then brought up to date from the store (chunks added or removed since);
 * a missing, corrupt or foreign file is rebuilt (with a warning). Dense
 * search uses it once the store holds SABIO_HNSW_MIN chunks (environment;
 * default 4096), the exact scan below that. An ingest updates and saves it. */
typedef struct sb_index_report {
    int64_t vectors, deleted; /* live vectors and tombstones */
    int64_t added, removed;   /* by this check's catch-up */
    bool rebuilt;             /* the file was missing, corrupt or foreign */
} sb_index_report;
/* Brings the index up to date, saves it, and checks it against the store:
 * the same chunk ids, and each vector equal to the stored embedding.
 * SB_ERR_FORMAT names the first disagreement. */
sb_status sb_store_index_check(sb_store *s, sb_index_report *r, sb_err *err);
/* Where this node keeps the index: DIR/index.hnsw for a SQLite store; for a
 * PostgreSQL one $SABIO_CACHE (default $XDG_CACHE_HOME/sabio, else
 * ~/.cache/sabio)/pg-HASH/index.hnsw, HASH of the server, database and user;
 * NULL: kept in memory only. */
const char *sb_store_index_path(const sb_store *s);

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
