/*
 * vecdist.c - scalar reference distance kernels and the run-time choice
 * among the SIMD versions (vecdist_avx2.c, vecdist_avx512.c).
 */
#include "rag/vecdist.h"

#include "tensor/kernels.h"

float sb_dot_f32_scalar(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float sb_l2_f32_scalar(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

int32_t sb_dot_i8_scalar(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

static float dot_f32_avx2(const float *a, const float *b, int n) { return sb_dot_f32_avx2(a, b, n); }

static const sb_vecdist tables[SB_ISA_COUNT] = {
    {sb_dot_f32_scalar, sb_l2_f32_scalar, sb_dot_i8_scalar, "scalar"},
    {dot_f32_avx2, sb_l2_f32_avx2, sb_dot_i8_avx2, "avx2"},
    {sb_dot_f32_avx512, sb_l2_f32_avx512, sb_dot_i8_avx512, "avx512"},
};

const sb_vecdist *sb_vecdist_at(int isa) {
    return isa >= 0 && isa < SB_ISA_COUNT && sb_isa_supported(isa) ? &tables[isa] : NULL;
}

const sb_vecdist *sb_vecdist_get(void) {
    for (int isa = SB_ISA_COUNT - 1; isa > 0; isa--)
        if (sb_isa_supported(isa)) return &tables[isa];
    return &tables[SB_ISA_SCALAR];
}
