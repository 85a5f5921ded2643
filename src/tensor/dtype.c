/*
 * dtype.c - the type-traits table: for every element type its block size,
 * bytes per block, dequantization (to_float) and quantization (from_float),
 * plus the f16 / bf16 scalar conversions.
 *
 * Block layouts are ggml's (the GGUF tensor types). Dequantization follows the
 * reference arithmetic order of the `gguf` Python package (float32, e.g.
 * (d * scale) * q - (dmin * min)) so results are bit-identical to it; this
 * file must be compiled without floating-point contraction (-std=c11 gives
 * -ffp-contract=off with GCC), or fused multiply-adds would change rounding.
 */
#include "tensor/tensor.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- scalar conversions ---- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in f32 */
        float f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t sb_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* nan, keep quiet */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): round a * 2^24 to nearest even */
        float v = bits_f32(a) * 0x1p24f; /* exact: scaling by a power of two */
        float r = nearbyintf(v);        /* default rounding mode: ties to even */
        return sign | (uint16_t)r;
    }
    /* normal: drop 13 mantissa bits with round-to-nearest-even */
    uint32_t rounded = a + 0xfffu + ((a >> 13) & 1);
    return sign | (uint16_t)((rounded - (112u << 23)) >> 13);
}

float sb_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t sb_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return sb_f16_to_f32(h);
}
static inline void put_f16(uint8_t *p, float f) {
    uint16_t h = sb_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* ---- plain types ---- */

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = f16(s + 2 * i);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) put_f16(d + 2 * i, src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = sb_bf16_to_f32(h);
    }
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = sb_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

/* ---- 32-element blocks ----
 * Q4_0 {f16 d; u8 qs[16]}          x = (nibble - 8) * d
 * Q4_1 {f16 d, m; u8 qs[16]}       x = nibble * d + m
 * Q5_0 {f16 d; u8 qh[4]; qs[16]}   x = (5-bit - 16) * d
 * Q5_1 {f16 d, m; qh[4]; qs[16]}   x = 5-bit * d + m
 * Q8_0 {f16 d; i8 qs[32]}          x = q * d
 * Element j < 16 sits in the low nibble of qs[j], element j + 16 in the high
 * nibble; the fifth bit of element j is bit j of qh (little-endian u32). */

static void q4_0_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        float d = f16(b);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b[2 + j] & 0xf) - 8);
            y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

static void q4_1_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 20, y += 32) {
        float d = f16(b), m = f16(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(b[4 + j] & 0xf) + m;
            y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
    }
}

static void q5_0_to_float(const void *src, float *y, int64_t n) {
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

static void q5_1_to_float(const void *src, float *y, int64_t n) {
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

static void q8_0_to_float(const void *src, float *y, int64_t n) {
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

static void q4_0_from_float(const float *x, void *dst, int64_t n) {
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

static void q4_1_from_float(const float *x, void *dst, int64_t n) {
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

static void q5_0_from_float(const float *x, void *dst, int64_t n) {
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

static void q5_1_from_float(const float *x, void *dst, int64_t n) {
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

static void q8_0_from_float(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 34, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
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

static void q2_k_to_float(const void *src, float *y, int64_t n) {
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

static void q3_k_to_float(const void *src, float *y, int64_t n) {
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

static void q4_k_to_float(const void *src, float *y, int64_t n) {
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

static void q5_k_to_float(const void *src, float *y, int64_t n) {
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

static void q6_k_to_float(const void *src, float *y, int64_t n) {
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

static void q8_k_to_float(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / 256; i++, b += 292) {
        float d;
        memcpy(&d, b, 4);
        for (int j = 0; j < 256; j++) *y++ = d * (float)(int8_t)b[4 + j];
    }
}

/* ---- the table ---- */

static const sb_type_traits traits[SB_DTYPE_COUNT] = {
    [SB_F32] = {"f32", 1, 4, false, f32_to_float, f32_from_float},
    [SB_F16] = {"f16", 1, 2, false, f16_to_float, f16_from_float},
    [SB_BF16] = {"bf16", 1, 2, false, bf16_to_float, bf16_from_float},
    [SB_Q4_0] = {"q4_0", 32, 18, true, q4_0_to_float, q4_0_from_float},
    [SB_Q4_1] = {"q4_1", 32, 20, true, q4_1_to_float, q4_1_from_float},
    [SB_Q5_0] = {"q5_0", 32, 22, true, q5_0_to_float, q5_0_from_float},
    [SB_Q5_1] = {"q5_1", 32, 24, true, q5_1_to_float, q5_1_from_float},
    [SB_Q8_0] = {"q8_0", 32, 34, true, q8_0_to_float, q8_0_from_float},
    [SB_Q8_1] = {"q8_1", 32, 36, true, NULL, NULL},
    [SB_Q2_K] = {"q2_K", 256, 84, true, q2_k_to_float, NULL},
    [SB_Q3_K] = {"q3_K", 256, 110, true, q3_k_to_float, NULL},
    [SB_Q4_K] = {"q4_K", 256, 144, true, q4_k_to_float, NULL},
    [SB_Q5_K] = {"q5_K", 256, 176, true, q5_k_to_float, NULL},
    [SB_Q6_K] = {"q6_K", 256, 210, true, q6_k_to_float, NULL},
    [SB_Q8_K] = {"q8_K", 256, 292, true, q8_k_to_float, NULL},
    [SB_I8] = {"i8", 1, 1, false, NULL, NULL},
    [SB_I16] = {"i16", 1, 2, false, NULL, NULL},
    [SB_I32] = {"i32", 1, 4, false, NULL, NULL},
    [SB_I64] = {"i64", 1, 8, false, NULL, NULL},
    [SB_F64] = {"f64", 1, 8, false, NULL, NULL},
};

const sb_type_traits *sb_type_traits_get(int type) {
    if (type < 0 || type >= SB_DTYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

const char *sb_dtype_name(int type) {
    const sb_type_traits *t = sb_type_traits_get(type);
    return t ? t->name : "unknown";
}

int sb_dtype_from_name(const char *name) {
    for (int i = 0; i < SB_DTYPE_COUNT; i++)
        if (traits[i].name && !strcasecmp(traits[i].name, name)) return i;
    return -1;
}

bool sb_dtype_row_bytes(int type, int64_t n, size_t *out) {
    const sb_type_traits *t = sb_type_traits_get(type);
    if (!t || n < 0 || n % t->blck_size) return false;
    return !__builtin_mul_overflow((uint64_t)(n / t->blck_size), (uint64_t)t->type_size, out);
}
