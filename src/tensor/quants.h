/*
 * quants.h - (internal to src/tensor) the block quantizers and dequantizers
 * behind the rows of the type-traits table in dtype.c.
 *
 * Every function takes n elements, n a multiple of the type's block size, and
 * reads or writes n / blck_size whole blocks. Blocks are addressed byte by
 * byte (memcpy for multi-byte fields), so src/dst need no alignment: GGUF
 * rows of 18- or 22-byte blocks are only 2-byte aligned.
 *
 * Block layouts (ggml's, little-endian; f16 = IEEE half):
 *   Q4_0 (32 el, 18 B)  f16 d; u8 qs[16]
 *   Q4_1 (32 el, 20 B)  f16 d, m; u8 qs[16]
 *   Q5_0 (32 el, 22 B)  f16 d; u8 qh[4]; u8 qs[16]
 *   Q5_1 (32 el, 24 B)  f16 d, m; u8 qh[4]; u8 qs[16]
 *   Q8_0 (32 el, 34 B)  f16 d; i8 qs[32]
 *   Q8_1 (32 el, 36 B)  f16 d, s (= d * sum qs); i8 qs[32]
 *   Q2_K (256 el, 84 B)  u8 scales[16]; u8 qs[64]; f16 d, dmin
 *   Q3_K (256 el, 110 B) u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
 *   Q4_K (256 el, 144 B) f16 d, dmin; u8 scales[12]; u8 qs[128]
 *   Q5_K (256 el, 176 B) f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
 *   Q6_K (256 el, 210 B) u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 *   Q8_K (256 el, 292 B) f32 d; i8 qs[256]; i16 bsums[16]
 *
 * Dequantization reproduces the float32 operation order of the `gguf` Python
 * package bit for bit (tests/test_quant.c). Quantization of the 32-element
 * types reproduces gguf's (= ggml's reference) quantizers bit for bit; the
 * K-quant quantizers are our own least-squares fits in the spirit of ggml's
 * reference (no reference implementation exists in Python), tested by
 * round-trip error bounds.
 */
#ifndef SB_QUANTS_H
#define SB_QUANTS_H

#include <stdint.h>
#include <string.h>

#include "tensor/tensor.h"

#define SB_QUANT_FN(t)                                                   \
    void sb_##t##_to_float(const void *src, float *dst, int64_t n);      \
    void sb_##t##_from_float(const float *src, void *dst, int64_t n);

SB_QUANT_FN(q4_0)
SB_QUANT_FN(q4_1)
SB_QUANT_FN(q5_0)
SB_QUANT_FN(q5_1)
SB_QUANT_FN(q8_0)
SB_QUANT_FN(q8_1) /* dequantization ignores s */
/* Q2_K and Q3_K: dequantization only. */
void sb_q2_k_to_float(const void *src, float *dst, int64_t n);
void sb_q3_k_to_float(const void *src, float *dst, int64_t n);
SB_QUANT_FN(q4_k)
SB_QUANT_FN(q5_k)
SB_QUANT_FN(q6_k)
SB_QUANT_FN(q8_k)

#undef SB_QUANT_FN

/* An unaligned little-endian f16 field of a block, read or written. */
static inline float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return sb_f16_to_f32(h);
}
static inline void put_f16(uint8_t *p, float f) {
    uint16_t h = sb_f32_to_f16(f);
    memcpy(p, &h, 2);
}

#endif
