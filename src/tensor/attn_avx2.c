/*
 * attn_avx2.c - attn.h's kernels with AVX2 + FMA. Compiled with the AVX2
 * flags (Makefile rule for *_avx2.c); called only after the run-time check.
 *  - the prompt path's softmax: e^x for x <= 0 from the polynomial of
 *    attn_avx512.c (sb_exp256 in simd_avx2.h; x below -87 gives e^-87),
 *    8 lanes at a time, the tail through a lane mask;
 *  - decode attention: the q . k_t dots 16 lanes at a time, the weighted sum
 *    of the values with up to 32 output floats in registers over all t. Heads
 *    whose width is not a multiple of 8 take the scalar loops.
 */
#include "tensor/attn.h"
#include "tensor/ops.h"
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

void sb_attn_decode_avx2(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale,
                         int hd, float *att, float *out) {
    if (hd % 8) {
        sb_attn_decode_scalar(q, k, v, ldkv, t0, pos, scale, hd, att, out);
        return;
    }
    const int n = pos - t0 + 1;
    for (int t = 0; t < n; t++) {
        const float *kt = k + (size_t)(t0 + t) * (size_t)ldkv;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd; i += 16) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kt + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(kt + i + 8), s1);
        }
        if (i < hd) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kt + i), s0);
        att[t] = sb_hsum256(_mm256_add_ps(s0, s1)) * scale;
    }
    sb_softmax(att, n);
    for (int i = 0; i < hd; i += 32) {
        const int nv = hd - i >= 32 ? 4 : (hd - i) / 8;
        __m256 o[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const float *vt = v + (size_t)t0 * (size_t)ldkv + i;
        if (nv == 4)
            for (int t = 0; t < n; t++, vt += ldkv) {
                const __m256 a = _mm256_broadcast_ss(att + t);
                for (int j = 0; j < 4; j++) o[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vt + 8 * j), o[j]);
            }
        else
            for (int t = 0; t < n; t++, vt += ldkv) {
                const __m256 a = _mm256_broadcast_ss(att + t);
                for (int j = 0; j < nv; j++) o[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vt + 8 * j), o[j]);
            }
        for (int j = 0; j < nv; j++) _mm256_storeu_ps(out + i + 8 * j, o[j]);
    }
}