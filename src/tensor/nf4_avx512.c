/*
 * nf4_avx512.c - NF4 row kernels with AVX-512 F/BW (nf4.h): 16 packed bytes
 * give 32 indices (high nibble first), looked up in the 16-entry code book
 * with one vpermps each. Same results as nf4_avx2.c's kind: dequantized values
 * bit-exact with the scalar ones, dots differing only in addition order.
 *
 * Compiled with the *_avx512.c flags of the Makefile; uses only AVX-512 F and
 * BW, which nf4.c checks for at run time. bs is a multiple of 32.
 */
#include "tensor/nf4.h"

#include <immintrin.h>

static inline void codes32(const uint8_t *p, __m512 tab, __m512 *c0, __m512 *c1) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4), lo = _mm_and_si128(raw, m4);
    *c0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo)), tab);
    *c1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo)), tab);
}

float sb_nf4_dot_avx512(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x) {
    const __m512 tab = _mm512_loadu_ps(sb_nf4_code_f);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        for (int i = 0; i < bs; i += 32, qs += 16, x += 32) {
            __m512 c0, c1;
            codes32(qs, tab, &c0, &c1);
            s0 = _mm512_fmadd_ps(c0, _mm512_loadu_ps(x), s0);
            s1 = _mm512_fmadd_ps(c1, _mm512_loadu_ps(x + 16), s1);
        }
        acc = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(scale[b]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

void sb_nf4_deq_avx512(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out) {
    const __m512 tab = _mm512_loadu_ps(sb_nf4_code_f);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 s = _mm512_set1_ps(scale[b]);
        for (int i = 0; i < bs; i += 32, qs += 16, out += 32) {
            __m512 c0, c1;
            codes32(qs, tab, &c0, &c1);
            _mm512_storeu_ps(out, _mm512_mul_ps(c0, s));
            _mm512_storeu_ps(out + 16, _mm512_mul_ps(c1, s));
        }
    }
}
