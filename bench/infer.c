/*
 * bench/infer.c - prompt processing (pp) and generation (tg) speed of our
 * decoder, measured the way llama-bench does: pp = one prompt of N random
 * tokens from an empty cache; tg = N single-token steps. Prints tokens/s,
 * the median of the runs.
 *
 * usage: build/bench/infer MODEL [-p 512] [-n 128] [-t THREADS] [-r 5]
 */
#include "model/model.h"
#include "model/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [-p N] [-n N] [-t N] [-r N]\n", argv[0]);
        return 2;
    }
    int pp = 512, tg = 128, threads = 2, reps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-p")) pp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) tg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
    }
    sb_err err = {0};
    sb_model *m = sb_model_open(argv[1], &err);
    if (!m) {
        fprintf(stderr, "infer: %s\n", err.msg);
        return 1;
    }
    int nv = sb_model_get_config(m)->n_vocab;
    sb_ctx *c = sb_ctx_new(m, pp + tg + 1 < 4096 ? 4096 : pp + tg + 1, &err);
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
    free(tp), free(tt), free(toks), free(logits);
    sb_ctx_free(c);
    sb_model_free(m);
    return 0;
}
