/*
 * kernels_scalar.c - the quantized-activation path's reference: the
 * activation vector is quantized once per product to 8-bit blocks (kernels.h
 * sb_q8a / sb_q8k), then each weight block is dotted with it in integers and
 * scaled once per block. These functions define the arithmetic; the SIMD
 * versions (kernels_avx2.c, kernels_avx512.c) compute the same integer sums
 * exactly and differ only in the order of the float additions across blocks
 * (tests/test_kernels.c checks it).
 *
 * Per block, with w = dw * qw (+ m) and x ~ dx * qx:
 *   Q8_0:  dw*dx * sum qw*qx
 *   Q4_0:  dw*dx * sum (nib-8)*qx                Q5_0: (q5-16)
 *   Q4_1:  dw*dx * sum nib*qx + m * (dx sum qx)  Q5_1: q5
 *   Q4_K:  d*dx * sum_j sc_j sum nib*qx - dmin*dx * sum_j m_j sum qx   (Q5_K: q5)
 *   Q6_K:  d*dx * sum_g sc_g sum (q6-32)*qx  (g: 16 groups of 16)
 */
#include "tensor/kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return sb_f16_to_f32(h);
}

/* ---- activation quantizers (also used by the SIMD paths: one definition of
 * the rounding, so every path sees the same integers) ---- */

void sb_quantize_q8a(const float *x, sb_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32, y++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax; /* not fmaxf: a libm call */
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)nearbyintf(x[j] * id); /* |x*id| <= 127 up to rounding */
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            y->qs[j] = (int8_t)q;
            sum += q;
        }
        y->d = d;
        y->s = d * (float)sum;
    }
}

void sb_quantize_q8k(const float *x, sb_q8k *y, int64_t n) {
    for (int64_t i = 0; i < n / 256; i++, x += 256, y++) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 256; j++) {
            int q = (int)nearbyintf(x[j] * id);
            y->qs[j] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y->qs[g * 16 + j];
            y->bsums[g] = (int16_t)s;
        }
        y->d = d;
    }
}

/* Two levels (kernels.h sb_quantize_q8a2 / q8k2): the block as the one-level
 * quantizer rounds it (step d1), then its rounding error r = x - d1 * q1
 * (one f32 product, one f32 difference) rounded with the fixed step
 * d2 = d1 / 254: |r| <= d1 / 2, so |r / d2| <= 127 up to f32 rounding. */
static int8_t round_q8(float v) {
    const int q = (int)nearbyintf(v);
    return (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
}

/* r[j] = x[j] - d1 * q1[j], rounded with d2 = d1 / 254 into qs; returns d2 */
static float residual_q8(const float *x, float d1, const int8_t *q1, int8_t *qs, int n) {
    const float d2 = d1 / 254.0f, id2 = d2 >= FLT_MIN ? 1.0f / d2 : 0.0f; /* subnormal d2: q2 = 0 */
    for (int j = 0; j < n; j++) {
        const float v = d1 * (float)q1[j];
        const float r = x[j] - v;
        qs[j] = round_q8(r * id2);
    }
    return d2;
}

void sb_quantize_q8a2(const float *x, sb_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32, y += 2) {
        sb_quantize_q8a(x, y, 32);
        y[1].d = residual_q8(x, y->d, y->qs, y[1].qs, 32);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += y[1].qs[j];
        y[1].s = y[1].d * (float)sum;
    }
}

void sb_quantize_q8k2(const float *x, sb_q8k *y, int64_t n) {
    for (int64_t i = 0; i < n / 256; i++, x += 256, y += 2) {
        sb_quantize_q8k(x, y, 256);
        y[1].d = residual_q8(x, y->d, y->qs, y[1].qs, 256);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[1].qs[g * 16 + j];
            y[1].bsums[g] = (int16_t)s;
        }
    }
}

/* ---- 32-element weight blocks x sb_q8a ---- */

float sb_qdot_q8_0_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 34, x++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += (int8_t)b[2 + j] * x->qs[j];
        sum += h2f(b) * x->d * (float)s;
    }
    return sum;
}

float sb_qdot_q4_0_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 18, x++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((b[2 + j] & 0xf) - 8) * x->qs[j] + ((b[2 + j] >> 4) - 8) * x->qs[j + 16];
        sum += h2f(b) * x->d * (float)s;
    }
    return sum;
}

float sb_qdot_q4_1_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 20, x++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += (b[4 + j] & 0xf) * x->qs[j] + (b[4 + j] >> 4) * x->qs[j + 16];
        sum += h2f(b) * x->d * (float)s + h2f(b + 2) * x->s;
    }
    return sum;
}

float sb_qdot_q5_0_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 22, x++) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (b[6 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int q1 = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            s += (q0 - 16) * x->qs[j] + (q1 - 16) * x->qs[j + 16];
        }
        sum += h2f(b) * x->d * (float)s;
    }
    return sum;
}

float sb_qdot_q5_1_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 24, x++) {
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (b[8 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int q1 = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            s += q0 * x->qs[j] + q1 * x->qs[j + 16];
        }
        sum += h2f(b) * x->d * (float)s + h2f(b + 2) * x->s;
    }
    return sum;
}

/* ---- K-quants x sb_q8k ---- */

void sb_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K (hbits NULL) and Q5_K: sub-block j of 32 takes the low nibbles of
 * q[32*(j/2) ..] for even j, the high ones for odd j, plus bit j of qh[l]. */
static float qdot_k45(const uint8_t *b, const sb_q8k *x, int64_t n, int q5) {
    const size_t bsz = q5 ? 176 : 144;
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += bsz, x++) {
        const uint8_t *scales = b + 4, *qh = b + 16, *q = b + (q5 ? 48 : 16);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            sb_k4_scale_min(j, scales, &sc, &m);
            const uint8_t *qq = q + 32 * (j / 2);
            const int8_t *xs = x->qs + 32 * j;
            int s = 0;
            for (int l = 0; l < 32; l++) {
                int v = j & 1 ? qq[l] >> 4 : qq[l] & 0xf;
                if (q5) v |= ((qh[l] >> j) & 1) << 4;
                s += v * xs[l];
            }
            isum += sc * s;
            msum += m * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
        }
        sum += h2f(b) * x->d * (float)isum - h2f(b + 2) * x->d * (float)msum;
    }
    return sum;
}

float sb_qdot_q4_k_scalar(const void *row, const void *xq, int64_t n) { return qdot_k45(row, xq, n, 0); }
float sb_qdot_q5_k_scalar(const void *row, const void *xq, int64_t n) { return qdot_k45(row, xq, n, 1); }

/* sum_g sc_g sum (q6 - 32) * qs over one Q6_K super-block b, exact */
static int q6_k_isum(const uint8_t *b, const int8_t *qs) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    int isum = 0;
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8) {
        const int8_t *xs = qs + 128 * half;
        int g[8] = {0};
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            int q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            g[is] += q1 * xs[l];
            g[is + 2] += q2 * xs[l + 32];
            g[is + 4] += q3 * xs[l + 64];
            g[is + 6] += q4 * xs[l + 96];
        }
        for (int k = 0; k < 8; k++) isum += sc[k] * g[k];
    }
    return isum;
}

float sb_qdot_q6_k_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8k *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 210, x++) sum += h2f(b + 208) * x->d * (float)q6_k_isum(b, x->qs);
    return sum;
}

/* Q6_K x two-level activations: the integer sums of both levels exactly as
 * above (isum1 with the block, isum2 with its residual), then per super-block
 * d * (d1 * isum1 + d2 * isum2), one f32 operation per statement (so no
 * compiler fuses them: the SIMD kernels do the same operations). */
float sb_qdot_q6_k2_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8k *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 210, x += 2) {
        const float s1 = x[0].d * (float)q6_k_isum(b, x[0].qs);
        const float s2 = x[1].d * (float)q6_k_isum(b, x[1].qs);
        const float t = s1 + s2;
        const float v = h2f(b + 208) * t;
        sum += v;
    }
    return sum;
}

/* Q8_0 x two-level activations: with d2 = d1 / 254 the block is
 * d2 * (254 * q1 + q2), one integer sum 254 * s1 + s2 per block (|.| < 2^27)
 * scaled by dw * d2. */
float sb_qdot_q8_0_2_scalar(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 34, x += 2) {
        int s1 = 0, s2 = 0;
        for (int j = 0; j < 32; j++) s1 += (int8_t)b[2 + j] * x[0].qs[j], s2 += (int8_t)b[2 + j] * x[1].qs[j];
        sum += h2f(b) * x[1].d * (float)(254 * s1 + s2);
    }
    return sum;
}
