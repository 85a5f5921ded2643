/*
 * frozen.h - the only way the train layer reads a frozen base weight.
 *
 * A weight is a view W (tensor.h: ne[0] = n_in, ne[1] = n_out rows) of any
 * type with a to_float in the traits table (F32, F16, BF16, Q8_0, the
 * k-quants, NF4, ...). Rows are dequantized a tile at a time into per-thread
 * scratch, so no full-precision copy of a matrix is ever made; F32 weights
 * are used in place.
 *
 * Two ways to compute (chosen when the workspace is made):
 *  - F32: OpenBLAS sgemm (single-threaded) on f32 tiles, the exact path the
 *    golden tests against PEFT run.
 *  - BF16: activations and weight tiles rounded to bf16 (round to nearest
 *    even), products exact, sums in f32: gemm.h's vdpbf16ps kernel, about
 *    twice the f32 rate. A tile is SB_FROZEN_BF16_ROWS rows of W packed into
 *    the kernel's panels (Y = X W^T), or SB_FROZEN_BF16_K rows of W
 *    transposed into them (dX = dY W), packed by the thread that uses it.
 *    Its error against the F32 path is that of bf16 rounding (tolerances in
 *    tests/test_train_bf16.c).
 * Either way the output columns are split over the workspace's threads in
 * whole 16-column panels: results depend on the thread count only through
 * OpenBLAS's own blocking (F32), not at all for BF16.
 */
#ifndef SB_FROZEN_H
#define SB_FROZEN_H

#include "base/base.h"
#include "base/threadpool.h"
#include "tensor/tensor.h"

#define SB_FROZEN_TILE 256      /* f32 path: rows dequantized per sgemm */
#define SB_FROZEN_BF16_ROWS 128 /* bf16 path, Y = X W^T: output rows packed at a time */
#define SB_FROZEN_BF16_K 256    /* bf16 path, dX = dY W: rows of W (the sum) packed at a time */

typedef struct sb_frozen_ws sb_frozen_ws;

/* Threads and scratch for products of up to max_rows rows with weights of
 * rows of at most max_in elements and at most max_out rows. bf16: the BF16
 * path (on a CPU without AVX-512 BF16, gemm.h's AVX2 or scalar kernels
 * compute the same sums, slower). n_threads >= 1. */
sb_frozen_ws *sb_frozen_ws_new(int n_threads, int max_rows, int64_t max_in, int64_t max_out, bool bf16, sb_err *err);
void sb_frozen_ws_free(sb_frozen_ws *f);
size_t sb_frozen_ws_bytes(const sb_frozen_ws *f);
bool sb_frozen_ws_bf16(const sb_frozen_ws *f);
/* The workspace's threads, for the caller's other work (NULL: one thread). */
sb_pool *sb_frozen_pool(const sb_frozen_ws *f);

/* Rows [r0, r1) of w as floats ((r1 - r0) * ne[0] of them) into out; returns
 * out, or a pointer into w itself for F32 (out untouched). */
const float *sb_frozen_tile(const sb_tensor *w, int64_t r0, int64_t r1, float *out);

/* Y = X W^T (+ Y if beta = 1; beta is 0 or 1): X (n, n_in) with row stride
 * ldx, Y (n, n_out) with stride ldy. */
void sb_frozen_matmul(sb_frozen_ws *f, const sb_tensor *w, const float *x, int64_t ldx, int n, float *y, int64_t ldy,
                      float beta);
/* dX = dY W (+ dX if beta = 1): the backward of the above for X. dY (n,
 * n_out) stride lddy, dX (n, n_in) stride lddx. */
void sb_frozen_matmul_t(sb_frozen_ws *f, const sb_tensor *w, const float *dy, int64_t lddy, int n, float *dx,
                        int64_t lddx, float beta);

/* Threads for training products (read by sb_train_ws_new; deterministic for
 * a fixed count). OpenBLAS itself runs on one thread: the products are split
 * over sabio's threads. */
void sb_frozen_set_threads(int n);
int sb_frozen_threads(void);

#endif
