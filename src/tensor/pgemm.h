/*
 * pgemm.h - prompt-batch products Y = X W^T of quantized weights and 8-bit
 * activations through weight panels: 16 (AVX-512) or 8 (AVX2) weight rows at
 * a time are unpacked to unsigned bytes and interleaved (4 consecutive
 * elements of each row side by side), so that one VNNI instruction (AVX2:
 * vpmaddubsw, then vpmaddwd per few) multiplies 4 elements of every row by
 * 4 elements of one activation row broadcast to all lanes.
 * A lane holds one output; per group of G elements (the weight's scale
 * block: 32, or 16 for Q6_K) it adds
 *
 *     acc = fma((float)(c + sum_i u_i * qx_i), d * dx, acc)      bias types
 *     acc = fma(m, dx * sum qx, fma((float)(sum u_i qx_i), d * dx, acc))   min types
 *
 * with w = d * (u - bias) (Q4_0 8, Q5_0 16, Q8_0 128, Q6_K 32; c = -bias *
 * sum qx, an exact integer computed with the activations) or w = d * u + m
 * (Q4_1, Q5_1, Q4_K, Q5_K: d, m per 32 elements from the block's scales).
 * No horizontal sums: three or four float operations per 4..8 integer ones,
 * against one or more per integer one for row-at-a-time dots.
 *
 * The activations are sb_q8a blocks of 32 (dx = max|x| / 127 per 32, for
 * every type, also the K-quants whose row kernels use 256-element blocks).
 * The scalar kernel (level SB_ISA_SCALAR) defines the arithmetic; the
 * AVX-512 VNNI and AVX2 ones compute the same operations in the same order
 * per output and are bit-identical (tests/test_pgemm.c).
 */
#ifndef SB_PGEMM_H
#define SB_PGEMM_H

#include "tensor/kernels.h"

#include <stddef.h>

/* One activation block: the sb_q8a (d, s = d * sum qs, qs) and, for the
 * bias types, c32 = -bias * sum qs and c16[h] = -bias * sum of half h. */
typedef struct sb_q8p {
    sb_q8a a;
    int32_t c32, c16[2];
} sb_q8p;

/* true if the type has panels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)
 * and the level's kernel exists (SB_ISA_SCALAR, SB_ISA_AVX2, SB_ISA_AVX512). */
bool sb_pgemm_has(int wtype, int level);
/* The best level this CPU runs for the type (SB_ISA_AVX512 or SB_ISA_AVX2), or -1: then use
 * the other prompt paths (matvec.h). */
int sb_pgemm_level(int wtype);
/* Bytes of one activation row of n elements (n a multiple of 32). */
size_t sb_pgemm_act_bytes(int64_t n);
/* One row x (n floats) into n / 32 blocks for weights of type wtype. */
void sb_pgemm_quantize(int wtype, const float *x, sb_q8p *xa, int64_t n);
/* Scratch bytes sb_pgemm needs for rows of n_in elements (one panel). */
size_t sb_pgemm_scratch_bytes(int64_t n_in);
/* Y[b][r] = row r of w . activation row b (at xa + b * xa_stride bytes) for
 * b < n and r in [r0, r1); other entries of Y are left alone. r0 should be a
 * multiple of 16 (panels), r1 anything. scratch: sb_pgemm_scratch_bytes. */
void sb_pgemm(const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y, int64_t ldy, int64_t r0,
              int64_t r1, void *scratch, int level);

/* ---- internal: shared by pgemm.c, pgemm_avx2.c and pgemm_avx512.c ---- */
#define SB_PGEMM_ROWS 16
typedef struct sb_pgemm_type {
    int type, qk, bsz, g; /* elements and bytes per block, elements per scale group */
    int bias;             /* w = d * (u - bias); -1: w = d * u + m */
} sb_pgemm_type;
const sb_pgemm_type *sb_pgemm_type_of(int wtype);
/* Block b of the type into qk unsigned values u and qk / g scales d (and
 * mins m for min types). */
void sb_pgemm_unpack(const sb_pgemm_type *t, const uint8_t *b, uint8_t *u, float *d, float *m);
void sb_pgemm_avx512(const sb_pgemm_type *t, const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y,
                     int64_t ldy, int64_t r0, int64_t r1, void *scratch);
/* pgemm_avx2.c: 8-row panels, vpmaddubsw + vpmaddwd (r0 a multiple of 8) */
void sb_pgemm_avx2(const sb_pgemm_type *t, const sb_tensor *w, const void *xa, size_t xa_stride, int n, float *y,
                   int64_t ldy, int64_t r0, int64_t r1, void *scratch);

#endif
