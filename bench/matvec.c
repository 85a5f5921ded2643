/*
 * bench/matvec.c - decode's matrix-vector product alone: sb_matvec_q (8-bit
 * activations) over one weight matrix, per weight type, reported as GB/s of
 * weights streamed, in the thread's CPU time and in wall time.
 *
 *   build/bench/matvec [-t THREADS] [-r ROWS] [-c COLS] [-p PASSES] [-f | -2] [-4] [TYPE...]
 *
 * Defaults: 8192 x 3072 (Phi-3-mini's ffn_up: 3x the 32 MiB L3 at Q8_0, about
 * the L3 at Q4_0) and types q4_0 q8_0 q4_1 q4_k q5_k q6_k; -r 32064 gives the
 * vocabulary's lm_head, -r 64 an in-cache run (the kernel's arithmetic alone).
 * Weights are random bytes with small valid f16 scales (the speed of an
 * integer dot does not depend on the values). Rows are split over the
 * threads as the decoder splits them (contiguous halves). The weights sit
 * in 2 MiB pages (MADV_HUGEPAGE); -4: 4 KiB pages (MADV_NOHUGEPAGE), as a
 * model file's mapping mostly gets. -f: float
 * activations (sb_matvec: exact mode's logits) instead; -2: two-level 8-bit
 * activations (sb_matvec_q2: fast mode's logits; Q6_K only)
 */
#include "base/threadpool.h"
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "tensor/q4r8.h"
#include "tensor/tensor.h"

#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* byte offsets of the f16 scale fields of one block (-1: none) */
static void scale_fields(int type, int off[2]) {
    off[0] = 0, off[1] = -1;
    if (type == SB_Q4_1 || type == SB_Q4_K || type == SB_Q5_K) off[1] = 2;
    if (type == SB_Q6_K) off[0] = 208;
}

typedef struct job {
    sb_tensor w;
    const void *xq;
    float *y;
    const float *x; /* non-NULL: float activations (sb_matvec, as exact mode's logits) */
    int two;        /* xq holds two-level activations (sb_matvec_q2) */
    int passes;
    double cpu[64];
} job;

static void worker(void *arg, int ith, int nth) {
    job *j = arg;
    const int64_t n = j->w.ne[1], per = (n + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < n ? r0 + per : n;
    double t0 = now(CLOCK_THREAD_CPUTIME_ID);
    for (int p = 0; p < j->passes; p++)
        if (r0 < r1 && j->x) sb_matvec(&j->w, j->x, j->y, r0, r1);
        else if (r0 < r1 && j->two) sb_matvec_q2(&j->w, j->xq, j->y, r0, r1);
        else if (r0 < r1) sb_matvec_q(&j->w, j->xq, j->y, r0, r1);
    j->cpu[ith] = now(CLOCK_THREAD_CPUTIME_ID) - t0;
}

int main(int argc, char **argv) {
    int threads = 1, passes = 0, float_x = 0, two = 0, small_pages = 0;
    int64_t rows = 8192, cols = 3072;
    const char *names[16];
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-f")) float_x = 1;
        else if (!strcmp(argv[i], "-2")) two = 1;
        else if (!strcmp(argv[i], "-4")) small_pages = 1;
        else if (n_names < 16) names[n_names++] = argv[i];
    }
    if (!n_names) {
        static const char *def[] = {"q4_0", "q8_0", "q4_1", "q4_k", "q5_k", "q6_k"};
        for (int i = 0; i < 6; i++) names[n_names++] = def[i];
    }
    sb_pool *pool = threads > 1 ? sb_pool_new(threads) : NULL;
    printf("kernels %s, %lld x %lld, %d thread(s)\n", sb_kernels_isa(), (long long)rows, (long long)cols, threads);
    printf("%-6s %10s %10s %10s %10s\n", "type", "MB", "ns/row", "GB/s cpu", "GB/s wall");
    for (int k = 0; k < n_names; k++) {
        /* q4_0_r8: Q4_0 weights repacked 8 rows at a time (tensor/q4r8.h), as sb_model_repack does */
        const int r8 = !strcmp(names[k], "q4_0_r8");
        const int type = r8 ? SB_Q4_0 : sb_dtype_from_name(names[k]);
        const sb_type_traits *t = sb_type_traits_get(type);
        size_t rb;
        if (!t || !sb_dtype_row_bytes(type, cols, &rb)) {
            fprintf(stderr, "%s: unknown type or bad width\n", names[k]);
            return 1;
        }
        const size_t bytes = rb * (size_t)rows;
        const size_t alloc = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
        uint8_t *w = aligned_alloc(2u << 20, alloc);
        if (w) madvise(w, alloc, small_pages ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < bytes; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            w[i] = (uint8_t)s;
        }
        int off[2];
        scale_fields(type, off);
        for (size_t b = 0; b < bytes; b += t->type_size)
            for (int f = 0; f < 2 && off[f] >= 0; f++) w[b + off[f]] = 0x00, w[b + off[f] + 1] = 0x20; /* 2^-7 */
        if (r8 && !sb_q4r8_fits(cols, rows)) {
            fprintf(stderr, "q4_0_r8: rows must be a multiple of 8\n");
            return 1;
        }
        if (r8) { /* pack through a copy, back into the same pages */
            uint8_t *tmp = malloc(bytes);
            memcpy(tmp, w, bytes);
            sb_q4r8_pack(tmp, w, cols, 0, rows);
            free(tmp);
        }
        const int wtype = r8 ? SB_Q4_0_R8 : type;
        const int act = sb_act_type(wtype);
        float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
        if (two && !sb_act2_bytes(type, cols)) {
            fprintf(stderr, "%s: no two-level activation kernel\n", names[k]);
            return 1;
        }
        void *xq = malloc(two ? sb_act2_bytes(type, cols) : sb_act_bytes(act, cols));
        for (int64_t i = 0; i < cols; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
        if (two) sb_act2_quantize(wtype, x, xq, cols);
        else sb_act_quantize(act, x, xq, cols);
        job j = {.w = {.name = "w", .type = wtype, .n_dims = 2, .ne = {cols, rows, 1, 1}, .data = w, .nbytes = bytes},
                 .xq = xq,
                 .x = float_x ? x : NULL,
                 .two = two,
                 .y = y};
        j.passes = passes > 0 ? passes : (int)(4e9 / (double)bytes) + 1; /* about 4 GB per measurement */
        job warm = j;
        warm.passes = 1;
        sb_pool_run(pool, worker, &warm);
        double best_cpu = 1e30, best_wall = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now(CLOCK_MONOTONIC);
            sb_pool_run(pool, worker, &j);
            double wall = now(CLOCK_MONOTONIC) - t0, cpu = 0;
            for (int i = 0; i < sb_pool_size(pool); i++) cpu = j.cpu[i] > cpu ? j.cpu[i] : cpu;
            if (cpu < best_cpu) best_cpu = cpu;
            if (wall < best_wall) best_wall = wall;
        }
        const double total = (double)bytes * j.passes;
        printf("%-7s %10.1f %10.1f %10.2f %10.2f\n", r8 ? "q4_0_r8" : t->name, bytes / 1e6, best_cpu * 1e9 / j.passes / rows * threads,
               total / best_cpu / 1e9, total / best_wall / 1e9);
        free(w), free(x), free(y), free(xq);
    }
    sb_pool_free(pool);
    return 0;
}
