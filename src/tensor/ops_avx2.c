/*
 * ops_avx2.c - ops.c's SwiGLU with AVX2 + FMA, 8 lanes at a time: e^-g from
 * the polynomial of simd_avx2.h (relative error 8e-8 against expf), the
 * division exact as in the scalar loop. Compiled with the AVX2 flags
 * (Makefile rule for *_avx2.c); ops.c calls it after the run-time check.
 */
#include "tensor/ops.h"
#include "tensor/simd_avx2.h"

#include <math.h>

void sb_swiglu_avx2(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = sb_exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}
