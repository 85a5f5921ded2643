/*
 * bench/infer.c - prompt processing (pp) and generation (tg) speed of our
 * decoder, measured the way llama-bench does: pp = one prompt of N random
 * tokens from an empty cache; tg = N single-token steps. Prints tokens/s,
 * the median of the runs, and what the bandwidth bound needs: the weight
 * bytes one generated token reads (every matrix but the token embedding, of
 * which one row) and the peak resident set against file + KV cache.
 *
 * usage: build/bench/infer MODEL [-p 512] [-n 128] [-t THREADS] [-r 5]
 *        build/bench/infer --bw [-t THREADS]   read bandwidth of this machine:
 *        THREADS threads streaming a 2 GiB buffer (>> cache), best of 5 passes
 */
#include "base/threadpool.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "model/sample.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
    const uint8_t *buf;
    size_t n;
    uint64_t sink[64];
} bw_job;

__attribute__((target("avx2"))) static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t per = j->n / (size_t)nth / 128 * 128;
    const __m256i *p = (const __m256i *)(j->buf + per * (size_t)ith), *e = p + per / 32;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (; p < e; p += 4) {
        a = _mm256_xor_si256(a, _mm256_load_si256(p));
        b = _mm256_xor_si256(b, _mm256_load_si256(p + 1));
        c = _mm256_xor_si256(c, _mm256_load_si256(p + 2));
        d = _mm256_xor_si256(d, _mm256_load_si256(p + 3));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    j->sink[ith % 64] = (uint64_t)_mm256_extract_epi64(a, 0);
}

static int bandwidth(int threads) {
    bw_job j = {.n = (size_t)2 << 30};
    uint8_t *buf = aligned_alloc(64, j.n);
    if (!buf) return 1;
    memset(buf, 1, j.n);
    j.buf = buf;
    sb_pool *pool = sb_pool_new(threads);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = sb_time_sec();
        sb_pool_run(pool, bw_read, &j);
        double gbs = (double)j.n / (sb_time_sec() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("bw_gbs %.2f\n", best);
    sb_pool_free(pool);
    free(buf);
    return 0;
}

/* Bytes of the weights one decode step reads. */
static double bytes_per_token(const char *path) {
    sb_err err = {0};
    sb_gguf *g = sb_gguf_open(path, &err);
    if (!g) return 0;
    double total = 0;
    for (int64_t i = 0; i < sb_gguf_n_tensors(g); i++) {
        sb_tensor t;
        sb_gguf_tensor(g, i, &t);
        if (!strcmp(t.name, "token_embd.weight")) {
            total += (double)t.nbytes / (double)t.ne[1];
            if (sb_gguf_find_tensor(g, "output.weight") < 0) total += (double)t.nbytes; /* tied */
        } else {
            total += (double)t.nbytes;
        }
    }
    sb_gguf_free(g);
    return total;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [-p N] [-n N] [-t N] [-r N] | --bw [-t N]\n", argv[0]);
        return 2;
    }
    int pp = 512, tg = 128, threads = 2, reps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-p")) pp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) tg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
    }
    if (!strcmp(argv[1], "--bw")) return bandwidth(threads);
    sb_err err = {0};
    sb_model *m = sb_model_open(argv[1], &err);
    if (!m) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    int nv = sb_model_get_config(m)->n_vocab;
    const sb_model_config *cfg = sb_model_get_config(m);
    const int n_ctx = pp + tg + 1;
    sb_ctx *c = sb_ctx_new(m, n_ctx, &err);
    if (!c || sb_ctx_set_threads(c, threads, &err) != SB_OK) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)pp);
    float *logits = malloc(sizeof(float) * (size_t)nv);
    uint64_t s = 1234;
    for (int i = 0; i < pp; i++) {
        s = s * 6364136223846793005ull + 1;
        toks[i] = (int32_t)((s >> 33) % (uint64_t)nv);
    }
    double *tp = calloc((size_t)reps, sizeof(double)), *tt = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        sb_ctx_truncate(c, 0);
        double t0 = sb_time_sec();
        if (pp && sb_decode(c, toks, pp, logits, NULL, &err) != SB_OK) break;
        tp[r] = pp / (sb_time_sec() - t0);
        sb_ctx_truncate(c, 0);
        int32_t id = toks[0];
        t0 = sb_time_sec();
        for (int i = 0; i < tg; i++) {
            if (sb_decode(c, &id, 1, logits, NULL, &err) != SB_OK) break;
            int32_t best = 0;
            for (int k = 1; k < nv; k++)
                if (logits[k] > logits[best]) best = k;
            id = best;
        }
        tt[r] = tg / (sb_time_sec() - t0);
    }
    qsort(tp, (size_t)reps, sizeof(double), cmp);
    qsort(tt, (size_t)reps, sizeof(double), cmp);
    printf("pp%d %.2f\ntg%d %.2f\n", pp, tp[reps / 2], tg, tt[reps / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sb_gguf *g = sb_gguf_open(argv[1], &err);
    double file = g ? (double)sb_gguf_file_size(g) : 0;
    sb_gguf_free(g);
    double kv = 2.0 * cfg->n_layer * n_ctx * cfg->n_head_kv * cfg->head_dim * sizeof(float);
    printf("bytes_per_token %.0f\nrss_peak_mb %.1f\nfile_mb %.1f\nkv_mb %.1f\n", bytes_per_token(argv[1]),
           (double)ru.ru_maxrss / 1024, file / 1048576, kv / 1048576);
    free(tp), free(tt), free(toks), free(logits);
    sb_ctx_free(c);
    sb_model_free(m);
    return 0;
}
