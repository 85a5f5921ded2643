/*
 * qgemm.h - (internal to src/tensor) tiled products of quantized weights and
 * quantized activations for prompt batches, behind sb_matmul_q (matvec.h).
 */
#ifndef SB_QGEMM_H
#define SB_QGEMM_H

#include "tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>

/* sb_matmul_q's contract (columns [r0, r1) of Y (n, ldy), activation row b at
 * xq + b * xq_stride), each value bit-identical to the type's AVX-512 row
 * kernel. false (nothing written) if there is no tiled kernel for the type. */
bool sb_gemm_q_avx512(int type, const sb_tensor *w, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                      int64_t r0, int64_t r1);

#endif
