/*
 * gemm.h - matrix products for batches of tokens with BF16 inputs and F32
 * accumulation (the encoder's linears), and the row-wise softmax and GELU
 * that go with them.
 *
 * Y (M, N) = X (M, K) W^T + b, W stored (N, K) row-major as in PyTorch.
 * W is packed once (sb_bf16_pack) into panels of 16 output columns whose
 * input elements come in pairs: panel c, pair p holds
 *   w[16c + j][2p], w[16c + j][2p + 1]   for j = 0..15
 * which is the operand layout of AVX-512 BF16's vdpbf16ps (16 lanes, each a
 * dot of one bf16 pair). X is given as bf16 rows (sb_bf16_rows), so the pair
 * of one row is one 32-bit broadcast.
 *
 * Arithmetic (every path): each product of two bf16 values is exact in f32;
 * per pair p the accumulator takes the odd product, then the even one, each
 * add rounded to f32, starting from the bias (+ Y with SB_GEMM_ACC). This is
 * vdpbf16ps' order, so the scalar, AVX2 and AVX-512 paths agree to the last
 * bit except where vdpbf16ps flushes subnormals. The error against f32
 * weights and inputs is that of rounding both to bf16 (8 significant bits):
 * for all-MiniLM-L6-v2 the sentence embeddings keep cosine >= 0.9999 with
 * sentence-transformers' f32 ones (tests/test_encoder.c).
 *
 * Run-time choice: AVX-512 BF16 where the CPU has it, else AVX2/FMA, else
 * scalar; SABIO_KERNELS=scalar|avx2 caps it (kernels.h's levels).
 */
#ifndef SB_GEMM_H
#define SB_GEMM_H

#include "base/base.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sb_bf16_mat {
    int n_out, n_in; /* W (n_out, n_in) */
    int k2;          /* pairs along the input: (n_in + 1) / 2 (an odd n_in is padded with a zero) */
    int n_panel;     /* (n_out + 15) / 16; padded columns are zero */
    uint16_t *data;  /* [n_panel][k2][16][2] */
} sb_bf16_mat;

/* Packs w (n_out, n_in) f32 row-major into m. SB_ERR_NOMEM on failure (m is
 * then empty). */
sb_status sb_bf16_pack(sb_bf16_mat *m, const float *w, int n_out, int n_in);
void sb_bf16_mat_free(sb_bf16_mat *m);

/* The same layout from bf16 values into caller memory (m->data = data, which
 * holds sb_bf16_packed_size(n_out, n_in) elements; nothing to free): W[o][i]
 * = w[o * ldw + i] (pack_rows) or W[o][i] = w[i * ldw + o] (pack_cols, the
 * transpose). For attention: K_h and V_h^T of one text, per head. */
size_t sb_bf16_packed_size(int n_out, int n_in);
void sb_bf16_pack_rows(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);
void sb_bf16_pack_cols(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);

/* Elements per bf16 row for n_in inputs: 2 * k2 (even). */
static inline int sb_bf16_ld(int n_in) { return (n_in + 1) & ~1; }
/* xb (M rows of ldxb elements) = bf16(x) (M, K) with row stride ldx floats,
 * round to nearest even; an odd K gets a zero in the last column. */
void sb_bf16_rows(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb);

enum {
    SB_GEMM_ACC = 1,  /* Y += X W^T + b (the residual add); else Y = X W^T + b */
    SB_GEMM_GELU = 2, /* Y = gelu(X W^T + b), gelu(x) = x/2 (1 + erf(x / sqrt 2)) as BERT */
};
/* X W^T + b (bias may be NULL) for the M rows of xb (stride ldxb, from
 * sb_bf16_rows with K = w->n_in). Output to y (f32, stride ldy) or, if y is
 * NULL, to yb as bf16 rows (stride ldyb, ready to be the X of the next
 * product; then flags must not hold SB_GEMM_ACC). Single-threaded: callers
 * split rows over their threads. */
void sb_gemm_bf16(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias, int flags, float *y,
                  int ldy, uint16_t *yb, int ldyb);

/* Each of the M rows (n floats, stride ld) of x: x = softmax(scale * x);
 * if xb is not NULL, also its bf16 rows (stride ldxb, a zero after an odd n). */
void sb_softmax_rows(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb);

/* Each of the M rows of x (D floats, contiguous): x = (x - mean) / sqrt(var
 * + eps) * w + b (transformers' LayerNorm, biased variance); if xb is not
 * NULL, also sb_bf16_rows(x, M, D, D, xb, ldxb) of the result. */
void sb_layer_norm_rows(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb, int ldxb);

/* ---- per instruction set (gemm.c dispatches; tests call them directly) ---- */
typedef void (*sb_gemm_bf16_fn)(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias,
                                int flags, float *y, int ldy, uint16_t *yb, int ldyb);
typedef void (*sb_softmax_rows_fn)(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb);
typedef void (*sb_layer_norm_rows_fn)(float *x, int M, int D, const float *w, const float *b, float eps,
                                      uint16_t *xb, int ldxb);
typedef void (*sb_bf16_rows_fn)(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb);
/* The kernel at level isa (SB_ISA_*), NULL if this CPU cannot run it. */
sb_gemm_bf16_fn sb_gemm_bf16_at(int isa);
sb_softmax_rows_fn sb_softmax_rows_at(int isa);
/* LayerNorm and the bf16 conversion have scalar and AVX-512 versions (AVX2 uses the scalar ones). */
sb_layer_norm_rows_fn sb_layer_norm_rows_at(int isa);
sb_bf16_rows_fn sb_bf16_rows_at(int isa);

void sb_gemm_bf16_scalar(const uint16_t *, int, int, const sb_bf16_mat *, const float *, int, float *, int, uint16_t *,
                         int);
void sb_gemm_bf16_avx2(const uint16_t *, int, int, const sb_bf16_mat *, const float *, int, float *, int, uint16_t *,
                       int);
void sb_gemm_bf16_avx512(const uint16_t *, int, int, const sb_bf16_mat *, const float *, int, float *, int,
                         uint16_t *, int);
void sb_softmax_rows_scalar(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb);
void sb_softmax_rows_avx2(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb);
void sb_softmax_rows_avx512(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb);
void sb_layer_norm_rows_scalar(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb,
                               int ldxb);
void sb_layer_norm_rows_avx512(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb,
                               int ldxb);
void sb_bf16_rows_scalar(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb);
/* AVX-512 packing (chosen by sb_bf16_pack_rows/cols; pack_cols needs n_out % 16 == 0, pack_rows an even ldw) */
void sb_bf16_pack_rows_avx512(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);
void sb_bf16_pack_cols_avx512(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);
/* the scalar packing, for tests */
void sb_bf16_pack_rows_scalar(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);
void sb_bf16_pack_cols_scalar(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in);
void sb_bf16_rows_avx512(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb);
/* x/2 (1 + erf(x / sqrt 2)) with libm's erff: the reference GELU */
float sb_gelu_ref(float x);

#endif
