/*
 * vecdist.h - the distance kernels of the vector index: float dot product,
 * float squared L2 and int8 dot product, per instruction set (scalar, AVX2,
 * AVX-512), chosen once at run time by the CPU's features (the same levels
 * and SABIO_KERNELS cap as the tensor kernels, tensor/kernels.h).
 *
 * Vectors have any length n >= 0; the SIMD versions handle the tail. The int8
 * kernels expect values in -127..127 (never -128: |x| must fit in int8).
 */
#ifndef SB_VECDIST_H
#define SB_VECDIST_H

#include <stdint.h>

typedef struct sb_vecdist {
    float (*dot_f32)(const float *a, const float *b, int n);
    float (*l2_f32)(const float *a, const float *b, int n);
    int32_t (*dot_i8)(const int8_t *a, const int8_t *b, int n);
    const char *isa;
} sb_vecdist;

/* The fastest kernels this CPU runs (never NULL; a static table). */
const sb_vecdist *sb_vecdist_get(void);
/* The kernels of one level (SB_ISA_*), NULL if the CPU cannot run it. */
const sb_vecdist *sb_vecdist_at(int isa);

float sb_dot_f32_scalar(const float *a, const float *b, int n);
float sb_l2_f32_scalar(const float *a, const float *b, int n);
int32_t sb_dot_i8_scalar(const int8_t *a, const int8_t *b, int n);
float sb_l2_f32_avx2(const float *a, const float *b, int n);
int32_t sb_dot_i8_avx2(const int8_t *a, const int8_t *b, int n);
float sb_dot_f32_avx512(const float *a, const float *b, int n);
float sb_l2_f32_avx512(const float *a, const float *b, int n);
int32_t sb_dot_i8_avx512(const int8_t *a, const int8_t *b, int n);

#endif
