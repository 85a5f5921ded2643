/*
 * kernels.h - row dot products (one weight row in its block layout times a
 * float vector) per instruction set, and the run-time choice among them.
 * n is the row length (a multiple of the type's block size).
 */
#ifndef SB_KERNELS_H
#define SB_KERNELS_H

#include "tensor/tensor.h"

typedef float (*sb_row_dot_fn)(const void *row, const float *x, int64_t n);

/* The fastest kernel this CPU runs for the type, or NULL where only the
 * generic dequantize-then-dot path exists. SABIO_KERNELS=scalar forces NULL. */
sb_row_dot_fn sb_row_dot_for(int type);
/* "avx2" or "scalar": what sb_row_dot_for picks from. */
const char *sb_kernels_isa(void);

float sb_dot_f32_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q8_0_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_0_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_1_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q4_k_avx2(const void *row, const float *x, int64_t n);
float sb_dot_q6_k_avx2(const void *row, const float *x, int64_t n);

#endif
