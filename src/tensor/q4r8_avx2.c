/*
 * q4r8_avx2.c - the SB_Q4_0_R8 kernel of q4r8.h with AVX2.
 *
 * Per group of 8 rows and block k: the four 32-byte vectors of the record
 * hold the nibbles of all 8 rows (lane r = row r), split into low (elements
 * 4q..4q+3) and high (16+4q..) by one and / one shift; the activation dwords
 * 4q and 16+4q are broadcast to every lane and vpmaddubsw multiplies
 * (unsigned nibbles times signed activations, pairs summed to int16). The
 * eight products of a block add as int16 (|.| <= 8 * 2 * 15 * 128 < 2^15),
 * vpmaddwd with ones gives lane r the row's integer sum of u * qx, and -8 *
 * sum qx (the same for every row, computed once per call) makes it the
 * scalar kernel's integer. Then the 8 scales (one load), d * x.d, times the
 * integer, added to the lane's sum: the scalar kernel's float operations in
 * its order, so the result is bit-identical.
 *
 * Up to 4 activation rows share each weight vector's loads and nibble split
 * (short prompts, sb_matmul_q). Compiled with the AVX2 flags (Makefile rule
 * for *_avx2.c); called only after the run-time check.
 */
#include "tensor/q4r8.h"

#include "tensor/kernels.h"
#include "tensor/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

#define JMAX 4

static inline int32_t ld32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* out[j * 8 + r] = row r of the group . activation row j */
static inline __attribute__((always_inline)) void group(const uint8_t *grp, int64_t nb, const sb_q8a *const x[JMAX],
                                                        const int32_t *const c[JMAX], float *out, const int J) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[JMAX];
    _Pragma("GCC unroll 4") for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        const uint8_t *qv = grp + sb_q4r8_qs_off(nb, k);
        __m256i p[JMAX];
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qv + 32 * q));
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            _Pragma("GCC unroll 4") for (int j = 0; j < J; j++) {
                const __m256i xl = _mm256_set1_epi32(ld32(x[j][k].qs + 4 * q));
                const __m256i xh = _mm256_set1_epi32(ld32(x[j][k].qs + 16 + 4 * q));
                const __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
                p[j] = q == 0 ? t : _mm256_add_epi16(p[j], t);
            }
        }
        const __m256 ds = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(grp + sb_q4r8_d_off(k))));
        _Pragma("GCC unroll 4") for (int j = 0; j < J; j++) {
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p[j], ones), _mm256_set1_epi32(c[j][k]));
            const __m256 d = _mm256_mul_ps(ds, _mm256_set1_ps(x[j][k].d));
            acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        }
    }
    _Pragma("GCC unroll 4") for (int j = 0; j < J; j++) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

/* One activation row, S groups side by side (grp[i]: S separate streams
 * through memory), out[i * 8 + r]. */
#define S 4
static inline __attribute__((always_inline)) void groups1(const uint8_t *const grp[S], int64_t nb, const sb_q8a *x,
                                                          const int32_t *c, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[S];
    _Pragma("GCC unroll 4") for (int i = 0; i < S; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        const size_t qo = sb_q4r8_qs_off(nb, k), dof = sb_q4r8_d_off(k);
        __m256i p[S];
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            const __m256i xl = _mm256_set1_epi32(ld32(x[k].qs + 4 * q));
            const __m256i xh = _mm256_set1_epi32(ld32(x[k].qs + 16 + 4 * q));
            _Pragma("GCC unroll 4") for (int i = 0; i < S; i++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(grp[i] + qo + 32 * q));
                const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                const __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
                p[i] = q == 0 ? t : _mm256_add_epi16(p[i], t);
            }
        }
        const __m256i ck = _mm256_set1_epi32(c[k]);
        const __m256 dx = _mm256_set1_ps(x[k].d);
        _Pragma("GCC unroll 4") for (int i = 0; i < S; i++) {
            const __m256 ds = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(grp[i] + dof)));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p[i], ones), ck);
            acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(_mm256_mul_ps(ds, dx), _mm256_cvtepi32_ps(s)));
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < S; i++) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

static inline void store(const float *out, int64_t g, float *y, int64_t r0, int64_t r1) {
    const int64_t a = g * 8 < r0 ? r0 : g * 8, e = g * 8 + 8 < r1 ? g * 8 + 8 : r1;
    for (int64_t r = a; r < e; r++) y[r] = out[r - g * 8];
}

static inline __attribute__((always_inline)) void run(const uint8_t *w, int64_t nb, const sb_q8a *const x[JMAX],
                                                      const int32_t *const c[JMAX], float *y, int64_t ldy,
                                                      int64_t r0, int64_t r1, const int J) {
    const size_t gb = (size_t)nb * 8 * 18;
    for (int64_t g = r0 / 8; g * 8 < r1; g++) {
        float out[JMAX * 8];
        group(w + (size_t)g * gb, nb, x, c, out, J);
        const int64_t a = g * 8 < r0 ? r0 : g * 8, e = g * 8 + 8 < r1 ? g * 8 + 8 : r1;
        for (int j = 0; j < J; j++)
            for (int64_t r = a; r < e; r++) y[(size_t)j * (size_t)ldy + (size_t)r] = out[8 * j + (r - g * 8)];
    }
}

void sb_q4r8_avx2(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                  int64_t r0, int64_t r1) {
    const int64_t nb = ne0 / 32;
    static _Thread_local int32_t cs[JMAX][SB_Q4R8_MAX_IN / 32];
    const sb_q8a *x[JMAX];
    const int32_t *c[JMAX];
    if (n > JMAX) n = JMAX;
    for (int j = 0; j < n; j++) {
        x[j] = (const sb_q8a *)(const void *)((const uint8_t *)xq + (size_t)j * xq_stride);
        c[j] = cs[j];
        for (int64_t k = 0; k < nb; k++) { /* every call (decode hands out 64-row chunks): one madd chain a block */
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)x[j][k].qs);
            const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), v); /* pairs, |.| <= 256 */
            const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(-8));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
            cs[j][k] = _mm_cvtsi128_si32(h);
        }
    }
    if (n == 1) { /* the groups cut into S contiguous parts walked side by side */
        const size_t gb = (size_t)nb * 8 * 18;
        const int64_t g0 = r0 / 8, g1 = (r1 + 7) / 8, q = (g1 - g0) / S;
        for (int64_t i = 0; i < q; i++) {
            const uint8_t *grp[S];
            float out[S * 8];
            for (int s = 0; s < S; s++) grp[s] = (const uint8_t *)w + (size_t)(g0 + s * q + i) * gb;
            groups1(grp, nb, x[0], c[0], out);
            for (int s = 0; s < S; s++) store(out + 8 * s, g0 + s * q + i, y, r0, r1);
        }
        r0 = (g0 + S * q) * 8 > r0 ? (g0 + S * q) * 8 : r0;
    }
    switch (n) {
    case 1: run(w, nb, x, c, y, ldy, r0, r1, 1); break;
    case 2: run(w, nb, x, c, y, ldy, r0, r1, 2); break;
    case 3: run(w, nb, x, c, y, ldy, r0, r1, 3); break;
    case 4: run(w, nb, x, c, y, ldy, r0, r1, 4); break;
    default: break;
    }
}

/* Per group and block: the 8 rows' 16 nibble bytes transposed by dwords
 * (the four record vectors), the 8 scales gathered into 16 bytes. */
void sb_q4r8_pack_avx2(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1) {
    const int64_t nb = ne0 / 32;
    const size_t rb = (size_t)nb * 18;
    for (int64_t g = r0 / 8; g < r1 / 8; g++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)g * 8 * rb;
        uint8_t *out = (uint8_t *)dst + (size_t)g * 8 * rb;
        for (int64_t k = 0; k < nb; k++) {
            const uint8_t *row[8];
            for (int r = 0; r < 8; r++) row[r] = in + (size_t)r * rb + (size_t)k * 18;
            __m256i v[4];
            sb_dwords8x16(row, 2, v);
            for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(void *)(out + sb_q4r8_qs_off(nb, k) + 32 * q), v[q]);
            for (int r = 0; r < 8; r++) memcpy(out + sb_q4r8_d_off(k) + 2 * r, row[r], 2);
        }
    }
}
