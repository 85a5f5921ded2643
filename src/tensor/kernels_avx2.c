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
