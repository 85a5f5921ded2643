/*
 * test_gemm.c - gemm.h's BF16 matrix products and row softmax, every path
 * against a reference, on random shapes and data.
 *
 * 1. Scalar kernel against the double product of the bf16-rounded inputs:
 *    |scalar - exact| <= 1e-6 * sum_k |x_k w_k| (f32 additions only; the
 *    products of two bf16 values are exact), and against the double product
 *    of the f32 inputs within the bf16 rounding budget: each input moves by
 *    at most 2^-8 of itself (8 significant bits, round to nearest), so each
 *    product by 2^-7 + 2^-16.
 * 2. Every SIMD level the CPU runs against the scalar kernel, same inputs:
 *    AVX2 adds in the same order and must match bit for bit; AVX-512 BF16
 *    (vdpbf16ps flushes subnormals) within 1e-6 * sum |x_k w_k|. GELU
 *    (SIMD erf by Abramowitz & Stegun) within 1e-6 * (1 + |v|) of libm's.
 *    bf16 output: within one bf16 rounding (2^-8 relative) of the f32 one.
 * 3. Row softmax: each level within 1e-6 relative of the scalar expf one.
 * 4. Packing bf16 rows and columns (attention's K_h and V_h^T): the AVX-512
 *    packers write the scalar packer's bytes, for odd and even sizes.
 * 5. LayerNorm (f32 lane sums against the scalar path's double sums):
 *    within 1e-5 * (|y| + |b| + 1); the bf16 copy it writes and the bf16 row
 *    conversion equal the scalar round-to-nearest-even bit for bit.
 *
 * Shapes: odd K (padded pair), N not a multiple of 16 (masked panel), M
 * across the row tiles and blocks; with and without bias, accumulate,
 * GELU; sentinels after every output.
 */
#include "tensor/gemm.h"
#include "tensor/kernels.h"
#include "tensor/tensor.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return test_xorshift(&rng); }
static float frand(void) { return test_frand(&rng); }

#define SENT 8
static const float sentinel = 12345.0f;

typedef struct shape {
    int M, K, N;
} shape;
static const shape shapes[] = {{1, 1, 1},     {3, 7, 5},      {8, 32, 32},    {9, 33, 37},   {70, 384, 48},
                               {65, 130, 16}, {17, 1536, 64}, {129, 64, 100}, {5, 2, 17},    {2, 385, 33}};

static void one_shape(shape s, int flags, bool with_bias) {
    const int M = s.M, K = s.K, N = s.N, ld = sb_bf16_ld(K), ldy = N + 3;
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
    uint16_t *xb = malloc(sizeof(uint16_t) * M * ld);
    const size_t ysz = (size_t)M * ldy + SENT;
    float *y0 = malloc(sizeof(float) * ysz), *y1 = malloc(sizeof(float) * ysz), *init = malloc(sizeof(float) * ysz);
    for (int i = 0; i < M * K; i++) x[i] = frand() * 2;
    for (int i = 0; i < N * K; i++) w[i] = frand() * 0.2f;
    for (int i = 0; i < N; i++) b[i] = frand();
    for (size_t i = 0; i < ysz; i++) init[i] = i >= (size_t)M * ldy ? sentinel : frand();
    sb_bf16_mat m;
    CHECK(sb_bf16_pack(&m, w, N, K) == SB_OK, "pack %dx%d", N, K);
    sb_bf16_rows(x, M, K, K, xb, ld);
    const float *bias = with_bias ? b : NULL;
    memcpy(y0, init, sizeof(float) * ysz);
    sb_gemm_bf16_scalar(xb, ld, M, &m, bias, flags, y0, ldy, NULL, 0);
    /* 1. scalar against the double products */
    int bad = 0;
    for (int r = 0; r < M; r++)
        for (int n = 0; n < N; n++) {
            double exact = bias ? bias[n] : 0, exact32 = exact, mag = fabs(exact), mag32 = 0;
            if (flags & SB_GEMM_ACC) exact += init[(size_t)r * ldy + n], exact32 = exact, mag += fabs(exact);
            for (int k = 0; k < K; k++) {
                double xr = sb_bf16_to_f32(sb_f32_to_bf16(x[r * K + k])), wr = sb_bf16_to_f32(sb_f32_to_bf16(w[n * K + k]));
                exact += xr * wr, mag += fabs(xr * wr);
                exact32 += (double)x[r * K + k] * w[n * K + k], mag32 += fabs((double)x[r * K + k] * w[n * K + k]);
            }
            double got = y0[(size_t)r * ldy + n];
            if (flags & SB_GEMM_GELU) {
                double g = 0.5 * exact * (1 + erf(exact / sqrt(2.0)));
                /* gelu' is within [-0.17, 1.13]: the sum's error passes through scaled by at most 1.13 */
                bad += fabs(got - g) > 1.13 * 1e-6 * mag + 1e-6 * (1 + fabs(g));
            } else {
                bad += fabs(got - exact) > 1e-6 * mag + 1e-30;
                bad += fabs(got - exact32) > (1.0 / 128 + 1.0 / 65536) * mag32 + 1e-6 * mag + 1e-30;
            }
        }
    CHECK(bad == 0, "scalar %dx%dx%d flags %d bias %d: %d outputs off the double reference", M, K, N, flags,
          with_bias, bad);
    for (int i = 0; i < SENT; i++) CHECK(y0[(size_t)M * ldy + i] == sentinel, "scalar wrote past the output");
    /* 2. each SIMD level against the scalar kernel */
    for (int isa = SB_ISA_AVX2; isa < SB_ISA_COUNT; isa++) {
        sb_gemm_bf16_fn f = sb_gemm_bf16_at(isa);
        if (!f) continue;
        memcpy(y1, init, sizeof(float) * ysz);
        f(xb, ld, M, &m, bias, flags, y1, ldy, NULL, 0);
        int off = 0, differ = 0;
        for (int r = 0; r < M; r++)
            for (int n = 0; n < N; n++) {
                const float a = y0[(size_t)r * ldy + n], c = y1[(size_t)r * ldy + n];
                double mag = fabs(bias ? bias[n] : 0) + ((flags & SB_GEMM_ACC) ? fabs(init[(size_t)r * ldy + n]) : 0);
                for (int k = 0; k < K; k++) mag += fabs((double)x[r * K + k] * w[n * K + k]) * 1.01;
                differ += a != c;
                if (flags & SB_GEMM_GELU)
                    off += fabs((double)a - c) > 1.13e-6 * mag + 1e-6 * (1 + fabs(a));
                else
                    off += fabs((double)a - c) > 1e-6 * mag;
            }
        CHECK(off == 0, "%s %dx%dx%d flags %d: %d outputs off the scalar kernel", isa == SB_ISA_AVX2 ? "avx2" : "avx512",
              M, K, N, flags, off);
        if (isa == SB_ISA_AVX2 && !(flags & SB_GEMM_GELU))
            CHECK(differ == 0, "avx2 %dx%dx%d: %d outputs not bit-identical to the scalar kernel", M, K, N, differ);
        for (int i = 0; i < SENT; i++) CHECK(y1[(size_t)M * ldy + i] == sentinel, "isa %d wrote past the output", isa);
        /* bf16 output rows (no accumulate) */
        if (flags & SB_GEMM_ACC) continue;
        const int ldo = sb_bf16_ld(N) + 2;
        uint16_t *yb = malloc(sizeof(uint16_t) * ((size_t)M * ldo + SENT));
        for (size_t i = 0; i < (size_t)M * ldo + SENT; i++) yb[i] = 0x7777;
        f(xb, ld, M, &m, bias, flags, NULL, 0, yb, ldo);
        int boff = 0;
        for (int r = 0; r < M; r++) {
            for (int n = 0; n < N; n++) {
                const float a = y1[(size_t)r * ldy + n], c = sb_bf16_to_f32(yb[(size_t)r * ldo + n]);
                boff += fabsf(a - c) > fabsf(a) / 256 + 1e-30f;
            }
            if (N & 1) boff += yb[(size_t)r * ldo + N] != 0;
            boff += yb[(size_t)r * ldo + sb_bf16_ld(N)] != 0x7777;
        }
        for (int i = 0; i < SENT; i++) boff += yb[(size_t)M * ldo + i] != 0x7777;
        CHECK(boff == 0, "isa %d %dx%dx%d bf16 output: %d values off (or padding/sentinel touched)", isa, M, K, N, boff);
        free(yb);
    }
    sb_bf16_mat_free(&m);
    free(x), free(w), free(b), free(xb), free(y0), free(y1), free(init);
}

static void softmax_paths(void) {
    const int ns[] = {1, 7, 16, 17, 64, 255, 256, 300};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        const int n = ns[t], M = 3, ld = n + 5;
        float *a = malloc(sizeof(float) * M * ld), *c = malloc(sizeof(float) * M * ld);
        for (int i = 0; i < M * ld; i++) a[i] = frand() * 20;
        for (int isa = SB_ISA_AVX2; isa < SB_ISA_COUNT; isa++) {
            sb_softmax_rows_fn f = sb_softmax_rows_at(isa);
            if (!f) continue;
            memcpy(c, a, sizeof(float) * M * ld);
            float *ref = malloc(sizeof(float) * M * ld);
            memcpy(ref, a, sizeof(float) * M * ld);
            sb_softmax_rows_scalar(ref, M, n, ld, 0.177f, NULL, 0);
            f(c, M, n, ld, 0.177f, NULL, 0);
            int off = 0;
            for (int r = 0; r < M; r++)
                for (int j = 0; j < ld; j++) {
                    const size_t i = (size_t)r * ld + j;
                    if (j >= n)
                        off += c[i] != a[i]; /* the row's padding is not touched */
                    else
                        off += fabsf(c[i] - ref[i]) > 1e-6f * ref[i] + 1e-30f;
                }
            CHECK(off == 0, "softmax isa %d n %d: %d values off the scalar one", isa, n, off);
            free(ref);
        }
        free(a), free(c);
    }
}

static void pack_paths(void) {
    if (!sb_bf16_rows_at(SB_ISA_AVX512) || sb_bf16_rows_at(SB_ISA_AVX512) == sb_bf16_rows_scalar) {
        SKIP("no AVX-512 BF16 here: only the scalar packer");
        return;
    }
    const int sizes[][2] = {{1, 2}, {17, 32}, {256, 32}, {255, 64}, {32, 255}, {16, 1}, {48, 256}, {64, 77}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int R = sizes[t][0], C = sizes[t][1], ld = C + 6 + (C & 1); /* even ld, a row of R x C */
        uint16_t *src = malloc(sizeof(uint16_t) * (size_t)(R + 1) * ld);
        for (int i = 0; i < (R + 1) * ld; i++) src[i] = (uint16_t)next();
        const size_t sz = sb_bf16_packed_size(R, C) > sb_bf16_packed_size(C, R) ? sb_bf16_packed_size(R, C)
                                                                                   : sb_bf16_packed_size(C, R);
        uint16_t *a = calloc(sz, 2), *b = calloc(sz, 2);
        sb_bf16_mat ma, mb;
        memset(a, 0x55, sz * 2), memset(b, 0x55, sz * 2);
        sb_bf16_pack_rows_scalar(&ma, a, src, ld, R, C);
        sb_bf16_pack_rows_avx512(&mb, b, src, ld, R, C);
        CHECK(!memcmp(a, b, sz * 2) && ma.k2 == mb.k2 && ma.n_panel == mb.n_panel, "pack_rows %dx%d differs", R, C);
        if (C % 16 == 0) { /* pack_cols: W (C, R) = src^T */
            memset(a, 0x55, sz * 2), memset(b, 0x55, sz * 2);
            sb_bf16_pack_cols_scalar(&ma, a, src, ld, C, R);
            sb_bf16_pack_cols_avx512(&mb, b, src, ld, C, R);
            CHECK(!memcmp(a, b, sz * 2) && ma.k2 == mb.k2, "pack_cols %dx%d differs", C, R);
        }
        free(src), free(a), free(b);
    }
}

static void layer_norm_paths(void) {
    const int Ds[] = {1, 15, 16, 37, 384, 768};
    for (size_t t = 0; t < sizeof Ds / sizeof Ds[0]; t++) {
        const int D = Ds[t], M = 5, ld = sb_bf16_ld(D);
        float *x = malloc(sizeof(float) * M * D), *ref = malloc(sizeof(float) * M * D), *got = malloc(sizeof(float) * M * D);
        float *w = malloc(sizeof(float) * D), *b = malloc(sizeof(float) * D);
        uint16_t *rb = malloc(sizeof(uint16_t) * (M * ld + SENT)), *gb = malloc(sizeof(uint16_t) * (M * ld + SENT));
        for (int i = 0; i < M * D; i++) x[i] = frand() * 3 + 0.5f;
        for (int i = 0; i < D; i++) w[i] = frand(), b[i] = frand();
        memcpy(ref, x, sizeof(float) * M * D);
        for (int i = 0; i < M * ld + SENT; i++) rb[i] = gb[i] = 0x7777;
        sb_layer_norm_rows_scalar(ref, M, D, w, b, 1e-12f, rb, ld);
        for (int isa = SB_ISA_AVX2; isa < SB_ISA_COUNT; isa++) {
            sb_layer_norm_rows_fn f = sb_layer_norm_rows_at(isa);
            sb_bf16_rows_fn c = sb_bf16_rows_at(isa);
            if (!f || !c) continue;
            memcpy(got, x, sizeof(float) * M * D);
            f(got, M, D, w, b, 1e-12f, NULL, 0);
            int off = 0, boff = 0;
            for (int i = 0; i < M * D; i++) off += fabsf(got[i] - ref[i]) > 1e-5f * (fabsf(ref[i]) + fabsf(b[i % D]) + 1);
            CHECK(off == 0, "layer norm isa %d D %d: %d values off the scalar one", isa, D, off);
            c(ref, M, D, D, gb, ld); /* the scalar LN's output, converted at this level */
            for (int i = 0; i < M * ld + SENT; i++) boff += gb[i] != rb[i];
            CHECK(boff == 0, "bf16 rows isa %d D %d: %d values differ from the scalar conversion", isa, D, boff);
        }
        free(x), free(ref), free(got), free(w), free(b), free(rb), free(gb);
    }
}

int main(void) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        one_shape(shapes[i], 0, true);
        one_shape(shapes[i], 0, false);
        one_shape(shapes[i], SB_GEMM_ACC, true);
        one_shape(shapes[i], SB_GEMM_GELU, true);
    }
    for (int t = 0; t < 20; t++) { /* random shapes */
        shape s = {1 + (int)(next() % 40), 1 + (int)(next() % 200), 1 + (int)(next() % 80)};
        one_shape(s, (int)(next() % 3), next() & 1);
    }
    softmax_paths();
    layer_norm_paths();
    pack_paths();
    fprintf(stderr, "gemm levels run here: scalar%s%s\n", sb_gemm_bf16_at(SB_ISA_AVX2) ? " avx2" : "",
            sb_gemm_bf16_at(SB_ISA_AVX512) ? " avx512-bf16" : "");
    return TEST_END();
}
