/*
 * nf4_avx2.c - NF4 row kernels with AVX2 + FMA (nf4.h): 8 packed bytes give
 * 16 indices (high nibble first), looked up in the 16-entry code book held in
 * two registers (vpermps on the low 3 bits, a blend on bit 3), then either
 * dotted with x or scaled and stored. The dequantized values equal the scalar
 * ones bit for bit (one float32 multiply each); the dot differs from the
 * scalar reference only in the order of its additions.
 *
 * Compiled with -mavx2 -mfma -mf16c (Makefile rule for *_avx2.c); called only
 * after the run-time check in nf4.c. bs is a multiple of 16.
 */
#include "tensor/nf4.h"

#include <immintrin.h>

#include "tensor/simd_avx2.h"

/* 16 indices of 8 bytes, in element order, as two vectors of 8 codes. */
static inline void codes16(const uint8_t *p, __m256 lo_tab, __m256 hi_tab, __m256 *c0, __m256 *c1) {
    const __m128i raw = _mm_loadl_epi64((const __m128i *)(const void *)p);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4), lo = _mm_and_si128(raw, m4);
    const __m128i idx = _mm_unpacklo_epi8(hi, lo); /* e0 e1 ... e15 */
    const __m256i i0 = _mm256_cvtepu8_epi32(idx), i1 = _mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8));
    const __m256i seven = _mm256_set1_epi32(7);
    *c0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_tab, i0), _mm256_permutevar8x32_ps(hi_tab, i0),
                           _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, seven)));
    *c1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_tab, i1), _mm256_permutevar8x32_ps(hi_tab, i1),
                           _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, seven)));
}


float sb_nf4_dot_avx2(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x) {
    const __m256 lo_tab = _mm256_loadu_ps(sb_nf4_code_f), hi_tab = _mm256_loadu_ps(sb_nf4_code_f + 8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        for (int i = 0; i < bs; i += 16, qs += 8, x += 16) {
            __m256 c0, c1;
            codes16(qs, lo_tab, hi_tab, &c0, &c1);
            s0 = _mm256_fmadd_ps(c0, _mm256_loadu_ps(x), s0);
            s1 = _mm256_fmadd_ps(c1, _mm256_loadu_ps(x + 8), s1);
        }
        acc = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_set1_ps(scale[b]), acc);
    }
    return sb_hsum256(acc);
}

void sb_nf4_deq_avx2(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out) {
    const __m256 lo_tab = _mm256_loadu_ps(sb_nf4_code_f), hi_tab = _mm256_loadu_ps(sb_nf4_code_f + 8);
    for (int64_t b = 0; b < nb; b++) {
        const __m256 s = _mm256_set1_ps(scale[b]);
        for (int i = 0; i < bs; i += 16, qs += 8, out += 16) {
            __m256 c0, c1;
            codes16(qs, lo_tab, hi_tab, &c0, &c1);
            _mm256_storeu_ps(out, _mm256_mul_ps(c0, s));
            _mm256_storeu_ps(out + 8, _mm256_mul_ps(c1, s));
        }
    }
}
