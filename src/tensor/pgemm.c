/*
 * pgemm.c - the panel products of pgemm.h: per-type unpacking of weight
 * blocks to unsigned bytes and scales, the activation quantizer, the scalar
 * kernel that defines the arithmetic, and the choice of level.
 */
#include "tensor/pgemm.h"
#include "tensor/matvec.h"
#include "tensor/q4r8.h"

#include <math.h>
#include <string.h>

static const sb_pgemm_type types[] = {
    {SB_Q4_0, 32, 18, 32, 8},   {SB_Q4_1, 32, 20, 32, -1},  {SB_Q5_0, 32, 22, 32, 16},
    {SB_Q5_1, 32, 24, 32, -1},  {SB_Q8_0, 32, 34, 32, 128}, {SB_Q4_K, 256, 144, 32, -1},
    {SB_Q5_K, 256, 176, 32, -1}, {SB_Q6_K, 256, 210, 16, 32},
    {SB_Q4_0_R8, 32, 18, 32, 8}, /* Q4_0's blocks 8 rows interleaved (q4r8.h): no AVX-512 panels */
};

const sb_pgemm_type *sb_pgemm_type_of(int wtype) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == wtype) return &types[i];
    return NULL;
}

bool sb_pgemm_has(int wtype, int level) {
    if (wtype == SB_Q4_0_R8 && level == SB_ISA_AVX512) return false;
    return sb_pgemm_type_of(wtype) && (level == SB_ISA_SCALAR || level == SB_ISA_AVX2 || level == SB_ISA_AVX512);
}

int sb_pgemm_level(int wtype) {
    if (!sb_pgemm_type_of(wtype)) return -1;
    if (wtype == SB_Q4_0_R8) return sb_isa_supported(SB_ISA_AVX2) ? SB_ISA_AVX2 : -1;
    return sb_isa_supported(SB_ISA_AVX512) ? SB_ISA_AVX512 : sb_isa_supported(SB_ISA_AVX2) ? SB_ISA_AVX2 : -1;
}

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return sb_f16_to_f32(h);
}

/* 32 elements of a Q4/Q5 block: low nibbles first, then the high ones, plus
 * bit j of qh as bit 4 of element j (Q5). */
static void unpack32(const uint8_t *qs, const uint8_t *qh, uint8_t *u) {
    uint32_t h = 0;
    if (qh) memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        u[j] = (uint8_t)((qs[j] & 0xf) | (((h >> j) & 1) << 4));
        u[j + 16] = (uint8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
    }
}

void sb_pgemm_unpack(const sb_pgemm_type *t, const uint8_t *b, uint8_t *u, float *d, float *m) {
    switch (t->type) {
    case SB_Q4_0: unpack32(b + 2, NULL, u), d[0] = h2f(b); break;
    case SB_Q5_0: unpack32(b + 6, b + 2, u), d[0] = h2f(b); break;
    case SB_Q4_1: unpack32(b + 4, NULL, u), d[0] = h2f(b), m[0] = h2f(b + 2); break;
    case SB_Q5_1: unpack32(b + 8, b + 4, u), d[0] = h2f(b), m[0] = h2f(b + 2); break;
    case SB_Q8_0:
        for (int j = 0; j < 32; j++) u[j] = (uint8_t)((int8_t)b[2 + j] + 128);
        d[0] = h2f(b);
        break;
    case SB_Q4_K:
    case SB_Q5_K: { /* sub-block j: nibbles of q[32*(j/2)..] (low for even j), bit j of qh[l] */
        const bool q5 = t->type == SB_Q5_K;
        const uint8_t *q = b + (q5 ? 48 : 16), *qh = b + 16;
        const float dd = h2f(b), dmin = h2f(b + 2);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            sb_k4_scale_min(j, b + 4, &sc, &mn);
            d[j] = dd * (float)sc;
            m[j] = -dmin * (float)mn;
            const uint8_t *qq = q + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int v = j & 1 ? qq[l] >> 4 : qq[l] & 0xf;
                if (q5) v |= ((qh[l] >> j) & 1) << 4;
                u[32 * j + l] = (uint8_t)v;
            }
        }
        break;
    }
    case SB_Q6_K: { /* ggml's layout, as sb_qdot_q6_k_scalar reads it; group e / 16 has scale sc[e / 16] */
        const float dd = h2f(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            uint8_t *o = u + 128 * half;
            for (int l = 0; l < 32; l++) {
                o[l] = (uint8_t)((ql[l] & 0xf) | ((qh[l] & 3) << 4));
                o[l + 32] = (uint8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4));
                o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        for (int g = 0; g < 16; g++) d[g] = dd * (float)sc[g];
        break;
    }
    }
}

size_t sb_pgemm_act_bytes(int64_t n) { return (size_t)(n / 32) * sizeof(sb_q8p); }

void sb_pgemm_quantize(int wtype, const float *x, sb_q8p *xa, int64_t n) {
    const sb_pgemm_type *t = sb_pgemm_type_of(wtype);
    const int bias = t && t->bias > 0 ? t->bias : 0;
    for (int64_t i = 0; i < n / 32; i++) {
        sb_act_quantize(SB_Q8_0, x + 32 * i, &xa[i].a, 32);
        int s0 = 0, s1 = 0;
        for (int j = 0; j < 16; j++) s0 += xa[i].a.qs[j], s1 += xa[i].a.qs[j + 16];
        xa[i].c16[0] = -bias * s0;
        xa[i].c16[1] = -bias * s1;
        xa[i].c32 = -bias * (s0 + s1);
    }
}

/* one panel: per group, the 16 x G bytes, then d[16] and m[16] */
size_t sb_pgemm_scratch_bytes(int64_t n_in) { return (size_t)(n_in / 16) * (16 * 16 + 128) + 64; }

/* The definition: per output, groups in order, the operations of pgemm.h. */
static void pgemm_scalar(const sb_pgemm_type *t, const sb_tensor *w, const void *xa, size_t xa_stride, int n,
                         float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n_in = w->ne[0], nblk = n_in / t->qk;
    const int ng = t->qk / t->g;
    uint8_t u[256];
    float d[16], m[16];
    static _Thread_local uint8_t r8row[SB_Q4R8_MAX_IN / 32 * 18]; /* SB_Q4_0_R8: a row back in Q4_0 bytes */
    const bool r8 = t->type == SB_Q4_0_R8;
    if (r8) t = sb_pgemm_type_of(SB_Q4_0);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * (size_t)nblk * (size_t)t->bsz;
        if (r8) sb_q4r8_row_bytes(w->data, n_in, r, r8row), row = r8row;
        for (int b = 0; b < n; b++) {
            const sb_q8p *x = (const sb_q8p *)(const void *)((const uint8_t *)xa + (size_t)b * xa_stride);
            float acc = 0;
            for (int64_t k = 0; k < nblk; k++) {
                sb_pgemm_unpack(t, row + (size_t)k * (size_t)t->bsz, u, d, m);
                for (int g = 0; g < ng; g++) {
                    const int64_t e0 = k * t->qk + (int64_t)g * t->g; /* first element of the group */
                    const sb_q8p *xb = x + e0 / 32;
                    const int off = (int)(e0 % 32);
                    int32_t s = t->bias < 0 ? 0 : t->g == 32 ? xb->c32 : xb->c16[off / 16];
                    for (int i = 0; i < t->g; i++) s += u[g * t->g + i] * xb->a.qs[off + i];
                    const float dd = d[g] * xb->a.d;
                    acc = fmaf((float)s, dd, acc);
                    if (t->bias < 0) acc = fmaf(m[g], xb->a.s, acc);
                }
            }
            y[(size_t)b * (size_t)ldy + (size_t)r] = acc;
        }
    }
}

void sb_pgemm(const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y, int64_t ldy, int64_t r0,
              int64_t r1, void *scratch, int level) {
    const sb_pgemm_type *t = sb_pgemm_type_of(w->type);
    if (!t || r1 <= r0) return;
    if (t->type == SB_Q4_0_R8 && level == SB_ISA_AVX512) level = SB_ISA_AVX2;
    if (level == SB_ISA_AVX512) sb_pgemm_avx512(t, w, xa, xa_stride, n, y, ldy, r0, r1, scratch);
    else if (level == SB_ISA_AVX2) sb_pgemm_avx2(t, w, xa, xa_stride, n, y, ldy, r0, r1, scratch);
    else pgemm_scalar(t, w, xa, xa_stride, n, y, ldy, r0, r1);
}
