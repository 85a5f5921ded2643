/*
 * hnsw.h - an approximate nearest-neighbour index: Hierarchical Navigable
 * Small World graphs (Malkov & Yashunin, "Efficient and robust approximate
 * nearest neighbor search using HNSW graphs", 2016/2018), as hnswlib builds
 * them: level drawn with mL = 1/ln(M), greedy descent through the upper
 * levels, beam search of width efConstruction on each level of the new
 * point, neighbours chosen by the paper's heuristic (Algorithm 4: keep a
 * candidate only if it is closer to the new point than to every neighbour
 * kept so far), at most M links per node (2M on level 0).
 *
 * Vectors are labelled by the caller (the store uses chunk ids). Distances:
 * cosine (vectors normalised on the way in, then 1 - dot), inner product
 * (1 - dot) or squared L2. Storage: F32, or int8 with one scale per vector
 * (x ~ scale * q, q in -127..127), optionally keeping the F32 vectors to
 * rerank the candidates exactly.
 *
 * Layout: the level-0 record of node i (its link count, 2M link slots and its
 * vector) is one contiguous slab entry, so a search touches one cache-friendly
 * region per visited node; upper-level links live in a per-node array.
 *
 * Deletion marks a tombstone: deleted nodes still route searches but never
 * appear in results; sb_hnsw_compact rebuilds without them.
 *
 * Threads: sb_hnsw_add_batch may build on several threads (per-node
 * spinlocks as hnswlib does); searches may run concurrently with each other
 * but not with additions or deletions.
 *
 * Persistence: sb_hnsw_save writes one file (temp name, fsync, rename) with a
 * header, the caller's metadata (the last store row it covers, the embedding
 * model's identity), the graph and a checksum; sb_hnsw_load checks every size
 * against the file, the checksum, and every link against the node count and
 * levels before trusting anything.
 */
#ifndef SB_HNSW_H
#define SB_HNSW_H

#include "base/base.h"

typedef enum { SB_METRIC_COSINE = 0, SB_METRIC_IP = 1, SB_METRIC_L2 = 2 } sb_metric;
typedef enum { SB_VEC_F32 = 0, SB_VEC_I8 = 1 } sb_vec_type;

typedef struct sb_hnsw_params {
    int M;               /* links per node on the upper levels (2M on level 0); 0: 16 */
    int ef_construction; /* beam width while building; 0: 200 */
    int ef_search;       /* default beam width of searches; 0: 64 */
    sb_metric metric;
    sb_vec_type type;
    bool rerank;   /* int8: keep the F32 vectors and rerank candidates exactly */
    uint64_t seed; /* level draws; 0: a fixed default */
} sb_hnsw_params;

/* What the caller records with the index (the store: its last chunk id and
 * the embedding model). */
typedef struct sb_hnsw_meta {
    int64_t last_id;
    char model[256];
} sb_hnsw_meta;

typedef struct sb_hnsw sb_hnsw;

/* An empty index for vectors of dim floats. NULL on bad parameters or memory. */
sb_hnsw *sb_hnsw_new(int dim, const sb_hnsw_params *p, sb_err *err);
void sb_hnsw_free(sb_hnsw *h);

int sb_hnsw_dim(const sb_hnsw *h);
const sb_hnsw_params *sb_hnsw_params_get(const sb_hnsw *h);
/* Nodes held (tombstones included) and tombstones. */
int64_t sb_hnsw_count(const sb_hnsw *h);
int64_t sb_hnsw_deleted(const sb_hnsw *h);
/* true if label is held and not deleted. */
bool sb_hnsw_contains(const sb_hnsw *h, int64_t label);
/* The stored vector of a live label as floats (dequantized for int8 without
 * rerank copies); false if absent. */
bool sb_hnsw_get(const sb_hnsw *h, int64_t label, float *out);
/* Calls cb for every live label. */
void sb_hnsw_each(const sb_hnsw *h, void (*cb)(int64_t label, void *user), void *user);

/* Adds one vector under a label not yet held (a deleted label cannot come
 * back: SB_ERR_INVALID). */
sb_status sb_hnsw_add(sb_hnsw *h, int64_t label, const float *v, sb_err *err);
/* Adds n vectors (row-major n x dim) on n_threads threads (<= 1: this one). */
sb_status sb_hnsw_add_batch(sb_hnsw *h, const int64_t *labels, const float *v, int64_t n, int n_threads,
                            sb_err *err);
/* Tombstones a label; SB_ERR_NOT_FOUND if not held or already deleted. */
sb_status sb_hnsw_delete(sb_hnsw *h, int64_t label, sb_err *err);
/* Rebuilds the graph from the live vectors only. */
sb_status sb_hnsw_compact(sb_hnsw *h, int n_threads, sb_err *err);

/* Optional result filter: only labels for which keep(label, user) is true
 * are returned (the others still route the search). */
typedef bool (*sb_hnsw_filter)(int64_t label, void *user);

/* The k nearest live vectors to q, nearest first: labels[i] and distances
 * dist[i] (dist may be NULL). ef <= 0 uses the index's ef_search (ef is raised
 * to k). Returns the number found (< k only if fewer live vectors pass). */
int sb_hnsw_search(const sb_hnsw *h, const float *q, int k, int ef, sb_hnsw_filter keep, void *user,
                   int64_t *labels, float *dist);

/* Writes the index atomically (temp name, fsync, rename). */
sb_status sb_hnsw_save(const sb_hnsw *h, const char *path, const sb_hnsw_meta *meta, sb_err *err);
/* Reads and checks an index file; any inconsistency is SB_ERR_FORMAT with a
 * message naming it. meta may be NULL. */
sb_hnsw *sb_hnsw_load(const char *path, sb_hnsw_meta *meta, sb_err *err);
/* The same from bytes in memory (the fuzz target's entry). */
sb_hnsw *sb_hnsw_load_mem(const void *data, size_t size, sb_hnsw_meta *meta, sb_err *err);
/* The file checksum over n bytes (a file ends with that of all bytes before
 * its last 8); exposed so the fuzz target can reach the structural checks. */
uint64_t sb_hnsw_checksum(const void *data, size_t n);

#endif
