/*
 * kernels_avx2.c - AVX2 + FMA + F16C row dot products: one weight row (in
 * its GGUF block layout) times a float vector, the weights expanded to float
 * in registers, never written out. Same arithmetic as dequantize-then-dot,
 * only the order of the additions differs.
 *
 * Compiled with -mavx2 -mfma -mf16c (Makefile rule for *_avx2.c); called only
 * after a run-time check that the CPU has them (matvec.c).
 */
#include "tensor/kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 8 bytes (as unsigned or signed ints) -> 8 floats */
static inline __m256 u8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }
static inline __m256 i8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)); }

float sb_dot_f32_avx2(const void *row, const float *x, int64_t n) {
    const float *a = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

/* Q8_0 {f16 d; i8 q[32]}: sum over blocks of d * sum(q * x) */
float sb_dot_q8_0_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 34, x += 32) {
        const __m128i q0 = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(b + 18));
        __m256 s = _mm256_mul_ps(i8_to_ps(q0), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(q0, 8)), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(i8_to_ps(q1), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(q1, 8)), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), s, acc);
    }
    return hsum(acc);
}

/* Q4_0 {f16 d; u8 qs[16]}: element j < 16 is the low nibble of qs[j], j + 16
 * the high nibble; value d * (nibble - 8). */
float sb_dot_q4_0_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 18, x += 32) {
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m128i lo = _mm_and_si128(qs, mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        __m256 s = _mm256_mul_ps(_mm256_sub_ps(u8_to_ps(lo), eight), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(_mm_srli_si128(lo, 8)), eight), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(hi), eight), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(_mm_srli_si128(hi, 8)), eight), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), s, acc);
    }
    return hsum(acc);
}

/* Q4_1 {f16 d, m; u8 qs[16]}: value d * nibble + m, so a block contributes
 * d * sum(q * x) + m * sum(x). */
float sb_dot_q4_1_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 20, x += 32) {
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 4));
        const __m128i lo = _mm_and_si128(qs, mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
                     x3 = _mm256_loadu_ps(x + 24);
        __m256 s = _mm256_mul_ps(u8_to_ps(lo), x0);
        s = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(lo, 8)), x1, s);
        s = _mm256_fmadd_ps(u8_to_ps(hi), x2, s);
        s = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(hi, 8)), x3, s);
        const __m256 xs = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), s, acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b + 2)), xs, accm);
    }
    return hsum(_mm256_add_ps(acc, accm));
}

/* 8 bytes at p as 8 unsigned 32-bit lanes */
static inline __m256i load8_u32(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit
 * (scale, min); sub-block s contributes d*sc_s * sum(q*x) - dmin*m_s * sum(x). */
float sb_dot_q4_k_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    float total = 0;
    for (int64_t i = 0; i < n; i += 256, b += 144) {
        const float d = load_f16(b), dmin = load_f16(b + 2);
        const uint8_t *sc = b + 4, *q = b + 16;
        __m256 acc = _mm256_setzero_ps();
        float mins = 0;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t s[2], m[2];
            for (int k = 0; k < 2; k++) {
                int jj = j + k;
                if (jj < 4) {
                    s[k] = sc[jj] & 63;
                    m[k] = sc[jj + 4] & 63;
                } else {
                    s[k] = (uint8_t)((sc[jj + 4] & 0xf) | ((sc[jj - 4] >> 6) << 4));
                    m[k] = (uint8_t)((sc[jj + 4] >> 4) | ((sc[jj] >> 6) << 4));
                }
            }
            const float *xa = x + (i + j * 32), *xb = xa + 32;
            __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps(), xsa = _mm256_setzero_ps(), xsb = _mm256_setzero_ps();
            for (int l = 0; l < 32; l += 8) {
                __m256i v = load8_u32(q + l);
                __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, m4));
                __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
                __m256 x0 = _mm256_loadu_ps(xa + l), x1 = _mm256_loadu_ps(xb + l);
                sa = _mm256_fmadd_ps(lo, x0, sa);
                sb = _mm256_fmadd_ps(hi, x1, sb);
                xsa = _mm256_add_ps(xsa, x0);
                xsb = _mm256_add_ps(xsb, x1);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[0]), sa, acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[1]), sb, acc);
            mins += dmin * (float)m[0] * hsum(xsa) + dmin * (float)m[1] * hsum(xsb);
        }
        total += hsum(acc) - mins;
    }
    return total;
}

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128; in
 * each, element l (< 32) and l+32, l+64, l+96 take 4 low bits from ql and 2
 * high bits from qh, minus 32, times d * scales[l/16 + 0, 2, 4, 6]. */
float sb_dot_q6_k_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi32(0x0f), m2 = _mm256_set1_epi32(3), c32 = _mm256_set1_epi32(32);
    float total = 0;
    for (int64_t i = 0; i < n; i += 256, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = load_f16(b + 208);
        const float *xx = x + i;
        __m256 acc = _mm256_setzero_ps();
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, xx += 128) {
            for (int l = 0; l < 32; l += 8) {
                const int is = l / 16;
                __m256i a = load8_u32(ql + l), a2 = load8_u32(ql + l + 32), h = load8_u32(qh + l);
                __m256i q1 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi32(_mm256_and_si256(h, m2), 4)), c32);
                __m256i q2 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a2, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), m2), 4)), c32);
                __m256i q3 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), m2), 4)), c32);
                __m256i q4 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a2, 4), _mm256_slli_epi32(_mm256_srli_epi32(h, 6), 4)), c32);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(d * (float)sc[is]), _mm256_cvtepi32_ps(q1)), _mm256_loadu_ps(xx + l), acc);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(d * (float)sc[is + 2]), _mm256_cvtepi32_ps(q2)), _mm256_loadu_ps(xx + l + 32), acc);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(d * (float)sc[is + 4]), _mm256_cvtepi32_ps(q3)), _mm256_loadu_ps(xx + l + 64), acc);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(d * (float)sc[is + 6]), _mm256_cvtepi32_ps(q4)), _mm256_loadu_ps(xx + l + 96), acc);
            }
        }
        total += hsum(acc);
    }
    return total;
}
