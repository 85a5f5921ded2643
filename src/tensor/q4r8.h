/*
 * q4r8.h - Q4_0 weights repacked eight rows at a time for decode (SB_Q4_0_R8).
 *
 * A row-at-a-time Q4_0 dot is bound by its arithmetic on AVX2, not by memory:
 * every 32-element block of every row needs its own reduction, conversion
 * and scale (kernels_avx2.c: about 27 vector operations per 72 bytes). With
 * eight rows interleaved, lane r of a register is row r: one activation
 * dword broadcast to all lanes multiplies 4 weights of each of the 8 rows
 * (vpmaddubsw), a block's eight products add up as int16 in place, and one
 * conversion and one multiply-add per block serve eight rows; the 8 scales
 * are one load. No horizontal sums until the end.
 *
 * Layout of a group of 8 rows (g = row / 8), nb = ne0 / 32 blocks per row,
 * 8 * nb * 18 bytes in all (the same bytes as the 8 Q4_0 rows, so row
 * offsets that are multiples of 8 stay row offsets), one sequential stream:
 * blocks in runs of 4 (the last run: nb % 4 if not 0), each run
 *   the runs' f16 scales, 16 bytes per block: block k's d of rows 0..7;
 *   then per block 128 bytes, vector q (q = 0..3, 32 bytes), dword r = bytes
 *     4q..4q+3 of block k's qs in row r (low nibbles: elements 4q..4q+3,
 *     high nibbles: 16+4q..16+4q+3).
 * (Scales kept apart at the end of the group made a second stream per group
 * and measured slower from DRAM.)
 *
 * The arithmetic is sb_qdot_q4_0_scalar's, per row and block in the same
 * order: sum += d * x.d * (float)(sum (u - 8) * qx), the integer exact, so
 * every level here is bit-identical to it (tests/test_kernels.c).
 * Model weights are repacked at load by sb_model_repack (model.h), which
 * keeps a tensor in Q4_0 unless sb_q4r8_fits.
 */
#ifndef SB_Q4R8_H
#define SB_Q4R8_H

#include "tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>

/* byte offsets, within a group, of block k's nibble vectors and scales */
static inline size_t sb_q4r8_qs_off(int64_t nb, int64_t k) {
    const int64_t run = k / 4, m = nb - 4 * run < 4 ? nb - 4 * run : 4;
    return (size_t)run * 576 + (size_t)m * 16 + (size_t)(k % 4) * 128;
}
static inline size_t sb_q4r8_d_off(int64_t k) { return (size_t)(k / 4) * 576 + (size_t)(k % 4) * 16; }

#define SB_Q4R8_MAX_IN 32768 /* longest row: the kernels keep a row's block sums on the stack */

/* true if a Q4_0 matrix of rows x ne0 can be repacked: rows % 8 == 0, ne0 a
 * positive multiple of 32 and <= SB_Q4R8_MAX_IN. */
bool sb_q4r8_fits(int64_t ne0, int64_t rows);
/* rows Q4_0 rows of ne0 elements (src, contiguous) into the layout above (dst,
 * the same number of bytes; no overlap). Rows [r0, r1) only, r0 and r1
 * multiples of 8, so threads can share it. */
void sb_q4r8_pack(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1);
/* the same bytes, by the scalar definition and with AVX2 (sb_q4r8_pack picks) */
void sb_q4r8_pack_scalar(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1);
void sb_q4r8_pack_avx2(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1);
/* Row r back as its 18 * ne0 / 32 Q4_0 bytes. */
void sb_q4r8_row_bytes(const void *data, int64_t ne0, int64_t r, void *out);
/* Row r dequantized (ne0 floats), as Q4_0's to_float. */
void sb_q4r8_get_row(const void *data, int64_t ne0, int64_t r, float *out);

/* y[b * ldy + r] = row r . activation row b for r in [r0, r1) and b < n,
 * activation row b the sb_q8a blocks at xq + b * xq_stride (kernels.h). Other
 * entries of y are left alone. n <= 4 per call for the SIMD kernels' register
 * budget; sb_q4r8_matmul takes any n. */
typedef void (*sb_q4r8_fn)(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                           int64_t r0, int64_t r1);
void sb_q4r8_scalar(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                    int64_t r0, int64_t r1);
void sb_q4r8_avx2(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                  int64_t r0, int64_t r1);
/* The kernel at level (SB_ISA_*), NULL if none there. */
sb_q4r8_fn sb_q4r8_at(int level);
/* Any n, the best kernel this CPU runs (level: sb_q4r8_at of the best one). */
void sb_q4r8_matmul(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                    int64_t r0, int64_t r1, int level);

#endif
