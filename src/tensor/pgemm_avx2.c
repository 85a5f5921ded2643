/*
 * pgemm_avx2.c - the panel kernel of pgemm.h with AVX2 (no VNNI).
 *
 * A panel holds 8 weight rows over the whole input: per scale group of G
 * elements, G/4 vectors of 32 bytes (vector q: elements 4q..4q+3 of rows
 * 0..7, row r in dword r), then the 8 rows' d and m as floats. It is built
 * once per 8 rows and product and read for all activation rows, JMAX at a
 * time. Per group and activation row, dword q of the row's block is
 * broadcast and vpmaddubsw multiplies it with panel vector q (unsigned
 * weights times signed activations, pairs summed to int16); the int16
 * vectors of a few q are added while they cannot overflow (with u <= 15 and
 * |qx| <= 127 a pair is at most 3810, so all 8 of a Q4 group; 4 for the
 * 5-bit types, 2 for Q6_K), then vpmaddwd with ones sums them to int32.
 * Q8_0 keeps its weights signed and multiplies |w| by sign(w) qx instead
 * (a pair is at most 2 * 128 * 127 = 32512), which gives the same integer
 * as c32 + sum (w + 128) qx. Every integer is exact, so lane r of
 * accumulator j computes the scalar definition's float operations for
 * (row r, input j) in its order: bit-identical.
 *
 * Compiled with the AVX2 flags (Makefile rule for *_avx2.c); called only
 * after the run-time check (sb_pgemm_level).
 */
#include "tensor/pgemm.h"
#include "tensor/q4r8.h"

#include "tensor/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

#define R 8    /* weight rows per panel */
#define JMAX 4 /* activation rows per pass (5 and 6 measured no faster) */

static inline size_t rec_bytes(int g) { return (size_t)(R * g + 2 * 32); }

/* ---- packing: 16 bytes of each of the 8 rows transposed by dwords.
 * Rows past the end repeat the last one (their outputs are not stored). */

/* 16 bytes at off of each row: out[q] lane r = dword q of row r */
static inline void chunk(const uint8_t *const row[R], size_t off, __m256i out[4]) { sb_dwords8x16(row, off, out); }
static inline void put(uint8_t *p, __m256i v) { _mm256_store_si256((__m256i *)(void *)p, v); }
static inline void putf(uint8_t *p, __m256 v) { _mm256_store_ps((float *)(void *)p, v); }
static inline __m256i nib_lo(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
static inline __m256i nib_hi(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f)); }
/* bits s, s+1 (n = 2) or bit s (n = 1) of each byte, moved to bit 4 */
static inline __m256i hbits(__m256i v, int s, int n) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(v, s), _mm256_set1_epi8((char)((1 << n) - 1))), 4);
}
static inline uint16_t ld16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}
/* the f16 at off of each row, as 8 floats */
static inline __m256 f16s(const uint8_t *const row[R], size_t off) {
    /* inserted in registers: 8 narrow stores and a wide load would miss store forwarding */
    const __m128i h = _mm_setr_epi16((short)ld16(row[0] + off), (short)ld16(row[1] + off), (short)ld16(row[2] + off),
                                     (short)ld16(row[3] + off), (short)ld16(row[4] + off), (short)ld16(row[5] + off),
                                     (short)ld16(row[6] + off), (short)ld16(row[7] + off));
    return _mm256_cvtph_ps(h);
}

/* Rows [r, min(r + 8, r1)) of w into the panel: the unpacking of
 * sb_pgemm_unpack (pgemm.c), 8 rows at a time, except that Q8_0 keeps its
 * signed bytes. */
static void pack(const sb_pgemm_type *t, const sb_tensor *w, int64_t r, int64_t r1, uint8_t *panel) {
    const int64_t nblk = w->ne[0] / t->qk;
    const size_t rb = (size_t)nblk * (size_t)t->bsz, rec = rec_bytes(t->g);
    const int nr = r1 - r < R ? (int)(r1 - r) : R;
    if (t->type == SB_Q4_0_R8) { /* the group's records are the chunks already (q4r8.h); r is a multiple of 8 */
        const uint8_t *grp = (const uint8_t *)w->data + (size_t)(r / 8) * 8 * rb;
        for (int64_t k = 0; k < nblk; k++) {
            uint8_t *p = panel + (size_t)k * rec;
            _Pragma("GCC unroll 4")
            for (int q = 0; q < 4; q++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(grp + sb_q4r8_qs_off(nblk, k) + 32 * q));
                put(p + 32 * q, nib_lo(v)), put(p + 32 * (q + 4), nib_hi(v));
            }
            putf(p + R * 32, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(grp + sb_q4r8_d_off(k)))));
            putf(p + R * 32 + 32, _mm256_setzero_ps());
        }
        return;
    }
    const uint8_t *rows[R];
    for (int i = 0; i < R; i++) rows[i] = (const uint8_t *)w->data + (size_t)(r + (i < nr ? i : nr - 1)) * rb;
    for (int64_t k = 0; k < nblk; k++) {
        const size_t b = (size_t)k * (size_t)t->bsz;
        const uint8_t *row[R];
        for (int i = 0; i < R; i++) row[i] = rows[i] + b;
        __m256i v[4], h[8];
        switch (t->type) {
        case SB_Q4_0:
        case SB_Q4_1: {
            uint8_t *p = panel + (size_t)k * rec;
            chunk(row, t->type == SB_Q4_0 ? 2 : 4, v);
            _Pragma("GCC unroll 4")
            for (int q = 0; q < 4; q++) put(p + 32 * q, nib_lo(v[q])), put(p + 32 * (q + 4), nib_hi(v[q]));
            putf(p + R * 32, f16s(row, 0));
            putf(p + R * 32 + 32, t->type == SB_Q4_1 ? f16s(row, 2) : _mm256_setzero_ps());
            break;
        }
        case SB_Q5_0:
        case SB_Q5_1: { /* bit e of qh (at 2 / 4) is bit 4 of element e */
            const bool q51 = t->type == SB_Q5_1;
            uint8_t *p = panel + (size_t)k * rec;
            chunk(row, q51 ? 8 : 6, v);
            int32_t qh[R];
            for (int i = 0; i < R; i++) memcpy(&qh[i], row[i] + (q51 ? 4 : 2), 4);
            const __m256i hv = _mm256_loadu_si256((const __m256i *)(const void *)qh);
            _Pragma("GCC unroll 8")
            for (int q = 0; q < 8; q++) {
                /* bits 4q..4q+3 to bit 0 of bytes 0..3 (x * (1 + 2^7 + 2^14 + 2^21) puts bit i at 8i), then to bit 4 */
                const __m256i nib = _mm256_and_si256(_mm256_srli_epi32(hv, 4 * q), _mm256_set1_epi32(15));
                const __m256i spread = _mm256_mullo_epi32(nib, _mm256_set1_epi32(0x204081));
                const __m256i hb = _mm256_slli_epi32(_mm256_and_si256(spread, _mm256_set1_epi32(0x01010101)), 4);
                put(p + 32 * q, _mm256_or_si256(q < 4 ? nib_lo(v[q]) : nib_hi(v[q - 4]), hb));
            }
            putf(p + R * 32, f16s(row, 0));
            putf(p + R * 32 + 32, q51 ? f16s(row, 2) : _mm256_setzero_ps());
            break;
        }
        case SB_Q8_0: {
            uint8_t *p = panel + (size_t)k * rec;
            for (int c = 0; c < 2; c++) {
                chunk(row, 2 + 16 * (size_t)c, v);
                _Pragma("GCC unroll 4")
                for (int q = 0; q < 4; q++) put(p + 32 * (4 * c + q), v[q]);
            }
            putf(p + R * 32, f16s(row, 0));
            putf(p + R * 32 + 32, _mm256_setzero_ps());
            break;
        }
        case SB_Q4_K:
        case SB_Q5_K: { /* sub-block j: nibbles of qs[32 (j / 2)..] (low for even j), Q5_K: bit j of qh[l] */
            const bool q5 = t->type == SB_Q5_K;
            uint8_t *p = panel + (size_t)k * 8 * rec;
            const size_t qs = q5 ? 48 : 16;
            if (q5) chunk(row, 16, h), chunk(row, 32, h + 4);
            for (int pair = 0; pair < 4; pair++)
                for (int c = 0; c < 2; c++) {
                    chunk(row, qs + 32 * (size_t)pair + 16 * (size_t)c, v);
                    _Pragma("GCC unroll 4")
                    for (int q = 0; q < 4; q++) {
                        __m256i lo = nib_lo(v[q]), hi = nib_hi(v[q]);
                        if (q5) {
                            lo = _mm256_or_si256(lo, hbits(h[4 * c + q], 2 * pair, 1));
                            hi = _mm256_or_si256(hi, hbits(h[4 * c + q], 2 * pair + 1, 1));
                        }
                        put(p + (size_t)(2 * pair) * rec + 32 * (4 * c + q), lo);
                        put(p + (size_t)(2 * pair + 1) * rec + 32 * (4 * c + q), hi);
                    }
                }
            /* the 6-bit scales and mins of sb_k4_scale_min, 8 rows per lane:
             * s[0..2] lane r = bytes 0-3, 4-7, 8-11 of row r's 12 */
            __m256i sv[4];
            chunk(row, 4, sv);
            const __m256 dd = f16s(row, 0), ndmin = _mm256_xor_ps(f16s(row, 2), _mm256_set1_ps(-0.0f));
            const __m256i m63 = _mm256_set1_epi32(63), m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3);
            for (int j = 0; j < 8; j++) {
                __m256i sc, mn;
                if (j < 4) {
                    sc = _mm256_and_si256(_mm256_srli_epi32(sv[0], 8 * j), m63);
                    mn = _mm256_and_si256(_mm256_srli_epi32(sv[1], 8 * j), m63);
                } else {
                    const int b8 = 8 * (j - 4);
                    sc = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(sv[2], b8), m15),
                                         _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(sv[0], b8 + 6), m3), 4));
                    mn = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(sv[2], b8 + 4), m15),
                                         _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(sv[1], b8 + 6), m3), 4));
                }
                /* d = dd * sc, m = -dmin * mn: the products pgemm.c rounds */
                putf(p + (size_t)j * rec + R * 32, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(sc)));
                putf(p + (size_t)j * rec + R * 32 + 32, _mm256_mul_ps(ndmin, _mm256_cvtepi32_ps(mn)));
            }
            break;
        }
        case SB_Q6_K: {
            uint8_t *p = panel + (size_t)k * 16 * rec;
            for (int half = 0; half < 2; half++) {
                const size_t ql = 64 * (size_t)half, qh = 128 + 32 * (size_t)half;
                chunk(row, qh, h), chunk(row, qh + 16, h + 4);
                for (int c = 0; c < 4; c++) { /* ql bytes 16c..16c+15: groups (c / 2) * 2 + (c & 1) and +4 */
                    chunk(row, ql + 16 * (size_t)c, v);
                    const int g_lo = 2 * (c / 2) + (c & 1), g_hi = g_lo + 4;
                    uint8_t *plo = p + (size_t)(8 * half + g_lo) * rec, *phi = p + (size_t)(8 * half + g_hi) * rec;
                    _Pragma("GCC unroll 4")
                    for (int q = 0; q < 4; q++) {
                        const __m256i hq = h[4 * (c & 1) + q];
                        put(plo + 32 * q, _mm256_or_si256(nib_lo(v[q]), hbits(hq, 2 * (g_lo / 2), 2)));
                        put(phi + 32 * q, _mm256_or_si256(nib_hi(v[q]), hbits(hq, 2 * (g_hi / 2), 2)));
                    }
                }
            }
            const __m256 dd = f16s(row, 208);
            __m256i sv[4]; /* the 16 int8 scales: sv[g / 4] byte g % 4 of lane r is row r's scale g */
            chunk(row, 192, sv);
            for (int g = 0; g < 16; g++) {
                const __m256i sc = _mm256_srai_epi32(_mm256_slli_epi32(sv[g / 4], 24 - 8 * (g % 4)), 24);
                putf(p + (size_t)g * rec + R * 16, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(sc)));
                putf(p + (size_t)g * rec + R * 16 + 32, _mm256_setzero_ps());
            }
            break;
        }
        }
    }
}

/* An empty asm that takes v in a register: keeps the compiler from
 * regrouping the int16 sums into trees whose partial sums spill (16 ymm
 * registers); the out-of-order core schedules the chains anyway. */
#define PIN(v) __asm__ volatile("" : "+x"(v))

static inline __m256i bcast32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* J activation rows x one panel: y[j][r..r+nr) for j < J. P: panel vectors
 * whose int16 products may be added before widening (0: Q8_0's signed path). */
static inline __attribute__((always_inline)) void
kernel(const uint8_t *panel, int64_t n_groups, const int g, const bool min, const int P, const int J,
       const sb_q8p *const x[JMAX], float *const yj[JMAX], int nr) {
    __m256 acc[JMAX];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const size_t rec = rec_bytes(g);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t k = 0; k < n_groups; k++) {
        const uint8_t *p = panel + (size_t)k * rec;
        const int64_t blk = g == 32 ? k : k / 2;
        const int off = g == 32 ? 0 : (int)(k & 1) * 16;
        __m256i s32[JMAX], s16[JMAX];
        _Pragma("GCC unroll 8")
        for (int q = 0; q < g / 4; q++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)(const void *)(p + 32 * q));
            const __m256i aw = P == 0 ? _mm256_abs_epi8(wv) : wv;
            _Pragma("GCC unroll 8")
            for (int j = 0; j < J; j++) {
                const __m256i xv = bcast32(x[j][blk].a.qs + off + 4 * q);
                if (P == 0) {
                    const __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv)), ones);
                    s32[j] = q == 0 ? t : _mm256_add_epi32(s32[j], t);
                    PIN(s32[j]);
                } else {
                    const __m256i t = _mm256_maddubs_epi16(wv, xv);
                    s16[j] = q % P == 0 ? t : _mm256_add_epi16(s16[j], t);
                    PIN(s16[j]);
                    if (q % P == P - 1) {
                        const __m256i t32 = _mm256_madd_epi16(s16[j], ones);
                        s32[j] = q == P - 1 ? t32 : _mm256_add_epi32(s32[j], t32);
                    }
                }
            }
        }
        if (!min && P != 0) { /* the bias term c (exact: the order of integer additions does not matter) */
            _Pragma("GCC unroll 8")
            for (int j = 0; j < J; j++) {
                const sb_q8p *xb = x[j] + blk;
                s32[j] = _mm256_add_epi32(s32[j], _mm256_set1_epi32(g == 32 ? xb->c32 : xb->c16[off / 16]));
            }
        }
        const __m256 d = _mm256_load_ps((const float *)(const void *)(p + R * g));
        const __m256 mv = min ? _mm256_load_ps((const float *)(const void *)(p + R * g + 32)) : _mm256_setzero_ps();
        _Pragma("GCC unroll 8")
        for (int j = 0; j < J; j++) {
            const sb_q8p *xb = x[j] + blk;
            const __m256 dd = _mm256_mul_ps(d, _mm256_set1_ps(xb->a.d));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[j]), dd, acc[j]);
            if (min) acc[j] = _mm256_fmadd_ps(mv, _mm256_set1_ps(xb->a.s), acc[j]);
        }
    }
    if (nr == R) {
        _Pragma("GCC unroll 8")
        for (int j = 0; j < J; j++) _mm256_storeu_ps(yj[j], acc[j]);
    } else {
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _Pragma("GCC unroll 8")
        for (int j = 0; j < J; j++) _mm256_maskstore_ps(yj[j], mask, acc[j]);
    }
}

/* the kernel for every J <= JMAX, with G, min and P constant */
#define KERNELS(name, G, MIN, P)                                                                                \
    static void name(const uint8_t *panel, int64_t ngr, int J, const sb_q8p *const x[JMAX], float *const yj[JMAX], \
                     int nr) {                                                                                  \
        switch (J) {                                                                                            \
        case 4: kernel(panel, ngr, G, MIN, P, 4, x, yj, nr); break;                                             \
        case 3: kernel(panel, ngr, G, MIN, P, 3, x, yj, nr); break;                                             \
        case 2: kernel(panel, ngr, G, MIN, P, 2, x, yj, nr); break;                                             \
        default: kernel(panel, ngr, G, MIN, P, 1, x, yj, nr); break;                                            \
        }                                                                                                       \
    }
KERNELS(k_q4_bias, 32, false, 8) /* Q4_0 */
KERNELS(k_q4_min, 32, true, 8)   /* Q4_1, Q4_K */
KERNELS(k_q5_bias, 32, false, 4) /* Q5_0 */
KERNELS(k_q5_min, 32, true, 4)   /* Q5_1, Q5_K */
KERNELS(k_q8, 32, false, 0)      /* Q8_0 */
KERNELS(k_q6k, 16, false, 2)     /* Q6_K */

void sb_pgemm_avx2(const sb_pgemm_type *t, const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y,
                   int64_t ldy, int64_t r0, int64_t r1, void *scratch) {
    uint8_t *panel = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t n_groups = w->ne[0] / t->g;
    void (*k)(const uint8_t *, int64_t, int, const sb_q8p *const[JMAX], float *const[JMAX], int);
    switch (t->type) {
    case SB_Q4_0:
    case SB_Q4_0_R8: k = k_q4_bias; break;
    case SB_Q4_1:
    case SB_Q4_K: k = k_q4_min; break;
    case SB_Q5_0: k = k_q5_bias; break;
    case SB_Q5_1:
    case SB_Q5_K: k = k_q5_min; break;
    case SB_Q8_0: k = k_q8; break;
    default: k = k_q6k; break;
    }
    for (int64_t r = r0; r < r1; r += R) {
        const int nr = r1 - r < R ? (int)(r1 - r) : R;
        pack(t, w, r, r1, panel);
        for (int j = 0; j < n; j += JMAX) {
            const int J = n - j < JMAX ? n - j : JMAX;
            const sb_q8p *x[JMAX];
            float *yj[JMAX];
            for (int i = 0; i < J; i++) {
                x[i] = (const sb_q8p *)(const void *)((const uint8_t *)xa + (size_t)(j + i) * xa_stride);
                yj[i] = y + (size_t)(j + i) * (size_t)ldy + (size_t)r;
            }
            k(panel, n_groups, J, x, yj, nr);
        }
    }
}
