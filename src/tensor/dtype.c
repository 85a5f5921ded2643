/*
 * dtype.c - the type-traits table: for every element type its name, block
 * size, bytes per block, dequantization (to_float) and quantization
 * (from_float); the f16 / bf16 scalar conversions and the plain types.
 * The block (de)quantizers live in quants.c.
 *
 * Sizes are ggml's (checked against gguf.GGML_QUANT_SIZES by
 * tests/test_quant.c). Function pointers are NULL where a type is known
 * only by its size: the integer and f64 types, Q2_K/Q3_K quantization.
 */
#include "tensor/tensor.h"
#include "tensor/quants.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- scalar conversions ---- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in f32 */
        float f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t sb_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* nan, keep quiet */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): round a * 2^24 to nearest even */
        float v = bits_f32(a) * 0x1p24f; /* exact: scaling by a power of two */
        float r = nearbyintf(v);        /* default rounding mode: ties to even */
        return sign | (uint16_t)r;
    }
    /* normal: drop 13 mantissa bits with round-to-nearest-even */
    uint32_t rounded = a + 0xfffu + ((a >> 13) & 1);
    return sign | (uint16_t)((rounded - (112u << 23)) >> 13);
}

float sb_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t sb_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}


/* ---- plain types ---- */

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = f16(s + 2 * i);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) put_f16(d + 2 * i, src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = sb_bf16_to_f32(h);
    }
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = sb_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

/* ---- the table ---- */

static const sb_type_traits traits[SB_DTYPE_COUNT] = {
    [SB_F32] = {"f32", 1, 4, false, f32_to_float, f32_from_float},
    [SB_F16] = {"f16", 1, 2, false, f16_to_float, f16_from_float},
    [SB_BF16] = {"bf16", 1, 2, false, bf16_to_float, bf16_from_float},
    [SB_Q4_0] = {"q4_0", 32, 18, true, sb_q4_0_to_float, sb_q4_0_from_float},
    [SB_Q4_1] = {"q4_1", 32, 20, true, sb_q4_1_to_float, sb_q4_1_from_float},
    [SB_Q5_0] = {"q5_0", 32, 22, true, sb_q5_0_to_float, sb_q5_0_from_float},
    [SB_Q5_1] = {"q5_1", 32, 24, true, sb_q5_1_to_float, sb_q5_1_from_float},
    [SB_Q8_0] = {"q8_0", 32, 34, true, sb_q8_0_to_float, sb_q8_0_from_float},
    [SB_Q8_1] = {"q8_1", 32, 36, true, sb_q8_1_to_float, sb_q8_1_from_float},
    [SB_Q2_K] = {"q2_K", 256, 84, true, sb_q2_k_to_float, NULL},
    [SB_Q3_K] = {"q3_K", 256, 110, true, sb_q3_k_to_float, NULL},
    [SB_Q4_K] = {"q4_K", 256, 144, true, sb_q4_k_to_float, sb_q4_k_from_float},
    [SB_Q5_K] = {"q5_K", 256, 176, true, sb_q5_k_to_float, sb_q5_k_from_float},
    [SB_Q6_K] = {"q6_K", 256, 210, true, sb_q6_k_to_float, sb_q6_k_from_float},
    [SB_Q8_K] = {"q8_K", 256, 292, true, sb_q8_k_to_float, sb_q8_k_from_float},
    /* NF4's scales live outside its packed bytes (nf4.h): its views carry an
     * sb_nf4, and matvec.c routes them to nf4.c; type_size counts the bytes. */
    [SB_NF4] = {"nf4", 64, 32, true, NULL, NULL},
    /* Q4_0's blocks, 8 rows interleaved (q4r8.h): a row is not contiguous, so
     * no to_float; matvec.c routes these views to q4r8.c. */
    [SB_Q4_0_R8] = {"q4_0_r8", 32, 18, true, NULL, NULL},
    [SB_I8] = {"i8", 1, 1, false, NULL, NULL},
    [SB_I16] = {"i16", 1, 2, false, NULL, NULL},
    [SB_I32] = {"i32", 1, 4, false, NULL, NULL},
    [SB_I64] = {"i64", 1, 8, false, NULL, NULL},
    [SB_F64] = {"f64", 1, 8, false, NULL, NULL},
};

const sb_type_traits *sb_type_traits_get(int type) {
    if (type < 0 || type >= SB_DTYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

const char *sb_dtype_name(int type) {
    const sb_type_traits *t = sb_type_traits_get(type);
    return t ? t->name : "unknown";
}

int sb_dtype_from_name(const char *name) {
    for (int i = 0; i < SB_DTYPE_COUNT; i++)
        if (traits[i].name && i != SB_Q4_0_R8 && !strcasecmp(traits[i].name, name)) return i; /* a layout, not a type to ask for */
    return -1;
}

bool sb_dtype_row_bytes(int type, int64_t n, size_t *out) {
    const sb_type_traits *t = sb_type_traits_get(type);
    if (!t || n < 0 || n % t->blck_size) return false;
    return !__builtin_mul_overflow((uint64_t)(n / t->blck_size), (uint64_t)t->type_size, out);
}
