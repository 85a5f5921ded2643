/* fuzz_hnsw.c - libFuzzer target for the HNSW index file reader
 * (sb_hnsw_load_mem). The first byte picks whether the checksum trailer is
 * recomputed over the mutated bytes, so that the structural checks (sizes,
 * levels, links, labels) are reached and not only the checksum; an index
 * that loads is then searched, extended, deleted from and saved back in
 * memory-checked code paths. Seeds: fuzz/seeds/hnsw. */
#include "rag/hnsw.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool fix = data[0] & 1;
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, n);
    if (fix && n >= 8) {
        uint64_t c = sb_hnsw_checksum(buf, n - 8);
        memcpy(buf + n - 8, &c, 8);
    }
    sb_hnsw_meta meta;
    sb_hnsw *h = sb_hnsw_load_mem(buf, n, &meta, NULL);
    free(buf);
    if (!h) return 0;
    int dim = sb_hnsw_dim(h);
    float *q = calloc((size_t)dim, sizeof(float));
    int64_t labels[8];
    float dist[8];
    if (q) {
        q[0] = 1;
        int m = sb_hnsw_search(h, q, 8, 16, NULL, NULL, labels, dist);
        if (m > 0) sb_hnsw_delete(h, labels[0], NULL);
        sb_hnsw_add(h, -12345, q, NULL);
        sb_hnsw_search(h, q, 8, 16, NULL, NULL, labels, dist);
        sb_hnsw_compact(h, 1, NULL);
    }
    free(q);
    sb_hnsw_free(h);
    return 0;
}
