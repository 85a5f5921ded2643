/*
 * test_hnsw.c - the HNSW index against exact search: recall@10 on clustered
 * random data for each metric and storage type, single- and multi-threaded
 * builds, tombstones and compaction, result filters, the file round trip and
 * corrupt / truncated files, and the SIMD distance kernels against the
 * scalar reference at every instruction-set level the CPU runs.
 */
#include "rag/hnsw.h"
#include "rag/vecdist.h"
#include "tensor/kernels.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

#define DIM 24
#define N 3000
#define NQ 100
#define K 10

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

/* points around 30 random centres, so that neighbourhoods mean something */
static void make_data(float *x, int n) {
    static float centres[30][DIM];
    static bool init;
    if (!init) {
        for (int c = 0; c < 30; c++)
            for (int j = 0; j < DIM; j++) centres[c][j] = frand();
        init = true;
    }
    for (int i = 0; i < n; i++) {
        int c = (int)((frand() + 1) * 15) % 30;
        for (int j = 0; j < DIM; j++) x[i * DIM + j] = centres[c][j] + 0.35f * frand();
    }
}

/* exact distances, written independently of the index (double precision) */
static double exact_dist(sb_metric m, const float *a, const float *b) {
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (int j = 0; j < DIM; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
        l2 += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    }
    if (m == SB_METRIC_L2) return l2;
    if (m == SB_METRIC_IP) return 1 - dot;
    return 1 - dot / sqrt(na * nb);
}

typedef struct {
    double d;
    int64_t id;
} pair;
static int cmp_pair(const void *a, const void *b) {
    double x = ((const pair *)a)->d, y = ((const pair *)b)->d;
    return x < y ? -1 : x > y;
}

static bool is_odd(int64_t label, void *u) { return label & 1; }

/* recall@K of the index over queries q against brute force on the live
 * labels (live[i] false: label i deleted; only odd labels with the filter) */
static double recall(const sb_hnsw *h, sb_metric m, const float *x, const bool *live, const float *q, int ef,
                     bool odd_only) {
    pair *all = malloc(sizeof(pair) * N);
    int hits = 0, total = 0;
    for (int t = 0; t < NQ; t++) {
        int n = 0;
        for (int i = 0; i < N; i++)
            if ((!live || live[i]) && (!odd_only || (i & 1))) all[n++] = (pair){exact_dist(m, q + t * DIM, x + i * DIM), i};
        qsort(all, (size_t)n, sizeof *all, cmp_pair);
        int64_t got[K];
        int ng = sb_hnsw_search(h, q + t * DIM, K, ef, odd_only ? is_odd : NULL, NULL, got, NULL);
        for (int a = 0; a < ng; a++) {
            if (live && !live[got[a]]) return -1; /* a deleted label came back */
            if (odd_only && !(got[a] & 1)) return -1;
            for (int b = 0; b < K && b < n; b++) hits += got[a] == all[b].id;
        }
        total += n < K ? n : K;
    }
    free(all);
    return (double)hits / total;
}

static sb_hnsw *build(const sb_hnsw_params *p, const float *x, int threads) {
    sb_err err = {0};
    sb_hnsw *h = sb_hnsw_new(DIM, p, &err);
    int64_t *labels = malloc(sizeof(int64_t) * N);
    for (int i = 0; i < N; i++) labels[i] = i;
    if (h && sb_hnsw_add_batch(h, labels, x, N, threads, &err) != SB_OK) {
        fprintf(stderr, "build: %s\n", err.msg);
        sb_hnsw_free(h);
        h = NULL;
    }
    free(labels);
    return h;
}

static void test_kernels(void) {
    int8_t a8[300], b8[300];
    float a[300], b[300];
    for (int i = 0; i < 300; i++) {
        a[i] = frand();
        b[i] = frand();
        a8[i] = (int8_t)(frand() * 127);
        b8[i] = (int8_t)(frand() * 127);
    }
    a8[5] = -127, b8[5] = -127, a8[6] = 127, b8[6] = -127;
    const sb_vecdist *ref = sb_vecdist_at(SB_ISA_SCALAR);
    for (int isa = 1; isa < SB_ISA_COUNT; isa++) {
        const sb_vecdist *k = sb_vecdist_at(isa);
        if (!k) {
            SKIP("CPU lacks instruction-set level %d", isa);
            continue;
        }
        bool ok = true;
        for (int n = 0; n <= 300; n += n < 70 ? 1 : 23) {
            ok &= k->dot_i8(a8, b8, n) == ref->dot_i8(a8, b8, n);
            ok &= fabsf(k->dot_f32(a, b, n) - ref->dot_f32(a, b, n)) <= 1e-4f * (1 + n);
            ok &= fabsf(k->l2_f32(a, b, n) - ref->l2_f32(a, b, n)) <= 1e-4f * (1 + n);
        }
        CHECK(ok, "%s distance kernels equal the scalar reference for lengths 0..300", k->isa);
    }
}

int main(void) {
    test_kernels();
    float *x = malloc(sizeof(float) * N * DIM), *q = malloc(sizeof(float) * NQ * DIM);
    make_data(x, N);
    make_data(q, NQ);
    const char *mname[3] = {"cosine", "inner product", "L2"};
    for (int m = 0; m < 3; m++) {
        sb_hnsw_params p = {.M = 12, .ef_construction = 100, .metric = (sb_metric)m};
        sb_hnsw *h = build(&p, x, 1);
        double r = h ? recall(h, p.metric, x, NULL, q, 64, false) : 0;
        CHECK(r >= 0.95, "F32 %s: recall@10 %.3f >= 0.95 (ef 64)", mname[m], r);
        sb_hnsw_free(h);
        p.type = SB_VEC_I8;
        h = build(&p, x, 1);
        r = h ? recall(h, p.metric, x, NULL, q, 64, false) : 0;
        CHECK(r >= 0.85, "int8 %s: recall@10 %.3f >= 0.85", mname[m], r);
        sb_hnsw_free(h);
        p.rerank = true;
        h = build(&p, x, 1);
        r = h ? recall(h, p.metric, x, NULL, q, 64, false) : 0;
        CHECK(r >= 0.95, "int8 + F32 rerank %s: recall@10 %.3f >= 0.95", mname[m], r);
        sb_hnsw_free(h);
    }

    sb_hnsw_params p = {.M = 12, .ef_construction = 100, .metric = SB_METRIC_COSINE};
    sb_hnsw *h = build(&p, x, 2);
    double r = h ? recall(h, p.metric, x, NULL, q, 64, false) : 0;
    CHECK(r >= 0.95, "built on 2 threads: recall@10 %.3f", r);
    r = h ? recall(h, p.metric, x, NULL, q, 64, true) : 0;
    CHECK(r >= 0.95, "filtered search (odd labels only): recall@10 %.3f, no even label", r);

    /* tombstones, then compaction */
    sb_err err = {0};
    bool *live = malloc(N);
    int dead = 0;
    for (int i = 0; i < N; i++) {
        live[i] = i % 10 >= 3;
        if (!live[i]) dead += sb_hnsw_delete(h, i, &err) == SB_OK;
    }
    CHECK(dead == N * 3 / 10 && sb_hnsw_deleted(h) == dead, "%d of %d deleted", dead, N);
    CHECK(sb_hnsw_delete(h, 0, &err) == SB_ERR_NOT_FOUND, "deleting twice: %s", err.msg);
    CHECK(sb_hnsw_add(h, 0, x, &err) == SB_ERR_INVALID, "a deleted label cannot be re-added: %s", err.msg);
    r = recall(h, p.metric, x, live, q, 64, false);
    CHECK(r >= 0.95, "with 30%% tombstones: recall@10 over live vectors %.3f, no deleted label returned", r);

    /* persistence */
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_hnsw.%d", (int)getpid());
    sb_hnsw_meta meta = {.last_id = 123456789012345ll}, got = {0};
    snprintf(meta.model, sizeof meta.model, "all-MiniLM-L6-v2");
    CHECK(sb_hnsw_save(h, path, &meta, &err) == SB_OK, "save: %s", err.msg);
    sb_hnsw *h2 = sb_hnsw_load(path, &got, &err);
    CHECK(h2 != NULL, "load: %s", h2 ? "" : err.msg);
    if (h2) {
        CHECK(got.last_id == meta.last_id && !strcmp(got.model, meta.model), "metadata round trip (%lld, %s)",
              (long long)got.last_id, got.model);
        bool same = sb_hnsw_count(h2) == N && sb_hnsw_deleted(h2) == dead;
        for (int t = 0; t < NQ && same; t++) {
            int64_t l1[K], l2[K];
            float d1[K], d2[K];
            int n1 = sb_hnsw_search(h, q + t * DIM, K, 32, NULL, NULL, l1, d1);
            int n2 = sb_hnsw_search(h2, q + t * DIM, K, 32, NULL, NULL, l2, d2);
            same = n1 == n2 && !memcmp(l1, l2, sizeof(int64_t) * (size_t)n1) && !memcmp(d1, d2, sizeof(float) * (size_t)n1);
        }
        CHECK(same, "the loaded index answers every query exactly as the saved one");
        sb_hnsw_free(h2);
    }
    /* corrupt and truncated files */
    char *data;
    size_t len;
    if (sb_read_file(path, 0, &data, &len, &err) == SB_OK) {
        int rejected = 0, tries = 0;
        for (size_t off = 0; off < len; off += len / 37 + 1, tries++) {
            data[off] ^= 0x10;
            sb_hnsw *bad = sb_hnsw_load_mem(data, len, NULL, &err);
            rejected += !bad && err.code == SB_ERR_FORMAT;
            sb_hnsw_free(bad);
            data[off] ^= 0x10;
        }
        CHECK(rejected == tries, "%d of %d single-byte corruptions rejected (last: %s)", rejected, tries, err.msg);
        rejected = tries = 0;
        for (size_t cut = 0; cut < len; cut += len / 29 + 1, tries++) {
            sb_hnsw *bad = sb_hnsw_load_mem(data, cut, NULL, &err);
            rejected += !bad;
            sb_hnsw_free(bad);
        }
        CHECK(rejected == tries, "%d of %d truncations rejected (last: %s)", rejected, tries, err.msg);
        free(data);
    }
    unlink(path);

    CHECK(sb_hnsw_compact(h, 2, &err) == SB_OK && sb_hnsw_count(h) == N - dead && sb_hnsw_deleted(h) == 0,
          "compaction keeps the %d live vectors (%lld held)", N - dead, (long long)sb_hnsw_count(h));
    r = recall(h, p.metric, x, live, q, 64, false);
    CHECK(r >= 0.95, "after compaction: recall@10 %.3f", r);
    float v[DIM];
    CHECK(sb_hnsw_get(h, 5, v) && !sb_hnsw_get(h, 0, v), "vectors of live labels kept, deleted ones gone");
    sb_hnsw_free(h);

    /* incremental: half now, half later, equals one build in quality */
    h = sb_hnsw_new(DIM, &p, &err);
    int64_t *labels = malloc(sizeof(int64_t) * N);
    for (int i = 0; i < N; i++) labels[i] = i;
    sb_hnsw_add_batch(h, labels, x, N / 2, 1, &err);
    for (int i = N / 2; i < N; i++) sb_hnsw_add(h, labels[i], x + i * DIM, &err);
    r = recall(h, p.metric, x, NULL, q, 64, false);
    CHECK(sb_hnsw_count(h) == N && r >= 0.95, "built in two steps: recall@10 %.3f", r);
    sb_hnsw_free(h);
    free(labels);
    free(live);
    free(x);
    free(q);
    return TEST_END();
}
