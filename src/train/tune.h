/*
 * tune.h - the LoRA training loop: batches from a dataset, the forward and
 * backward pass, gradient accumulation, clipping, AdamW on a warm-up +
 * cosine/linear/constant schedule, validation loss, checkpoints and exact
 * resume, and the outputs (PEFT folder, GGUF LoRA, per-step JSON log, loss
 * curve SVG).
 *
 * Determinism: the example order of epoch e is a permutation drawn from
 * (seed, e); dropout masks of micro-batch j from (seed, j); LoRA A from
 * seed. All are counter-based, so the state to save is (seed, step): a
 * resumed run draws exactly what the uninterrupted run would. With the same
 * thread count the arithmetic is the same too (OpenBLAS partitions its
 * products by thread count), so the final adapter is bit-identical.
 *
 * Files in out_dir: checkpoint.bin (adapter, AdamW moments, step, log;
 * written to a temporary name, fsync'd, renamed), adapter_config.json +
 * adapter_model.safetensors, adapter.gguf, log.json, loss.svg.
 */
#ifndef SB_TUNE_H
#define SB_TUNE_H

#include "model/lora.h"
#include "train/dataset.h"
#include "train/dist.h"
#include "train/train.h"

typedef struct sb_tune_opts {
    sb_lora_config lora;
    float lr, weight_decay, beta1, beta2, eps;
    float max_grad_norm;   /* 0 = no clipping */
    int epochs;            /* used when steps == 0 */
    int64_t steps;         /* optimizer steps; 0 = epochs over the data */
    int batch;             /* sequences per micro-batch */
    int grad_accum;        /* micro-batches per optimizer step */
    int64_t warmup;        /* warm-up steps */
    sb_schedule schedule;
    int max_len;           /* tokens per sequence */
    bool grad_checkpoint;
    bool bf16;             /* frozen-base products in BF16 (sb_train_ws_set_bf16), validation losses too */
    int threads;
    uint64_t seed;
    int64_t eval_every;    /* steps between validation losses (0: 10 evaluations per run) */
    int64_t save_every;    /* steps between checkpoints (0: every eval) */
    bool resume;           /* continue from out_dir/checkpoint.bin */
    const char *out_dir;
    /* Data parallelism (NULL: one process). Each optimizer step's
     * batch * grad_accum examples are split across the ranks (the global
     * batch stays the same), gradients and losses summed across them; every
     * rank applies the same update, rank 0 writes checkpoints and outputs.
     * Checkpoints do not depend on the rank count, so a run resumes with any. */
    const sb_dist *dist;
} sb_tune_opts;

/* lr 2e-4, weight decay 0, betas (0.9, 0.999), eps 1e-8, clip 1.0, 1 epoch,
 * batch 4, grad_accum 1, warm-up 0, cosine, max_len 512, 2 threads, seed 0. */
sb_tune_opts sb_tune_opts_default(void);

typedef struct sb_step_log {
    int64_t step;      /* 1-based, after the update */
    float loss;        /* mean over the step's assistant tokens */
    float val_loss;    /* NAN if not evaluated at this step */
    float lr, grad_norm;
    int64_t tokens;    /* rows processed (all tokens of the step's sequences) */
    double seconds;    /* wall time of the step (without validation) */
} sb_step_log;

/* Called after every step; total = the run's steps. eta in seconds. */
typedef void (*sb_tune_progress_fn)(const sb_step_log *s, int64_t total, double eta, void *user);

/* Trains a LoRA adapter on m. val may be NULL. Writes the out_dir files.
 * Errors: options out of range, a checkpoint that does not match these
 * options or data, I/O. */
sb_status sb_tune(const sb_model *m, const sb_dataset *train, const sb_dataset *val, const sb_tune_opts *o,
                  sb_tune_progress_fn progress, void *user, sb_err *err);

/* Mean loss of the model + adapter l over d's assistant tokens. */
sb_status sb_eval_loss(const sb_model *m, sb_lora *l, const sb_dataset *d, int batch, int max_len, double *loss,
                       sb_err *err);

/* Writes a loss curve (train loss per step, validation loss points) as SVG. */
sb_status sb_write_loss_svg(const char *path, const sb_step_log *log, int64_t n, sb_err *err);

#endif
