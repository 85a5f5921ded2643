/*
 * pgemm_avx512.c - the panel kernel of pgemm.h with AVX-512 VNNI.
 *
 * A panel holds 16 weight rows over the whole input: per scale group of G
 * elements, G/4 vectors of 64 bytes (vector t: elements 4t..4t+3 of rows
 * 0..15, row r in dword r), then the 16 rows' d and m as floats. It is
 * built once per 16 rows and product (in L2: 20 bytes per input element)
 * and read for all activation rows, 8 at a time: per group each of the 8
 * rows' G/4 dwords is broadcast into vpdpbusd against the G/4 panel vectors,
 * then scaled into that row's 16 float accumulators. Lane r of accumulator
 * j computes exactly the scalar definition's operations for (row r, input j).
 *
 * Compiled with the AVX-512 flags (Makefile rule for *_avx512.c); called
 * only after the run-time check (sb_pgemm_level).
 */
#include "tensor/pgemm.h"

#include <immintrin.h>
#include <string.h>

#define R SB_PGEMM_ROWS
#define JMAX 8 /* activation rows per pass */

static inline size_t rec_bytes(int g) { return (size_t)(R * g + 2 * 64); }

/* Lane p of a panel vector holds row perm(p) (see the fast packing below). */
static inline int perm(int p) { return 4 * (p & 3) + (p >> 2); }

/* Rows [r, min(r + 16, r1)) of w into the panel; missing rows are zero. */
static void pack(const sb_pgemm_type *t, const sb_tensor *w, int64_t r, int64_t r1, uint8_t *panel) {
    const int64_t nblk = w->ne[0] / t->qk;
    const int ng = t->qk / t->g, g = t->g;
    const size_t rb = (size_t)nblk * (size_t)t->bsz, rec = rec_bytes(g);
    uint8_t u[256];
    float d[16], m[16] = {0};
    for (int i = 0; i < R; i++) {
        const uint8_t *row = r + i < r1 ? (const uint8_t *)w->data + (size_t)(r + i) * rb : NULL;
        for (int64_t k = 0; k < nblk; k++) {
            if (row) sb_pgemm_unpack(t, row + (size_t)k * (size_t)t->bsz, u, d, m);
            else memset(u, 0, sizeof u), memset(d, 0, sizeof d), memset(m, 0, sizeof m);
            for (int gi = 0; gi < ng; gi++) {
                uint8_t *p = panel + (size_t)(k * ng + gi) * rec;
                for (int q = 0; q < g / 4; q++) memcpy(p + 64 * q + 4 * perm(i), u + gi * g + 4 * q, 4);
                memcpy(p + R * g + 4 * perm(i), &d[gi], 4);
                memcpy(p + R * g + 64 + 4 * perm(i), &m[gi], 4);
            }
        }
    }
}

/* ---- fast packing ----
 * Lane p of a panel vector holds row perm(p) = 4 (p % 4) + p / 4 (an
 * involution): the order a 4x4 dword transpose of four 128-bit lanes of
 * 4 rows each leaves them in. The kernel puts the rows back in order when it
 * stores. Rows past the end repeat the last one (their outputs are not
 * stored). */

typedef struct rows16 {
    const uint8_t *row[R]; /* row i (the last existing one past the end) */
    __m512i idx;           /* lane p: byte offset of row perm(p) from row[0] */
} rows16;

/* 16 bytes at off of each row: out[q] lane p = dword q of row perm(p) */
static inline void chunk(const rows16 *rs, size_t off, __m512i out[4]) {
    __m512i t[4];
    _Pragma("GCC unroll 4")
    for (int a = 0; a < 4; a++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(rs->row[4 * a] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(rs->row[4 * a + 1] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(rs->row[4 * a + 2] + off)), 2);
        t[a] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(rs->row[4 * a + 3] + off)), 3);
    }
    const __m512i u0 = _mm512_unpacklo_epi32(t[0], t[1]), u1 = _mm512_unpackhi_epi32(t[0], t[1]);
    const __m512i u2 = _mm512_unpacklo_epi32(t[2], t[3]), u3 = _mm512_unpackhi_epi32(t[2], t[3]);
    out[0] = _mm512_unpacklo_epi64(u0, u2), out[1] = _mm512_unpackhi_epi64(u0, u2);
    out[2] = _mm512_unpacklo_epi64(u1, u3), out[3] = _mm512_unpackhi_epi64(u1, u3);
}
/* the dword at off of each row, lane p from row perm(p) */
static inline __m512i gat(const rows16 *rs, size_t off) { return _mm512_i32gather_epi32(rs->idx, rs->row[0] + off, 1); }
static inline __m512 f16lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
static inline void put(uint8_t *p, __m512i v) { _mm512_store_si512((void *)p, v); }
static inline __m512i nib_lo(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
static inline __m512i nib_hi(__m512i v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f)); }
/* bits s, s+1 (n = 2) or bit s (n = 1) of each byte, moved to bit 4 */
static inline __m512i hbits(__m512i v, int s, int n) {
    return _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(v, s), _mm512_set1_epi8((char)((1 << n) - 1))), 4);
}
static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Q4_0, Q4_1, Q8_0 (block of 32 = one group) and Q4_K, Q5_K, Q6_K; false
 * for the others (pack() unpacks them one row at a time). */
static bool pack_fast(const sb_pgemm_type *t, const sb_tensor *w, int64_t r, int64_t r1, uint8_t *panel) {
    const int64_t nblk = w->ne[0] / t->qk;
    const size_t rb = (size_t)nblk * (size_t)t->bsz, rec = rec_bytes(t->g);
    const int nr = r1 - r < R ? (int)(r1 - r) : R;
    rows16 rs;
    int32_t idx[R];
    for (int i = 0; i < R; i++) {
        rs.row[i] = (const uint8_t *)w->data + (size_t)(r + (i < nr ? i : nr - 1)) * rb;
        idx[i] = (int32_t)((size_t)(perm(i) < nr ? perm(i) : nr - 1) * rb);
    }
    rs.idx = _mm512_loadu_si512(idx);
    for (int64_t k = 0; k < nblk; k++) {
        const size_t b = (size_t)k * (size_t)t->bsz;
        __m512i v[4], h[8];
        switch (t->type) {
        case SB_Q4_0:
        case SB_Q4_1: {
            uint8_t *p = panel + (size_t)k * rec;
            chunk(&rs, b + (t->type == SB_Q4_0 ? 2 : 4), v);
            _Pragma("GCC unroll 4")
            for (int q = 0; q < 4; q++) put(p + 64 * q, nib_lo(v[q])), put(p + 64 * (q + 4), nib_hi(v[q]));
            const __m512i dm = gat(&rs, b);
            _mm512_store_ps((void *)(p + R * 32), f16lo(dm));
            _mm512_store_ps((void *)(p + R * 32 + 64), t->type == SB_Q4_1 ? f16lo(_mm512_srli_epi32(dm, 16)) : _mm512_setzero_ps());
            break;
        }
        case SB_Q8_0: {
            uint8_t *p = panel + (size_t)k * rec;
            for (int c = 0; c < 2; c++) {
                chunk(&rs, b + 2 + 16 * (size_t)c, v);
                _Pragma("GCC unroll 4")
                for (int q = 0; q < 4; q++) put(p + 64 * (4 * c + q), _mm512_xor_si512(v[q], _mm512_set1_epi8((char)0x80)));
            }
            _mm512_store_ps((void *)(p + R * 32), f16lo(gat(&rs, b)));
            _mm512_store_ps((void *)(p + R * 32 + 64), _mm512_setzero_ps());
            break;
        }
        case SB_Q4_K:
        case SB_Q5_K: {
            const bool q5 = t->type == SB_Q5_K;
            uint8_t *p = panel + (size_t)k * 8 * rec;
            const size_t qs = b + (q5 ? 48 : 16);
            if (q5) chunk(&rs, b + 16, h), chunk(&rs, b + 32, h + 4);
            for (int pair = 0; pair < 4; pair++)
                for (int c = 0; c < 2; c++) {
                    chunk(&rs, qs + 32 * (size_t)pair + 16 * (size_t)c, v);
                    _Pragma("GCC unroll 4")
                    for (int q = 0; q < 4; q++) {
                        __m512i lo = nib_lo(v[q]), hi = nib_hi(v[q]);
                        if (q5) {
                            lo = _mm512_or_si512(lo, hbits(h[4 * c + q], 2 * pair, 1));
                            hi = _mm512_or_si512(hi, hbits(h[4 * c + q], 2 * pair + 1, 1));
                        }
                        put(p + (size_t)(2 * pair) * rec + 64 * (4 * c + q), lo);
                        put(p + (size_t)(2 * pair + 1) * rec + 64 * (4 * c + q), hi);
                    }
                }
            for (int i = 0; i < R; i++) {
                const uint8_t *blk = rs.row[i] + b;
                const float dd = h2f(blk), dmin = h2f(blk + 2);
                for (int j = 0; j < 8; j++) {
                    uint8_t sc, mn;
                    sb_k4_scale_min(j, blk + 4, &sc, &mn);
                    const float d = dd * (float)sc, m = -dmin * (float)mn;
                    memcpy(p + (size_t)j * rec + R * 32 + 4 * perm(i), &d, 4);
                    memcpy(p + (size_t)j * rec + R * 32 + 64 + 4 * perm(i), &m, 4);
                }
            }
            break;
        }
        case SB_Q6_K: {
            uint8_t *p = panel + (size_t)k * 16 * rec;
            for (int half = 0; half < 2; half++) {
                const size_t ql = b + 64 * (size_t)half, qh = b + 128 + 32 * (size_t)half;
                chunk(&rs, qh, h), chunk(&rs, qh + 16, h + 4);
                for (int c = 0; c < 4; c++) { /* ql bytes 16c..16c+15: groups (c / 2) * 2 + (c & 1) and +4 */
                    chunk(&rs, ql + 16 * (size_t)c, v);
                    const int g_lo = 2 * (c / 2) + (c & 1), g_hi = g_lo + 4;
                    uint8_t *plo = p + (size_t)(8 * half + g_lo) * rec, *phi = p + (size_t)(8 * half + g_hi) * rec;
                    _Pragma("GCC unroll 4")
                    for (int q = 0; q < 4; q++) {
                        const __m512i hq = h[4 * (c & 1) + q];
                        put(plo + 64 * q, _mm512_or_si512(nib_lo(v[q]), hbits(hq, 2 * (g_lo / 2), 2)));
                        put(phi + 64 * q, _mm512_or_si512(nib_hi(v[q]), hbits(hq, 2 * (g_hi / 2), 2)));
                    }
                }
            }
            for (int i = 0; i < R; i++) {
                const uint8_t *blk = rs.row[i] + b;
                const float dd = h2f(blk + 208);
                for (int g = 0; g < 16; g++) {
                    const float d = dd * (float)(int8_t)blk[192 + g], m = 0;
                    memcpy(p + (size_t)g * rec + R * 16 + 4 * perm(i), &d, 4);
                    memcpy(p + (size_t)g * rec + R * 16 + 64 + 4 * perm(i), &m, 4);
                }
            }
            break;
        }
        default: return false;
        }
    }
    return true;
}

static inline __m512i bcast32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* J activation rows x one panel: y[j][r..r+nr) for j < J. */
static inline __attribute__((always_inline)) void
kernel(const uint8_t *panel, int64_t n_groups, const int g, const bool min, const int J,
       const sb_q8p *const x[JMAX], float *const yj[JMAX], int nr) {
    __m512 acc[JMAX];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
    const size_t rec = rec_bytes(g);
    for (int64_t k = 0; k < n_groups; k++) {
        const uint8_t *p = panel + (size_t)k * rec;
        __m512i wv[8];
        _Pragma("GCC unroll 8")
        for (int q = 0; q < g / 4; q++) wv[q] = _mm512_load_si512((const void *)(p + 64 * q));
        const __m512 d = _mm512_load_ps((const void *)(p + R * g));
        const __m512 mv = min ? _mm512_load_ps((const void *)(p + R * g + 64)) : _mm512_setzero_ps();
        const int64_t blk = g == 32 ? k : k / 2;
        const int off = g == 32 ? 0 : (int)(k & 1) * 16;
        _Pragma("GCC unroll 8")
        for (int j = 0; j < J; j++) {
            const sb_q8p *xb = x[j] + blk;
            __m512i s = min ? _mm512_setzero_si512() : _mm512_set1_epi32(g == 32 ? xb->c32 : xb->c16[off / 16]);
            _Pragma("GCC unroll 8")
            for (int q = 0; q < g / 4; q++) s = _mm512_dpbusd_epi32(s, wv[q], bcast32(xb->a.qs + off + 4 * q));
            const __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(xb->a.d));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[j]);
            if (min) acc[j] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xb->a.s), acc[j]);
        }
    }
    const __mmask16 mask = (__mmask16)((1u << nr) - 1);
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0); /* perm */
    _Pragma("GCC unroll 8")
    for (int j = 0; j < J; j++) _mm512_mask_storeu_ps(yj[j], mask, _mm512_permutexvar_ps(order, acc[j]));
}

/* the kernel for every J <= JMAX, G and min constant */
#define KERNELS(name, G, MIN)                                                                                  \
    static void name(const uint8_t *panel, int64_t ngr, int J, const sb_q8p *const x[JMAX], float *const yj[JMAX], \
                     int nr) {                                                                                 \
        switch (J) {                                                                                           \
        case 8: kernel(panel, ngr, G, MIN, 8, x, yj, nr); break;                                               \
        case 7: kernel(panel, ngr, G, MIN, 7, x, yj, nr); break;                                               \
        case 6: kernel(panel, ngr, G, MIN, 6, x, yj, nr); break;                                               \
        case 5: kernel(panel, ngr, G, MIN, 5, x, yj, nr); break;                                               \
        case 4: kernel(panel, ngr, G, MIN, 4, x, yj, nr); break;                                               \
        case 3: kernel(panel, ngr, G, MIN, 3, x, yj, nr); break;                                               \
        case 2: kernel(panel, ngr, G, MIN, 2, x, yj, nr); break;                                               \
        default: kernel(panel, ngr, G, MIN, 1, x, yj, nr); break;                                              \
        }                                                                                                      \
    }
KERNELS(k32_bias, 32, false)
KERNELS(k32_min, 32, true)
KERNELS(k16_bias, 16, false)

void sb_pgemm_avx512(const sb_pgemm_type *t, const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y,
                     int64_t ldy, int64_t r0, int64_t r1, void *scratch) {
    uint8_t *panel = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t n_groups = w->ne[0] / t->g;
    void (*k)(const uint8_t *, int64_t, int, const sb_q8p *const[JMAX], float *const[JMAX], int) =
        t->g == 16 ? k16_bias : t->bias < 0 ? k32_min : k32_bias;
    for (int64_t r = r0; r < r1; r += R) {
        const int nr = r1 - r < R ? (int)(r1 - r) : R;
        if (!pack_fast(t, w, r, r1, panel)) pack(t, w, r, r1, panel);
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
