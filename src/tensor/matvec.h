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
/* ---- quantized activations (the fast decode path; kernels.h) ----
 * For weight types with integer kernels (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 read
 * 32-element sb_q8a blocks; Q4_K, Q5_K, Q6_K read 256-element sb_q8k), x is
 * quantized once per product with sb_act_quantize and every row dotted with
 * it in integers. This adds the activations' rounding error (about 1/254 of
 * each block's largest |x|, relative, per element) on top of sb_matvec's.
 * For other types the act type is SB_F32 and xq holds x itself. */
int sb_act_type(int wtype);
/* Bytes that sb_act_quantize writes for n elements (a multiple of the block). */
size_t sb_act_bytes(int act_type, int64_t n);
void sb_act_quantize(int act_type, const float *x, void *xq, int64_t n);
/* y[r] = dot(row r of w, xq) for r in [row_begin, row_end), xq from
 * sb_act_quantize(sb_act_type(w->type), x, xq, w->ne[0]). */
void sb_matvec_q(const sb_tensor *w, const void *xq, float *y, int64_t row_begin, int64_t row_end);
/* ---- two-level activations (the logits; kernels.h sb_quantize_q8a2) ----
 * x ~ d1 * q1 + d2 * q2 per block, q2 the 8-bit rounding of the first
 * level's error: the error is 1/254 of sb_matvec_q's (about 1/64516 of each
 * block's largest |x| per element) at close to its speed. sb_act2_bytes is
 * 0 for weight types without such a kernel (all but Q6_K and Q8_0). */
size_t sb_act2_bytes(int wtype, int64_t n);
void sb_act2_quantize(int wtype, const float *x, void *xq, int64_t n);
/* y[r] = dot(row r of w, xq) for r in [row_begin, row_end), xq from
 * sb_act2_quantize(w->type, x, xq, w->ne[0]) (Q6_K: the same values at
 * every instruction set level; Q8_0: the same up to f32 addition order). */
void sb_matvec_q2(const sb_tensor *w, const void *xq, float *y, int64_t row_begin, int64_t row_end);
/* The same for n activation rows (row b at xq + b * xq_stride bytes), output
 * columns [r0, r1) of Y (n, ldy): each weight row is read once and dotted
 * with the n rows, each dot the one sb_matvec_q computes. For short prompts.
 * w->type must have an integer kernel (sb_act_type != SB_F32) or be F32. */
void sb_matmul_q(const sb_tensor *w, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy, int64_t r0,
                 int64_t r1);
/* true if sb_matmul_q runs tiled kernels for this weight type on this CPU
 * (tiles of 4 weight x 4 activation rows, gemm_avx512.c): then it beats
 * dequantize + sgemm at any batch size. */
bool sb_matmul_q_tiled(int type);

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
