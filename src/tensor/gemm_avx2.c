/*
 * gemm_avx2.c - gemm.h's kernels with AVX2/FMA, for CPUs without AVX-512
 * BF16. A bf16 value is the top half of an f32, so a 32-bit lane holding a
 * pair (even element low) gives the odd element by masking and the even one
 * by shifting left 16: two FMAs per pair, in vdpbf16ps' order (odd first),
 * with exact products, so the results equal the scalar path's.
 *
 * Register tile: 4 rows x 16 columns (one panel, two ymm halves), 8
 * accumulators. Compiled with -mavx2 -mfma (Makefile rule for *_avx2.c).
 */
#include "tensor/gemm.h"
#include "tensor/gemm_simd.h"
#include "tensor/tensor.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MR 4
#define ROWS_BLOCK 64

static inline __m256 odd(__m256i v) { return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u))); }
static inline __m256 even(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }

static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SB_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SB_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SB_LN2_LO), r);
    __m256 p = SB_EXP_POLY(_mm256_fmadd_ps, _mm256_set1_ps, r);
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n: n + 127 into the exponent field (n in -126..127 after the clamp) */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 gelu256(__m256 x) {
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps((float)M_SQRT1_2));
    const __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.0f));
    const __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(az, _mm256_set1_ps(SB_ERF_P), _mm256_set1_ps(1.0f)));
    const __m256 p = _mm256_mul_ps(SB_ERF_POLY(_mm256_fmadd_ps, _mm256_set1_ps, t), t);
    const __m256 e = exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az));
    const __m256 erf = _mm256_or_ps(_mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f)), sign);
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(erf, _mm256_set1_ps(1.0f)));
}

/* Stores 8 lanes, of which `valid` (0..8) are written. */
static inline void store8(float *y, __m256 v, int valid) {
    if (valid >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    memcpy(y, t, sizeof(float) * (size_t)(valid > 0 ? valid : 0));
}
static inline __m256 load8(const float *y, int valid) {
    if (valid >= 8) return _mm256_loadu_ps(y);
    float t[8] = {0};
    memcpy(t, y, sizeof(float) * (size_t)(valid > 0 ? valid : 0));
    return _mm256_loadu_ps(t);
}
static inline void store8_bf16(uint16_t *y, __m256 v, int valid) {
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < valid && i < 8; i++) y[i] = sb_f32_to_bf16(t[i]);
}

static inline __attribute__((always_inline)) void tile(int mr, const uint16_t *xb, int ldxb, const sb_bf16_mat *w,
                                                       int c, const float *bias, int flags, float *y, int ldy,
                                                       uint16_t *yb, int ldyb) {
    __m256 acc[MR][2];
    const int n0 = 16 * c, valid = w->n_out - n0;
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
        for (int h = 0; h < 2; h++) {
            __m256 a = bias ? load8(bias + n0 + 8 * h, valid - 8 * h) : _mm256_setzero_ps();
            if (y && (flags & SB_GEMM_ACC)) a = _mm256_add_ps(a, load8(y + (size_t)r * ldy + n0 + 8 * h, valid - 8 * h));
            acc[r][h] = a;
        }
    const uint16_t *p = w->data + (size_t)c * w->k2 * 32;
    for (int k = 0; k < w->k2; k++, p += 32) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)p), b1 = _mm256_loadu_si256((const __m256i *)(p + 16));
        const __m256 o0 = odd(b0), e0 = even(b0), o1 = odd(b1), e1 = even(b1);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            int32_t v;
            memcpy(&v, xb + (size_t)r * ldxb + 2 * k, 4);
            const __m256i a = _mm256_set1_epi32(v);
            const __m256 ao = odd(a), ae = even(a);
            acc[r][0] = _mm256_fmadd_ps(ae, e0, _mm256_fmadd_ps(ao, o0, acc[r][0]));
            acc[r][1] = _mm256_fmadd_ps(ae, e1, _mm256_fmadd_ps(ao, o1, acc[r][1]));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
        for (int h = 0; h < 2; h++) {
            __m256 a = acc[r][h];
            if (flags & SB_GEMM_GELU) a = gelu256(a);
            if (y)
                store8(y + (size_t)r * ldy + n0 + 8 * h, a, valid - 8 * h);
            else
                store8_bf16(yb + (size_t)r * ldyb + n0 + 8 * h, a, valid - 8 * h);
        }
}

void sb_gemm_bf16_avx2(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias, int flags,
                       float *y, int ldy, uint16_t *yb, int ldyb) {
    for (int i0 = 0; i0 < M; i0 += ROWS_BLOCK) {
        const int i1 = i0 + ROWS_BLOCK < M ? i0 + ROWS_BLOCK : M;
        for (int c = 0; c < w->n_panel; c++)
            for (int i = i0; i < i1; i += MR) {
                const uint16_t *x = xb + (size_t)i * ldxb;
                float *yy = y ? y + (size_t)i * ldy : NULL;
                uint16_t *yyb = y ? NULL : yb + (size_t)i * ldyb;
                switch (i1 - i < MR ? i1 - i : MR) {
                case 1: tile(1, x, ldxb, w, c, bias, flags, yy, ldy, yyb, ldyb); break;
                case 2: tile(2, x, ldxb, w, c, bias, flags, yy, ldy, yyb, ldyb); break;
                case 3: tile(3, x, ldxb, w, c, bias, flags, yy, ldy, yyb, ldyb); break;
                default: tile(4, x, ldxb, w, c, bias, flags, yy, ldy, yyb, ldyb); break;
                }
            }
        if (!y && (w->n_out & 1))
            for (int i = i0; i < i1; i++) yb[(size_t)i * ldyb + w->n_out] = 0;
    }
}

void sb_softmax_rows_avx2(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb) {
    const __m256 s = _mm256_set1_ps(scale);
    for (int r = 0; r < M; r++) {
        float *v = x + (size_t)r * ld;
        float mx = v[0];
        int j = 0;
        __m256 vm = _mm256_set1_ps(v[0]);
        for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(v + j));
        float t[8];
        _mm256_storeu_ps(t, vm);
        for (int i = 0; i < 8; i++) mx = t[i] > mx ? t[i] : mx;
        for (int i = j; i < n; i++) mx = v[i] > mx ? v[i] : mx;
        const __m256 m = _mm256_set1_ps(mx);
        __m256 sum = _mm256_setzero_ps();
        for (j = 0; j + 8 <= n; j += 8) {
            const __m256 e = exp256(_mm256_mul_ps(s, _mm256_sub_ps(_mm256_loadu_ps(v + j), m)));
            _mm256_storeu_ps(v + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_storeu_ps(t, sum);
        float total = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
        for (int i = j; i < n; i++) total += v[i] = expf(scale * (v[i] - mx));
        const __m256 inv = _mm256_set1_ps(1.0f / total);
        for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, _mm256_mul_ps(_mm256_loadu_ps(v + j), inv));
        for (int i = j; i < n; i++) v[i] *= 1.0f / total;
        if (xb) sb_bf16_rows_scalar(v, 1, n, n, xb + (size_t)r * ldxb, ldxb);
    }
}
