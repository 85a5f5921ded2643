/*
 * train_step.c - time and peak memory of LoRA / QLoRA training steps on any
 * model, without a dataset: random tokens, every position a target.
 *
 *   build/bench/train_step -m MODEL [--nf4] [-b ROWS] [-T TOKENS] [-r RANK]
 *                          [--grad-checkpoint] [-t THREADS] [--steps N]
 *
 * --nf4 quantizes the base's attention and MLP projections to NF4 with
 * double quantization at load (sabio tune --qlora); otherwise the base stays
 * in its file's type (F32 / F16 / BF16 ...). LoRA on every linear layer.
 * Prints one line per step and a summary: the (lower) median step seconds,
 * tokens/s, peak RSS (getrusage) and the adapter / workspace sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/model.h"
#include "train/frozen.h"
#include "train/train.h"

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    bool nf4 = false, ckpt = false;
    int rows = 1, T = 512, r = 16, threads = 2, steps = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) path = v, i++;
        else if (!strcmp(a, "--nf4")) nf4 = true;
        else if (!strcmp(a, "--grad-checkpoint")) ckpt = true;
        else if (!strcmp(a, "-b") && v) rows = atoi(v), i++;
        else if (!strcmp(a, "-T") && v) T = atoi(v), i++;
        else if (!strcmp(a, "-r") && v) r = atoi(v), i++;
        else if (!strcmp(a, "-t") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v) steps = atoi(v), i++;
        else {
            fprintf(stderr, "usage: %s -m MODEL [--nf4] [-b ROWS] [-T TOKENS] [-r RANK] [--grad-checkpoint] "
                            "[-t THREADS] [--steps N]\n", argv[0]);
            return 2;
        }
    }
    if (!path || rows < 1 || T < 2 || r < 1 || threads < 1 || steps < 1 || steps > 1000) {
        fprintf(stderr, "train_step: -m MODEL required; sizes must be positive\n");
        return 2;
    }
    sb_err err = {0};
    double t0 = sb_time_sec();
    sb_model *m = sb_model_open(path, &err);
    if (!m) {
        fprintf(stderr, "train_step: %s\n", err.msg);
        return 1;
    }
    if (nf4 && sb_model_quantize_nf4(m, 64, true, &err) != SB_OK) {
        fprintf(stderr, "train_step: NF4: %s\n", err.msg);
        return 1;
    }
    const double t_load = sb_time_sec() - t0, rss_load = peak_rss_mb();
    const sb_model_config *mc = sb_model_get_config(m);
    sb_lora_config lc = sb_lora_config_default();
    lc.r = r;
    lc.alpha = 2.0f * (float)r;
    lc.dropout = 0;
    sb_lora *lora = sb_lora_new(mc, &lc, true, &err);
    sb_train_ws *ws = lora ? sb_train_ws_new(m, lora, rows * T, T, ckpt, &err) : NULL;
    if (!ws) {
        fprintf(stderr, "train_step: %s\n", err.msg);
        return 1;
    }
    sb_frozen_set_threads(threads);
    const int N = rows * T;
    int32_t *tok = malloc((size_t)N * 4), *tgt = malloc((size_t)N * 4);
    int *len = malloc((size_t)rows * sizeof(int));
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)mc->n_vocab);
    }
    for (int i = 0; i < N; i++) tgt[i] = (i + 1) % T ? tok[i + 1] : -1;
    for (int i = 0; i < rows; i++) len[i] = T;
    sb_batch b = {tok, tgt, len, rows};
    double *dt = malloc((size_t)steps * sizeof(double));
    for (int k = 0; k < steps; k++) {
        memset(lora->grads, 0, lora->n_params * sizeof(float));
        double loss = 0, t1 = sb_time_sec();
        int nt = 0;
        if (sb_train_step(ws, &b, true, 1.0f / (float)N, (uint64_t)k, &loss, &nt, NULL, &err) != SB_OK) {
            fprintf(stderr, "train_step: %s\n", err.msg);
            return 1;
        }
        dt[k] = sb_time_sec() - t1;
        fprintf(stderr, "step %d: %.3f s  loss %.4f  peak RSS %.0f MB\n", k, dt[k], loss / (nt ? nt : 1),
                peak_rss_mb());
    }
    qsort(dt, (size_t)steps, sizeof *dt, cmp);
    printf("model %s base %s rows %d x %d tokens r %d%s threads %d: load %.1f s (peak RSS %.0f MB), "
           "step median %.3f s (%.0f tokens/s), peak RSS %.0f MB, adapter %.1f MB, workspace %.0f MB\n",
           path, nf4 ? "nf4" : sb_dtype_name(mc->weight_type), rows, T, r, ckpt ? " grad-checkpoint" : "", threads,
           t_load, rss_load, dt[(steps - 1) / 2], N / dt[(steps - 1) / 2], peak_rss_mb(),
           (double)lora->n_params * 4 * 4 / 1048576.0 /* params, grads, 2 AdamW moments */,
           (double)sb_train_ws_bytes(ws) / 1048576.0);
    sb_train_ws_free(ws);
    sb_lora_free(lora);
    sb_model_free(m);
    free(tok), free(tgt), free(len), free(dt);
    return 0;
}
