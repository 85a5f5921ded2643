/*
 * kernels_avx2.c - AVX2 + FMA + F16C row dot products: one weight row (in
 * its GGUF block layout) times a float vector, the weights expanded to float
 * in registers, never written out. Same arithmetic as dequantize-then-dot,
 * only the order of the additions differs.
 *
 * Compiled with -mavx2 -mfma -mf16c (Makefile rule for *_avx2.c); called only
 * after a run-time check that the CPU has them (matvec.c).
 */
#include "tensor/kernels.h"

#include <immintrin.h>

#include "tensor/simd_avx2.h"
#include <float.h>
#include <string.h>


static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* an f16 field broadcast to 8 words: converted to 8 equal floats */
static inline __m128i f16x8(const uint8_t *p) {
    int16_t h;
    memcpy(&h, p, 2);
    return _mm_set1_epi16(h);
}

/* 8 bytes (as unsigned or signed ints) -> 8 floats */
static inline __m256 u8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }
static inline __m256 i8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)); }

float sb_dot_f32_avx2(const void *row, const float *x, int64_t n) {
    const float *a = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = sb_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

/* F16 row: 8 halves at a time widened with F16C */
float sb_dot_f16_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *a = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + 2 * i))), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + 2 * i + 16))), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = sb_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += load_f16(a + 2 * i) * x[i];
    return s;
}

/* BF16: the upper half of an f32, widened by a 16-bit shift */
static inline __m256 bf16_to_ps(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

float sb_dot_bf16_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *a = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(bf16_to_ps(a + 2 * i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(bf16_to_ps(a + 2 * i + 16), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = sb_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + 2 * i, 2);
        s += sb_bf16_to_f32(h) * x[i];
    }
    return s;
}

/* Q8_0 {f16 d; i8 q[32]}: sum over blocks of d * sum(q * x) */
float sb_dot_q8_0_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 34, x += 32) {
        /* 8 bytes widened straight from memory (vpmovsxbd ymm, m64) */
        __m256 s = _mm256_mul_ps(i8_to_ps(_mm_loadl_epi64((const __m128i *)(b + 2))), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(i8_to_ps(_mm_loadl_epi64((const __m128i *)(b + 10))), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(i8_to_ps(_mm_loadl_epi64((const __m128i *)(b + 18))), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(i8_to_ps(_mm_loadl_epi64((const __m128i *)(b + 26))), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(f16x8(b)), s, acc);
    }
    return sb_hsum256(acc);
}

/* Q4_0 {f16 d; u8 qs[16]}: element j < 16 is the low nibble of qs[j], j + 16
 * the high nibble; value d * (nibble - 8). */
float sb_dot_q4_0_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 18, x += 32) {
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m128i lo = _mm_and_si128(qs, mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        __m256 s = _mm256_mul_ps(_mm256_sub_ps(u8_to_ps(lo), eight), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(_mm_srli_si128(lo, 8)), eight), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(hi), eight), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(_mm256_sub_ps(u8_to_ps(_mm_srli_si128(hi, 8)), eight), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), s, acc);
    }
    return sb_hsum256(acc);
}

/* Q4_1 {f16 d, m; u8 qs[16]}: value d * nibble + m, so a block contributes
 * d * sum(q * x) + m * sum(x). */
float sb_dot_q4_1_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 32, b += 20, x += 32) {
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 4));
        const __m128i lo = _mm_and_si128(qs, mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
                     x3 = _mm256_loadu_ps(x + 24);
        __m256 s = _mm256_mul_ps(u8_to_ps(lo), x0);
        s = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(lo, 8)), x1, s);
        s = _mm256_fmadd_ps(u8_to_ps(hi), x2, s);
        s = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(hi, 8)), x3, s);
        const __m256 xs = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), s, acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b + 2)), xs, accm);
    }
    return sb_hsum256(_mm256_add_ps(acc, accm));
}

/* 8 bytes at p as 8 unsigned 32-bit lanes */
static inline __m256i load8_u32(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit
 * (scale, min); sub-block s contributes d*sc_s * sum(q*x) - dmin*m_s * sum(x). */
float sb_dot_q4_k_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    float total = 0;
    for (int64_t i = 0; i < n; i += 256, b += 144) {
        const float d = load_f16(b), dmin = load_f16(b + 2);
        const uint8_t *sc = b + 4, *q = b + 16;
        __m256 acc = _mm256_setzero_ps();
        float mins = 0;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t s[2], m[2];
            for (int k = 0; k < 2; k++) {
                int jj = j + k;
                if (jj < 4) {
                    s[k] = sc[jj] & 63;
                    m[k] = sc[jj + 4] & 63;
                } else {
                    s[k] = (uint8_t)((sc[jj + 4] & 0xf) | ((sc[jj - 4] >> 6) << 4));
                    m[k] = (uint8_t)((sc[jj + 4] >> 4) | ((sc[jj] >> 6) << 4));
                }
            }
            const float *xa = x + (i + j * 32), *xb = xa + 32;
            __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps(), xsa = _mm256_setzero_ps(), xsb = _mm256_setzero_ps();
            for (int l = 0; l < 32; l += 8) {
                __m256i v = load8_u32(q + l);
                __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, m4));
                __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
                __m256 x0 = _mm256_loadu_ps(xa + l), x1 = _mm256_loadu_ps(xb + l);
                sa = _mm256_fmadd_ps(lo, x0, sa);
                sb = _mm256_fmadd_ps(hi, x1, sb);
                xsa = _mm256_add_ps(xsa, x0);
                xsb = _mm256_add_ps(xsb, x1);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[0]), sa, acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[1]), sb, acc);
            mins += dmin * (float)m[0] * sb_hsum256(xsa) + dmin * (float)m[1] * sb_hsum256(xsb);
        }
        total += sb_hsum256(acc) - mins;
    }
    return total;
}

/* Q6_K: the 128 6-bit values (0..63) of one half of a block, 32 bytes per
 * vector: q[k] holds elements 32k .. 32k+31 (low 4 bits from ql, high 2 from qh). */
static inline __attribute__((always_inline)) void q6_unpack(const uint8_t *ql, const uint8_t *qh, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
}

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128; in
 * each, element l (< 32) and l+32, l+64, l+96 take 4 low bits from ql and 2
 * high bits from qh, minus 32, times d * scales[l/16 + 0, 2, 4, 6]. The
 * 6-bit values of a half are built 32 bytes at a time (the layout of
 * sb_qdot_q6_k_avx2), widened to float 8 at a time, each group of 16
 * summed against x and scaled once (the d * scales products taken 8 at a
 * time into a table). */
float sb_dot_q6_k_avx2(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m256i c32 = _mm256_set1_epi8(32);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++, b += 210, x += 256) {
        float ds[16];
        const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)(b + 192));
        const __m256 d = _mm256_set1_ps(load_f16(b + 208));
        _mm256_storeu_ps(ds, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_storeu_ps(ds + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            __m256i q[4];
            q6_unpack(ql, qh, q);
            const float *xh = x + 128 * h;
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) { /* elements 32k .. 32k+31 of this half: groups 2k, 2k+1 */
                const __m256i v = _mm256_sub_epi8(q[k], c32);
                const __m128i v0 = _mm256_castsi256_si128(v), v1 = _mm256_extracti128_si256(v, 1);
                const float *xk = xh + 32 * k;
                __m256 p0 = _mm256_mul_ps(i8_to_ps(v0), _mm256_loadu_ps(xk));
                p0 = _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(v0, 8)), _mm256_loadu_ps(xk + 8), p0);
                __m256 p1 = _mm256_mul_ps(i8_to_ps(v1), _mm256_loadu_ps(xk + 16));
                p1 = _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(v1, 8)), _mm256_loadu_ps(xk + 24), p1);
                acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + 8 * h + 2 * k), p0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + 8 * h + 2 * k + 1), p1, acc1);
            }
        }
    }
    return sb_hsum256(_mm256_add_ps(acc0, acc1));
}

/* ==== quantized activations (kernels.h sb_q8a / sb_q8k): integer dots ====
 * The same integers as kernels_scalar.c. Q4_K and Q6_K sum each super-block
 * in integers, so they equal the scalar results bit for bit; the 32-element
 * types keep per-lane float sums (other addition order). */

static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 8 lanes of sums of 4 products u8 * s8 (|pair sums| stay below 2^15 here:
 * u <= 128, |s| <= 127) */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
/* s8 * s8: move w's sign onto x */
static inline __m256i dot_s8s8(__m256i w, __m256i x) { return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }

/* 16 bytes of nibble pairs -> 32 bytes: low nibbles (elements 0..15), then high */
static inline __m256i nibbles(const uint8_t *p) {
    const __m128i qs = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0f));
}

/* ---- the 32-element types, several rows at a time ----
 *
 * Decode's products are memory-bound only if the dot keeps up with DRAM; one
 * row at a time it does not here (one accumulator: every block waits for the
 * previous fused multiply-add; Q4_0 ran 9 GB/s from L2). So the row kernels
 * below are the R = 1 case of bodies that walk R rows together, each with its
 * own accumulator, the activation side (loads, the -8 * sum(x) term, scales)
 * computed once per R rows. A row's result is the same whatever R, so
 * sb_qrows_* equal sb_qdot_* bit for bit.
 *
 * Q4_0/Q4_1 go two blocks (A, B) at a time, A in the low 128-bit half of
 * every register, B in the high one: lo = low nibbles (elements 0..15), hi =
 * high nibbles (16..31), and the activations loaded to match. Then the int32
 * lane k of a half sums that block's elements 4k..4k+3 and 16+4k..16+4k+3. */

#define QR 4 /* rows walked together */

static inline __m256i load2x128(const void *a, const void *b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                   _mm_loadu_si128((const __m128i *)b), 1);
}
/* scales of blocks A (4 lanes) and B (4 lanes), p == NULL: B's is 0 */
static inline __m256 f16x4x2(const uint8_t *a, const uint8_t *b) {
    /* the two halves meet in a general register (the integer pipes are idle
     * here), then one byte shuffle spreads them: fewer vector uops than two
     * word broadcasts and an unpack */
    uint16_t ha, hb = 0;
    memcpy(&ha, a, 2);
    if (b) memcpy(&hb, b, 2);
    const __m128i v = _mm_cvtsi32_si128((int)((uint32_t)ha | (uint32_t)hb << 16));
    return _mm256_cvtph_ps(_mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3)));
}

/* the activation side of a pair of blocks (B absent: the tail block of an
 * odd count, as zeros) */
typedef struct xpair2 {
    __m256i xl, xh; /* qs 0..15 and 16..31 of A | B */
    __m256 dx;      /* A.d x 4 | B.d x 4 */
} xpair2;

static inline xpair2 xpair_of(const sb_q8a *a, const sb_q8a *b) {
    xpair2 p;
    if (b) {
        p.xl = load2x128(a->qs, b->qs), p.xh = load2x128(a->qs + 16, b->qs + 16);
        p.dx = _mm256_set_m128(_mm_set1_ps(b->d), _mm_set1_ps(a->d));
    } else {
        p.xl = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)a->qs));
        p.xh = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(a->qs + 16)));
        p.dx = _mm256_set_m128(_mm_setzero_ps(), _mm_set1_ps(a->d));
    }
    return p;
}
/* nibbles of A (16 bytes at a) and B (at b; NULL: zeros) */
static inline void nibbles2(const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i q = b ? load2x128(a, b) : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)a));
    *lo = _mm256_and_si256(q, m4), *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
}
/* sum of u8 x s8 over lo/xl and hi/xh as int16 pairs (|.| <= 2 * 2 * 15 * 127) */
static inline __m256i nib_dot16(__m256i lo, __m256i hi, const xpair2 *x) {
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, x->xl), _mm256_maddubs_epi16(hi, x->xh));
}

/* Q4_0 {f16 d; u8 qs[16]}, value d * (nibble - 8): the integer dot is
 * sum(nibble * x) - 8 * sum(x), the second term shared by all rows. */
static inline __attribute__((always_inline)) void q4_0_step(const uint8_t *w, size_t stride, int64_t i, const xpair2 *x,
                                                            bool pair, __m256 *acc, const int R) {
    const __m256i c8 = nib_dot16(_mm256_set1_epi8(8), _mm256_set1_epi8(8), x);
    const __m256i ones = _mm256_set1_epi16(1);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const uint8_t *b = w + (size_t)r * stride + 18 * i;
        __m256i lo, hi;
        nibbles2(b + 2, pair ? b + 20 : NULL, &lo, &hi);
        const __m256i p = _mm256_madd_epi16(_mm256_sub_epi16(nib_dot16(lo, hi, x), c8), ones);
        const __m256 d = _mm256_mul_ps(f16x4x2(b, pair ? b + 18 : NULL), x->dx);
        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r]);
    }
}

/* Two pairs (blocks i..i+3: A, B in x0, C, D in x1) at a time: their int16
 * pair sums are added pairwise (vphaddw; |.| <= 2 * 11684), so one madd,
 * one conversion and one fused multiply-add serve four blocks, lanes
 * [A A C C | B B D D]; the four scales meet in one general register. */
static inline __attribute__((always_inline)) void q4_0_quad(const uint8_t *w, size_t stride, int64_t i, const xpair2 *x0,
                                                            const xpair2 *x1, __m256 dx, __m256 *acc, const int R) {
    const __m256i c8a = nib_dot16(_mm256_set1_epi8(8), _mm256_set1_epi8(8), x0);
    const __m256i c8b = nib_dot16(_mm256_set1_epi8(8), _mm256_set1_epi8(8), x1);
    const __m256i ones = _mm256_set1_epi16(1);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const uint8_t *b = w + (size_t)r * stride + 18 * i;
        uint16_t h[4];
        for (int j = 0; j < 4; j++) memcpy(&h[j], b + 18 * j, 2);
        const uint64_t hv = (uint64_t)h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
        /* words A A C C B B D D */
        const __m128i hw = _mm_shuffle_epi8(_mm_cvtsi64_si128((long long)hv),
                                            _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 2, 3, 2, 3, 6, 7, 6, 7));
        const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(hw), dx);
        __m256i lo, hi;
        nibbles2(b + 2, b + 20, &lo, &hi);
        const __m256i p0 = _mm256_sub_epi16(nib_dot16(lo, hi, x0), c8a);
        nibbles2(b + 38, b + 56, &lo, &hi);
        const __m256i p1 = _mm256_sub_epi16(nib_dot16(lo, hi, x1), c8b);
        const __m256i p = _mm256_madd_epi16(_mm256_hadd_epi16(p0, p1), ones);
        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r]);
    }
}

static inline __attribute__((always_inline)) void q4_0_rows(const uint8_t *w, size_t stride, const sb_q8a *x, int64_t nb,
                                                            float *out, const int R) {
    __m256 acc[QR];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const xpair2 x0 = xpair_of(x + i, x + i + 1), x1 = xpair_of(x + i + 2, x + i + 3);
        const __m256 dx = _mm256_setr_ps(x[i].d, x[i].d, x[i + 2].d, x[i + 2].d, x[i + 1].d, x[i + 1].d, x[i + 3].d, x[i + 3].d);
        q4_0_quad(w, stride, i, &x0, &x1, dx, acc, R);
    }
    for (; i + 2 <= nb; i += 2) {
        const xpair2 xp = xpair_of(x + i, x + i + 1);
        q4_0_step(w, stride, i, &xp, true, acc, R);
    }
    if (i < nb) {
        const xpair2 xp = xpair_of(x + i, NULL);
        q4_0_step(w, stride, i, &xp, false, acc, R);
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] = sb_hsum256(acc[r]);
}

/* Q4_1 {f16 d, m; u8 qs[16]}, value d * nibble + m: d * dx * sum(nibble * x)
 * + m * x.s, the second term in lane 0 of each half (the other lanes add 0). */
static inline __attribute__((always_inline)) void q4_1_step(const uint8_t *w, size_t stride, int64_t i, const xpair2 *x,
                                                            __m256 xs, bool pair, __m256 *acc, const int R) {
    const __m256i ones = _mm256_set1_epi16(1);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const uint8_t *b = w + (size_t)r * stride + 20 * i;
        __m256i lo, hi;
        nibbles2(b + 4, pair ? b + 24 : NULL, &lo, &hi);
        const __m256i p = _mm256_madd_epi16(nib_dot16(lo, hi, x), ones);
        const __m256 d = _mm256_mul_ps(f16x4x2(b, pair ? b + 20 : NULL), x->dx);
        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r]);
        acc[r] = _mm256_fmadd_ps(f16x4x2(b + 2, pair ? b + 22 : NULL), xs, acc[r]);
    }
}

static inline __attribute__((always_inline)) void q4_1_rows(const uint8_t *w, size_t stride, const sb_q8a *x, int64_t nb,
                                                            float *out, const int R) {
    __m256 acc[QR];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const xpair2 xp = xpair_of(x + i, x + i + 1);
        const __m256 xs = _mm256_setr_ps(x[i].s, 0, 0, 0, x[i + 1].s, 0, 0, 0);
        q4_1_step(w, stride, i, &xp, xs, true, acc, R);
    }
    if (i < nb) {
        const xpair2 xp = xpair_of(x + i, NULL);
        q4_1_step(w, stride, i, &xp, _mm256_setr_ps(x[i].s, 0, 0, 0, 0, 0, 0, 0), false, acc, R);
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] = sb_hsum256(acc[r]);
}

/* Q8_0 {f16 d; i8 qs[32]}: one block per step, s8 x s8 by moving w's sign
 * onto x. */
static inline __attribute__((always_inline)) void q8_0_rows(const uint8_t *w, size_t stride, const sb_q8a *x, int64_t nb,
                                                            float *out, const int R) {
    __m256 acc[QR];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const __m256 dx = _mm256_set1_ps(x[i].d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * stride + 34 * i;
            const __m256i p = dot_s8s8(_mm256_loadu_si256((const __m256i *)(b + 2)), xv);
            const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(f16x8(b)), dx);
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] = sb_hsum256(acc[r]);
}

/* The rows are cut into QR contiguous parts walked side by side (row i of
 * every part together): QR long sequential streams for the hardware
 * prefetcher (kernels_avx512.c measured adjacent rows at half the speed from
 * DRAM). Rows left over go one at a time. */
#define QROWS_AVX2(T, BLK)                                                                                       \
    float sb_qdot_##T##_avx2(const void *row, const void *xq, int64_t n) {                                     \
        float y;                                                                                               \
        T##_rows(row, 0, xq, n / (BLK), &y, 1);                                                                   \
        return y;                                                                                              \
    }                                                                                                          \
    void sb_qrows_##T##_avx2(const void *w, size_t rb, const void *xq, int64_t n, float *y, int64_t nrows) {   \
        const int64_t q = nrows / QR;                                                                          \
        const size_t stride = (size_t)q * rb;                                                                  \
        float out[QR];                                                                                         \
        for (int64_t i = 0; i < q; i++) {                                                                      \
            T##_rows((const uint8_t *)w + (size_t)i * rb, stride, xq, n / (BLK), out, QR);                        \
            for (int j = 0; j < QR; j++) y[j * q + i] = out[j];                                                \
        }                                                                                                      \
        for (int64_t r = QR * q; r < nrows; r++) T##_rows((const uint8_t *)w + (size_t)r * rb, 0, xq, n / (BLK), y + r, 1); \
    }
QROWS_AVX2(q4_0, 32)
QROWS_AVX2(q4_1, 32)
QROWS_AVX2(q8_0, 32)

/* Q8_0 x two-level activations (pairs of sb_q8a, d2 = d1 / 254): per block
 * one w load and sign move feed both levels, 254 * (w . q1) + w . q2 in
 * int32 lanes (|.| < 2^24: exact in f32), scaled by dw * d2. */
static inline __attribute__((always_inline)) void q8_0_2_rows(const uint8_t *w, size_t stride, const sb_q8a *x, int64_t nb,
                                                              float *out, const int R) {
    const __m256i k254 = _mm256_set1_epi16(254), one = _mm256_set1_epi16(1);
    __m256 acc[QR];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[2 * i].qs);
        const __m256i x2 = _mm256_loadu_si256((const __m256i *)x[2 * i + 1].qs);
        const __m256 dx = _mm256_set1_ps(x[2 * i + 1].d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * stride + 34 * i;
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(b + 2)), aw = _mm256_sign_epi8(wv, wv);
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x1, wv)), k254);
            const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x2, wv)), one);
            const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(f16x8(b)), dx);
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_add_epi32(p1, p2)), acc[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] = sb_hsum256(acc[r]);
}
QROWS_AVX2(q8_0_2, 32)

/* ---- Q4_K / Q5_K, several rows at a time ----
 *
 * Every super-block's integers are summed exactly (isum = sum_j sc_j *
 * q_j . x_j, msum = sum_j m_j * (bsums[2j] + bsums[2j+1])) and scaled as the
 * scalar kernel does, d * x.d * isum - dmin * x.d * msum added to the row's
 * float sum super-block by super-block: bit-identical to kernels_scalar.c
 * at every R. With R = 4 the two reductions of the four rows go together
 * and the float steps run in the four lanes of one register. */

/* the 8 scales (words 0..7) and 8 mins (words 8..15) from the 12 scale
 * bytes at q (sb_k4_scales_mins in a vector register; reads 16 bytes:
 * q + 12..15 are still in the block) */
static inline __m256i k4_scales16(const uint8_t *q) {
    const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)q);
    const __m128i lo = _mm_and_si128(a, _mm_set1_epi32(0x3f3f3f3f));                          /* u0, u2 */
    const __m128i top = _mm_and_si128(_mm_srli_epi32(a, 2), _mm_set1_epi32(0x30303030));      /* bits 6, 7 of a0, a1 at 4, 5 */
    const __m128i a2 = _mm_srlv_epi32(_mm_shuffle_epi32(a, 0xaa), _mm_setr_epi32(0, 4, 0, 0)); /* a2, a2 >> 4 */
    const __m128i u13 = _mm_or_si128(_mm_and_si128(a2, _mm_set1_epi32(0x0f0f0f0f)), top);    /* u1, u3 */
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(lo, u13));
}

/* word (scale) j of the 8 in s (both halves) in all 16 words */
#define K4_SCALE(s, j) _mm256_shuffle_epi8((s), _mm256_set1_epi16((short)(((2 * (j) + 1) << 8) | (2 * (j)))))

/* bit j of every byte of qh, at bit 4 (value 16) of that byte: one mask and
 * one shift (j is a constant once unrolled; the bit never leaves its byte) */
static inline __attribute__((always_inline)) __m256i k5_bit(__m256i qh, const int j) {
    const __m256i b = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << j)));
    return j < 4 ? _mm256_slli_epi16(b, 4 - j) : j > 4 ? _mm256_srli_epi16(b, j - 4) : b;
}

/* one row's super-block: isum as 8 lanes, msum as 4 */
static inline __attribute__((always_inline)) void k45_block(const uint8_t *b, const sb_q8k *x, __m128i bp, bool q5,
                                                            __m256i *isum_out, __m128i *msum_out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i w = k4_scales16(b + 4);
    *msum_out = _mm_madd_epi16(_mm256_extracti128_si256(w, 1), bp);
    const __m256i sc = _mm256_permute4x64_epi64(w, 0x44);
    const uint8_t *qs = b + (q5 ? 48 : 16);
    const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(const void *)(b + 16)) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * p));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (q5) { /* fifth bits: bit j of qh[l] for element l of sub-block j, moved to bit 4 (16) of the same byte */
            lo = _mm256_or_si256(lo, k5_bit(qh, 2 * p));
            hi = _mm256_or_si256(hi, k5_bit(qh, 2 * p + 1));
        }
        const int8_t *xs = x->qs + 64 * p;
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(const void *)xs)),
                                             K4_SCALE(sc, 2 * p));
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32))),
                                             K4_SCALE(sc, 2 * p + 1));
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
    }
    *isum_out = isum;
}

static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void k45_rows(const uint8_t *w, size_t stride, const sb_q8k *x, int64_t nsb,
                                                           float *out, const int R, const bool q5) {
    const size_t bsz = q5 ? 176 : 144;
    float sum1 = 0;
    __m128 sum4 = _mm_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, x++) {
        /* bsums[2j] + bsums[2j+1] as 8 words (|.| <= 2 * 16 * 127) */
        const __m256i b32 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)x->bsums), _mm256_set1_epi16(1));
        const __m128i bp = _mm_packs_epi32(_mm256_castsi256_si128(b32), _mm256_extracti128_si256(b32, 1));
        if (R == 1) {
            const uint8_t *b = w + bsz * i;
            __m256i is;
            __m128i ms;
            k45_block(b, x, bp, q5, &is, &ms);
            const __m256i t = _mm256_set_m128i(ms, _mm_setzero_si128());
            sum1 += load_f16(b) * x->d * (float)hsum_i32(is) - load_f16(b + 2) * x->d * (float)hsum_i32(t);
            continue;
        }
        __m256i z[QR];
        _Pragma("GCC unroll 4") for (int r = 0; r < QR; r++) {
            __m256i is;
            __m128i ms;
            k45_block(w + (size_t)r * stride + bsz * i, x, bp, q5, &is, &ms);
            z[r] = _mm256_set_m128i(ms, _mm_add_epi32(_mm256_castsi256_si128(is), _mm256_extracti128_si256(is, 1)));
        }
        /* [isum of rows 0..3 | msum of rows 0..3] */
        const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(z[0], z[1]), _mm256_hadd_epi32(z[2], z[3]));
        /* [d of rows 0..3 | dmin of rows 0..3] */
        const uint8_t *b0 = w + bsz * i;
        const __m128i dd = _mm_setr_epi32(load32(b0), load32(b0 + stride), load32(b0 + 2 * stride), load32(b0 + 3 * stride));
        const __m256 d = _mm256_cvtph_ps(_mm_shuffle_epi8(dd, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15)));
        const __m256 v = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(t));
        sum4 = _mm_add_ps(sum4, _mm_sub_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
    }
    if (R == 1) out[0] = sum1;
    else _mm_storeu_ps(out, sum4);
}

static inline __attribute__((always_inline)) void q4_k_rows(const uint8_t *w, size_t stride, const sb_q8k *x, int64_t nsb,
                                                            float *out, const int R) {
    k45_rows(w, stride, x, nsb, out, R, false);
}
static inline __attribute__((always_inline)) void q5_k_rows(const uint8_t *w, size_t stride, const sb_q8k *x, int64_t nsb,
                                                            float *out, const int R) {
    k45_rows(w, stride, x, nsb, out, R, true);
}
QROWS_AVX2(q4_k, 256)
QROWS_AVX2(q5_k, 256)

/* ---- Q6_K, several rows at a time ----
 * The 6-bit values enter unsigned (0..63) and the -32 comes back through
 * the block sums: isum = sum_g sc_g * (q_g . x_g) - 32 * sum_g sc_g *
 * bsums_g, exact in int32, then d * x.d * isum as the scalar kernel
 * (bit-identical at every R). Half h, product k covers elements 32k..32k+15
 * (scale 8h + 2k, low 128-bit half) and 32k+16..32k+31 (8h + 2k + 1, high). */
static inline __attribute__((always_inline)) __m256i q6_k_block(const uint8_t *b, const sb_q8k *x, __m256i bsums) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + 192)));
    __m256i isum = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bsums), 5);
    isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const int8_t *xs = x->qs + 128 * h;
        const __m256i s = h ? _mm256_permute4x64_epi64(sc16, 0xee) : _mm256_permute4x64_epi64(sc16, 0x44);
        __m256i q[4];
        q6_unpack(ql, qh, q);
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32 * k)));
            /* words 2k (low half), 2k + 1 (high half) of s in every word */
            const __m256i ctl = _mm256_setr_epi8(4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                                 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                                 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2,
                                                 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                                                 4 * k + 2, 4 * k + 3);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(s, ctl)));
        }
    }
    return isum;
}

static inline __attribute__((always_inline)) void q6_k_rows(const uint8_t *w, size_t stride, const sb_q8k *x, int64_t nsb,
                                                            float *out, const int R) {
    float sum1 = 0;
    __m128 sum4 = _mm_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, x++) {
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(const void *)x->bsums);
        const uint8_t *b0 = w + 210 * i;
        if (R == 1) {
            sum1 += load_f16(b0 + 208) * x->d * (float)hsum_i32(q6_k_block(b0, x, bsums));
            continue;
        }
        __m128i z[QR];
        _Pragma("GCC unroll 4") for (int r = 0; r < QR; r++) {
            const __m256i is = q6_k_block(b0 + (size_t)r * stride, x, bsums);
            z[r] = _mm_add_epi32(_mm256_castsi256_si128(is), _mm256_extracti128_si256(is, 1));
        }
        const __m128i t = _mm_hadd_epi32(_mm_hadd_epi32(z[0], z[1]), _mm_hadd_epi32(z[2], z[3]));
        uint16_t h[4];
        for (int r = 0; r < QR; r++) memcpy(&h[r], b0 + (size_t)r * stride + 208, 2);
        const __m128 d = _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
        sum4 = _mm_add_ps(sum4, _mm_mul_ps(_mm_mul_ps(d, _mm_set1_ps(x->d)), _mm_cvtepi32_ps(t)));
    }
    if (R == 1) out[0] = sum1;
    else _mm_storeu_ps(out, sum4);
}
QROWS_AVX2(q6_k, 256)

/* ---- Q6_K x two-level activations (kernels.h sb_quantize_q8k2) ----
 * One unpack of the 6-bit values feeds two maddubs chains, one per level
 * (x[0] the block, x[1] its residual); each level's isum exactly as
 * q6_k_block, then d * (d1 * isum1 + d2 * isum2) as the scalar kernel
 * (bit-identical at every R). */
static inline __attribute__((always_inline)) void q6_k2_block(const uint8_t *b, const sb_q8k *x, __m256i bs1, __m256i bs2,
                                                              __m256i *is1_out, __m256i *is2_out) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + 192)));
    __m256i is1 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs1), 5));
    __m256i is2 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs2), 5));
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const int8_t *x1 = x[0].qs + 128 * h, *x2 = x[1].qs + 128 * h;
        const __m256i s = h ? _mm256_permute4x64_epi64(sc16, 0xee) : _mm256_permute4x64_epi64(sc16, 0x44);
        __m256i q[4];
        q6_unpack(ql, qh, q);
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m256i ctl = _mm256_setr_epi8(4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                                 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                                 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2,
                                                 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                                                 4 * k + 2, 4 * k + 3);
            const __m256i sk = _mm256_shuffle_epi8(s, ctl);
            const __m256i p1 = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(const void *)(x1 + 32 * k)));
            const __m256i p2 = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(const void *)(x2 + 32 * k)));
            is1 = _mm256_add_epi32(is1, _mm256_madd_epi16(p1, sk));
            is2 = _mm256_add_epi32(is2, _mm256_madd_epi16(p2, sk));
        }
    }
    *is1_out = is1;
    *is2_out = is2;
}

/* xq: 2 sb_q8k per super-block; nsb super-blocks */
static inline __attribute__((always_inline)) void q6_k2_rows(const uint8_t *w, size_t stride, const sb_q8k *x, int64_t nsb,
                                                             float *out, const int R) {
    float sum1 = 0;
    __m128 sum4 = _mm_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, x += 2) {
        const __m256i bs1 = _mm256_loadu_si256((const __m256i *)(const void *)x[0].bsums);
        const __m256i bs2 = _mm256_loadu_si256((const __m256i *)(const void *)x[1].bsums);
        const uint8_t *b0 = w + 210 * i;
        if (R == 1) {
            __m256i is1, is2;
            q6_k2_block(b0, x, bs1, bs2, &is1, &is2);
            const float s1 = x[0].d * (float)hsum_i32(is1);
            const float s2 = x[1].d * (float)hsum_i32(is2);
            const float t = s1 + s2;
            const float v = load_f16(b0 + 208) * t;
            sum1 += v;
            continue;
        }
        __m256i z[QR];
        _Pragma("GCC unroll 4") for (int r = 0; r < QR; r++) {
            __m256i is1, is2;
            q6_k2_block(b0 + (size_t)r * stride, x, bs1, bs2, &is1, &is2);
            z[r] = _mm256_set_m128i(_mm_add_epi32(_mm256_castsi256_si128(is2), _mm256_extracti128_si256(is2, 1)),
                                    _mm_add_epi32(_mm256_castsi256_si128(is1), _mm256_extracti128_si256(is1, 1)));
        }
        /* [isum1 of rows 0..3 | isum2 of rows 0..3] */
        const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(z[0], z[1]), _mm256_hadd_epi32(z[2], z[3]));
        const __m256 s = _mm256_mul_ps(_mm256_setr_ps(x[0].d, x[0].d, x[0].d, x[0].d, x[1].d, x[1].d, x[1].d, x[1].d),
                                       _mm256_cvtepi32_ps(t));
        uint16_t h[4];
        for (int r = 0; r < QR; r++) memcpy(&h[r], b0 + (size_t)r * stride + 208, 2);
        const __m128 d = _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
        const __m128 tt = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        sum4 = _mm_add_ps(sum4, _mm_mul_ps(d, tt));
    }
    if (R == 1) out[0] = sum1;
    else _mm_storeu_ps(out, sum4);
}
QROWS_AVX2(q6_k2, 256)

/* ==== activation quantizers: the same bytes as kernels_scalar.c's (max is
 * exact in any order; x * id and round-to-nearest-even are the same IEEE
 * operations), 8 lanes at a time ==== */

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 floats -> 32 int8 (round(x * id), clamped to +-127); returns the four
 * int32 vectors through q (for sums) */
static inline void q8_32(const float *x, __m256 id, int8_t *out, __m256i q[4]) {
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(v), lim), nlim);
    }
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p);
}

static inline float amax_n(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    return hmax(m);
}

void sb_quantize_q8a_avx2(const float *x, sb_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32, y++) {
        const float amax = amax_n(x, 32);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i q[4];
        q8_32(x, _mm256_set1_ps(id), y->qs, q);
        y->d = d;
        y->s = d * (float)hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    }
}

void sb_quantize_q8k_avx2(const float *x, sb_q8k *y, int64_t n) {
    for (int64_t i = 0; i < n / 256; i++, x += 256, y++) {
        const float amax = amax_n(x, 256);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int c = 0; c < 8; c++) {
            __m256i q[4];
            q8_32(x + 32 * c, _mm256_set1_ps(id), y->qs + 32 * c, q);
            y->bsums[2 * c] = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
            y->bsums[2 * c + 1] = (int16_t)hsum_i32(_mm256_add_epi32(q[2], q[3]));
        }
        y->d = d;
    }
}

/* Two levels, the bytes of kernels_scalar.c's sb_quantize_q8a2 / q8k2: the
 * residual x - d1 * q1 (one product, one difference per lane) of 32
 * elements rounded with id2 = 1 / (d1 / 254) into out; q the int32 values */
static inline void residual_32(const float *x, float d1, const int8_t *q1, float id2, int8_t *out, __m256i q[4]) {
    float r[32];
    const __m256 d = _mm256_set1_ps(d1);
    for (int j = 0; j < 32; j += 8) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q1 + j))));
        _mm256_storeu_ps(r + j, _mm256_sub_ps(_mm256_loadu_ps(x + j), _mm256_mul_ps(d, v)));
    }
    q8_32(r, _mm256_set1_ps(id2), out, q);
}

void sb_quantize_q8a2_avx2(const float *x, sb_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32, y += 2) {
        sb_quantize_q8a_avx2(x, y, 32);
        const float d2 = y->d / 254.0f, id2 = d2 >= FLT_MIN ? 1.0f / d2 : 0.0f;
        __m256i q[4];
        residual_32(x, y->d, y->qs, id2, y[1].qs, q);
        y[1].d = d2;
        y[1].s = d2 * (float)hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    }
}

void sb_quantize_q8k2_avx2(const float *x, sb_q8k *y, int64_t n) {
    for (int64_t i = 0; i < n / 256; i++, x += 256, y += 2) {
        sb_quantize_q8k_avx2(x, y, 256);
        const float d2 = y->d / 254.0f, id2 = d2 >= FLT_MIN ? 1.0f / d2 : 0.0f;
        for (int c = 0; c < 8; c++) {
            __m256i q[4];
            residual_32(x + 32 * c, y->d, y->qs + 32 * c, id2, y[1].qs + 32 * c, q);
            y[1].bsums[2 * c] = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
            y[1].bsums[2 * c + 1] = (int16_t)hsum_i32(_mm256_add_epi32(q[2], q[3]));
        }
        y[1].d = d2;
    }
}
