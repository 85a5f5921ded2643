/*
 * matvec.c - scalar reference kernels of matvec.h: dequantize a chunk of
 * whole blocks into a stack buffer, dot it with the matching slice of x.
 */
#include <cpuid.h>
#include "tensor/matvec.h"
#include "tensor/qgemm.h"
#include "tensor/kernels.h"
#include "tensor/nf4.h"
#include "tensor/q4r8.h"

#include <cblas.h>
#include <stdlib.h>

#include <string.h>

#define CHUNK 256 /* elements dequantized at a time; a multiple of every block size */

/* Four partial sums: fewer dependent adds, and slightly better accuracy.
 * n4 is a multiple of 4. */
static inline float dot4(const float *a, const float *b, int64_t n4) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = 0; i < n4; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    return (s0 + s1) + (s2 + s3);
}

float sb_vec_dot_f32(const float *a, const float *b, int64_t n) {
    int64_t n4 = n & ~(int64_t)3;
    float s = dot4(a, b, n4);
    for (int64_t i = n4; i < n; i++) s += a[i] * b[i];
    return s;
}

static size_t row_bytes(const sb_tensor *w) {
    size_t n = 0;
    sb_dtype_row_bytes(w->type, w->ne[0], &n);
    return n;
}

void sb_get_row(const sb_tensor *w, int64_t r, float *out) {
    if (w->type == SB_NF4) {
        sb_nf4_get_rows(w, r, r + 1, out);
        return;
    }
    if (w->type == SB_Q4_0_R8) {
        sb_q4r8_get_row(w->data, w->ne[0], r, out);
        return;
    }
    const sb_type_traits *t = sb_type_traits_get(w->type);
    t->to_float((const uint8_t *)w->data + (size_t)r * row_bytes(w), out, w->ne[0]);
}

/* ---- run-time kernel choice ---- */

static int g_isa = -1; /* best SB_ISA_* this CPU runs, capped by SABIO_KERNELS */

/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports
 * does not know the name. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static int isa(void) {
    int v = __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
    if (v >= 0) return v;
    const char *force = getenv("SABIO_KERNELS");
    __builtin_cpu_init();
    v = SB_ISA_SCALAR;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c()) {
        v = SB_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vnni"))
            v = SB_ISA_AVX512;
    }
    if (force && !strcmp(force, "scalar")) v = SB_ISA_SCALAR;
    if (force && !strcmp(force, "avx2") && v > SB_ISA_AVX2) v = SB_ISA_AVX2;
    __atomic_store_n(&g_isa, v, __ATOMIC_RELEASE);
    return v;
}

static const char *const isa_names[SB_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *sb_kernels_isa(void) { return isa_names[isa()]; }

bool sb_isa_supported(int level) { return level >= 0 && level <= isa(); }

sb_row_dot_fn sb_row_dot_at(int type, int level) {
    if (level == SB_ISA_AVX512) {
        switch (type) {
        case SB_F32: return sb_dot_f32_row_avx512;
        case SB_F16: return sb_dot_f16_avx512;
        case SB_BF16: return sb_dot_bf16_avx512;
        case SB_Q8_0: return sb_dot_q8_0_avx512;
        case SB_Q6_K: return sb_dot_q6_k_avx512;
        default: return NULL;
        }
    }
    if (level != SB_ISA_AVX2) return NULL;
    switch (type) {
    case SB_F32: return sb_dot_f32_avx2;
    case SB_F16: return sb_dot_f16_avx2;
    case SB_BF16: return sb_dot_bf16_avx2;
    case SB_Q8_0: return sb_dot_q8_0_avx2;
    case SB_Q4_0: return sb_dot_q4_0_avx2;
    case SB_Q4_1: return sb_dot_q4_1_avx2;
    case SB_Q4_K: return sb_dot_q4_k_avx2;
    case SB_Q6_K: return sb_dot_q6_k_avx2;
    default: return NULL;
    }
}

sb_row_dot_fn sb_row_dot_for(int type) {
    sb_row_dot_fn f = NULL;
    for (int l = isa(); l >= SB_ISA_AVX2 && !f; l--) f = sb_row_dot_at(type, l);
    return f;
}

/* ---- quantized activations ---- */

/* One row per weight type with an integer kernel: the activation blocks it
 * reads and its kernel per instruction set (NULL: use a lower level). */
typedef struct qdot_row {
    int type, act_type;
    sb_qdot_fn fn[SB_ISA_COUNT];
} qdot_row;

static const qdot_row qdot_table[] = {
    {SB_Q8_0, SB_Q8_0, {sb_qdot_q8_0_scalar, sb_qdot_q8_0_avx2, sb_qdot_q8_0_avx512}},
    {SB_Q4_0, SB_Q8_0, {sb_qdot_q4_0_scalar, sb_qdot_q4_0_avx2, sb_qdot_q4_0_avx512}},
    {SB_Q4_1, SB_Q8_0, {sb_qdot_q4_1_scalar, sb_qdot_q4_1_avx2, sb_qdot_q4_1_avx512}},
    {SB_Q5_0, SB_Q8_0, {sb_qdot_q5_0_scalar, NULL, NULL}},
    {SB_Q5_1, SB_Q8_0, {sb_qdot_q5_1_scalar, NULL, NULL}},
    {SB_Q4_K, SB_Q8_K, {sb_qdot_q4_k_scalar, sb_qdot_q4_k_avx2, sb_qdot_q4_k_avx512}},
    {SB_Q5_K, SB_Q8_K, {sb_qdot_q5_k_scalar, sb_qdot_q5_k_avx2, sb_qdot_q5_k_avx512}},
    {SB_Q6_K, SB_Q8_K, {sb_qdot_q6_k_scalar, sb_qdot_q6_k_avx2, sb_qdot_q6_k_avx512}},
};

static const qdot_row *qdot_row_of(int type) {
    for (size_t i = 0; i < sizeof qdot_table / sizeof qdot_table[0]; i++)
        if (qdot_table[i].type == type) return &qdot_table[i];
    return NULL;
}

sb_qdot_fn sb_qdot_at(int type, int level) {
    const qdot_row *r = qdot_row_of(type);
    return r && level >= 0 && level < SB_ISA_COUNT ? r->fn[level] : NULL;
}

/* the best kernel for this CPU, chosen once per type */
static sb_qdot_fn g_best[SB_DTYPE_COUNT];
static int g_best_ready;

static sb_qdot_fn qdot_best(int type) {
    if (!__atomic_load_n(&g_best_ready, __ATOMIC_ACQUIRE)) {
        for (int t = 0; t < SB_DTYPE_COUNT; t++) {
            sb_qdot_fn f = NULL;
            for (int l = isa(); l >= 0 && !f; l--) f = sb_qdot_at(t, l);
            g_best[t] = f; /* every thread writes the same values */
        }
        __atomic_store_n(&g_best_ready, 1, __ATOMIC_RELEASE);
    }
    return type >= 0 && type < SB_DTYPE_COUNT ? g_best[type] : NULL;
}

/* the best level of the repacked Q4_0 kernel (q4r8.h) */
static int q4r8_level(void) { return isa() >= SB_ISA_AVX2 ? SB_ISA_AVX2 : SB_ISA_SCALAR; }

int sb_act_type(int wtype) {
    if (wtype == SB_Q4_0_R8) return SB_Q8_0;
    const qdot_row *r = qdot_row_of(wtype);
    return r ? r->act_type : SB_F32;
}

size_t sb_act_bytes(int act_type, int64_t n) {
    if (act_type == SB_Q8_0) return (size_t)(n / 32) * sizeof(sb_q8a);
    if (act_type == SB_Q8_K) return (size_t)(n / 256) * sizeof(sb_q8k);
    return (size_t)n * sizeof(float);
}

void sb_act_quantize(int act_type, const float *x, void *xq, int64_t n) {
    const bool simd = isa() >= SB_ISA_AVX2;
    if (act_type == SB_Q8_0) (simd ? sb_quantize_q8a_avx2 : sb_quantize_q8a)(x, xq, n);
    else if (act_type == SB_Q8_K) (simd ? sb_quantize_q8k_avx2 : sb_quantize_q8k)(x, xq, n);
    else memcpy(xq, x, (size_t)n * sizeof(float));
}

sb_qrows_fn sb_qrows_at(int type, int level) {
    if (level == SB_ISA_AVX512) {
        if (type == SB_Q4_0 && __builtin_cpu_supports("gfni")) return sb_qrows_q4_0_avx512;
        if (type == SB_Q8_0) return sb_qrows_q8_0_avx512;
        return NULL;
    }
    if (level != SB_ISA_AVX2) return NULL;
    switch (type) {
    case SB_Q4_0: return sb_qrows_q4_0_avx2;
    case SB_Q4_1: return sb_qrows_q4_1_avx2;
    case SB_Q8_0: return sb_qrows_q8_0_avx2;
    case SB_Q4_K: return sb_qrows_q4_k_avx2;
    case SB_Q5_K: return sb_qrows_q5_k_avx2;
    case SB_Q6_K: return sb_qrows_q6_k_avx2;
    default: return NULL;
    }
}

/* the several-rows kernel matching the best row kernel (the same level), if
 * there is one */
static sb_qrows_fn qrows_best(int type, sb_qdot_fn dot) {
    for (int l = isa(); l > SB_ISA_SCALAR; l--)
        if (dot == sb_qdot_at(type, l)) return sb_qrows_at(type, l);
    return NULL;
}

void sb_matvec_q(const sb_tensor *w, const void *xq, float *y, int64_t row_begin, int64_t row_end) {
    const int64_t n = w->ne[0];
    if (w->type == SB_Q4_0_R8) {
        sb_q4r8_matmul(w->data, n, xq, 0, 1, y, 0, row_begin, row_end, q4r8_level());
        return;
    }
    const size_t rb = row_bytes(w);
    sb_qdot_fn dot = qdot_best(w->type);
    if (!dot) { /* no integer kernel: xq holds the floats */
        sb_matvec(w, xq, y, row_begin, row_end);
        return;
    }
    sb_qrows_fn rows = qrows_best(w->type, dot);
    if (rows) {
        if (row_end > row_begin)
            rows((const uint8_t *)w->data + (size_t)row_begin * rb, rb, xq, n, y + row_begin, row_end - row_begin);
        return;
    }
    for (int64_t r = row_begin; r < row_end; r++) y[r] = dot((const uint8_t *)w->data + (size_t)r * rb, xq, n);
}

/* ---- two-level activations ---- */

size_t sb_act2_bytes(int wtype, int64_t n) {
    if (wtype == SB_Q6_K) return (size_t)(n / 256) * 2 * sizeof(sb_q8k);
    if (wtype == SB_Q8_0) return (size_t)(n / 32) * 2 * sizeof(sb_q8a);
    return 0;
}

void sb_act2_quantize(int wtype, const float *x, void *xq, int64_t n) {
    const bool simd = isa() >= SB_ISA_AVX2;
    if (wtype == SB_Q6_K) (simd ? sb_quantize_q8k2_avx2 : sb_quantize_q8k2)(x, xq, n);
    else if (wtype == SB_Q8_0) (simd ? sb_quantize_q8a2_avx2 : sb_quantize_q8a2)(x, xq, n);
}

void sb_matvec_q2(const sb_tensor *w, const void *xq, float *y, int64_t row_begin, int64_t row_end) {
    const int64_t n = w->ne[0];
    const size_t rb = row_bytes(w);
    const bool simd = isa() >= SB_ISA_AVX2;
    sb_qrows_fn rows = w->type == SB_Q6_K ? sb_qrows_q6_k2_avx2 : w->type == SB_Q8_0 ? sb_qrows_q8_0_2_avx2 : NULL;
    sb_qdot_fn dot = w->type == SB_Q6_K ? sb_qdot_q6_k2_scalar : w->type == SB_Q8_0 ? sb_qdot_q8_0_2_scalar : NULL;
    if (row_end <= row_begin || !dot) return;
    if (simd) rows((const uint8_t *)w->data + (size_t)row_begin * rb, rb, xq, n, y + row_begin, row_end - row_begin);
    else
        for (int64_t r = row_begin; r < row_end; r++) y[r] = dot((const uint8_t *)w->data + (size_t)r * rb, xq, n);
}

void sb_matvec(const sb_tensor *w, const float *x, float *y, int64_t row_begin, int64_t row_end) {
    if (w->type == SB_NF4) {
        sb_nf4_matvec(w, x, y, row_begin, row_end);
        return;
    }
    const int64_t n = w->ne[0];
    if (w->type == SB_Q4_0_R8) { /* each row back in Q4_0 bytes, then Q4_0's float path: the same sums */
        uint8_t row[SB_Q4R8_MAX_IN / 32 * 18];
        sb_tensor q = *w;
        q.type = SB_Q4_0, q.ne[1] = 1, q.data = row, q.nbytes = (size_t)(n / 32) * 18;
        for (int64_t r = row_begin; r < row_end; r++) {
            sb_q4r8_row_bytes(w->data, n, r, row);
            sb_matvec(&q, x, y + r, 0, 1);
        }
        return;
    }
    const size_t rb = row_bytes(w);
    sb_row_dot_fn fast = sb_row_dot_for(w->type);
    if (fast) {
        for (int64_t r = row_begin; r < row_end; r++) y[r] = fast((const uint8_t *)w->data + (size_t)r * rb, x, n);
        return;
    }
    if (w->type == SB_F32) {
        for (int64_t r = row_begin; r < row_end; r++)
            y[r] = sb_vec_dot_f32((const float *)((const uint8_t *)w->data + (size_t)r * rb), x, n);
        return;
    }
    const sb_type_traits *t = sb_type_traits_get(w->type);
    const size_t chunk_bytes = (size_t)(CHUNK / t->blck_size) * t->type_size;
    float buf[CHUNK];
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
        float sum = 0;
        int64_t i = 0;
        for (; i + CHUNK <= n; i += CHUNK, row += chunk_bytes) {
            t->to_float(row, buf, CHUNK);
            sum += dot4(buf, x + i, CHUNK);
        }
        if (i < n) {
            t->to_float(row, buf, n - i);
            sum += sb_vec_dot_f32(buf, x + i, n - i);
        }
        y[r] = sum;
    }
}

void sb_matmul_q(const sb_tensor *w, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy, int64_t r0,
                 int64_t r1) {
    const int64_t n_in = w->ne[0];
    const size_t rb = row_bytes(w);
    if (w->type == SB_Q4_0_R8) {
        sb_q4r8_matmul(w->data, n_in, xq, xq_stride, n, y, ldy, r0, r1, q4r8_level());
        return;
    }
    sb_qdot_fn dot = qdot_best(w->type);
    if (isa() >= SB_ISA_AVX512 && dot == sb_qdot_at(w->type, SB_ISA_AVX512) &&
        sb_gemm_q_avx512(w->type, w, xq, xq_stride, n, y, ldy, r0, r1))
        return;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
        for (int b = 0; b < n; b++) {
            const void *xb = (const uint8_t *)xq + (size_t)b * xq_stride;
            y[(size_t)b * (size_t)ldy + (size_t)r] =
                dot ? dot(row, xb, n_in) : sb_vec_dot_f32((const float *)(const void *)row, xb, n_in);
        }
    }
}

bool sb_matmul_q_tiled(int type) { return isa() >= SB_ISA_AVX512 && (type == SB_Q8_0 || type == SB_Q4_0 || type == SB_Q4_1); }

void sb_matmul_rows(const sb_tensor *w, const float *x, int n, float *y, int64_t ldy, float *scratch, int64_t r0,
                    int64_t r1) {
    const int64_t n_in = w->ne[0];
    if (r1 <= r0) return;
    if (w->type == SB_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(r1 - r0), (int)n_in, 1.0f, x, (int)n_in,
                    (const float *)w->data + (size_t)r0 * (size_t)n_in, (int)n_in, 0.0f, y + r0, (int)ldy);
        return;
    }
    for (int64_t t0 = r0; t0 < r1; t0 += SB_MATMUL_TILE) {
        int64_t rows = r1 - t0 < SB_MATMUL_TILE ? r1 - t0 : SB_MATMUL_TILE;
        if (w->type == SB_NF4) sb_nf4_get_rows(w, t0, t0 + rows, scratch);
        else
            for (int64_t r = 0; r < rows; r++) sb_get_row(w, t0 + r, scratch + r * n_in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, (int)n_in, 1.0f, x, (int)n_in, scratch,
                    (int)n_in, 0.0f, y + t0, (int)ldy);
    }
}

void sb_matmul(const sb_tensor *w, const float *x, int n, float *y, int64_t ldy, float *scratch) {
    sb_matmul_rows(w, x, n, y, ldy, scratch, 0, w->ne[1]);
}

extern void openblas_set_num_threads(int);

void sb_blas_single_thread(void) { openblas_set_num_threads(1); }
