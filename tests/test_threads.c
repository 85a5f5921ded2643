/*
 * test_threads.c - the thread pool, and the decoder's results being the same
 * bit for bit whatever the thread count (each output row is computed by one
 * thread in the same order).
 */
#include "base/threadpool.h"
#include "model/model.h"
#include "test.h"

typedef struct job {
    int counts[16];
    long sums[16];
} job;

static void work(void *arg, int ith, int nth) {
    job *j = arg;
    j->counts[ith]++;
    for (long i = ith; i < 100000; i += nth) j->sums[ith] += i;
}

static void decode_logits(const sb_model *m, int threads, const int32_t *ids, int n, float *out, int nv) {
    sb_err e = {0};
    sb_ctx *c = sb_ctx_new(m, 64, &e);
    CHECK(c && sb_ctx_set_threads(c, threads, &e) == SB_OK, "%s", e.msg);
    if (!c) return;
    CHECK(sb_decode(c, ids, n, out, NULL, &e) == SB_OK, "%s", e.msg);           /* prompt (batched) */
    CHECK(sb_decode(c, ids, 1, out + nv, NULL, &e) == SB_OK, "%s", e.msg);      /* one token */
    sb_ctx_free(c);
}

int main(void) {
    for (int n = 1; n <= 4; n++) {
        sb_pool *p = sb_pool_new(n);
        CHECK(p && sb_pool_size(p) == n, "pool of %d", n);
        job j = {0};
        for (int r = 0; r < 100; r++) sb_pool_run(p, work, &j);
        long total = 0;
        bool each = true;
        for (int i = 0; i < n; i++) {
            total += j.sums[i];
            each &= j.counts[i] == 100;
        }
        CHECK(each && total == 100L * (99999L * 100000L / 2), "pool of %d: every thread ran each task once", n);
        sb_pool_free(p);
    }
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!sb_file_exists(path)) {
        SKIP("%s absent", path);
        return TEST_END();
    }
    sb_err e = {0};
    sb_model *m = sb_model_open(path, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return TEST_END();
    int nv = sb_model_get_config(m)->n_vocab;
    const int32_t ids[6] = {1, 9690, 198, 2683, 359, 253};
    float *a = malloc(sizeof(float) * 2 * nv), *b = malloc(sizeof(float) * 2 * nv);
    decode_logits(m, 1, ids, 6, a, nv);
    for (int t = 2; t <= 3; t++) {
        decode_logits(m, t, ids, 6, b, nv);
        CHECK(!memcmp(a, b, sizeof(float) * 2 * nv), "logits with %d threads differ from 1 thread", t);
    }
    /* a prompt of 40: the long-prompt path (8-bit panels, attention in blocks) */
    int32_t long_ids[40];
    for (int i = 0; i < 40; i++) long_ids[i] = (int32_t)((i * 7919 + 13) % nv);
    decode_logits(m, 1, long_ids, 40, a, nv);
    for (int t = 2; t <= 3; t++) {
        decode_logits(m, t, long_ids, 40, b, nv);
        CHECK(!memcmp(a, b, sizeof(float) * 2 * nv), "40-token prompt: logits with %d threads differ from 1 thread", t);
    }
    free(a);
    free(b);
    sb_model_free(m);
    return TEST_END();
}
