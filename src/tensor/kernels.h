/*
 * kernels.h - row dot products (one weight row in its block layout times a
 * float vector) per instruction set, and the run-time choice among them.
 * n is the row length (a multiple of the type's block size).
 */
#ifndef SB_KERNELS_H
#define SB_KERNELS_H

#include "tensor/tensor.h"

#include <stdbool.h>
#include <string.h>

typedef float (*sb_row_dot_fn)(const void *row, const float *x, int64_t n);

/* The fastest kernel this CPU runs for the type, or NULL where only the
 * generic dequantize-then-dot path exists. SABIO_KERNELS=scalar forces NULL. */
sb_row_dot_fn sb_row_dot_for(int type);
/* The kernel at instruction set level isa (SB_ISA_*; NULL if none there; for
 * tests: sb_row_dot_for falls back to the highest level that has one). */
sb_row_dot_fn sb_row_dot_at(int type, int isa);
/* "avx2" or "scalar": what sb_row_dot_for picks from. */
const char *sb_kernels_isa(void);

float sb_dot_f32_avx2(const void *row, const float *x, int64_t n);
float sb_dot_f16_avx2(const void *row, const float *x, int64_t n);
float sb_dot_bf16_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q8_0_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_0_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_1_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_k_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q6_k_avx2(const void *row, const float *x, int64_t n);
float sb_dot_f32_row_avx512(const void *row, const float *x, int64_t n);
float sb_dot_f16_avx512(const void *row, const float *x, int64_t n);
float sb_dot_bf16_avx512(const void *row, const float *x, int64_t n);
float sb_dot_q8_0_avx512(const void *row, const float *x, int64_t n);
float sb_dot_q6_k_avx512(const void *row, const float *x, int64_t n);

/* ---- quantized activations (kernels_scalar.c defines the arithmetic) ----
 *
 * The activation vector is quantized once per product, then every weight row
 * is dotted with it in integers, one float scale per block (as llama.cpp
 * does; our own code and block layouts, which never leave memory):
 *   sb_q8a: 32 elements, x[j] ~ d * qs[j], s = d * sum(qs) (for the min term
 *           of Q4_1/Q5_1); for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights.
 *   sb_q8k: 256 elements, bsums = sums of 16 qs; for Q4_K, Q5_K, Q6_K.
 * qs are in -127..127, d = max|x| / 127, rounding to nearest even. */
typedef struct sb_q8a {
    float d, s;
    int8_t qs[32];
} sb_q8a;
typedef struct sb_q8k {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} sb_q8k;

void sb_quantize_q8a(const float *x, sb_q8a *y, int64_t n);
void sb_quantize_q8k(const float *x, sb_q8k *y, int64_t n);
/* The same bytes, with AVX2 (chosen by sb_act_quantize when the CPU has it). */
void sb_quantize_q8a_avx2(const float *x, sb_q8a *y, int64_t n);
void sb_quantize_q8k_avx2(const float *x, sb_q8k *y, int64_t n);
/* Two-level activations, for the logits (matvec.h sb_matvec_q2): per block
 * two blocks of the one-level type, y[2i] = the block as sb_quantize_q8a /
 * q8k rounds it (step d1), y[2i+1] = its rounding error r = x - d1 * q1
 * rounded with the fixed step d2 = d1 / 254 (|r| <= d1 / 2, so |q2| <= 127).
 * x ~ d1 * q1 + d2 * q2 within d2 / 2 = d1 / 508 per element (plus f32
 * rounding of r): 1/254 of the one-level error. 2 * (n / block) blocks. */
void sb_quantize_q8a2(const float *x, sb_q8a *y, int64_t n);
void sb_quantize_q8k2(const float *x, sb_q8k *y, int64_t n);
void sb_quantize_q8a2_avx2(const float *x, sb_q8a *y, int64_t n);
void sb_quantize_q8k2_avx2(const float *x, sb_q8k *y, int64_t n);
/* Rows times two-level activations, one weight unpack feeding two integer
 * chains. Q6_K: d * (d1 * isum1 + d2 * isum2) per super-block, isum1/2 the
 * exact integer sums of the levels (the AVX2 kernels bit-identical to the
 * scalar one). Q8_0: dw * d2 * (254 * s1 + s2) per block (AVX2: per-lane
 * float sums, another order). */
float sb_qdot_q6_k2_scalar(const void *row, const void *xq, int64_t n);
float sb_qdot_q6_k2_avx2(const void *row, const void *xq, int64_t n);
void sb_qrows_q6_k2_avx2(const void *w, size_t row_bytes, const void *xq, int64_t n, float *y, int64_t nrows);
float sb_qdot_q8_0_2_scalar(const void *row, const void *xq, int64_t n);
float sb_qdot_q8_0_2_avx2(const void *row, const void *xq, int64_t n);
void sb_qrows_q8_0_2_avx2(const void *w, size_t row_bytes, const void *xq, int64_t n, float *y, int64_t nrows);
/* Q4_K/Q5_K 6-bit (scale, min) of sub-block j from the 12 scale bytes. */
void sb_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m);
/* All eight at once, the same values: u bytes 0..7 the scales, 8..15 the
 * mins (unpacked four at a time in 32-bit words, as ggml does). */
static inline void sb_k4_scales_mins(const uint8_t *q, uint32_t u[4]) {
    uint32_t a[3];
    memcpy(a, q, 12);
    u[0] = a[0] & 0x3f3f3f3f;                                              /* sc 0..3 */
    u[1] = (a[2] & 0x0f0f0f0f) | (((a[0] >> 6) & 0x03030303) << 4);        /* sc 4..7 */
    u[2] = a[1] & 0x3f3f3f3f;                                              /* m 0..3 */
    u[3] = ((a[2] >> 4) & 0x0f0f0f0f) | (((a[1] >> 6) & 0x03030303) << 4); /* m 4..7 */
}

/* One weight row (n elements, its block layout) times quantized activations. */
typedef float (*sb_qdot_fn)(const void *row, const void *xq, int64_t n);

/* Instruction sets, in order of preference. */
enum { SB_ISA_SCALAR = 0, SB_ISA_AVX2 = 1, SB_ISA_AVX512 = 2, SB_ISA_COUNT = 3 };
/* The quantized-activation dot for weight type `type` at instruction set
 * level `isa` (NULL if there is none at that level; the caller falls back to
 * a lower level). For tests: sb_qdot_for() picks the best the CPU runs. */
sb_qdot_fn sb_qdot_at(int type, int isa);
/* true if this CPU runs level isa (SABIO_KERNELS=scalar|avx2 caps it). */
bool sb_isa_supported(int isa);

#define SB_QDOT_DECL(t, isa) float sb_qdot_##t##_##isa(const void *row, const void *xq, int64_t n);
#define SB_QDOT_ALL(isa)                                                                                     \
    SB_QDOT_DECL(q8_0, isa) SB_QDOT_DECL(q4_0, isa) SB_QDOT_DECL(q4_1, isa) SB_QDOT_DECL(q5_0, isa)          \
    SB_QDOT_DECL(q5_1, isa) SB_QDOT_DECL(q4_k, isa) SB_QDOT_DECL(q5_k, isa) SB_QDOT_DECL(q6_k, isa)
SB_QDOT_ALL(scalar)
SB_QDOT_DECL(q8_0, avx2)
SB_QDOT_DECL(q4_0, avx2)
SB_QDOT_DECL(q4_1, avx2)
SB_QDOT_DECL(q4_k, avx2)
SB_QDOT_DECL(q6_k, avx2)
SB_QDOT_DECL(q5_k, avx2)
SB_QDOT_DECL(q8_0, avx512)
SB_QDOT_DECL(q4_0, avx512)
SB_QDOT_DECL(q4_1, avx512)
SB_QDOT_DECL(q4_k, avx512)
SB_QDOT_DECL(q6_k, avx512)
SB_QDOT_DECL(q5_k, avx512)
#undef SB_QDOT_DECL
#undef SB_QDOT_ALL

/* Rows 0..nrows-1 of a weight matrix (row r at w + r * row_bytes, n
 * elements) times quantized activations: y[r] bit-identical to the type's
 * row kernel at the same level, several rows sharing each activation load
 * (decode's matrix-vector products). */
typedef void (*sb_qrows_fn)(const void *w, size_t row_bytes, const void *xq, int64_t n, float *y, int64_t nrows);
/* The several-rows kernel of type at level isa, NULL if none (then the
 * row kernel runs row by row). */
sb_qrows_fn sb_qrows_at(int type, int isa);
#define SB_QROWS_DECL(t, isa) \
    void sb_qrows_##t##_##isa(const void *w, size_t row_bytes, const void *xq, int64_t n, float *y, int64_t nrows);
SB_QROWS_DECL(q4_0, avx512)
SB_QROWS_DECL(q8_0, avx512)
SB_QROWS_DECL(q4_0, avx2)
SB_QROWS_DECL(q4_1, avx2)
SB_QROWS_DECL(q8_0, avx2)
SB_QROWS_DECL(q4_k, avx2)
SB_QROWS_DECL(q5_k, avx2)
SB_QROWS_DECL(q6_k, avx2)
#undef SB_QROWS_DECL

#endif
