/*
 * frozen.h - the only way the train layer reads a frozen base weight.
 *
 * A weight is a view W (tensor.h: ne[0] = n_in, ne[1] = n_out rows) of any
 * type with a to_float in the traits table (F32, F16, BF16, Q8_0, the
 * k-quants, ...; an NF4 type plugs in by filling its row there, or by a case
 * in sb_frozen_tile). Rows are dequantized a tile at a time (SB_FROZEN_TILE
 * rows) into caller scratch, so no f32 copy of a matrix is ever made; F32
 * weights are used in place. Products go to OpenBLAS sgemm.
 */
#ifndef SB_FROZEN_H
#define SB_FROZEN_H

#include "tensor/tensor.h"

#define SB_FROZEN_TILE 256

/* Rows [r0, r1) of w as floats ((r1 - r0) * ne[0] of them) into out; returns
 * out, or a pointer into w itself for F32 (out untouched). */
const float *sb_frozen_tile(const sb_tensor *w, int64_t r0, int64_t r1, float *out);

/* Y = X W^T (+ beta Y): X (n, n_in) with row stride ldx, Y (n, n_out) with
 * stride ldy. scratch: SB_FROZEN_TILE * n_in floats. */
void sb_frozen_matmul(const sb_tensor *w, const float *x, int64_t ldx, int n, float *y, int64_t ldy, float beta,
                      float *scratch);
/* dX = dY W (+ beta dX): the backward of the above for X. dY (n, n_out)
 * stride lddy, dX (n, n_in) stride lddx. */
void sb_frozen_matmul_t(const sb_tensor *w, const float *dy, int64_t lddy, int n, float *dx, int64_t lddx, float beta,
                        float *scratch);

/* OpenBLAS threads for training products (deterministic for a fixed count). */
void sb_frozen_set_threads(int n);

#endif
