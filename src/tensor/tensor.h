/*
 * tensor.h - element types, their block layouts and the type-traits table,
 * and the borrowed tensor view that formats hand to the model.
 *
 * Dimension convention (as GGUF/ggml): ne[0] is the innermost, contiguous
 * dimension. A PyTorch weight of shape [out_features, in_features] has
 * ne[0] = in_features, ne[1] = out_features: each of the ne[1] rows is one
 * output's weights, stored as whole quantization blocks.
 *
 * Type ids equal ggml's, so a GGUF tensor's type field maps one to one.
 * Adding a quantization type means filling one row of the traits table.
 */
#ifndef SB_TENSOR_H
#define SB_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sb_dtype {
    SB_F32 = 0,
    SB_F16 = 1,
    SB_Q4_0 = 2,
    SB_Q4_1 = 3,
    SB_Q5_0 = 6,
    SB_Q5_1 = 7,
    SB_Q8_0 = 8,
    SB_Q8_1 = 9,
    SB_Q2_K = 10,
    SB_Q3_K = 11,
    SB_Q4_K = 12,
    SB_Q5_K = 13,
    SB_Q6_K = 14,
    SB_Q8_K = 15,
    SB_I8 = 24,
    SB_I16 = 25,
    SB_I32 = 26,
    SB_I64 = 27,
    SB_F64 = 28,
    SB_BF16 = 30,
    SB_NF4 = 100, /* bitsandbytes' NF4 (tensor/nf4.h); not a ggml type (ids far above ggml's), never in a GGUF file */
    SB_Q4_0_R8 = 101, /* Q4_0 repacked 8 rows at a time for decode (tensor/q4r8.h); in memory only, never in a file */
    SB_DTYPE_COUNT = 102, /* table size; ids >= this are unknown */
} sb_dtype;

#define SB_QK_K 256 /* super-block size of the K-quants */

typedef struct sb_type_traits {
    const char *name; /* "f32", "q4_K", ... as ggml spells them */
    int64_t blck_size; /* elements per block (1 for plain types) */
    size_t type_size;  /* bytes per block */
    bool quantized;
    /* n is a multiple of blck_size. NULL where not supported. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    void (*from_float)(const float *src, void *dst, int64_t n);
} sb_type_traits;

/* NULL for ids that are not known element types. */
const sb_type_traits *sb_type_traits_get(int type);
const char *sb_dtype_name(int type); /* "unknown" for unknown ids */
/* Parses "f16", "Q4_0", "q4_k" (case-insensitive); -1 if unknown. */
int sb_dtype_from_name(const char *name);
/* Bytes for n elements; false if unknown type, n not a multiple of the
 * block size, or overflow. */
bool sb_dtype_row_bytes(int type, int64_t n, size_t *out);

/* Scalar conversions (round to nearest even, as ggml and PyTorch). */
float sb_f16_to_f32(uint16_t h);
uint16_t sb_f32_to_f16(float f);
float sb_bf16_to_f32(uint16_t h);
uint16_t sb_f32_to_bf16(float f);

/* A borrowed view of a tensor held by a file or by the caller. */
typedef struct sb_tensor {
    const char *name;
    int type; /* sb_dtype */
    int n_dims;
    int64_t ne[4]; /* unused dims are 1 */
    const void *data;
    size_t nbytes;
    const void *aux; /* type state kept outside the bytes (SB_NF4: its sb_nf4), else NULL */
} sb_tensor;

static inline int64_t sb_tensor_nelements(const sb_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

#endif
