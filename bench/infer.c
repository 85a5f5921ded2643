/*
 * bench/infer.c - prompt processing (pp) and generation (tg) speed of our
 * decoder, measured the way llama-bench does: pp = one prompt of N random
 * tokens from an empty cache; tg = N single-token steps. Prints tokens/s
 * (and tg_cpu_ms_per_token: CPU time of all threads per generated token,
 * what a shared machine distorts least),
 * the median of the runs, and what the bandwidth bound needs: the weight
 * bytes one generated token reads (every matrix but the token embedding, of
 * which one row) and the peak resident set against file + KV cache.
 *
 * usage: build/bench/infer MODEL [-p 512] [-n 128] [-t THREADS] [-r 5] [-nr|--no-repack] [--paired]
 *        (-nr: keep the file's layout; by default weights are repacked as
 *        sabio generate does, sb_model_repack. --paired: after the runs
 *        (and the peak RSS), as many runs of N tokens, each token preceded
 *        by a bandwidth probe pass on the same threads; prints the decode's
 *        fraction of the bound measured that way, see "paired probe" below)
 *        build/bench/infer --bw [-t THREADS]   read bandwidth of this machine:
 *        THREADS pinned threads streaming their own slices of a 2 GiB buffer
 *        (>> cache), best of 10 passes, 4 KiB and huge pages (see bandwidth())
 */
#include "base/threadpool.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "model/sample.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* ---- read bandwidth ----
 * Each thread is pinned to its own CPU, first-touches (pre-faults) its own
 * slice of the buffer, and then streams it read-only with 64-byte loads into
 * eight independent accumulators (AVX-512; AVX2 with 32-byte loads where the
 * CPU has no AVX-512). A pass is timed from the pool's start to the last
 * thread's end; the best of BW_PASSES passes counts, taken both with 4 KiB
 * pages and with transparent huge pages (madvise), and the higher of the two
 * is printed: the bound is what the machine can deliver, so the probe never
 * reports less than a kernel could stream. */
#define BW_PASSES 10

typedef struct {
    const uint8_t *buf;
    size_t per; /* bytes per thread, a multiple of 512 */
    int pin;    /* pin threads (bw_touch) */
    uint64_t sink[64];
} bw_job;

static void bw_pin(int ith) {
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int n = CPU_COUNT(&allowed), k = ith % (n > 0 ? n : 1);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed) && k-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
}

__attribute__((target("avx512f"))) static uint64_t bw_stream512(const uint8_t *p, size_t n) {
    const __m512i *q = (const __m512i *)(const void *)p, *e = q + n / 64;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (; q < e; q += 8) {
        a0 = _mm512_xor_si512(a0, _mm512_load_si512(q)), a1 = _mm512_xor_si512(a1, _mm512_load_si512(q + 1));
        a2 = _mm512_xor_si512(a2, _mm512_load_si512(q + 2)), a3 = _mm512_xor_si512(a3, _mm512_load_si512(q + 3));
        a4 = _mm512_xor_si512(a4, _mm512_load_si512(q + 4)), a5 = _mm512_xor_si512(a5, _mm512_load_si512(q + 5));
        a6 = _mm512_xor_si512(a6, _mm512_load_si512(q + 6)), a7 = _mm512_xor_si512(a7, _mm512_load_si512(q + 7));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3)),
                          _mm512_xor_si512(_mm512_xor_si512(a4, a5), _mm512_xor_si512(a6, a7)));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}

__attribute__((target("avx2"))) static uint64_t bw_stream256(const uint8_t *p, size_t n) {
    const __m256i *q = (const __m256i *)(const void *)p, *e = q + n / 32;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (; q < e; q += 8) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256(q)), a1 = _mm256_xor_si256(a1, _mm256_load_si256(q + 1));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256(q + 2)), a3 = _mm256_xor_si256(a3, _mm256_load_si256(q + 3));
        a4 = _mm256_xor_si256(a4, _mm256_load_si256(q + 4)), a5 = _mm256_xor_si256(a5, _mm256_load_si256(q + 5));
        a6 = _mm256_xor_si256(a6, _mm256_load_si256(q + 6)), a7 = _mm256_xor_si256(a7, _mm256_load_si256(q + 7));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3)),
                          _mm256_xor_si256(_mm256_xor_si256(a4, a5), _mm256_xor_si256(a6, a7)));
    return (uint64_t)_mm256_extract_epi64(a0, 0);
}

static void bw_touch(void *arg, int ith, int nth) {
    bw_job *j = arg;
    if (j->pin) bw_pin(ith);
    memset((uint8_t *)(uintptr_t)j->buf + j->per * (size_t)ith, 1 + ith, j->per);
}

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    const uint8_t *p = j->buf + j->per * (size_t)ith;
    j->sink[ith % 64] += __builtin_cpu_supports("avx512f") ? bw_stream512(p, j->per) : bw_stream256(p, j->per);
}

/* j over a fresh buffer of about total bytes (a multiple of 512 per thread),
 * huge or 4 KiB pages, each thread's slice first touched by that thread of
 * pool (NULL: one thread), pinned if pin; the buffer's bytes, 0 on failure. */
static size_t bw_alloc(bw_job *j, sb_pool *pool, size_t total, bool huge, int pin) {
    const int nth = pool ? sb_pool_size(pool) : 1;
    *j = (bw_job){.per = total / (size_t)nth / 512 * 512, .pin = pin};
    const size_t bytes = j->per * (size_t)nth;
    uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 0;
    madvise(buf, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    j->buf = buf;
    if (pool) sb_pool_run(pool, bw_touch, j);
    else bw_touch(j, 0, 1);
    return bytes;
}

/* Best GB/s over BW_PASSES passes of nth threads over a fresh total-byte buffer. */
static double bw_measure(sb_pool *pool, size_t total, bool huge) {
    bw_job j;
    const size_t bytes = bw_alloc(&j, pool, total, huge, 1); /* pins every thread, faults its own pages in */
    if (!bytes) return 0;
    double best = 0;
    for (int r = 0; r < BW_PASSES; r++) {
        double t0 = sb_time_sec();
        sb_pool_run(pool, bw_read, &j);
        double gbs = (double)bytes / (sb_time_sec() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    munmap((void *)(uintptr_t)j.buf, bytes);
    return best;
}

static int bandwidth(int threads) {
    sb_pool *pool = sb_pool_new(threads);
    if (!pool) return 1;
    const size_t total = (size_t)2 << 30; /* 2 GiB: 64x the 32 MiB L3 of this machine */
    double small = bw_measure(pool, total, false), huge = bw_measure(pool, total, true);
    printf("bw_gbs %.2f\nbw_gbs_4k %.2f\nbw_gbs_thp %.2f\n", small > huge ? small : huge, small, huge);
    sb_pool_free(pool);
    return 0;
}

/* ---- paired probe ----
 * The host's read bandwidth drifts by a third within minutes here, faster
 * than one model's runs last, so probes taken between runs can read above
 * or below what the decode had (one Q4_0 run computed 109% of the bound
 * that way). Paired: one probe pass over a PAIR_BYTES buffer (32x the L3),
 * on the decode's own threads (sb_ctx_pool, not pinned, as the decode's are
 * not), right before every generated token, so probe and decode alternate
 * every few tens of milliseconds; a run's fraction is the decode's weight
 * bytes per second (its tokens' own time) over the median of its passes
 * (bound_paired; bound_paired_p90: over the 90th percentile pass). */
#define PAIR_BYTES ((size_t)1 << 30)

typedef struct pair_probe {
    sb_pool *pool; /* NULL: one thread */
    bw_job j;
    size_t bytes;
} pair_probe;

static bool pair_open(pair_probe *pp, sb_pool *pool) {
    pp->pool = pool;
    pp->bytes = bw_alloc(&pp->j, pool, PAIR_BYTES, true, 0);
    return pp->bytes > 0;
}

static double pair_pass(pair_probe *pp) { /* GB/s of one pass */
    const double t0 = sb_time_sec();
    if (pp->pool) sb_pool_run(pp->pool, bw_read, &pp->j);
    else bw_read(&pp->j, 0, 1);
    return (double)pp->bytes / (sb_time_sec() - t0) / 1e9;
}

static void pair_close(pair_probe *pp) { munmap((void *)(uintptr_t)pp->j.buf, pp->bytes); }

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

/* CPU time of the whole process (every thread, user + system) */
static double cpu_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp);
    return v[n / 2];
}

/* One greedy step from id; returns the next id. */
static int32_t step(sb_ctx *c, int32_t id, float *logits, int nv, sb_err *err, bool *ok) {
    if (sb_decode(c, &id, 1, logits, NULL, err) != SB_OK) {
        *ok = false;
        return id;
    }
    int32_t best = 0;
    for (int k = 1; k < nv; k++)
        if (logits[k] > logits[best]) best = k;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [-p N] [-n N] [-t N] [-r N] [-nr] [--paired] | --bw [-t N]\n", argv[0]);
        return 2;
    }
    int pp = 512, tg = 128, threads = 2, reps = 5;
    bool repack = true, paired = false;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-nr") || !strcmp(argv[i], "--no-repack") || !strcmp(argv[i], "--paired")) {
            if (!strcmp(argv[i], "--paired")) paired = true;
            else repack = false;
            memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i)); /* argv[argc] is NULL */
            argc--, i--;
        }
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
    int n_repacked = 0;
    if (repack && sb_model_repack(m, &n_repacked, &err) != SB_OK) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    printf("repacked_matrices %d\n", n_repacked);
    int nv = sb_model_get_config(m)->n_vocab;
    const sb_model_config *cfg = sb_model_get_config(m);
    const int n_ctx = pp + tg + 1;
    sb_ctx *c = sb_ctx_new(m, n_ctx, &err);
    if (!c || sb_ctx_set_threads(c, threads, &err) != SB_OK) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(pp > 0 ? pp : 1));
    toks[0] = 1; /* generation's first token when there is no prompt */
    float *logits = malloc(sizeof(float) * (size_t)nv);
    uint64_t s = 1234;
    for (int i = 0; i < pp; i++) {
        s = s * 6364136223846793005ull + 1;
        toks[i] = (int32_t)((s >> 33) % (uint64_t)nv);
    }
    double *tp = calloc((size_t)reps, sizeof(double)), *tt = calloc((size_t)reps, sizeof(double));
    double *tc = calloc((size_t)reps, sizeof(double)); /* CPU seconds of all threads per generated token */
    double *ptg = calloc((size_t)reps, sizeof(double)), *pbw = calloc((size_t)reps, sizeof(double));
    double *pfr = calloc((size_t)reps, sizeof(double)), *pfr90 = calloc((size_t)reps, sizeof(double));
    double *pass = calloc((size_t)(tg > 0 ? tg : 1), sizeof(double)); /* one run's probe passes, GB/s */
    const double bpt = bytes_per_token(argv[1]);
    bool ok = true;
    for (int r = 0; r < reps && ok; r++) {
        sb_ctx_truncate(c, 0);
        double t0 = sb_time_sec();
        if (pp && sb_decode(c, toks, pp, logits, NULL, &err) != SB_OK) ok = false;
        tp[r] = pp / (sb_time_sec() - t0);
        sb_ctx_truncate(c, 0);
        int32_t id = toks[0];
        t0 = sb_time_sec();
        const double c0 = cpu_sec();
        for (int i = 0; i < tg && ok; i++) id = step(c, id, logits, nv, &err, &ok);
        tt[r] = tg / (sb_time_sec() - t0);
        tc[r] = (cpu_sec() - c0) / (tg > 0 ? tg : 1);
    }
    struct rusage ru; /* peak RSS before the paired probe's buffer */
    getrusage(RUSAGE_SELF, &ru);
    pair_probe probe = {0};
    if (ok && paired && (tg < 1 || !pair_open(&probe, sb_ctx_pool(c)))) {
        fprintf(stderr, "infer: --paired needs -n >= 1 and %zu MiB for the probe\n", PAIR_BYTES >> 20);
        return 1;
    }
    for (int r = 0; r < reps && ok && paired; r++) {
        sb_ctx_truncate(c, 0);
        int32_t id = toks[0];
        double dec = 0;
        for (int i = 0; i < tg && ok; i++) {
            pass[i] = pair_pass(&probe);
            const double t0 = sb_time_sec();
            id = step(c, id, logits, nv, &err, &ok);
            dec += sb_time_sec() - t0;
        }
        ptg[r] = tg / dec;
        pbw[r] = median(pass, tg); /* sorts pass */
        pfr[r] = ptg[r] * bpt / (pbw[r] * 1e9);
        pfr90[r] = ptg[r] * bpt / (pass[tg * 9 / 10] * 1e9);
    }
    if (!ok) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    printf("pp%d %.2f\ntg%d %.2f\ntg_cpu_ms_per_token %.2f\n", pp, median(tp, reps), tg, median(tt, reps),
           1e3 * median(tc, reps));
    if (paired) {
        printf("tg_paired %.2f\nbw_paired_gbs %.2f\nbound_paired %.4f\nbound_paired_p90 %.4f\n", median(ptg, reps),
               median(pbw, reps), median(pfr, reps), median(pfr90, reps));
        pair_close(&probe);
    }
    sb_gguf *g = sb_gguf_open(argv[1], &err);
    double file = g ? (double)sb_gguf_file_size(g) : 0;
    sb_gguf_free(g);
    double kv = 2.0 * cfg->n_layer * n_ctx * cfg->n_head_kv * cfg->head_dim * sizeof(float);
    printf("bytes_per_token %.0f\nrss_peak_mb %.1f\nfile_mb %.1f\nkv_mb %.1f\n", bpt,
           (double)ru.ru_maxrss / 1024, file / 1048576, kv / 1048576);
    free(tp), free(tt), free(tc), free(ptg), free(pbw), free(pfr), free(pfr90), free(pass), free(toks), free(logits);
    sb_ctx_free(c);
    sb_model_free(m);
    return 0;
}
