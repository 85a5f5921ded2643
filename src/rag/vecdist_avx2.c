/*
 * vecdist_avx2.c - AVX2/FMA distance kernels (vecdist.h; the float dot is the
 * tensor layer's sb_dot_f32_avx2). The int8 dot is
 * |a| * (b with a's sign) through maddubs (u8 x s8 pairs into s16, at most
 * 2 * 127 * 127 so no saturation) then madd into 32-bit lanes.
 * Compiled with -mavx2 -mfma (Makefile rule for *_avx2.c); called only after
 * a run-time check.
 */
#include "rag/vecdist.h"

#include <immintrin.h>

#include "tensor/simd_avx2.h"


float sb_l2_f32_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    float s = sb_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

int32_t sb_dot_i8_avx2(const int8_t *a, const int8_t *b, int n) {
    __m256i acc = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(a + i)), y = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t r = _mm_cvtsi128_si32(s);
    for (; i < n; i++) r += (int32_t)a[i] * b[i];
    return r;
}
