/*
 * matvec.h - the generic kernels the decoder needs: y = W x over any weight
 * type, row lookup (embeddings), dot products. Scalar reference versions:
 * rows are dequantized a chunk of whole blocks at a time (256 elements) into
 * a stack buffer and dotted in float, so there is no heap allocation per
 * call. SIMD variants slot in behind the same functions later (chosen once at
 * start-up, per type, in the traits table) and are tested against these.
 *
 * W is a 2-D view (tensor.h): ne[0] = n_in elements per row (the contiguous
 * dimension, a multiple of the type's block size), ne[1] = n_out rows.
 * Preconditions (checked by the loader, not here): w->type has a to_float in
 * the traits table, w->data holds ne[1] whole rows, x holds ne[0] floats.
 */
#ifndef SB_MATVEC_H
#define SB_MATVEC_H

#include "tensor/tensor.h"

/* y[r] = dot(row r of w, x) for r in [row_begin, row_end); other entries of y
 * are left alone, so threads can split the rows of one product. */
void sb_matvec(const sb_tensor *w, const float *x, float *y, int64_t row_begin, int64_t row_end);
/* Y = X W^T for a batch of n rows: X (n, ne[0]) row-major, Y (n, ne[1]) with
 * row stride ldy. F32 weights go to OpenBLAS sgemm as they are; other types
 * are dequantized SB_MATMUL_TILE rows at a time into scratch (which holds
 * SB_MATMUL_TILE * ne[0] floats) and multiplied tile by tile, so no full f32
 * copy of the matrix is ever made. Used for batched prompt processing. */
#define SB_MATMUL_TILE 256
void sb_matmul(const sb_tensor *w, const float *x, int n, float *y, int64_t ldy, float *scratch);
/* The same for output columns [r0, r1) only (r0 a multiple of SB_MATMUL_TILE),
 * so threads can share one product. */
void sb_matmul_rows(const sb_tensor *w, const float *x, int n, float *y, int64_t ldy, float *scratch, int64_t r0,
                    int64_t r1);
/* OpenBLAS runs on one thread: sabio splits products over its own threads. */
void sb_blas_single_thread(void);
/* Dequantizes row r of w (w->ne[0] floats) into out. */
void sb_get_row(const sb_tensor *w, int64_t r, float *out);
/* sum a[i] * b[i] in float, four partial sums. */
float sb_vec_dot_f32(const float *a, const float *b, int64_t n);

#endif
