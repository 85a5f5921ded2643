/*
 * attn_avx2.c - attn.h's decode attention with AVX2 + FMA: the q . k_t dots
 * 16 lanes at a time, the weighted sum of the values with up to 32 output
 * floats in registers over all t. Heads whose width is not a multiple of 8
 * take the scalar loops. Compiled with -mavx2 -mfma (Makefile rule for
 * *_avx2.c), called only where the CPU has them (attn.c).
 */
#include "tensor/attn.h"
#include "tensor/ops.h"

#include <immintrin.h>

#include "tensor/simd_avx2.h"

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
