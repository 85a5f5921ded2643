/*
 * ops.c - elementwise and row-wise f32 operations of the decoder (ops.h).
 * Scalar C: these are O(D) per token against the O(D^2) matrix products, so
 * they are not where the time goes; they are written for exactness first.
 * The exception is SwiGLU, whose expf per element showed in prompt profiles
 * of small models: with AVX2 it takes ops_avx2.c's loop (e^x within 8e-8).
 */
#include "tensor/ops.h"
#include "tensor/kernels.h"

#include <math.h>

float sb_rmsnorm_rstd(const float *x, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(ss / n + (double)eps));
}

void sb_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float scale = sb_rmsnorm_rstd(x, n, eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

void sb_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, float rstd, int n) {
    /* y = w * x * r, r = (mean(x^2) + eps)^-1/2:
     * dx_i = r * w_i dy_i - x_i * r^3 / n * sum_j w_j dy_j x_j */
    double dot = 0.0;
    for (int i = 0; i < n; i++) dot += (double)w[i] * dy[i] * x[i];
    const float c = (float)(dot * rstd * rstd * rstd / n);
    for (int i = 0; i < n; i++) dx[i] += rstd * w[i] * dy[i] - x[i] * c;
}

void sb_rope_inv_freq(float *inv_freq, int n_rot, float theta, const float *factor) {
    for (int i = 0; i < n_rot / 2; i++) {
        float expo = (float)(2 * i) / (float)n_rot;
        float base_pow = (float)pow((double)theta, (double)expo);
        float denom = factor ? factor[i] * base_pow : base_pow;
        inv_freq[i] = 1.0f / denom;
    }
}

void sb_rope_table(float *cos_out, float *sin_out, const float *inv_freq, int n_rot, int pos,
                   float mscale) {
    for (int i = 0; i < n_rot / 2; i++) {
        /* transformers computes pos * inv_freq in f32, then cos/sin in f32;
         * rounding the product to f32 first reproduces its angle exactly. */
        float angle = (float)pos * inv_freq[i];
        cos_out[i] = (float)cos((double)angle) * mscale;
        sin_out[i] = (float)sin((double)angle) * mscale;
    }
}

void sb_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cos_t,
                   const float *sin_t, bool neox) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i;
            int b = neox ? i + half : 2 * i + 1;
            float x1 = v[a], x2 = v[b];
            v[a] = x1 * cos_t[i] - x2 * sin_t[i];
            v[b] = x2 * cos_t[i] + x1 * sin_t[i];
        }
    }
}

void sb_softmax(float *x, int n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void sb_swiglu(float *out, const float *gate, const float *up, int n) {
    if (sb_isa_supported(SB_ISA_AVX2)) {
        sb_swiglu_avx2(out, gate, up, n);
        return;
    }
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void sb_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        /* d silu(g)/dg = sig(g) (1 + g (1 - sig(g))) */
        float g = gate[i], sig = 1.0f / (1.0f + expf(-g));
        dgate[i] = dh[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] = dh[i] * g * sig;
    }
}

void sb_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

int64_t sb_argmax(const float *x, int64_t n) {
    if (n <= 0) return -1;
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}
