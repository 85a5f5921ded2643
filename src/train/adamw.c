/*
 * adamw.c - torch.optim.AdamW, clip_grad_norm_ and transformers' learning
 * rate schedules (train.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

sb_status sb_adamw_init(sb_adamw *o, size_t n, float lr, sb_err *err) {
    memset(o, 0, sizeof *o);
    o->lr = lr, o->beta1 = 0.9f, o->beta2 = 0.999f, o->eps = 1e-8f, o->weight_decay = 0.01f;
    o->n = n;
    o->m = sb_calloc(n ? n : 1, sizeof(float));
    o->v = sb_calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        sb_adamw_free(o);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory for the AdamW moments of %zu parameters", n);
    }
    return SB_OK;
}

void sb_adamw_free(sb_adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void sb_adamw_step(sb_adamw *o, float *p, const float *g, float lr) {
    /* torch/optim/adamw.py (_single_tensor_adamw, non-capturable): bias
     * corrections in double as Python floats, the update in f32:
     *   p *= 1 - lr * wd;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
     *   p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
    o->t++;
    const double bc1 = 1.0 - pow((double)o->beta1, (double)o->t);
    const double bc2 = 1.0 - pow((double)o->beta2, (double)o->t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float decay = 1.0f - lr * o->weight_decay, b1 = o->beta1, b2 = o->beta2;
    for (size_t i = 0; i < o->n; i++) {
        p[i] *= decay;
        o->m[i] += (g[i] - o->m[i]) * (1.0f - b1);
        o->v[i] = o->v[i] * b2 + (1.0f - b2) * g[i] * g[i];
        const float denom = sqrtf(o->v[i]) / bc2_sqrt + o->eps;
        p[i] -= step_size * (o->m[i] / denom);
    }
}

float sb_clip_grad_norm(float *g, size_t n, float max_norm) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    const float norm = (float)sqrt(ss);
    if (max_norm > 0) {
        /* clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 */
        float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f)
            for (size_t i = 0; i < n; i++) g[i] *= coef;
    }
    return norm;
}

float sb_lr_factor(sb_schedule s, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (float)step / (float)(warmup > 1 ? warmup : 1);
    if (s == SB_SCHED_CONSTANT) return 1.0f;
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    double progress = (double)(step - warmup) / span;
    if (s == SB_SCHED_LINEAR) return (float)fmax(0.0, (double)(total - step) / span);
    return (float)fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress))); /* num_cycles 0.5 */
}

int sb_schedule_from_name(const char *name) {
    if (!strcmp(name, "constant")) return SB_SCHED_CONSTANT;
    if (!strcmp(name, "cosine")) return SB_SCHED_COSINE;
    if (!strcmp(name, "linear")) return SB_SCHED_LINEAR;
    return -1;
}
