/*
 * kernels_avx512.c - quantized-activation dots with AVX-512 VNNI: one
 * vpdpbusd (u8 x s8, four products summed into each 32-bit lane) replaces
 * AVX2's maddubs + madd pair and cannot saturate. Two 32-element blocks are
 * handled per 512-bit register. Same integers as kernels_scalar.c; Q4_K and
 * Q6_K sum each super-block in integers (bit-identical to the scalar path).
 *
 * Compiled with the AVX-512 F/BW/VL/DQ/VNNI flags (Makefile rule for
 * *_avx512.c); called only after a run-time check (matvec.c).
 */
#include "tensor/kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
/* qs of two consecutive activation blocks in one register */
static inline __m512i x2(const sb_q8a *x) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(x[0].qs)), load256(x[1].qs), 1);
}
/* 8 lanes scale a, 8 lanes scale b */
static inline __m512 scale2(float a, float b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}
/* 16 bytes of nibble pairs -> low nibbles then high nibbles */
static inline __m256i nibbles(const uint8_t *p) {
    const __m128i qs = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0f));
}
static inline __m512i cat(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

/* Q4_K/Q5_K super-block header: the 8 6-bit scales as int32 lanes 0..7 (the
 * result) and the min term msum = sum_j m_j * (bsums[2j] + bsums[2j+1]) as 8
 * int32 partial sums in *msum8. */
static inline __m512i k4_header(const uint8_t *q, const int16_t *bsums, __m256i *msum8) {
    uint32_t u[4];
    sb_k4_scales_mins(q, u);
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)u);
    const __m128i m = _mm_srli_si128(v, 8);
    *msum8 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)bsums),
                               _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m)));
    return _mm512_cvtepu8_epi32(v); /* lanes 0..7: sc; 8..15: m (unused) */
}

/* isum (16 lanes) and msum (8 lanes) to two integers, exact */
static inline void k4_reduce(__m512i isum, __m256i msum8, int *is, int *ms) {
    const __m256i i8 = _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
    __m256i t = _mm256_hadd_epi32(i8, msum8); /* i01 i23 m01 m23 | i45 i67 m45 m67 */
    t = _mm256_hadd_epi32(t, t);               /* i0-3 m0-3 .. | i4-7 m4-7 .. */
    const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    *is = _mm_cvtsi128_si32(r);
    *ms = _mm_extract_epi32(r, 1);
}

/* Q4_K/Q5_K: 64 weight bytes of pair p (nibbles as unsigned 0..15 or 0..31:
 * lo = sub-blocks 2p, 2p+2, hi = 2p+1, 2p+3) times the activations' 4
 * sub-blocks at xs, each sub-block's sum scaled by its 6-bit scale (sc:
 * k4_header's lanes), added into isum. */
static inline __m512i k4_pair(__m512i isum, __m512i lo, __m512i hi, const int8_t *xs, __m512i sc, int p) {
    const __m512i xlo = cat(load256(xs), load256(xs + 64)), xhi = cat(load256(xs + 32), load256(xs + 96));
    const __m512i dlo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo);
    const __m512i dhi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xhi);
    const __m512i ilo = _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 2), 1);
    const __m512i ihi = _mm512_inserti64x4(_mm512_set1_epi32(2 * p + 1), _mm256_set1_epi32(2 * p + 3), 1);
    const __m512i slo = _mm512_permutexvar_epi32(ilo, sc), shi = _mm512_permutexvar_epi32(ihi, sc);
    return _mm512_add_epi32(isum, _mm512_add_epi32(_mm512_mullo_epi32(dlo, slo), _mm512_mullo_epi32(dhi, shi)));
}

/* s8 * s8 as |w| * (x with w's sign) */
static inline __m512i dot_s8s8(__m512i w, __m512i x) {
    const __m512i aw = _mm512_abs_epi8(w);
    const __mmask64 neg = _mm512_movepi8_mask(w);
    const __m512i sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sx);
}

/* n/32 blocks, two at a time; a leftover odd block goes through the
 * scalar-semantics single-block step (the lower half of the register). */
#define PAIR_LOOP(BSZ, BODY)                                                     \
    int64_t nb = n / 32, i = 0;                                                  \
    for (; i + 2 <= nb; i += 2, b += 2 * (BSZ), x += 2) {                        \
        BODY                                                                     \
    }

float sb_qdot_q8_0_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    __m512 acc = _mm512_setzero_ps();
    PAIR_LOOP(34, {
        __m512i p = dot_s8s8(cat(load256(b + 2), load256(b + 36)), x2(x));
        acc = _mm512_fmadd_ps(scale2(h2f(b) * x[0].d, h2f(b + 34) * x[1].d), _mm512_cvtepi32_ps(p), acc);
    })
    float sum = _mm512_reduce_add_ps(acc);
    if (i < nb) sum += sb_qdot_q8_0_scalar(b, x, 32);
    return sum;
}

float sb_qdot_q4_0_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    PAIR_LOOP(18, {
        const __m512i xv = x2(x);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat(nibbles(b + 2), nibbles(b + 20)), xv);
        p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, xv));
        acc = _mm512_fmadd_ps(scale2(h2f(b) * x[0].d, h2f(b + 18) * x[1].d), _mm512_cvtepi32_ps(p), acc);
    })
    float sum = _mm512_reduce_add_ps(acc);
    if (i < nb) sum += sb_qdot_q4_0_scalar(b, x, 32);
    return sum;
}

/* The min term m * s enters as m * (s / 8) in each of a block's 8 lanes
 * (gemm_avx512.c's tiles do the same, bit for bit). */
float sb_qdot_q4_1_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8a *x = xq;
    __m512 acc = _mm512_setzero_ps();
    PAIR_LOOP(20, {
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat(nibbles(b + 4), nibbles(b + 24)), x2(x));
        acc = _mm512_fmadd_ps(scale2(h2f(b) * x[0].d, h2f(b + 20) * x[1].d), _mm512_cvtepi32_ps(p), acc);
        acc = _mm512_fmadd_ps(scale2(h2f(b + 2), h2f(b + 22)), scale2(x[0].s * 0.125f, x[1].s * 0.125f), acc);
    })
    float sum = _mm512_reduce_add_ps(acc);
    if (i < nb) sum += sb_qdot_q4_1_scalar(b, x, 32);
    return sum;
}

float sb_qdot_q4_k_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8k *x = xq;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 144, x++) {
        __m256i msum8;
        const __m512i sc = k4_header(b + 4, x->bsums, &msum8);
        __m512i isum = _mm512_setzero_si512();
        for (int p = 0; p < 4; p += 2) {
            /* 64 weight bytes hold sub-blocks 2p..2p+3: low nibbles of the
             * first 32 bytes, high of them, low of the next 32, high */
            const __m512i q = _mm512_loadu_si512(b + 16 + 32 * p);
            const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            /* x: sub-blocks 2p, 2p+2 for lo; 2p+1, 2p+3 for hi */
            isum = k4_pair(isum, lo, hi, x->qs + 64 * p, sc, p);
        }
        int is, ms;
        k4_reduce(isum, msum8, &is, &ms);
        sum += h2f(b) * x->d * (float)is - h2f(b + 2) * x->d * (float)ms;
    }
    return sum;
}

float sb_qdot_q6_k_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8k *x = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 210, x++) {
        const int8_t *sc = (const int8_t *)(b + 192);
        int off = 0;
        for (int g = 0; g < 16; g++) off += sc[g] * x->bsums[g];
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const int8_t *xs = x->qs + 128 * h, *s = sc + 8 * h;
            const __m256i l0 = load256(ql), l1 = load256(ql + 32), hb = load256(qh);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
            /* lanes of 4 elements; every 4 lanes (16 elements) one scale s[0..7] in order */
            const __m512i scv = _mm512_cvtepi8_epi32(_mm_set_epi8(s[7], s[7], s[7], s[7], s[6], s[6], s[6], s[6], s[5], s[5], s[5], s[5], s[4], s[4], s[4], s[4]));
            const __m512i scu = _mm512_cvtepi8_epi32(_mm_set_epi8(s[3], s[3], s[3], s[3], s[2], s[2], s[2], s[2], s[1], s[1], s[1], s[1], s[0], s[0], s[0], s[0]));
            __m512i d01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat(q0, q1), _mm512_loadu_si512(xs));
            __m512i d23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat(q2, q3), _mm512_loadu_si512(xs + 64));
            isum = _mm512_add_epi32(isum, _mm512_add_epi32(_mm512_mullo_epi32(d01, scu), _mm512_mullo_epi32(d23, scv)));
        }
        sum += h2f(b + 208) * x->d * (float)(_mm512_reduce_add_epi32(isum) - 32 * off);
    }
    return sum;
}

/* Q5_K: Q4_K's layout plus the fifth bits, bit j of qh[l] for element l of
 * sub-block j; added as 16 where set (a byte mask test per half). */
float sb_qdot_q5_k_avx512(const void *row, const void *xq, int64_t n) {
    const uint8_t *b = row;
    const sb_q8k *x = xq;
    const __m512i m4 = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
    float sum = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 176, x++) {
        __m256i msum8;
        const __m512i sc = k4_header(b + 4, x->bsums, &msum8);
        const __m256i qh1 = load256(b + 16);
        const __m512i qh = cat(qh1, qh1);
        __m512i isum = _mm512_setzero_si512();
        for (int p = 0; p < 4; p += 2) {
            const __m512i q = _mm512_loadu_si512(b + 48 + 32 * p);
            __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            /* lower half: sub-blocks 2p (lo), 2p+1 (hi); upper: 2p+2, 2p+3 */
            const __m512i blo = cat(_mm256_set1_epi8((char)(1 << (2 * p))), _mm256_set1_epi8((char)(1 << (2 * p + 2))));
            const __m512i bhi = cat(_mm256_set1_epi8((char)(1 << (2 * p + 1))), _mm256_set1_epi8((char)(1 << (2 * p + 3))));
            lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(qh, blo), lo, sixteen);
            hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(qh, bhi), hi, sixteen);
            isum = k4_pair(isum, lo, hi, x->qs + 64 * p, sc, p);
        }
        int is, ms;
        k4_reduce(isum, msum8, &is, &ms);
        sum += h2f(b) * x->d * (float)is - h2f(b + 2) * x->d * (float)ms;
    }
    return sum;
}

/* ---- several rows per call: decode's matrix-vector products ----
 *
 * The activation pairs are laid out once per call (qs of both blocks in one
 * register, the -c * sum(x) start of the accumulator, the two scales), then
 * ROWS weight rows are walked together, each with its own accumulator, so
 * the activation side is loaded once per ROWS rows and the rows' dependency
 * chains overlap (QROWS_DEFINE: which rows go together). Per row and pair: one masked 64-byte load, one byte
 * permute into the register layout of the row kernel above, nibbles by one
 * GF(2) affine step (low nibble or high nibble shifted down, chosen per
 * 128-bit lane; GFNI: matvec.c calls Q4_0's version only where the CPU
 * has it), one vpdpbusd, and the scales by a word permute and one
 * f16 conversion. Every integer, every scale product and every fused
 * multiply-add are those of sb_qdot_*_avx512, in the same order: the results
 * are bit-identical to it (and so to the prompt tiles of qgemm_avx512.c). */

#define QROWS 4          /* rows walked together */
#define QROWS_PAIRS 256  /* activation pairs laid out on the stack (rows up to 16384) */

typedef struct xpair {
    __m512i xv; /* qs of blocks 2k, 2k+1 */
    __m512i xc; /* -c * (sum of each lane's 4 qs): the accumulator's start */
    __m512 dx;  /* 8 lanes x[2k].d, 8 lanes x[2k+1].d */
} xpair;

/* c = 8: Q4_0's nibbles enter unsigned (q - 8); c = 128: Q8_0's bytes enter
 * as w ^ 0x80 = w + 128. */
static void xpairs(const sb_q8a *x, int64_t nb2, int c, xpair *xp) {
    const __m512i cv = _mm512_set1_epi8((char)c);
    for (int64_t k = 0; k < nb2; k++, x += 2) {
        xp[k].xv = x2(x);
        xp[k].xc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), cv, xp[k].xv));
        xp[k].dx = scale2(x[0].d, x[1].d);
    }
}

/* Q4_0, R rows (row r at w + r * rb): pair k of a row is the 36 bytes at
 * 36k -- d0, qs0 (16), d1, qs1 (16). */
static inline __attribute__((always_inline, target("gfni"))) void q4_0_rows(const uint8_t *w, size_t rb, const xpair *xp, int64_t nb2,
                                                              float *acc_out, const int R) {
    /* words: lanes 0, 1 <- qs0 (bytes 2..17 = words 1..8), lanes 2, 3 <- qs1 (words 10..17) */
    const __m512i perm = _mm512_set_epi16(17, 16, 15, 14, 13, 12, 11, 10, 17, 16, 15, 14, 13, 12, 11, 10,
                                          8, 7, 6, 5, 4, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1);
    /* GF(2) matrices: low nibble (lanes 0, 2), high nibble >> 4 (lanes 1, 3) */
    const long long lo = 0x0102040800000000ll, hi = 0x1020408000000000ll;
    const __m512i nib = _mm512_set_epi64(hi, hi, lo, lo, hi, hi, lo, lo);
    /* words: d0 (word 0) x 8, d1 (word 9) x 8 */
    const __m256i dperm = _mm256_set_epi16(9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[QROWS];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb2; k++) {
        const __m512i xv = xp[k].xv, xc = xp[k].xc;
        const __m512 dx = xp[k].dx;
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512i L = _mm512_maskz_loadu_epi8((__mmask64)0xfffffffffull, w + (size_t)r * rb + 36 * k);
            const __m512i q = _mm512_gf2p8affine_epi64_epi8(_mm512_permutexvar_epi16(perm, L), nib, 0);
            const __m512i p = _mm512_dpbusd_epi32(xc, q, xv);
            const __m512 d = _mm512_cvtph_ps(_mm256_permutexvar_epi16(dperm, _mm512_castsi512_si256(L)));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(p), acc[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc_out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Q8_0: pair k is the 68 bytes at 68k -- d0, qs0 (32), d1, qs1 (32). */
static inline __attribute__((always_inline)) void q8_0_rows(const uint8_t *w, size_t rb, const xpair *xp, int64_t nb2,
                                                              float *acc_out, const int R) {
    /* words 0..15 <- L's words 1..16 (qs0), 16..31 <- H's words 0..15 (qs1) */
    const __m512i perm = _mm512_set_epi16(47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
                                          16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m512i dperm = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[QROWS];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb2; k++) {
        const __m512i xv = xp[k].xv, xc = xp[k].xc;
        const __m512 dx = xp[k].dx;
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * rb + 68 * k;
            const __m512i L = _mm512_loadu_si512(b);
            const __m512i H = _mm512_castsi256_si512(load256(b + 36));
            const __m512i q = _mm512_xor_si512(_mm512_permutex2var_epi16(L, perm, H), bias);
            const __m512i p = _mm512_dpbusd_epi32(xc, q, xv);
            const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(dperm, L)));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(p), acc[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc_out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* The rows are cut into QROWS contiguous quarters walked side by side (row
 * i of every quarter together): each quarter is one long sequential stream
 * that the hardware prefetcher follows, where QROWS adjacent rows would be
 * short streams restarting at every group (measured: half the speed from
 * DRAM). Rows left over by the quarters go one at a time. */
#define QROWS_DEFINE(T, BSZ, C, ATTR)                                                                            \
    ATTR void sb_qrows_##T##_avx512(const void *w, size_t rb, const void *xq, int64_t n, float *y, int64_t nrows) {   \
        const int64_t nb = n / 32, nb2 = nb / 2;                                                               \
        if (nb2 > QROWS_PAIRS) {                                                                               \
            for (int64_t r = 0; r < nrows; r++) y[r] = sb_qdot_##T##_avx512((const uint8_t *)w + r * rb, xq, n); \
            return;                                                                                            \
        }                                                                                                      \
        xpair xp[QROWS_PAIRS];                                                                                 \
        xpairs(xq, nb2, C, xp);                                                                                \
        const sb_q8a *xt = (const sb_q8a *)xq + 2 * nb2; /* the odd last block, if any */                      \
        const int64_t q = nrows / QROWS;                                                                       \
        const size_t stride = (size_t)q * rb;                                                                  \
        float out[QROWS];                                                                                      \
        for (int64_t i = 0; i < q; i++) {                                                                      \
            const uint8_t *b = (const uint8_t *)w + (size_t)i * rb;                                            \
            T##_rows(b, stride, xp, nb2, out, QROWS);                                                          \
            for (int j = 0; j < QROWS; j++) {                                                                  \
                if (nb & 1) out[j] += sb_qdot_##T##_scalar(b + j * stride + 2 * nb2 * (BSZ), xt, 32);         \
                y[j * q + i] = out[j];                                                                         \
            }                                                                                                  \
        }                                                                                                      \
        for (int64_t r = QROWS * q; r < nrows; r++) {                                                          \
            const uint8_t *b = (const uint8_t *)w + (size_t)r * rb;                                            \
            T##_rows(b, rb, xp, nb2, y + r, 1);                                                                \
            if (nb & 1) y[r] += sb_qdot_##T##_scalar(b + 2 * nb2 * (BSZ), xt, 32);                             \
        }                                                                                                      \
    }
QROWS_DEFINE(q4_0, 18, 8, __attribute__((target("gfni"))))
QROWS_DEFINE(q8_0, 34, 128, )

/* ==== float row dots (kernels.h sb_row_dot_fn): one weight row times a
 * float vector, the weights widened to f32 in registers, 16 lanes at a time.
 * Same products as dequantize-then-dot, other addition order (the logits,
 * which keep float activations, and F16/BF16/F32 weights). */

static inline float dot_tail(float s, const float *a, const float *x, int64_t i, int64_t n) {
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

float sb_dot_f32_row_avx512(const void *row, const float *x, int64_t n) {
    const float *a = row;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), s1);
    }
    return dot_tail(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), a, x, i, n);
}

float sb_dot_f16_avx512(const void *row, const float *x, int64_t n) {
    const uint8_t *a = row;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(a + 2 * i)), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(a + 2 * i + 32)), _mm512_loadu_ps(x + i + 16), s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += h2f(a + 2 * i) * x[i];
    return s;
}

/* BF16 is the upper half of an f32: widened exactly by a 16-bit shift. (The
 * CPU's vdpbf16ps would round x to bf16 as well: the encoder's GEMM uses it,
 * a float-activation dot must not.) */
static inline __m512 bf16x16(const uint8_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p)), 16));
}

float sb_dot_bf16_avx512(const void *row, const float *x, int64_t n) {
    const uint8_t *a = row;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(bf16x16(a + 2 * i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(bf16x16(a + 2 * i + 32), _mm512_loadu_ps(x + i + 16), s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + 2 * i, 2);
        s += sb_bf16_to_f32(h) * x[i];
    }
    return s;
}

static inline __m512 i8x16(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)); }

/* Q8_0: per block d * (q . x), two accumulators over alternate blocks */
float sb_dot_q8_0_avx512(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < n / 32; i++, b += 34, x += 32) {
        __m512 s = _mm512_mul_ps(i8x16(_mm_loadu_si128((const __m128i *)(const void *)(b + 2))), _mm512_loadu_ps(x));
        s = _mm512_fmadd_ps(i8x16(_mm_loadu_si128((const __m128i *)(const void *)(b + 18))), _mm512_loadu_ps(x + 16), s);
        acc[i & 1] = _mm512_fmadd_ps(_mm512_set1_ps(h2f(b)), s, acc[i & 1]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

/* Q6_K: the 6-bit values of each half as bytes (the layout of
 * sb_qdot_q6_k_avx512), minus 32, each group of 16 elements times
 * d * scales[g] (sb_dot_q6_k_avx2's arithmetic, 16 lanes). */
float sb_dot_q6_k_avx512(const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi8(32);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++, b += 210, x += 256) {
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = h2f(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const __m256i l0 = load256(ql), l1 = load256(ql + 32), hb = load256(qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
            const float *xh = x + 128 * h;
            for (int k = 0; k < 4; k++) { /* elements 32k .. 32k+31 of this half: groups 2k, 2k+1 */
                const __m256i v = _mm256_sub_epi8(q[k], c32);
                const __m512 p0 = _mm512_mul_ps(i8x16(_mm256_castsi256_si128(v)), _mm512_loadu_ps(xh + 32 * k));
                const __m512 p1 = _mm512_mul_ps(i8x16(_mm256_extracti128_si256(v, 1)), _mm512_loadu_ps(xh + 32 * k + 16));
                acc0 = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc[8 * h + 2 * k]), p0, acc0);
                acc1 = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc[8 * h + 2 * k + 1]), p1, acc1);
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
