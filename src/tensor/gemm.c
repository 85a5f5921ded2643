/*
 * gemm.c - packing, the scalar reference kernels of gemm.h and the run-time
 * choice among the SIMD ones (gemm_avx2.c, gemm_avx512.c).
 */
#include "tensor/gemm.h"
#include "tensor/kernels.h"
#include "tensor/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sb_status sb_bf16_pack(sb_bf16_mat *m, const float *w, int n_out, int n_in) {
    memset(m, 0, sizeof *m);
    const int k2 = (n_in + 1) / 2, np = (n_out + 15) / 16;
    uint16_t *d = calloc((size_t)np * k2 * 32, sizeof *d);
    if (!d) return SB_ERR_NOMEM;
    for (int c = 0; c < np; c++)
        for (int j = 0; j < 16 && 16 * c + j < n_out; j++) {
            const float *row = w + (size_t)(16 * c + j) * n_in;
            uint16_t *o = d + (size_t)c * k2 * 32 + 2 * j;
            for (int i = 0; i < n_in; i++) o[(size_t)(i / 2) * 32 + (i & 1)] = sb_f32_to_bf16(row[i]);
        }
    *m = (sb_bf16_mat){n_out, n_in, k2, np, d};
    return SB_OK;
}

size_t sb_bf16_packed_size(int n_out, int n_in) { return (size_t)((n_out + 15) / 16) * ((n_in + 1) / 2) * 32; }

static void pack_bf16(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, size_t so, size_t si, int n_out, int n_in) {
    const int k2 = (n_in + 1) / 2, np = (n_out + 15) / 16;
    for (int c = 0; c < np; c++)
        for (int k = 0; k < k2; k++) {
            uint16_t *o = data + ((size_t)c * k2 + k) * 32;
            for (int j = 0; j < 16; j++) {
                const int r = 16 * c + j, i = 2 * k;
                o[2 * j] = r < n_out ? w[r * so + i * si] : 0;
                o[2 * j + 1] = r < n_out && i + 1 < n_in ? w[r * so + (i + 1) * si] : 0;
            }
        }
    *m = (sb_bf16_mat){n_out, n_in, k2, np, data};
}

void sb_bf16_pack_rows_scalar(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    pack_bf16(m, data, w, (size_t)ldw, 1, n_out, n_in);
}

void sb_bf16_pack_cols_scalar(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    pack_bf16(m, data, w, 1, (size_t)ldw, n_out, n_in);
}

void sb_bf16_mat_free(sb_bf16_mat *m) {
    free(m->data);
    memset(m, 0, sizeof *m);
}

void sb_bf16_rows_scalar(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb) {
    for (int r = 0; r < M; r++) {
        const float *s = x + (size_t)r * ldx;
        uint16_t *o = xb + (size_t)r * ldxb;
        for (int i = 0; i < K; i++) o[i] = sb_f32_to_bf16(s[i]);
        if (K & 1) o[K] = 0;
    }
}

/* mean and variance in double: the result does not depend on the order */
void sb_layer_norm_rows_scalar(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb,
                               int ldxb) {
    for (int t = 0; t < M; t++) {
        float *r = x + (size_t)t * D;
        double mean = 0, var = 0;
        for (int i = 0; i < D; i++) mean += r[i];
        mean /= D;
        for (int i = 0; i < D; i++) var += (r[i] - mean) * (r[i] - mean);
        var /= D;
        const float inv = (float)(1.0 / sqrt(var + eps));
        for (int i = 0; i < D; i++) r[i] = (float)(r[i] - mean) * inv * w[i] + b[i];
        if (xb) sb_bf16_rows_scalar(r, 1, D, D, xb + (size_t)t * ldxb, ldxb);
    }
}

float sb_gelu_ref(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

static inline float bf(uint16_t h) { return sb_bf16_to_f32(h); }

void sb_gemm_bf16_scalar(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias, int flags,
                         float *y, int ldy, uint16_t *yb, int ldyb) {
    for (int r = 0; r < M; r++) {
        const uint16_t *x = xb + (size_t)r * ldxb;
        for (int n = 0; n < w->n_out; n++) {
            const uint16_t *p = w->data + (size_t)(n / 16) * w->k2 * 32 + 2 * (n % 16);
            float acc = bias ? bias[n] : 0.0f;
            if (y && (flags & SB_GEMM_ACC)) acc += y[(size_t)r * ldy + n];
            for (int k = 0; k < w->k2; k++, p += 32) {
                acc += bf(x[2 * k + 1]) * bf(p[1]); /* vdpbf16ps: odd element first */
                acc += bf(x[2 * k]) * bf(p[0]);
            }
            if (flags & SB_GEMM_GELU) acc = sb_gelu_ref(acc);
            if (y)
                y[(size_t)r * ldy + n] = acc;
            else
                yb[(size_t)r * ldyb + n] = sb_f32_to_bf16(acc);
        }
        if (!y && (w->n_out & 1)) yb[(size_t)r * ldyb + w->n_out] = 0;
    }
}

void sb_softmax_rows_scalar(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb) {
    for (int r = 0; r < M; r++) {
        float *v = x + (size_t)r * ld, mx = v[0];
        for (int j = 1; j < n; j++) mx = v[j] > mx ? v[j] : mx;
        float sum = 0;
        for (int j = 0; j < n; j++) sum += v[j] = expf(scale * (v[j] - mx));
        const float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) v[j] *= inv;
        if (xb) sb_bf16_rows_scalar(v, 1, n, n, xb + (size_t)r * ldxb, ldxb);
    }
}

/* ---- run-time choice ---- */

static bool has_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
}

sb_gemm_bf16_fn sb_gemm_bf16_at(int isa) {
    if (!sb_isa_supported(isa)) return NULL;
    switch (isa) {
    case SB_ISA_AVX512: return has_bf16() ? sb_gemm_bf16_avx512 : NULL;
    case SB_ISA_AVX2: return sb_gemm_bf16_avx2;
    default: return sb_gemm_bf16_scalar;
    }
}

sb_softmax_rows_fn sb_softmax_rows_at(int isa) {
    if (!sb_isa_supported(isa)) return NULL;
    switch (isa) {
    case SB_ISA_AVX512: return sb_softmax_rows_avx512;
    case SB_ISA_AVX2: return sb_softmax_rows_avx2;
    default: return sb_softmax_rows_scalar;
    }
}

sb_layer_norm_rows_fn sb_layer_norm_rows_at(int isa) {
    if (!sb_isa_supported(isa)) return NULL;
    return isa == SB_ISA_AVX512 ? sb_layer_norm_rows_avx512 : sb_layer_norm_rows_scalar;
}

sb_bf16_rows_fn sb_bf16_rows_at(int isa) {
    if (!sb_isa_supported(isa)) return NULL;
    return isa == SB_ISA_AVX512 && has_bf16() ? sb_bf16_rows_avx512 : sb_bf16_rows_scalar;
}

static sb_gemm_bf16_fn g_gemm;
static sb_softmax_rows_fn g_softmax;
static sb_layer_norm_rows_fn g_layer_norm;
static sb_bf16_rows_fn g_bf16_rows;

static void choose(void) {
    if (__atomic_load_n(&g_gemm, __ATOMIC_ACQUIRE)) return;
    sb_softmax_rows_fn s = NULL;
    sb_layer_norm_rows_fn l = NULL;
    sb_bf16_rows_fn c = NULL;
    sb_gemm_bf16_fn g = NULL;
    for (int isa = SB_ISA_COUNT - 1; isa >= 0 && !g; isa--) g = sb_gemm_bf16_at(isa);
    for (int isa = SB_ISA_COUNT - 1; isa >= 0 && !s; isa--) s = sb_softmax_rows_at(isa);
    for (int isa = SB_ISA_COUNT - 1; isa >= 0 && !l; isa--) l = sb_layer_norm_rows_at(isa);
    for (int isa = SB_ISA_COUNT - 1; isa >= 0 && !c; isa--) c = sb_bf16_rows_at(isa);
    __atomic_store_n(&g_softmax, s, __ATOMIC_RELEASE);
    __atomic_store_n(&g_layer_norm, l, __ATOMIC_RELEASE);
    __atomic_store_n(&g_bf16_rows, c, __ATOMIC_RELEASE);
    __atomic_store_n(&g_gemm, g, __ATOMIC_RELEASE);
}

void sb_gemm_bf16(const uint16_t *xb, int ldxb, int M, const sb_bf16_mat *w, const float *bias, int flags, float *y,
                  int ldy, uint16_t *yb, int ldyb) {
    choose();
    g_gemm(xb, ldxb, M, w, bias, flags, y, ldy, yb, ldyb);
}

void sb_softmax_rows(float *x, int M, int n, int ld, float scale, uint16_t *xb, int ldxb) {
    choose();
    g_softmax(x, M, n, ld, scale, xb, ldxb);
}

void sb_layer_norm_rows(float *x, int M, int D, const float *w, const float *b, float eps, uint16_t *xb, int ldxb) {
    choose();
    g_layer_norm(x, M, D, w, b, eps, xb, ldxb);
}

void sb_bf16_rows(const float *x, int M, int K, int ldx, uint16_t *xb, int ldxb) {
    choose();
    g_bf16_rows(x, M, K, ldx, xb, ldxb);
}

void sb_bf16_pack_rows(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    choose();
    if (g_bf16_rows == sb_bf16_rows_avx512 && ldw % 2 == 0)
        sb_bf16_pack_rows_avx512(m, data, w, ldw, n_out, n_in);
    else
        sb_bf16_pack_rows_scalar(m, data, w, ldw, n_out, n_in);
}

void sb_bf16_pack_cols(sb_bf16_mat *m, uint16_t *data, const uint16_t *w, int ldw, int n_out, int n_in) {
    choose();
    if (g_bf16_rows == sb_bf16_rows_avx512 && n_out % 16 == 0)
        sb_bf16_pack_cols_avx512(m, data, w, ldw, n_out, n_in);
    else
        sb_bf16_pack_cols_scalar(m, data, w, ldw, n_out, n_in);
}
