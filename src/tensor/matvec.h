/*
 * matvec.h - the generic scalar kernels the decoder needs: y = W x over any
 * weight type, row lookup, dot products. Rows are dequantized block by block
 * into a stack buffer (no heap allocation per call). SIMD variants slot in
 * behind the same functions later (runtime dispatch in the traits table).
 */
#ifndef SB_MATVEC_H
#define SB_MATVEC_H

#include "tensor/tensor.h"

/* y[r] = dot(row r of w, x) for r in [row_begin, row_end). w->ne[0] = len(x). */
void sb_matvec(const sb_tensor *w, const float *x, float *y, int64_t row_begin, int64_t row_end);
/* Dequantizes row r of w (w->ne[0] floats) into out. */
void sb_get_row(const sb_tensor *w, int64_t r, float *out);
float sb_vec_dot_f32(const float *a, const float *b, int64_t n);

#endif
