/*
 * test_kernels.c - every kernel path against a reference, on random data.
 *
 * 1. Float row dots (kernels_avx2.c, kernels_avx512.c sb_dot_*), at every
 *    level the CPU runs: the same products as dequantize-then-dot, added in
 *    another order, so against the double dot of the dequantized row:
 *    |fast - exact| <= 1e-5 * sum |w_i x_i|.
 *
 * 2. Quantized activations (kernels_scalar.c, the definition): x is rounded
 *    to 8-bit blocks, x^_i = dx_b * q_i with dx_b = max_b |x| / 127, so
 *    |x_i - x^_i| <= dx_b / 2 and the dot of the dequantized weights with x
 *    can move by at most  E = sum_b dx_b / 2 * sum_{i in b} |w_i|.
 *    The scalar kernel must be within 1.001 E + 1e-5 sum |w_i x_i| of the
 *    exact double dot of w and the float x (the second term: f32 rounding),
 *    and within 1e-5 sum |w_i x^_i| of the double dot of w and x^ (it then
 *    checks the integer arithmetic, not only the error budget).
 *
 * 3. Every SIMD level the CPU runs (AVX2, AVX-512 VNNI) against the scalar
 *    quantized kernel: the integer block sums are the same, only the float
 *    additions across blocks differ: |simd - scalar| <= 1e-5 * sum_i
 *    3 wmax_b |x^_i| (wmax_b the block's largest |w|; the 3 covers the
 *    scale and min terms of Q4_1/K-quants, each at most 2 wmax_b). Q4_K and
 *    Q6_K sum super-blocks in integers and must match bit for bit.
 *
 * 4. Two-level activations (the logits' path: sb_quantize_q8a2 / q8k2,
 *    sb_matvec_q2), Q8_0 and Q6_K. The quantizer against its definition:
 *    block y[2i] is the one-level quantizer's (step d1), y[2i+1] has d2 =
 *    d1 / 254 and, from the f32 error analysis of r = x - d1 q1 and of the
 *    rounding, |x_i - (d1 q1_i + d2 q2_i)| <= 1.0001 d2 / 2 + 2^-23 (|x_i| +
 *    d1) =: h_i, and the AVX2 bytes equal the scalar ones. The scalar
 *    kernel within (nb + 4) 2^-24 A of the double dot with x^ = d1 q1 +
 *    d2 q2 (A = sum |w_i| (d1 |q1_i| + d2 |q2_i|), nb blocks: f32 rounding
 *    of the block products and their sum), so within E2 + (nb + 4) 2^-24 A
 *    of the exact dot with the float x (E2 = sum |w_i| h_i, about 1/254 of
 *    the one-level E), and within that plus 1e-5 sum |w_i x_i| (test 1's
 *    bound) of sb_matvec, the float path it replaces. AVX2 against scalar:
 *    Q6_K bit for bit, Q8_0 within 2 (nb + 4) 2^-24 A; several-rows kernel
 *    and sb_matvec_q2 equal to the row kernel.
 *
 * Weights come both from the type's quantizer (realistic) and from random
 * bytes with sane f16 scales (every bit pattern: Q8_0's -128, all nibbles).
 * Odd row counts, odd block counts (the AVX-512 pair loop's tail), and
 * sentinels around the outputs of sb_matvec / sb_matvec_q.
 */
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { return test_xorshift(&rng); }
static float frand(void) { return test_frand(&rng); }

static void put16(uint8_t *p, float f) {
    uint16_t h = sb_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* offsets of the f16 scale fields in a block (-1 ends) */
static void scale_fields(int type, int off[3]) {
    off[0] = off[1] = off[2] = -1;
    switch (type) {
    case SB_Q8_0: case SB_Q4_0: case SB_Q5_0: off[0] = 0; break;
    case SB_Q4_1: case SB_Q5_1: case SB_Q4_K: case SB_Q5_K: off[0] = 0, off[1] = 2; break;
    case SB_Q6_K: off[0] = 208; break;
    }
}

/* rows weight rows of type (row bytes rb) into q: src 0 from the type's
 * quantizer of random floats (w, n * rows), 1 random bytes with sane f16 scales */
static void weights(int type, int src, float *w, uint8_t *q, size_t rb, int64_t n, int64_t rows) {
    const sb_type_traits *t = sb_type_traits_get(type);
    if (src == 0) {
        for (int64_t i = 0; i < n * rows; i++) w[i] = frand() * (1 + (i % 7)) + (i % 97 == 0 ? 20 : 0);
        for (int64_t r = 0; r < rows; r++) t->from_float(w + r * n, q + r * rb, n);
        return;
    }
    int off[3];
    scale_fields(type, off);
    for (size_t i = 0; i < rb * rows; i++) q[i] = (uint8_t)next();
    for (size_t b0 = 0; b0 < rb * rows; b0 += t->type_size)
        for (int f = 0; f < 3 && off[f] >= 0; f++) put16(q + b0 + off[f], 0.001f + 0.01f * (float)fabs(frand()));
}

static const int64_t lens[] = {37, 32, 96, 256, 576, 768, 1536, 3072};
#define ROWS 7

static void float_kernels(void) {
    const int types[] = {SB_F32, SB_F16, SB_BF16, SB_Q8_0, SB_Q4_0, SB_Q4_1, SB_Q4_K, SB_Q6_K};
    int tested = 0, levels_run[SB_ISA_COUNT] = {0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int type = types[k];
        const sb_type_traits *t = sb_type_traits_get(type);
        sb_row_dot_fn fast = sb_row_dot_for(type);
        if (!fast) {
            SKIP("%s: no SIMD float kernel on this CPU (%s)", t->name, sb_kernels_isa());
            continue;
        }
        tested++;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t n = lens[li], rows = ROWS;
            if (n % t->blck_size) continue;
            size_t rb;
            sb_dtype_row_bytes(type, n, &rb);
            float *w = malloc(sizeof(float) * n * rows), *x = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
            uint8_t *q = malloc(rb * rows);
            for (int64_t i = 0; i < n * rows; i++) w[i] = frand() * (1 + (i % 7));
            for (int64_t i = 0; i < n; i++) x[i] = frand() * 3;
            for (int64_t r = 0; r < rows; r++) t->from_float(w + r * n, q + r * rb, n);
            /* every level this CPU runs that has a kernel for the type */
            for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++) {
                sb_row_dot_fn f = sb_row_dot_at(type, l);
                if (!f || !sb_isa_supported(l)) continue;
                levels_run[l]++;
                double worst = 0;
                for (int64_t r = 0; r < rows; r++) {
                    t->to_float(q + r * rb, deq, n);
                    double exact = 0, mag = 0;
                    for (int64_t i = 0; i < n; i++) exact += (double)deq[i] * x[i], mag += fabs((double)deq[i] * x[i]);
                    double err = fabs(f(q + r * rb, x, n) - exact) / (mag + 1e-30);
                    if (err > worst) worst = err;
                }
                CHECK(worst <= 1e-5, "float %s n=%lld isa %d: relative error %.3g", t->name, (long long)n, l, worst);
            }
            float y[ROWS + 2];
            for (int i = 0; i < ROWS + 2; i++) y[i] = 12345.0f;
            sb_tensor tw = {.name = "w", .type = type, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = q, .nbytes = rb * rows};
            sb_matvec(&tw, x, y + 1, 1, rows - 1);
            CHECK(y[0] == 12345.0f && y[1] == 12345.0f && y[rows] == 12345.0f && y[rows + 1] == 12345.0f,
                  "float %s: sb_matvec wrote outside rows 1..%lld", t->name, (long long)rows - 2);
            CHECK(y[2] == fast(q + rb, x, n), "float %s: sb_matvec uses the kernel", t->name);
            free(w), free(x), free(deq), free(q);
        }
    }
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(tested == 8 && levels_run[SB_ISA_AVX2] > 0,
              "this CPU has AVX2+FMA: all eight float kernels must be tested (%d)", tested);
    if (!getenv("SABIO_KERNELS") && sb_isa_supported(SB_ISA_AVX512))
        CHECK(levels_run[SB_ISA_AVX512] >= 5 * 6, "AVX-512 float kernels (F32, F16, BF16, Q8_0, Q6_K) were not all run (%d)",
              levels_run[SB_ISA_AVX512]);
}

/* the dequantized activations x^ and the per-element half step dx_b / 2 */
static void act_dequant(int act, const void *xq, int64_t n, float *xh, float *half) {
    if (act == SB_Q8_0) {
        const sb_q8a *b = xq;
        for (int64_t i = 0; i < n; i++) xh[i] = b[i / 32].d * b[i / 32].qs[i % 32], half[i] = b[i / 32].d / 2;
    } else {
        const sb_q8k *b = xq;
        for (int64_t i = 0; i < n; i++) xh[i] = b[i / 256].d * b[i / 256].qs[i % 256], half[i] = b[i / 256].d / 2;
    }
}

static void quant_kernels(void) {
    const int types[] = {SB_Q8_0, SB_Q4_0, SB_Q4_1, SB_Q5_0, SB_Q5_1, SB_Q4_K, SB_Q5_K, SB_Q6_K};
    int levels_run[SB_ISA_COUNT] = {0}, qrows_run[SB_ISA_COUNT] = {0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const int type = types[k], act = sb_act_type(type);
        const sb_type_traits *t = sb_type_traits_get(type);
        CHECK(act == (t->blck_size == 32 ? SB_Q8_0 : SB_Q8_K), "%s: activation type %d", t->name, act);
        CHECK(sb_qdot_at(type, SB_ISA_SCALAR) != NULL, "%s: no scalar quantized kernel", t->name);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li], rows = ROWS;
            if (n % t->blck_size) continue;
            size_t rb;
            sb_dtype_row_bytes(type, n, &rb);
            float *w = malloc(sizeof(float) * n * rows), *x = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
            float *xh = malloc(sizeof(float) * n), *half = malloc(sizeof(float) * n);
            const size_t xbytes = sb_act_bytes(act, n);
            uint8_t *xq = malloc(xbytes + 64), *q = malloc(rb * rows);
            memset(xq + xbytes, 0xa5, 64);
            for (int src = 0; src < 2; src++) {
                weights(type, src, w, q, rb, n, rows);
                /* activations with a few outliers, as real hidden states have */
                for (int64_t i = 0; i < n; i++) x[i] = frand() * 3 + (i % 61 == 0 ? 40 * frand() : 0);
                sb_act_quantize(act, x, xq, n);
                CHECK(xq[xbytes] == 0xa5 && xq[xbytes + 63] == 0xa5, "%s n=%lld: sb_act_quantize overran",
                      t->name, (long long)n);
                act_dequant(act, xq, n, xh, half);
                if (sb_isa_supported(SB_ISA_AVX2)) { /* the AVX2 quantizer writes the scalar one's bytes */
                    uint8_t *ref = malloc(xbytes);
                    if (act == SB_Q8_0) sb_quantize_q8a(x, (sb_q8a *)(void *)ref, n);
                    else sb_quantize_q8k(x, (sb_q8k *)(void *)ref, n);
                    CHECK(!memcmp(ref, xq, xbytes), "%s n=%lld: AVX2 activation quantizer differs from the scalar one",
                          t->name, (long long)n);
                    free(ref);
                }
                double worst_q = 0, worst_int = 0, worst_simd[SB_ISA_COUNT] = {0};
                sb_qdot_fn scalar = sb_qdot_at(type, SB_ISA_SCALAR);
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t *row = q + r * rb;
                    t->to_float(row, deq, n);
                    double exact = 0, mag = 0, budget = 0, exact_h = 0, mag_h = 0, mag_s = 0;
                    for (int64_t i = 0; i < n; i++) {
                        exact += (double)deq[i] * x[i], mag += fabs((double)deq[i] * x[i]);
                        budget += fabs((double)deq[i]) * half[i];
                        exact_h += (double)deq[i] * xh[i], mag_h += fabs((double)deq[i] * xh[i]);
                    }
                    for (int64_t b0 = 0; b0 < n; b0 += t->blck_size) {
                        double wmax = 0;
                        for (int64_t i = b0; i < b0 + t->blck_size; i++) wmax = fmax(wmax, fabs((double)deq[i]));
                        for (int64_t i = b0; i < b0 + t->blck_size; i++) mag_s += 3 * wmax * fabs((double)xh[i]);
                    }
                    const float s = scalar(row, xq, n);
                    double e = fabs(s - exact) / (1.001 * budget + 1e-5 * mag + 1e-30);
                    if (e > worst_q) worst_q = e;
                    e = fabs(s - exact_h) / (mag_s + 1e-30);
                    if (e > worst_int) worst_int = e;
                    for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++) {
                        sb_qdot_fn f = sb_qdot_at(type, l);
                        if (!f || !sb_isa_supported(l)) continue;
                        levels_run[l]++;
                        const float v = f(row, xq, n);
                        e = fabs(v - s) / (mag_s + 1e-30);
                        if ((type == SB_Q4_K || type == SB_Q6_K) && v != s) e = 1; /* must be bit-identical */
                        if (e > worst_simd[l]) worst_simd[l] = e;
                    }
                }
                const char *what = src ? "random bytes" : "quantized";
                CHECK(worst_q <= 1, "%s n=%lld (%s): scalar quantized dot exceeds its error budget by x%.3g",
                      t->name, (long long)n, what, worst_q);
                CHECK(worst_int <= 1e-5, "%s n=%lld (%s): scalar vs exact dot with the rounded x: %.3g", t->name,
                      (long long)n, what, worst_int);
                for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++)
                    CHECK(worst_simd[l] <= 1e-5, "%s n=%lld (%s): isa %d vs scalar: %.3g", t->name,
                          (long long)n, what, l, worst_simd[l]);
                /* sb_matvec_q: rows 1..rows-2 only, each the best kernel's value */
                float y[ROWS + 2];
                for (int i = 0; i < ROWS + 2; i++) y[i] = 12345.0f;
                sb_tensor tw = {.name = "w", .type = type, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = q, .nbytes = rb * rows};
                sb_matvec_q(&tw, xq, y + 1, 1, rows - 1);
                CHECK(y[0] == 12345.0f && y[1] == 12345.0f && y[rows] == 12345.0f && y[rows + 1] == 12345.0f,
                      "%s: sb_matvec_q wrote outside rows 1..%lld", t->name, (long long)rows - 2);
                sb_qdot_fn best = NULL;
                for (int l = SB_ISA_COUNT - 1; l >= 0 && !best; l--)
                    if (sb_isa_supported(l)) best = sb_qdot_at(type, l);
                bool same = true;
                for (int64_t r = 1; r < rows - 1; r++) same &= y[r + 1] == best(q + r * rb, xq, n);
                CHECK(same, "%s n=%lld: sb_matvec_q differs from the best row kernel", t->name, (long long)n);
                /* the several-rows kernels at every level this CPU runs: the
                 * rows above twice over, 2 * rows - 1 of them (three groups
                 * of 4 and one left over), each equal to the row kernel */
                for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++) {
                    sb_qrows_fn qr = sb_qrows_at(type, l);
                    sb_qdot_fn f = sb_qdot_at(type, l);
                    if (!qr || !f || !sb_isa_supported(l)) continue;
                    const int64_t nr = 2 * rows - 1;
                    uint8_t *q2 = malloc(rb * 2 * rows);
                    float *y2 = malloc(sizeof(float) * (size_t)(nr + 1));
                    memcpy(q2, q, rb * rows), memcpy(q2 + rb * rows, q, rb * rows);
                    y2[nr] = 12345.0f;
                    qr(q2, rb, xq, n, y2, nr);
                    bool ok = y2[nr] == 12345.0f;
                    for (int64_t r = 0; r < nr; r++) ok &= y2[r] == f(q2 + r * rb, xq, n);
                    CHECK(ok, "%s n=%lld: several-rows kernel at isa %d differs from its row kernel or overran",
                          t->name, (long long)n, l);
                    qrows_run[l]++;
                    free(q2), free(y2);
                }
                /* sb_matmul_q: 9 activation rows (the same quantized x, scaled
                 * copies: two full tiles of 4 and one left over), columns
                 * 2..rows-2 of a (9, rows + 1) output */
                {
                    const int nb = 9;
                    const int64_t ldy = rows + 1;
                    uint8_t *xs = malloc(xbytes * nb);
                    float *yy = malloc(sizeof(float) * (size_t)(nb * ldy)), *x2 = malloc(sizeof(float) * n);
                    for (int b = 0; b < nb; b++) {
                        for (int64_t i = 0; i < n; i++) x2[i] = x[i] * (float)(b + 1) - (float)b;
                        sb_act_quantize(act, x2, xs + (size_t)b * xbytes, n);
                    }
                    for (int64_t i = 0; i < nb * ldy; i++) yy[i] = 12345.0f;
                    sb_matmul_q(&tw, xs, xbytes, nb, yy, ldy, 2, rows - 1);
                    bool ok = true;
                    for (int b = 0; b < nb; b++)
                        for (int64_t r = 0; r < ldy; r++) {
                            float want = r >= 2 && r < rows - 1 ? best(q + r * rb, xs + (size_t)b * xbytes, n) : 12345.0f;
                            ok &= yy[b * ldy + r] == want;
                        }
                    CHECK(ok, "%s n=%lld: sb_matmul_q differs from the row kernel or wrote outside columns 2..%lld",
                          t->name, (long long)n, (long long)rows - 2);
                    free(xs), free(yy), free(x2);
                }
            }
            free(w), free(x), free(deq), free(xh), free(half), free(xq), free(q);
        }
    }
    for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++)
        if (!sb_isa_supported(l)) SKIP("quantized kernels at isa level %d: not supported here", l);
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx2"))
        CHECK(levels_run[SB_ISA_AVX2] > 0 && qrows_run[SB_ISA_AVX2] > 0, "AVX2 quantized kernels were not run");
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        CHECK(levels_run[SB_ISA_AVX512] > 0 && qrows_run[SB_ISA_AVX512] > 0, "AVX-512 quantized kernels were not run");
}

/* two-level activations: test 4 of the header */
static void two_level_kernels(void) {
    const int types[] = {SB_Q8_0, SB_Q6_K};
    const double u = 1.0 / 16777216.0; /* 2^-24 */
    int avx2_run = 0;
    double worst_ratio = 0; /* measured |dot - exact| / one-level budget E, for the log */
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const int type = types[k];
        const sb_type_traits *t = sb_type_traits_get(type);
        const int blk = t->blck_size;
        sb_qdot_fn scalar = type == SB_Q6_K ? sb_qdot_q6_k2_scalar : sb_qdot_q8_0_2_scalar;
        sb_qdot_fn simd = type == SB_Q6_K ? sb_qdot_q6_k2_avx2 : sb_qdot_q8_0_2_avx2;
        sb_qrows_fn simd_rows = type == SB_Q6_K ? sb_qrows_q6_k2_avx2 : sb_qrows_q8_0_2_avx2;
        const bool avx2 = sb_isa_supported(SB_ISA_AVX2);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li], rows = ROWS, nb = n / blk;
            if (n % blk) continue;
            size_t rb;
            sb_dtype_row_bytes(type, n, &rb);
            const size_t xbytes = sb_act2_bytes(type, n);
            CHECK(xbytes == (size_t)(2 * nb) * (type == SB_Q6_K ? sizeof(sb_q8k) : sizeof(sb_q8a)),
                  "%s: two-level activations take two blocks per block", t->name);
            float *w = malloc(sizeof(float) * n * rows), *x = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
            double *xh = malloc(sizeof(double) * n), *h = malloc(sizeof(double) * n), *a = malloc(sizeof(double) * n);
            double *half1 = malloc(sizeof(double) * n);
            uint8_t *xq = malloc(xbytes + 64), *ref = malloc(xbytes), *one = malloc(xbytes), *q = malloc(rb * 2 * rows);
            memset(xq + xbytes, 0xa5, 64);
            for (int src = 0; src < 2; src++) {
                weights(type, src, w, q, rb, n, rows);
                memcpy(q + rb * rows, q, rb * rows); /* the rows twice, for the several-rows kernel */
                for (int64_t i = 0; i < n; i++) x[i] = frand() * 3 + (i % 61 == 0 ? 40 * frand() : 0);
                if (src) x[n / 2] = 0; /* and a block of zeros (d1 = d2 = 0) where it fits */
                if (src && n >= 2 * blk)
                    for (int64_t i = blk; i < 2 * blk; i++) x[i] = 0;
                sb_act2_quantize(type, x, xq, n);
                CHECK(xq[xbytes] == 0xa5 && xq[xbytes + 63] == 0xa5, "%s n=%lld: sb_act2_quantize overran", t->name,
                      (long long)n);
                /* the scalar quantizer's bytes; the AVX2 one must write the same */
                if (type == SB_Q6_K) sb_quantize_q8k2(x, (sb_q8k *)(void *)ref, n);
                else sb_quantize_q8a2(x, (sb_q8a *)(void *)ref, n);
                if (avx2) {
                    if (type == SB_Q6_K) sb_quantize_q8k2_avx2(x, (sb_q8k *)(void *)xq, n);
                    else sb_quantize_q8a2_avx2(x, (sb_q8a *)(void *)xq, n);
                    CHECK(!memcmp(ref, xq, xbytes), "%s n=%lld: AVX2 two-level quantizer differs from the scalar one",
                          t->name, (long long)n);
                }
                memcpy(xq, ref, xbytes);
                /* the quantizer against its definition */
                bool first_ok = true, step_ok = true, range_ok = true;
                double worst_x = 0;
                for (int64_t b = 0; b < nb; b++) {
                    float d1, d2;
                    const int8_t *q1, *q2;
                    if (type == SB_Q6_K) {
                        const sb_q8k *y = (const sb_q8k *)(const void *)xq + 2 * b;
                        sb_quantize_q8k(x + b * blk, (sb_q8k *)(void *)one, blk);
                        first_ok &= !memcmp(one, y, sizeof *y);
                        d1 = y[0].d, d2 = y[1].d, q1 = y[0].qs, q2 = y[1].qs;
                        for (int g = 0; g < 16; g++) {
                            int sum = 0;
                            for (int j = 0; j < 16; j++) sum += q2[16 * g + j];
                            range_ok &= y[1].bsums[g] == sum;
                        }
                    } else {
                        const sb_q8a *y = (const sb_q8a *)(const void *)xq + 2 * b;
                        sb_quantize_q8a(x + b * blk, (sb_q8a *)(void *)one, blk);
                        first_ok &= !memcmp(one, y, sizeof *y);
                        d1 = y[0].d, d2 = y[1].d, q1 = y[0].qs, q2 = y[1].qs;
                    }
                    step_ok &= d2 == d1 / 254.0f;
                    for (int j = 0; j < blk; j++) {
                        const int64_t i = b * blk + j;
                        range_ok &= q2[j] != -128;
                        xh[i] = (double)d1 * q1[j] + (double)d2 * q2[j];
                        h[i] = 1.0001 * d2 / 2 + 2 * u * (fabs((double)x[i]) + d1);
                        a[i] = (double)d1 * abs(q1[j]) + (double)d2 * abs(q2[j]);
                        half1[i] = d1 / 2.0;
                        const double e = fabs((double)x[i] - xh[i]) / h[i];
                        if (h[i] > 0 && e > worst_x) worst_x = e;
                        if (h[i] == 0) range_ok &= x[i] == 0 && q1[j] == 0 && q2[j] == 0;
                    }
                }
                const char *what = src ? "random bytes" : "quantized";
                CHECK(first_ok, "%s n=%lld: the first level is not the one-level quantizer's block", t->name, (long long)n);
                CHECK(step_ok, "%s n=%lld: the second level's step is not d1 / 254", t->name, (long long)n);
                CHECK(range_ok, "%s n=%lld: second-level values out of range, bad block sums or zeros", t->name, (long long)n);
                CHECK(worst_x <= 1, "%s n=%lld: two-level activation error x%.3g of its bound d2/2", t->name,
                      (long long)n, worst_x);
                /* the dots */
                double worst_h = 0, worst_q = 0, worst_mv = 0, worst_simd = 0;
                float ymv[ROWS];
                sb_tensor tw = {.name = "w", .type = type, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = q, .nbytes = rb * rows};
                sb_matvec(&tw, x, ymv, 0, rows);
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t *row = q + r * rb;
                    t->to_float(row, deq, n);
                    double exact = 0, mag = 0, exact_h = 0, A = 0, E2 = 0, E1 = 0;
                    for (int64_t i = 0; i < n; i++) {
                        const double wi = deq[i];
                        exact += wi * x[i], mag += fabs(wi * x[i]);
                        exact_h += wi * xh[i], A += fabs(wi) * a[i];
                        E2 += fabs(wi) * h[i], E1 += fabs(wi) * half1[i];
                    }
                    const double g = (double)(nb + 4) * u * A + 1e-30;
                    const float s = scalar(row, xq, n);
                    double e = fabs(s - exact_h) / g;
                    if (e > worst_h) worst_h = e;
                    e = fabs(s - exact) / (E2 + g);
                    if (e > worst_q) worst_q = e;
                    e = fabs(s - ymv[r]) / (E2 + g + 1e-5 * mag);
                    if (e > worst_mv) worst_mv = e;
                    if (E1 > 0 && fabs(s - exact) / E1 > worst_ratio) worst_ratio = fabs(s - exact) / E1;
                    if (avx2) {
                        const float v = simd(row, xq, n);
                        e = type == SB_Q6_K ? (v != s) : fabs(v - s) / (2 * g);
                        if (e > worst_simd) worst_simd = e;
                    }
                }
                CHECK(worst_h <= 1, "%s n=%lld (%s): scalar two-level dot vs exact dot with x^: x%.3g of the f32 bound",
                      t->name, (long long)n, what, worst_h);
                CHECK(worst_q <= 1, "%s n=%lld (%s): scalar two-level dot vs exact dot: x%.3g of E2 + f32 bound",
                      t->name, (long long)n, what, worst_q);
                CHECK(worst_mv <= 1, "%s n=%lld (%s): scalar two-level dot vs sb_matvec: x%.3g of its bound", t->name,
                      (long long)n, what, worst_mv);
                if (avx2) {
                    CHECK(worst_simd <= 1, "%s n=%lld (%s): AVX2 two-level dot vs scalar: %.3g", t->name, (long long)n,
                          what, worst_simd);
                    const int64_t nr = 2 * rows - 1;
                    float y2[2 * ROWS];
                    y2[nr] = 12345.0f;
                    simd_rows(q, rb, xq, n, y2, nr);
                    bool ok = y2[nr] == 12345.0f;
                    for (int64_t r = 0; r < nr; r++) ok &= y2[r] == simd(q + r * rb, xq, n);
                    CHECK(ok, "%s n=%lld: AVX2 two-level several-rows kernel differs from its row kernel or overran",
                          t->name, (long long)n);
                    avx2_run++;
                }
                float y[ROWS + 2];
                for (int i = 0; i < ROWS + 2; i++) y[i] = 12345.0f;
                sb_matvec_q2(&tw, xq, y + 1, 1, rows - 1);
                bool ok = y[0] == 12345.0f && y[1] == 12345.0f && y[rows] == 12345.0f && y[rows + 1] == 12345.0f;
                for (int64_t r = 1; r < rows - 1; r++) ok &= y[r + 1] == (avx2 ? simd : scalar)(q + r * rb, xq, n);
                CHECK(ok, "%s n=%lld: sb_matvec_q2 is not the best level's kernel or wrote outside rows 1..%lld", t->name,
                      (long long)n, (long long)rows - 2);
            }
            free(w), free(x), free(deq), free(xh), free(h), free(a), free(half1), free(xq), free(ref), free(one), free(q);
        }
    }
    CHECK(sb_act2_bytes(SB_Q4_0, 256) == 0 && sb_act2_bytes(SB_Q4_K, 256) == 0,
          "only Q8_0 and Q6_K have two-level kernels");
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx2"))
        CHECK(avx2_run > 0, "AVX2 two-level kernels were not run");
    fprintf(stderr, "two-level activations: worst |dot - exact| = %.4g of the one-level budget E\n", worst_ratio);
}

/* F32 and F16 have no integer kernel: sb_matvec_q takes the floats */
static void float_types_fall_back(void) {
    float w[64 * 3], x[64], y[3], r[3];
    for (int i = 0; i < 64 * 3; i++) w[i] = frand();
    for (int i = 0; i < 64; i++) x[i] = frand();
    CHECK(sb_act_type(SB_F32) == SB_F32 && sb_act_type(SB_F16) == SB_F32, "float types quantize no activations");
    sb_tensor tw = {.name = "w", .type = SB_F32, .n_dims = 2, .ne = {64, 3, 1, 1}, .data = w, .nbytes = sizeof w};
    float xq[64];
    sb_act_quantize(SB_F32, x, xq, 64);
    sb_matvec_q(&tw, xq, y, 0, 3);
    sb_matvec(&tw, x, r, 0, 3);
    CHECK(!memcmp(y, r, sizeof y), "F32: sb_matvec_q equals sb_matvec");
}

int main(void) {
    fprintf(stderr, "kernels: %s\n", sb_kernels_isa());
    float_kernels();
    quant_kernels();
    two_level_kernels();
    float_types_fall_back();
    return TEST_END();
}
