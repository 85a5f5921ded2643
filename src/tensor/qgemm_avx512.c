/*
 * qgemm_avx512.c - prompt-batch products of quantized weights and quantized
 * activations with AVX-512 VNNI, in tiles of 4 weight rows x 4 activation
 * rows: each weight block is loaded and expanded once per 4 activation rows,
 * each activation block once per 4 weight rows (the row kernels of
 * kernels_avx512.c do one pair at a time and reload both).
 *
 * Every output is bit-identical to the row kernel (sb_qdot_*_avx512): the
 * same exact 32-bit integer block sums, the same float scale products and
 * fused multiply-adds in the same order, the same final reduction, so a
 * prompt gives the same numbers batched or token by token.
 *
 * Q8_0 weights are signed: activations enter vpdpbusd as unsigned x + 128
 * (x ^ 0x80) and the accumulator starts at -128 * sum(w), computed once per
 * weight block. Q4_0 nibbles are unsigned: the accumulator starts at
 * -8 * sum(x), once per activation block.
 *
 * Compiled with the AVX-512 flags (Makefile rule for *_avx512.c); called
 * only after the run-time check in matvec.c.
 */
#include "tensor/qgemm.h"
#include "tensor/kernels.h"

#include <immintrin.h>
#include <string.h>

#define TR 4 /* weight rows per tile */
#define TA 4 /* activation rows per tile */

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}
static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m512i cat(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }
static inline __m512 scale2(float a, float b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}
static inline __m256i nibbles(const uint8_t *p) {
    const __m128i qs = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0f));
}

/* One full tile over nb2 pairs of blocks: out[i][j] = reduce(acc), the odd
 * last block (if any) left to the caller. */
static void tile_q8_0(const uint8_t *const w[TR], const sb_q8a *const x[TA], int64_t nb2, float out[TR][TA]) {
    __m512 acc[TR][TA];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) acc[i][j] = _mm512_setzero_ps();
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int64_t k = 0; k < nb2; k++) {
        __m512i wv[TR], wc[TR];
        __m512 dw[TR];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < TR; i++) {
            const uint8_t *b = w[i] + k * 68;
            wv[i] = cat(load256(b + 2), load256(b + 36));
            wc[i] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wv[i]));
            dw[i] = scale2(h2f(b), h2f(b + 34));
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) {
            const sb_q8a *xb = x[j] + 2 * k;
            const __m512i xu = _mm512_xor_si512(cat(load256(xb[0].qs), load256(xb[1].qs)), bias);
            const __m512 dx = scale2(xb[0].d, xb[1].d);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < TR; i++) {
                const __m512i p = _mm512_dpbusd_epi32(wc[i], xu, wv[i]);
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], dx), _mm512_cvtepi32_ps(p), acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

static void tile_q4_0(const uint8_t *const w[TR], const sb_q8a *const x[TA], int64_t nb2, float out[TR][TA]) {
    __m512 acc[TR][TA];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) acc[i][j] = _mm512_setzero_ps();
    const __m512i eight = _mm512_set1_epi8(8);
    for (int64_t k = 0; k < nb2; k++) {
        __m512i wv[TR];
        __m512 dw[TR];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < TR; i++) {
            const uint8_t *b = w[i] + k * 36;
            wv[i] = cat(nibbles(b + 2), nibbles(b + 20));
            dw[i] = scale2(h2f(b), h2f(b + 18));
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) {
            const sb_q8a *xb = x[j] + 2 * k;
            const __m512i xv = cat(load256(xb[0].qs), load256(xb[1].qs));
            const __m512i xc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, xv));
            const __m512 dx = scale2(xb[0].d, xb[1].d);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < TR; i++) {
                const __m512i p = _mm512_dpbusd_epi32(xc, wv[i], xv);
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], dx), _mm512_cvtepi32_ps(p), acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Q4_1: x = d * nibble + m; the min term m * s (s = d_x * sum qx) enters as
 * m * (s / 8) in each of a block's 8 lanes, as in sb_qdot_q4_1_avx512. */
static void tile_q4_1(const uint8_t *const w[TR], const sb_q8a *const x[TA], int64_t nb2, float out[TR][TA]) {
    __m512 acc[TR][TA];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb2; k++) {
        __m512i wv[TR];
        __m512 dw[TR], mw[TR];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < TR; i++) {
            const uint8_t *b = w[i] + k * 40;
            wv[i] = cat(nibbles(b + 4), nibbles(b + 24));
            dw[i] = scale2(h2f(b), h2f(b + 20));
            mw[i] = scale2(h2f(b + 2), h2f(b + 22));
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) {
            const sb_q8a *xb = x[j] + 2 * k;
            const __m512i xv = cat(load256(xb[0].qs), load256(xb[1].qs));
            const __m512 dx = scale2(xb[0].d, xb[1].d), sx = scale2(xb[0].s * 0.125f, xb[1].s * 0.125f);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < TR; i++) {
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[i], xv);
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], dx), _mm512_cvtepi32_ps(p), acc[i][j]);
                acc[i][j] = _mm512_fmadd_ps(mw[i], sx, acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < TR; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TA; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

bool sb_gemm_q_avx512(int type, const sb_tensor *w, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                      int64_t r0, int64_t r1) {
    void (*tile)(const uint8_t *const[TR], const sb_q8a *const[TA], int64_t, float[TR][TA]);
    sb_qdot_fn dot, tail;
    size_t bsz;
    switch (type) {
    case SB_Q8_0: tile = tile_q8_0, dot = sb_qdot_q8_0_avx512, tail = sb_qdot_q8_0_scalar, bsz = 34; break;
    case SB_Q4_0: tile = tile_q4_0, dot = sb_qdot_q4_0_avx512, tail = sb_qdot_q4_0_scalar, bsz = 18; break;
    case SB_Q4_1: tile = tile_q4_1, dot = sb_qdot_q4_1_avx512, tail = sb_qdot_q4_1_scalar, bsz = 20; break;
    default: return false;
    }
    const int64_t n_in = w->ne[0], nb = n_in / 32, nb2 = nb / 2;
    const size_t rb = (size_t)nb * bsz;
    const uint8_t *base = w->data;
    int64_t r = r0;
    for (; r + TR <= r1; r += TR) {
        const uint8_t *wr[TR];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < TR; i++) wr[i] = base + (size_t)(r + i) * rb;
        int j = 0;
        for (; j + TA <= n; j += TA) {
            const sb_q8a *xr[TA];
            for (int a = 0; a < TA; a++) xr[a] = (const sb_q8a *)(const void *)((const uint8_t *)xq + (size_t)(j + a) * xq_stride);
            float out[TR][TA];
            tile(wr, xr, nb2, out);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < TR; i++)
                for (int a = 0; a < TA; a++) {
                    float v = out[i][a];
                    if (nb & 1) v += tail(wr[i] + (size_t)(nb - 1) * bsz, xr[a] + nb - 1, 32);
                    y[(size_t)(j + a) * (size_t)ldy + (size_t)(r + i)] = v;
                }
        }
        for (; j < n; j++)
            _Pragma("GCC unroll 4")
            for (int i = 0; i < TR; i++)
                y[(size_t)j * (size_t)ldy + (size_t)(r + i)] =
                    dot(wr[i], (const uint8_t *)xq + (size_t)j * xq_stride, n_in);
    }
    for (; r < r1; r++)
        for (int j = 0; j < n; j++)
            y[(size_t)j * (size_t)ldy + (size_t)r] = dot(base + (size_t)r * rb, (const uint8_t *)xq + (size_t)j * xq_stride, n_in);
    return true;
}
