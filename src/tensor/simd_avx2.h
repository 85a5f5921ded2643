/*
 * simd_avx2.h - small AVX2 helpers shared by the *_avx2.c kernel files.
 * Include only from files compiled with -mavx2 (Makefile rule for *_avx2.c).
 */
#ifndef SB_SIMD_AVX2_H
#define SB_SIMD_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* 16 bytes at off of each of 8 rows, transposed by dwords: out[q] lane r =
 * dword q (bytes 4q..4q+3) of row r. */
static inline void sb_dwords8x16(const uint8_t *const row[8], size_t off, __m256i out[4]) {
    __m256i t[4];
    _Pragma("GCC unroll 4")
    for (int a = 0; a < 4; a++)
        t[a] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(row[a] + off))),
            _mm_loadu_si128((const __m128i *)(const void *)(row[a + 4] + off)), 1);
    const __m256i u0 = _mm256_unpacklo_epi32(t[0], t[1]), u1 = _mm256_unpackhi_epi32(t[0], t[1]);
    const __m256i u2 = _mm256_unpacklo_epi32(t[2], t[3]), u3 = _mm256_unpackhi_epi32(t[2], t[3]);
    out[0] = _mm256_unpacklo_epi64(u0, u2), out[1] = _mm256_unpackhi_epi64(u0, u2);
    out[2] = _mm256_unpacklo_epi64(u1, u3), out[3] = _mm256_unpackhi_epi64(u1, u3);
}

/* the sum of the 8 lanes */
static inline float sb_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x for x in [-87, 88] (clamped there), as in Cephes expf: x = n ln2 + r,
 * |r| <= ln2 / 2, a degree-6 polynomial for e^r, 2^n from the exponent
 * bits; relative error 8e-8 against expf. Needs FMA. */
static inline __m256 sb_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), _mm256_set1_ps(12582912.0f));
    const __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(12582912.0f));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    /* t's low mantissa bits hold n + 2^22 + 2^23: 2^n from them */
    const __m256i n_bits = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(n_bits, _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

#endif
