/*
 * gemm_avx512.c - gemm.h's kernels with AVX-512 BF16: vdpbf16ps takes 16
 * pairs of bf16 weights (one packed panel row) and one broadcast pair of the
 * activation row, adding both products into 16 f32 lanes.
 *
 * Register tile: MR rows x 32 columns (two panels), 2 * MR accumulators;
 * per pair two panel loads and MR broadcasts. Rows are taken in blocks of
 * ROWS_BLOCK so that their bf16 activations stay in L2 while every panel
 * pair (K x 32 bf16, 24 KiB for K = 384) sweeps over them.
 *
 * Compiled with the AVX-512 flags (Makefile rule for *_avx512.c); called
 * only after a run-time check (gemm.c).
 */
#include "tensor/gemm.h"
#include "tensor/gemm_simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MR 8
#define ROWS_BLOCK 64

/* exp(x) for x <= 0 (softmax) and erf via exp (GELU): Cephes' expf
 * polynomial on x - n ln2, |r| <= ln2/2, relative error ~2e-7; 2^n by
 * vscalefps. */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SB_LOG2E)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SB_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SB_LN2_LO), r);
    __m512 p = SB_EXP_POLY(_mm512_fmadd_ps, _mm512_set1_ps, r);
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* x/2 (1 + erf(x / sqrt 2)); erf by Abramowitz & Stegun 7.1.26 (absolute
 * error <= 1.5e-7, far below the bf16 rounding the result gets). */
static inline __m512 gelu512(__m512 x) {
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps((float)M_SQRT1_2));
    const __m512 az = _mm512_abs_ps(z);
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(az, _mm512_set1_ps(SB_ERF_P), _mm512_set1_ps(1.0f)));
    const __m512 p = _mm512_mul_ps(SB_ERF_POLY(_mm512_fmadd_ps, _mm512_set1_ps, t), t);
    const __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), az), az));
    __m512 erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f));
    /* erf is odd: copy z's sign */
    const __m512 sign = _mm512_and_ps(z, _mm512_set1_ps(-0.0f));
    const __m512 erf = _mm512_or_ps(erf_abs, sign);
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(erf, _mm512_set1_ps(1.0f)));
}

static inline __m512bh pair(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return (__m512bh)_mm512_set1_epi32(v);
}

/* Rows r0..r0+mr, panels c..c+np (np 1 or 2, cols < n_out valid). */
static inline __attribute__((always_inline)) void tile(int mr, int np, const uint16_t *xb, int ldxb,
                                                       const sb_bf16_mat *w, int c, const float *bias, int flags,
                                                       float *y, int ldy, uint16_t *yb, int ldyb) {
    __m512 acc[MR][2];
    const int n0 = 16 * c;
    __mmask16 mask[2];
    for (int j = 0; j < np; j++) {
        const int left = w->n_out - n0 - 16 * j;
        mask[j] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int j = 0; j < np; j++) {
            __m512 a = bias ? _mm512_maskz_loadu_ps(mask[j], bias + n0 + 16 * j) : _mm512_setzero_ps();
            if (y && (flags & SB_GEMM_ACC))
                a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mask[j], y + (size_t)r * ldy + n0 + 16 * j));
            acc[r][j] = a;
        }
    const uint16_t *w0 = w->data + (size_t)c * w->k2 * 32, *w1 = w0 + (size_t)w->k2 * 32;
    for (int k = 0; k < w->k2; k++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(w0 + 32 * k);
        const __m512bh b1 = np > 1 ? (__m512bh)_mm512_loadu_si512(w1 + 32 * k) : b0;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m512bh a = pair(xb + (size_t)r * ldxb + 2 * k);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            if (np > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int j = 0; j < np; j++) {
            __m512 a = acc[r][j];
            if (flags & SB_GEMM_GELU) a = gelu512(a);
            if (y)
                _mm512_mask_storeu_ps(y + (size_t)r * ldy + n0 + 16 * j, mask[j], a);
            else
                _mm256_mask_storeu_epi16(yb + (size_t)r * ldyb + n0 + 16 * j, mask[j],
                                         (__m256i)_mm512_cvtneps_pbh(a));
        }
}

#define TILE_CASE(m)                                                                  \
    case m:                                                                           \
        if (np == 2)                                                                  \
            tile(m, 2, xb, ldxb, w, c, bias, flags, y, ldy, yb, ldyb);                \
        else                                                                          \
            tile(m, 1, xb, ldxb, w, c, bias, flags, y, ldy, yb, ldyb);                \
        break;

static void tile_any(int mr, int np, const uint16_t *xb, int ldxb, const sb_bf16_mat *w, int c, const float *bias,
                     int flags, float *y, int ldy, uint16_t *yb, int ldyb) {
    switch (mr) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7) TILE_CASE(8)
    }
}

void sb_gemm_bf16_avx512(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias, int flags,
                         float *y, int ldy, uint16_t *yb, int ldyb) {
    for (int i0 = 0; i0 < M; i0 += ROWS_BLOCK) {
        const int i1 = i0 + ROWS_BLOCK < M ? i0 + ROWS_BLOCK : M;
        for (int c = 0; c < w->n_panel; c += 2) {
            const int np = c + 1 < w->n_panel ? 2 : 1;
            for (int i = i0; i < i1; i += MR) {
                const int mr = i1 - i < MR ? i1 - i : MR;
                tile_any(mr, np, xb + (size_t)i * ldxb, ldxb, w, c, bias, flags, y ? y + (size_t)i * ldy : NULL, ldy,
                         y ? NULL : yb + (size_t)i * ldyb, ldyb);
            }
        }
        if (!y && (w->n_out & 1))
            for (int i = i0; i < i1; i++) yb[(size_t)i * ldyb + w->n_out] = 0;
    }
}

void sb_softmax_rows_avx512(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb) {
    const __m512 s = _mm512_set1_ps(scale);
    for (int r = 0; r < M; r++) {
        float *v = x + (size_t)r * ld;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        int j = 0;
        for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(v + j));
        const __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
        if (tail) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, v + j));
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (j = 0; j + 16 <= n; j += 16) {
            const __m512 e = exp512(_mm512_mul_ps(s, _mm512_sub_ps(_mm512_loadu_ps(v + j), m)));
            _mm512_storeu_ps(v + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        if (tail) {
            const __m512 e = exp512(_mm512_mul_ps(s, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, v + j), m)));
            _mm512_mask_storeu_ps(v + j, tail, e);
            sum = _mm512_mask_add_ps(sum, tail, sum, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, _mm512_mul_ps(_mm512_loadu_ps(v + j), inv));
        if (tail) _mm512_mask_storeu_ps(v + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, v + j), inv));
        if (xb) sb_bf16_rows_avx512(v, 1, n, n, xb + (size_t)r * ldxb, ldxb);
    }
}

void sb_bf16_rows_avx512(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb) {
    for (int r = 0; r < M; r++) {
        const float *s = x + (size_t)r * ldx;
        uint16_t *o = xb + (size_t)r * ldxb;
        int i = 0;
        for (; i + 16 <= K; i += 16) _mm256_storeu_si256((__m256i *)(o + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i)));
        if (i < K) {
            const __mmask16 m = (__mmask16)((1u << (K - i)) - 1);
            _mm256_mask_storeu_epi16(o + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i)));
        }
        if (K & 1) o[K] = 0;
    }
}

/* Sums in 16 f32 lanes (D / 16 terms each), the variance from the centred
 * values as the scalar path. */
void sb_layer_norm_rows_avx512(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb,
                               int ldxb) {
    const int D16 = D & ~15;
    const __mmask16 tail = (__mmask16)((1u << (D - D16)) - 1);
    for (int t = 0; t < M; t++) {
        float *r = x + (size_t)t * D;
        __m512 s = _mm512_setzero_ps();
        for (int i = 0; i < D16; i += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(r + i));
        if (tail) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail, r + D16));
        const float mean = _mm512_reduce_add_ps(s) / (float)D;
        const __m512 m = _mm512_set1_ps(mean);
        __m512 v = _mm512_setzero_ps();
        for (int i = 0; i < D16; i += 16) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(r + i), m);
            v = _mm512_fmadd_ps(d, d, v);
        }
        if (tail) {
            const __m512 d = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, r + D16), m);
            v = _mm512_fmadd_ps(d, d, v);
        }
        const __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt((double)_mm512_reduce_add_ps(v) / D + eps)));
        for (int i = 0; i < D16; i += 16) {
            const __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(r + i), m), inv),
                                             _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i));
            _mm512_storeu_ps(r + i, y);
        }
        if (tail) {
            const __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, r + D16), m), inv),
                                             _mm512_maskz_loadu_ps(tail, w + D16), _mm512_maskz_loadu_ps(tail, b + D16));
            _mm512_mask_storeu_ps(r + D16, tail, y);
        }
        if (xb) sb_bf16_rows_avx512(r, 1, D, D, xb + (size_t)t * ldxb, ldxb);
    }
}

/* K_h of one text: panel c, pair k = the 32-bit pairs of rows 16c..16c+15 at
 * column 2k, one (masked) gather each. ldw is even (pairs stay aligned). */
void sb_bf16_pack_rows_avx512(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    const int k2 = (n_in + 1) / 2, np = (n_out + 15) / 16;
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(ldw / 2));
    const __m512i lo16 = _mm512_set1_epi32(0xffff);
    for (int c = 0; c < np; c++) {
        const int left = n_out - 16 * c;
        const __mmask16 rows = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const uint16_t *base = w + (size_t)16 * c * ldw;
        for (int k = 0; k < k2; k++) {
            __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, idx, base + 2 * k, 4);
            if (2 * k + 1 == n_in) v = _mm512_and_si512(v, lo16); /* odd n_in: the pad is zero */
            _mm512_storeu_si512(data + ((size_t)c * k2 + k) * 32, v);
        }
    }
    *m = (sb_bf16_mat){n_out, n_in, k2, np, data};
}

/* V_h^T of one text: W[o][i] = w[i * ldw + o]; pair k interleaves tokens 2k
 * and 2k + 1 of 16 columns (one vpermw). n_out must be a multiple of 16. */
void sb_bf16_pack_cols_avx512(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    const int k2 = (n_in + 1) / 2, np = n_out / 16;
    const __m512i perm = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                          21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int k = 0; k < k2; k++) {
        const uint16_t *r0 = w + (size_t)2 * k * ldw, *r1 = r0 + ldw;
        for (int c = 0; c < np; c++) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(r0 + 16 * c));
            const __m256i b = 2 * k + 1 < n_in ? _mm256_loadu_si256((const __m256i *)(r1 + 16 * c)) : _mm256_setzero_si256();
            const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
            _mm512_storeu_si512(data + ((size_t)c * k2 + k) * 32, _mm512_permutexvar_epi16(perm, ab));
        }
    }
    *m = (sb_bf16_mat){n_out, n_in, k2, np, data};
}
