/*
 * attn_avx2.c - attn.c's softmax with AVX2 + FMA: e^x for x <= 0 from the
 * polynomial of attn_avx512.c (sb_exp256 in simd_avx2.h; x below -87 gives
 * e^-87), 8 lanes at a time, the tail through a lane mask. Compiled with the AVX2 flags (Makefile rule for
 * *_avx2.c); called only after the run-time check.
 */
#include "tensor/attn.h"
#include "tensor/simd_avx2.h"

/* lanes < k of 8 */
static inline __m256i tail_mask(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

void sb_attn_softmax_avx2(float *x, int n) {
    __m256 m = _mm256_set1_ps(x[0]);
    int i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    if (i < n) m = _mm256_max_ps(m, _mm256_blendv_ps(m, _mm256_maskload_ps(x + i, tail_mask(n - i)),
                                                      _mm256_castsi256_ps(tail_mask(n - i))));
    const __m256 mx = _mm256_set1_ps(hmax256(m));
    __m256 s = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = sb_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    if (i < n) {
        const __m256i k = tail_mask(n - i);
        const __m256 e =
            _mm256_and_ps(sb_exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), mx)), _mm256_castsi256_ps(k));
        _mm256_maskstore_ps(x + i, k, e);
        s = _mm256_add_ps(s, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sb_hsum256(s));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (i < n) {
        const __m256i k = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, k, _mm256_mul_ps(_mm256_maskload_ps(x + i, k), inv));
    }
}
