/*
 * nf4.h - 4-bit NormalFloat (NF4) with optional double quantization, exactly
 * as bitsandbytes 0.50 stores it on CPU (QLoRA, Dettmers et al. 2023).
 *
 * A tensor of n elements (a weight's row-major flattening, so a block may span
 * two rows when the row length is not a multiple of the block size) is cut
 * into blocks of `blocksize` elements (64 for QLoRA). Each block keeps
 * absmax = max |x|, and each element the index of the NF4 code nearest to
 * x / absmax (nf4_tables.c). Two indices per byte: element 2i in the HIGH
 * nibble of byte i, element 2i+1 in the low one (bitsandbytes' order; an odd
 * tail's missing element is the code of 0, index 7).
 *
 * Double quantization ("compress_statistics"): offset = mean(absmax) (float32,
 * summed in the order torch's CPU sum uses), then absmax - offset quantized
 * to 8 bits with bitsandbytes' signed dynamic map in blocks of 256, keeping
 * one float32 absmax per 256 blocks (nested_absmax). A block's scale is then
 *   dynamic_map[qabsmax[b]] * nested_absmax[b / 256] + offset    (float32)
 * and an element's value nf4_code[q] * scale, float32 -- the same two
 * roundings bitsandbytes' dequantize_4bit makes, so dequantization is
 * bit-exact with it (tests/test_nf4.c).
 *
 * As a weight, an NF4 matrix is an sb_tensor of type SB_NF4 whose `data`
 * points at its packed bytes and `aux` at its sb_nf4 (the scales live outside
 * the packed bytes, in their own arrays, as in bitsandbytes' files). A view of
 * some rows is the same view with `data` moved on by ne0 / 2 bytes a row, as
 * for any other type (ne0 is even). matvec.c
 * routes SB_NF4 views here; the kernels dequantize one block at a time in
 * registers (dot) or one tile of rows into caller scratch (matmul), never a
 * whole matrix.
 */
#ifndef SB_NF4_H
#define SB_NF4_H

#include "base/base.h"
#include "tensor/tensor.h"

#define SB_NF4_BLOCK 64         /* QLoRA's block size */
#define SB_NF4_NESTED_BLOCK 256 /* blocks of absmax per nested absmax */

typedef struct sb_nf4 {
    int64_t n;           /* elements */
    int blocksize;       /* 32 .. 4096, a power of two */
    int64_t n_blocks;    /* ceil(n / blocksize) */
    const uint8_t *qs;   /* (n + 1) / 2 bytes, nibble order above */
    const float *absmax; /* (n_blocks) float32 scales; NULL when nested */
    bool nested;
    const uint8_t *qabsmax;     /* (n_blocks) dynamic-map indices of absmax - offset */
    const float *nested_absmax; /* (ceil(n_blocks / nested_blocksize)) */
    int nested_blocksize;       /* 256 as bitsandbytes */
    float offset;               /* mean of the absmax values */
    void *owned;                /* the slab holding the arrays, or NULL if borrowed */
} sb_nf4;

/* The code books (bitsandbytes' values, float32; nf4_tables.c). */
extern const float sb_nf4_code_f[16];
extern const float sb_nf4_dynamic_map_f[256];

/* Quantizes x[0..n) into out (which owns its arrays afterwards; release with
 * sb_nf4_free). blocksize as above; nested: double quantization. */
sb_status sb_nf4_quantize(const float *x, int64_t n, int blocksize, bool nested, sb_nf4 *out, sb_err *err);
/* The same with the double quantization's offset given instead of computed
 * (for tests that separate torch's float32 mean from the rest). */
sb_status sb_nf4_quantize_offset(const float *x, int64_t n, int blocksize, float offset, sb_nf4 *out,
                                 sb_err *err);
void sb_nf4_free(sb_nf4 *q);

/* mean of a[0..n) in float32 as torch's CPU sum computes it (cascade sum over
 * 8-float lanes, the AVX2 vector width), divided by n in float32. Equal to
 * torch.mean bit for bit when n <= 32768 (above that torch splits the sum
 * over threads). */
float sb_nf4_torch_mean(const float *a, int64_t n);

/* The float32 scale of block b (see above). */
static inline float sb_nf4_scale(const sb_nf4 *q, int64_t b) {
    if (!q->nested) return q->absmax[b];
    float s = sb_nf4_dynamic_map_f[q->qabsmax[b]] * q->nested_absmax[b / q->nested_blocksize];
    return s + q->offset;
}

/* Elements [e0, e0 + count) as float32 into out (any e0, count). */
void sb_nf4_dequantize(const sb_nf4 *q, int64_t e0, int64_t count, float *out);

/* Checks that q's sizes are consistent (blocksize, n_blocks, nested sizes);
 * for views made from a file. */
sb_status sb_nf4_check(const sb_nf4 *q, sb_err *err);

/* An SB_NF4 matrix view of q: ne0 = row length (even), ne1 = rows
 * (ne0 * ne1 == n). ne0 need not be a multiple of q->blocksize (the kernels
 * are fast when it is). */
void sb_nf4_view(const sb_nf4 *q, const char *name, int64_t ne0, int64_t ne1, sb_tensor *out);
static inline const sb_nf4 *sb_nf4_of(const sb_tensor *w) { return (const sb_nf4 *)w->aux; }
/* The element of q where w's first row starts. */
static inline int64_t sb_nf4_first(const sb_tensor *w) {
    return ((const uint8_t *)w->data - sb_nf4_of(w)->qs) * 2;
}

/* ---- kernels over an SB_NF4 view w ----
 * Fast when ne0 is a multiple of the block size (whole blocks per row);
 * otherwise element by element (tiny test models). */

/* Rows [r0, r1) as floats into out ((r1 - r0) * ne0), bit-exact with
 * sb_nf4_dequantize. */
void sb_nf4_get_rows(const sb_tensor *w, int64_t r0, int64_t r1, float *out);
/* y[r] = dot(row r, x) for r in [r0, r1). */
void sb_nf4_matvec(const sb_tensor *w, const float *x, float *y, int64_t r0, int64_t r1);

/* Per instruction set (kernels.h levels), for tests: the row dot and the row
 * dequantizer of nb whole blocks of bs elements with their scales. NULL if the
 * level has none or the CPU lacks it. */
typedef float (*sb_nf4_dot_fn)(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x);
typedef void (*sb_nf4_deq_fn)(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out);
sb_nf4_dot_fn sb_nf4_dot_at(int isa);
sb_nf4_deq_fn sb_nf4_deq_at(int isa);
/* "avx512", "avx2" or "scalar": the level the NF4 kernels run at. */
const char *sb_nf4_isa(void);

float sb_nf4_dot_avx2(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x);
void sb_nf4_deq_avx2(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out);
float sb_nf4_dot_avx512(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x);
void sb_nf4_deq_avx512(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out);

#endif
