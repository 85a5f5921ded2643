/*
 * train.h - the training forward and backward pass of the decoder for LoRA
 * parameters (base frozen), AdamW, learning-rate schedules and gradient
 * clipping, as PyTorch and transformers define them.
 *
 * A micro-batch is n_seq sequences packed row after row (N = sum of their
 * lengths rows; each starts at position 0, attention never crosses
 * sequences). targets[i] is the token row i must predict (the next token),
 * or -1 where the loss is masked (prompt tokens, the last row). The loss is
 * the sum of -log p(target) over unmasked rows; the gradient of
 * grad_scale * that sum is added into the adapter's gradient slab, so a
 * caller averaging over K target tokens of an optimizer step passes 1/K.
 *
 * Dimension letters: N rows, D n_embd, V n_vocab, Hq/Hkv heads, Hd head_dim,
 * F n_ff, r LoRA rank, T one sequence's length.
 */
#ifndef SB_TRAIN_H
#define SB_TRAIN_H

#include "model/model.h"
#include "model/lora.h"

typedef struct sb_train_ws sb_train_ws;

/* Workspace for micro-batches of up to max_rows rows, sequences of up to
 * max_seq tokens (<= the model's n_ctx_train). checkpoint: keep only each
 * layer's input and recompute the layer in the backward pass (gradient
 * checkpointing: about a third more compute, activations of one layer
 * instead of all). The backward pass needs the adapter's gradient slab. */
sb_train_ws *sb_train_ws_new(const sb_model *m, sb_lora *lora, int max_rows, int max_seq, bool checkpoint,
                             sb_err *err);
void sb_train_ws_free(sb_train_ws *ws);
/* Bytes the workspace holds (activations and scratch). */
size_t sb_train_ws_bytes(const sb_train_ws *ws);
/* Products with the frozen base in BF16 (frozen.h: activations and weight
 * tiles rounded to bf16, f32 sums, about twice the speed) instead of F32
 * (the default, the path verified against PEFT). Everything else (LoRA
 * products, attention, norms, the loss) stays f32. */
sb_status sb_train_ws_set_bf16(sb_train_ws *ws, bool bf16, sb_err *err);

typedef struct sb_batch {
    const int32_t *tokens;  /* (N) */
    const int32_t *targets; /* (N) next token or -1 */
    const int *seq_len;     /* (n_seq) */
    int n_seq;
} sb_batch;

/* Forward, loss, and (if backward) the backward pass adding into the
 * gradients. dropout_seed addresses the dropout masks (a different value per
 * micro-batch; dropout only when backward). loss_sum: sum over unmasked rows
 * (may be NULL); n_target: their count (may be NULL). logits (N, V) of every
 * row if non-NULL. Errors: sizes out of range, token ids out of the
 * vocabulary. */
sb_status sb_train_step(sb_train_ws *ws, const sb_batch *b, bool backward, float grad_scale, uint64_t dropout_seed,
                        double *loss_sum, int *n_target, float *logits, sb_err *err);

/* ---- optimizer ---- */

typedef struct sb_adamw {
    float lr, beta1, beta2, eps, weight_decay; /* torch.optim.AdamW's */
    int64_t t;         /* steps taken */
    size_t n;
    float *m, *v;      /* (n) first and second moments */
} sb_adamw;

/* betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 (torch's defaults) and lr. */
sb_status sb_adamw_init(sb_adamw *o, size_t n, float lr, sb_err *err);
void sb_adamw_free(sb_adamw *o);
/* One step of torch.optim.AdamW (decoupled weight decay, bias-corrected)
 * at learning rate lr on p with gradient g. */
void sb_adamw_step(sb_adamw *o, float *p, const float *g, float lr);

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of g (returned); if
 * above max_norm (> 0), g is scaled by max_norm / (norm + 1e-6). */
float sb_clip_grad_norm(float *g, size_t n, float max_norm);

typedef enum { SB_SCHED_CONSTANT = 0, SB_SCHED_COSINE, SB_SCHED_LINEAR } sb_schedule;
/* transformers' get_{constant,cosine,linear}_schedule_with_warmup: the
 * multiplier of the base lr at step (0-based) of total. */
float sb_lr_factor(sb_schedule s, int64_t step, int64_t warmup, int64_t total);
/* "constant", "cosine", "linear"; -1 if unknown. */
int sb_schedule_from_name(const char *name);

#endif
