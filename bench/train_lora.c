/*
 * train_lora.c - time per LoRA optimizer step of sabio's training engine:
 * random tokens, B sequences x T tokens, loss on every token, forward +
 * backward + clip + AdamW, the same work as bench/train_peft.py. Prints one
 * JSON line (seconds per step, median of STEPS after one warm-up step, and
 * the process's CPU seconds per step likewise; peak RSS). Used by bench/train
 * and bench/qlora.sh (--nf4: the base's linear weights quantized to NF4 with
 * double quantization at load, QLoRA; --bf16: the frozen products in BF16,
 * sb_train_ws_set_bf16).
 *
 *   build/bench/train_lora MODEL B T THREADS STEPS R TARGETS [--grad-checkpoint] [--nf4] [--bf16]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model/lora.h"
#include "train/frozen.h"
#include "train/train.h"

static double cpu_sec(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s MODEL B T THREADS STEPS R TARGETS [--grad-checkpoint] [--nf4] [--bf16]\n", argv[0]);
        return 2;
    }
    const int B = atoi(argv[2]), T = atoi(argv[3]), threads = atoi(argv[4]), steps = atoi(argv[5]);
    bool ckpt = false, nf4 = false, bf16 = false;
    for (int i = 8; i < argc; i++)
        ckpt |= !strcmp(argv[i], "--grad-checkpoint"), nf4 |= !strcmp(argv[i], "--nf4"), bf16 |= !strcmp(argv[i], "--bf16");
    sb_err err = {0};
    sb_model *m = sb_model_open(argv[1], &err);
    if (!m) return fprintf(stderr, "%s\n", err.msg), 1;
    if (nf4 && sb_model_quantize_nf4(m, 64, true, &err) != SB_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    const sb_model_config *c = sb_model_get_config(m);
    sb_lora_config lc = sb_lora_config_default();
    lc.r = atoi(argv[6]), lc.alpha = 2.0f * (float)lc.r, lc.dropout = 0.05f;
    if (sb_lora_config_set_targets(&lc, argv[7], &err) != SB_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    sb_lora *l = sb_lora_new(c, &lc, true, &err);
    if (!l) return fprintf(stderr, "%s\n", err.msg), 1;
    sb_lora_init(l, 1);
    sb_frozen_set_threads(threads);
    sb_train_ws *ws = sb_train_ws_new(m, l, B * T, T, ckpt, &err);
    if (!ws || sb_train_ws_set_bf16(ws, bf16, &err) != SB_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    int32_t *tok = malloc((size_t)B * T * 4), *tgt = malloc((size_t)B * T * 4);
    int *len = malloc((size_t)B * sizeof(int));
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(sb_rng_at(42, (uint64_t)i) % (uint64_t)c->n_vocab);
    for (int s = 0; s < B; s++) {
        len[s] = T;
        for (int t = 0; t < T; t++) tgt[s * T + t] = t + 1 < T ? tok[s * T + t + 1] : -1;
    }
    sb_batch b = {tok, tgt, len, B};
    sb_adamw opt;
    sb_adamw_init(&opt, l->n_params, 1e-4f, &err);
    double *dt = calloc((size_t)steps + 1, sizeof(double)), *dc = calloc((size_t)steps + 1, sizeof(double)), loss = 0;
    for (int s = 0; s <= steps; s++) {
        double t0 = sb_time_sec(), c0 = cpu_sec(), ls;
        int nt;
        memset(l->grads, 0, l->n_params * sizeof(float));
        if (sb_train_step(ws, &b, true, 1.0f / (float)(B * (T - 1)), (uint64_t)s, &ls, &nt, NULL, &err) != SB_OK)
            return fprintf(stderr, "%s\n", err.msg), 1;
        sb_clip_grad_norm(l->grads, l->n_params, 1.0f);
        sb_adamw_step(&opt, l->params, l->grads, 1e-4f);
        dt[s] = sb_time_sec() - t0;
        dc[s] = cpu_sec() - c0;
        loss = ls / nt;
        fprintf(stderr, "sabio step %d: %.2f s (CPU %.2f s), loss %.4f\n", s, dt[s], dc[s], loss);
    }
    qsort(dt + 1, (size_t)steps, sizeof(double), cmp_d);
    qsort(dc + 1, (size_t)steps, sizeof(double), cmp_d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"engine\": \"sabio\", \"base\": \"%s\", \"compute\": \"%s\", \"s_per_step\": %.3f, \"cpu_s_per_step\": %.3f, "
           "\"peak_rss_mib\": %.0f, \"loss\": %.4f, \"lora_params\": %zu, \"activations_mib\": %.0f}\n",
           sb_dtype_name(c->weight_type), bf16 ? "bf16" : "f32", dt[1 + steps / 2], dc[1 + steps / 2],
           (double)ru.ru_maxrss / 1024, loss, l->n_params, (double)sb_train_ws_bytes(ws) / (1 << 20));
    return 0;
}
