/*
 * quants.c - block dequantizers and quantizers of the GGML quantization
 * types (layouts in quants.h). Scalar reference code: the SIMD kernels that
 * come later are checked against these functions.
 *
 * Dequantization follows the float32 operation order of the `gguf` Python
 * package (e.g. (d * scale) * q - (dmin * min)) so results are bit-identical
 * to it. This file must be compiled without floating-point contraction
 * (-std=c11 gives -ffp-contract=off with GCC; clang needs the pragma below):
 * fused multiply-adds would change the rounding.
 */
#include "tensor/quants.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <string.h>

#include "tensor/tensor.h"

/* Round to nearest, ties to even (the default rounding mode), as ggml's
 * nearest_int. */
static inline int nearest(float x) { return (int)lrintf(x); }
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- 32-element blocks ----
 * Q4_0 {f16 d; u8 qs[16]}          x = (nibble - 8) * d
 * Q4_1 {f16 d, m; u8 qs[16]}       x = nibble * d + m
 * Q5_0 {f16 d; u8 qh[4]; qs[16]}   x = (5-bit - 16) * d
 * Q5_1 {f16 d, m; qh[4]; qs[16]}   x = 5-bit * d + m
 * Q8_0 {f16 d; i8 qs[32]}          x = q * d
 * Element j < 16 sits in the low nibble of qs[j], element j + 16 in the high
 * nibble; the fifth bit of element j is bit j of qh (little-endian u32). */

void sb_q4_0_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        float d = f16(b);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b[2 + j] & 0xf) - 8);
            y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

void sb_q4_1_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 20, y += 32) {
        float d = f16(b), m = f16(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(b[4 + j] & 0xf) + m;
            y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
    }
}

void sb_q5_0_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 22, y += 32) {
        float d = f16(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; j++) {
            int x0 = (b[6 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int x1 = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)(x0 - 16);
            y[j + 16] = d * (float)(x1 - 16);
        }
    }
}

void sb_q5_1_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 24, y += 32) {
        float d = f16(b), m = f16(b + 2);
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        for (int j = 0; j < 16; j++) {
            int x0 = (b[8 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int x1 = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)x0 + m;
            y[j + 16] = d * (float)x1 + m;
        }
    }
}

void sb_q8_0_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 34, y += 32) {
        float d = f16(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
    }
}

/* Quantization, as ggml's reference quantizers: the scale comes from the
 * element of largest magnitude (Q4_0/Q5_0/Q8_0) or from min/max (Q4_1/Q5_1);
 * the scale is stored as f16 but quantizing uses the f32 inverse. */
static float absmax_signed(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

void sb_q4_0_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 18, x += 32) {
        float d = absmax_signed(x, 32) / -8, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(int8_t)(x[j] * id + 8.5f), x1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            if (x0 > 15) x0 = 15;
            if (x1 > 15) x1 = 15;
            b[2 + j] = (uint8_t)(x0 | (x1 << 4));
        }
    }
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

void sb_q4_1_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 20, x += 32) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        put_f16(b + 2, mn);
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(int8_t)((x[j] - mn) * id + 0.5f), x1 = (int)(int8_t)((x[j + 16] - mn) * id + 0.5f);
            if (x0 > 15) x0 = 15;
            if (x1 > 15) x1 = 15;
            b[4 + j] = (uint8_t)(x0 | (x1 << 4));
        }
    }
}

void sb_q5_0_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 22, x += 32) {
        float d = absmax_signed(x, 32) / -16, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(int8_t)(x[j] * id + 16.5f), x1 = (int)(int8_t)(x[j + 16] * id + 16.5f);
            if (x0 > 31) x0 = 31;
            if (x1 > 31) x1 = 31;
            b[6 + j] = (uint8_t)((x0 & 0xf) | ((x1 & 0xf) << 4));
            qh |= ((uint32_t)(x0 >> 4) & 1) << j;
            qh |= ((uint32_t)(x1 >> 4) & 1) << (j + 16);
        }
        memcpy(b + 2, &qh, 4);
    }
}

void sb_q5_1_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 24, x += 32) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        put_f16(b + 2, mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(int8_t)((x[j] - mn) * id + 0.5f), x1 = (int)(int8_t)((x[j + 16] - mn) * id + 0.5f);
            if (x0 > 31) x0 = 31;
            if (x1 > 31) x1 = 31;
            b[8 + j] = (uint8_t)((x0 & 0xf) | ((x1 & 0xf) << 4));
            qh |= ((uint32_t)(x0 >> 4) & 1) << j;
            qh |= ((uint32_t)(x1 >> 4) & 1) << (j + 16);
        }
        memcpy(b + 4, &qh, 4);
    }
}

void sb_q8_0_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 34, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* Q8_1 is ggml's activation format for the Q4_1/Q5_1 dot products; s caches
 * d * sum(qs). Dequantization is q * d, as Q8_0. */
void sb_q8_1_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 36, y += 32) {
        float d = f16(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[4 + j];
    }
}

void sb_q8_1_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 36, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)roundf(x[j] * id);
            b[4 + j] = (uint8_t)(int8_t)v;
            sum += v;
        }
        put_f16(b, d);
        put_f16(b + 2, (float)sum * d);
    }
}
/* ---- 256-element super-blocks (K-quants) ----
 * Q2_K {u8 scales[16]; u8 qs[64]; f16 d, dmin}
 * Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}
 * Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 * Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}
 * Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}
 * Q4_K/Q5_K pack eight 6-bit (scale, min) pairs into 12 bytes: pairs 0-3 are
 * the low 6 bits of bytes 0-3 / 4-7; pairs 4-7 take their low 4 bits from
 * bytes 8-11 and their high 2 bits from the top of bytes 0-3 / 4-7. */

static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void sb_q2_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 84) {
        const uint8_t *scales = b, *q = b + 16;
        float d = f16(b + 80), dmin = f16(b + 82);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++) {
                    uint8_t sc = scales[is++];
                    float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * k] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void sb_q3_k_to_float(const void *src, float *y, int64_t n) {
    /* Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 16 6-bit scales
     * (low 4 bits in bytes 0-7, high 2 bits in bytes 8-11), value
     * ((q2 bits) - (hmask bit ? 0 : 4)) * d * (scale - 32). */
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 110) {
        const uint8_t *hm = b, *q = b + 32, *s = b + 96;
        float d = f16(b + 108);
        int8_t scales[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
            int hi = (s[8 + (j % 4)] >> (2 * (j / 4))) & 3;
            scales[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int k = 0; k < 2; k++) {
                    float dl = d * (float)scales[is++];
                    for (int l = 0; l < 16; l++) {
                        int v = (q[l + 16 * k] >> shift) & 3;
                        v -= (hm[l + 16 * k] & m) ? 0 : 4;
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

void sb_q4_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 144) {
        float d = f16(b), dmin = f16(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void sb_q5_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 176) {
        float d = f16(b), dmin = f16(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, q += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void sb_q6_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = f16(b + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = (d * (float)sc[is]) * (float)q1;
                y[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                y[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                y[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

void sb_q8_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 292) {
        float d;
        memcpy(&d, b, 4);
        for (int j = 0; j < 256; j++) *y++ = d * (float)(int8_t)b[4 + j];
    }
}

/* ---- K-quant quantization ----
 * Our own scheme, in the spirit of ggml's reference quantizers: each
 * sub-block gets a least-squares fit over a small grid of candidate scales,
 * then the per-sub-block scales (and mins) are themselves quantized to 6 or
 * 8 bits against one f16 super-block scale, and the values are quantized
 * again with the scales as they will be decoded. Unweighted squared error
 * (ggml weights by |x|; results are close but not byte-identical to ggml). */

#define GRID 10 /* candidate inverse scales nmax +- 0.1 * k, k in [-GRID, GRID] */

/* Fits x ~ scale * L - min, L in [0, nmax], min >= 0, scale >= 0.
 * Returns scale, stores min; L is scratch. */
static float fit_scale_min(const float *x, int n, int nmax, float *the_min) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        *the_min = -mn;
        return 0;
    }
    float best_s = (mx - mn) / (float)nmax, best_m = mn, best_err = INFINITY;
    for (int k = -GRID; k <= GRID; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / (mx - mn);
        float sl = 0, sl2 = 0, sxl = 0, sx = 0;
        uint8_t L[32];
        for (int i = 0; i < n; i++) {
            L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - mn)), 0, nmax);
            sl += L[i];
            sl2 += (float)L[i] * L[i];
            sxl += x[i] * L[i];
            sx += x[i];
        }
        /* least squares for x ~ s * L + m */
        float D = (float)n * sl2 - sl * sl, s, m;
        if (D <= 0) continue;
        s = ((float)n * sxl - sx * sl) / D;
        m = (sl2 * sx - sl * sxl) / D;
        if (m > 0) { /* the format needs m <= 0 */
            m = 0;
            s = sxl / sl2;
        }
        if (!(s > 0)) continue;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * L[i] + m - x[i];
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_m = m;
        }
    }
    *the_min = -best_m;
    return best_s;
}

/* Fits x ~ scale * L, L in [-nmax, nmax - 1]. Returns scale (signed). */
static float fit_scale_sym(const float *x, int n, int nmax) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0) return 0;
    float best_s = max / -(float)nmax, best_err = INFINITY;
    for (int k = -GRID; k <= GRID; k++) {
        float iscale = -((float)nmax + 0.1f * (float)k) / max;
        float sxl = 0, sl2 = 0;
        int8_t L[16];
        for (int i = 0; i < n; i++) {
            L[i] = (int8_t)clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
            sxl += x[i] * L[i];
            sl2 += (float)L[i] * L[i];
        }
        if (sl2 == 0) continue;
        float s = sxl / sl2, err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * L[i] - x[i];
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
        }
    }
    return best_s;
}

/* Shared by Q4_K and Q5_K: eight 32-element sub-blocks with 6-bit scales
 * and mins. Writes d, dmin and the 12 scale bytes at b; returns the final
 * levels (0..nmax) in L. */
static void quantize_k_scale_min(const float *x, uint8_t *b, int nmax, uint8_t *L) {
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        scales[j] = fit_scale_min(x + 32 * j, 32, nmax, &mins[j]);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63 / max_scale : 0, inv_min = max_min > 0 ? 63 / max_min : 0;
    uint8_t *sc = b + 4;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = clampi(nearest(inv_scale * scales[j]), 0, 63);
        int lm = clampi(nearest(inv_min * mins[j]), 0, 63);
        if (j < 4) {
            sc[j] |= (uint8_t)ls;
            sc[j + 4] |= (uint8_t)lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    put_f16(b, max_scale / 63);
    put_f16(b + 2, max_min / 63);
    float d = f16(b), dmin = f16(b + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t ls, lm;
        scale_min_k4(j, sc, &ls, &lm);
        float dd = d * (float)ls, dm = dmin * (float)lm;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = dd ? (uint8_t)clampi(nearest((x[32 * j + i] + dm) / dd), 0, nmax) : 0;
    }
}

void sb_q4_k_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 256; i++, b += 144, x += 256) {
        uint8_t L[256];
        quantize_k_scale_min(x, b, 15, L);
        uint8_t *q = b + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void sb_q5_k_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 256; i++, b += 176, x += 256) {
        uint8_t L[256];
        quantize_k_scale_min(x, b, 31, L);
        uint8_t *qh = b + 16, *q = b + 48;
        memset(qh, 0, 32);
        for (int p = 0; p < 4; p++, q += 32)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * p + l], hi = L[64 * p + l + 32];
                q[l] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
                qh[l] |= (uint8_t)(((lo >> 4) << (2 * p)) | ((hi >> 4) << (2 * p + 1)));
            }
    }
}

void sb_q6_k_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 256; i++, b += 210, x += 256) {
        float scales[16], amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_sym(x + 16 * j, 16, 32);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max = scales[j];
            }
        }
        int8_t *sc = (int8_t *)(b + 192);
        uint8_t L[256];
        if (amax == 0) {
            memset(b, 0, 210);
            memset(L, 32, sizeof L);
        } else {
            /* the largest scale maps to -128 (the int8 end with room) */
            float iscale = -128 / max;
            put_f16(b + 208, 1 / iscale);
            float d = f16(b + 208);
            for (int j = 0; j < 16; j++) {
                sc[j] = (int8_t)clampi(nearest(iscale * scales[j]), -128, 127);
                float dd = d * (float)sc[j];
                for (int l = 0; l < 16; l++)
                    L[16 * j + l] = (uint8_t)(dd ? clampi(nearest(x[16 * j + l] / dd), -32, 31) + 32 : 32);
            }
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const uint8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                int l0 = Lh[l], l1 = Lh[l + 32], l2 = Lh[l + 64], l3 = Lh[l + 96];
                ql[l] = (uint8_t)((l0 & 0xf) | ((l2 & 0xf) << 4));
                ql[l + 32] = (uint8_t)((l1 & 0xf) | ((l3 & 0xf) << 4));
                qh[l] = (uint8_t)((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6));
            }
        }
    }
}

/* Q8_K is the activation format of the K-quant dot products: d = max/-127
 * of the signed extreme, bsums[k] = sum of qs[16k .. 16k+15]. */
void sb_q8_k_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 256; i++, b += 292, x += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        memset(b, 0, 292);
        if (amax == 0) continue;
        float iscale = -127 / max, d = 1 / iscale;
        memcpy(b, &d, 4);
        for (int k = 0; k < 16; k++) {
            int16_t sum = 0;
            for (int j = 16 * k; j < 16 * k + 16; j++) {
                int v = clampi(nearest(iscale * x[j]), -128, 127);
                b[4 + j] = (uint8_t)(int8_t)v;
                sum = (int16_t)(sum + v);
            }
            memcpy(b + 260 + 2 * k, &sum, 2);
        }
    }
}
