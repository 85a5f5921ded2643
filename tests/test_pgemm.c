/*
 * test_pgemm.c - the panel products of tensor/pgemm.h on random data.
 *
 * 1. The scalar kernel (the definition) against the double-precision dot of
 *    the type's own dequantized weights (sb_type_traits to_float, the
 *    independent reference for the block layouts) with the dequantized
 *    activations x^ = dx * qs: the integer sums are exact, only the f32
 *    scale products and additions round, so |scalar - exact| <= 1e-5 *
 *    sum_i 3 wmax_g |x^_i| (wmax_g the largest |w| of the scale group; 3
 *    covers the scale and min terms).
 * 2. Every SIMD level the CPU runs (AVX2: 8-row panels, AVX-512 VNNI:
 *    16-row ones) bit-identical to the scalar kernel, outputs outside the
 *    asked rows untouched.
 *
 * Weights from the type's quantizer and from random bytes with sane f16
 * scales (every nibble and bit pattern); 37 weight rows (two panels of 16
 * and a partial one; the SIMD levels get rows 16..35: full panels and a
 * partial one at either width), 11 activation rows (AVX-512: a pass of 8
 * and a tail of 3; AVX2: two passes of 4 and a tail of 3).
 */
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "tensor/pgemm.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return test_xorshift(&rng); }
static float frand(void) { return test_frand(&rng); }

static void put16(uint8_t *p, float f) {
    uint16_t h = sb_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* offsets of the f16 scale fields in a block (-1 ends) */
static void scale_fields(int type, int off[2]) {
    off[0] = off[1] = -1;
    switch (type) {
    case SB_Q8_0: case SB_Q4_0: case SB_Q5_0: off[0] = 0; break;
    case SB_Q4_1: case SB_Q5_1: case SB_Q4_K: case SB_Q5_K: off[0] = 0, off[1] = 2; break;
    case SB_Q6_K: off[0] = 208; break;
    }
}

#define ROWS 37
#define NACT 11
#define SENT 12345.0f

static void one(int type, int64_t n, int src, int *levels_run) {
    const sb_type_traits *t = sb_type_traits_get(type);
    const sb_pgemm_type *pt = sb_pgemm_type_of(type);
    size_t rb;
    sb_dtype_row_bytes(type, n, &rb);
    float *w = malloc(sizeof(float) * (size_t)(n * ROWS)), *x = malloc(sizeof(float) * (size_t)n);
    float *deq = malloc(sizeof(float) * (size_t)(n * ROWS));
    uint8_t *q = malloc(rb * ROWS);
    const size_t xb = sb_pgemm_act_bytes(n);
    uint8_t *xa = malloc(xb * NACT);
    if (src == 0) {
        for (int64_t i = 0; i < n * ROWS; i++) w[i] = frand() * (1 + (i % 7)) + (i % 97 == 0 ? 20 : 0);
        for (int64_t r = 0; r < ROWS; r++) t->from_float(w + r * n, q + r * rb, n);
    } else {
        int off[2];
        scale_fields(type, off);
        for (size_t i = 0; i < rb * ROWS; i++) q[i] = (uint8_t)next();
        for (size_t b0 = 0; b0 < rb * ROWS; b0 += t->type_size)
            for (int f = 0; f < 2 && off[f] >= 0; f++) put16(q + b0 + off[f], 0.001f + 0.01f * (float)fabs(frand()));
    }
    for (int64_t r = 0; r < ROWS; r++) t->to_float(q + r * rb, deq + r * n, n);
    for (int b = 0; b < NACT; b++) {
        for (int64_t i = 0; i < n; i++) x[i] = frand() * 3 * (float)(b + 1) + (i % 61 == 0 ? 40 * frand() : 0);
        sb_pgemm_quantize(type, x, (sb_q8p *)(void *)(xa + (size_t)b * xb), n);
    }
    sb_tensor tw = {.name = "w", .type = type, .n_dims = 2, .ne = {n, ROWS, 1, 1}, .data = q, .nbytes = rb * ROWS};
    const int64_t ldy = ROWS + 3;
    float *ys = malloc(sizeof(float) * (size_t)(NACT * ldy)), *yv = malloc(sizeof(float) * (size_t)(NACT * ldy));
    void *scratch = malloc(sb_pgemm_scratch_bytes(n));
    for (int64_t i = 0; i < NACT * ldy; i++) ys[i] = SENT;
    sb_pgemm(&tw, xa, xb, NACT, ys, ldy, 0, ROWS, scratch, SB_ISA_SCALAR);

    /* 1. scalar vs the exact dot of dequantized weights and activations */
    double worst = 0;
    for (int b = 0; b < NACT; b++) {
        const sb_q8p *xp = (const sb_q8p *)(const void *)(xa + (size_t)b * xb);
        for (int64_t r = 0; r < ROWS; r++) {
            const float *wr = deq + r * n;
            double exact = 0, mag = 0;
            for (int64_t g0 = 0; g0 < n; g0 += pt->g) {
                double wmax = 0;
                for (int64_t i = g0; i < g0 + pt->g; i++) wmax = fmax(wmax, fabs((double)wr[i]));
                for (int64_t i = g0; i < g0 + pt->g; i++) {
                    const double xh = (double)xp[i / 32].a.d * xp[i / 32].a.qs[i % 32];
                    exact += (double)wr[i] * xh;
                    mag += 3 * wmax * fabs(xh);
                }
            }
            double e = fabs(ys[b * ldy + r] - exact) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    }
    const char *what = src ? "random bytes" : "quantized";
    CHECK(worst <= 1e-5, "%s n=%lld (%s): scalar panel product vs exact dot: %.3g", t->name, (long long)n, what, worst);
    bool outside = true;
    for (int b = 0; b < NACT; b++)
        for (int64_t r = ROWS; r < ldy; r++) outside &= ys[b * ldy + r] == SENT;
    CHECK(outside, "%s: the scalar panel product wrote outside its rows", t->name);

    /* 2. SIMD levels: bit for bit, rows [16, ROWS - 1) only */
    for (int l = SB_ISA_AVX2; l < SB_ISA_COUNT; l++) {
        if (!sb_pgemm_has(type, l) || !sb_isa_supported(l)) continue;
        levels_run[l]++;
        for (int64_t i = 0; i < NACT * ldy; i++) yv[i] = SENT;
        sb_pgemm(&tw, xa, xb, NACT, yv, ldy, 16, ROWS - 1, scratch, l);
        bool same = true, untouched = true;
        for (int b = 0; b < NACT; b++)
            for (int64_t r = 0; r < ldy; r++) {
                if (r >= 16 && r < ROWS - 1) same &= yv[b * ldy + r] == ys[b * ldy + r];
                else untouched &= yv[b * ldy + r] == SENT;
            }
        CHECK(same, "%s n=%lld (%s): isa %d panel product differs from the scalar one", t->name, (long long)n, what, l);
        CHECK(untouched, "%s n=%lld: isa %d panel product wrote outside rows 16..%d", t->name, (long long)n, l, ROWS - 2);
    }
    free(w), free(x), free(deq), free(q), free(xa), free(ys), free(yv), free(scratch);
}

int main(void) {
    const int types[] = {SB_Q8_0, SB_Q4_0, SB_Q4_1, SB_Q5_0, SB_Q5_1, SB_Q4_K, SB_Q5_K, SB_Q6_K};
    const int64_t lens[] = {96, 256, 768};
    int levels_run[SB_ISA_COUNT] = {0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        CHECK(sb_pgemm_has(types[k], SB_ISA_SCALAR), "type %d: no scalar panel kernel", types[k]);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            if (lens[li] % sb_type_traits_get(types[k])->blck_size == 0)
                for (int src = 0; src < 2; src++) one(types[k], lens[li], src, levels_run);
    }
    CHECK(!sb_pgemm_has(SB_F16, SB_ISA_SCALAR) && sb_pgemm_level(SB_F32) < 0, "float types have no panels");
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(levels_run[SB_ISA_AVX2] > 0, "AVX2 panel kernels were not run");
    if (!sb_isa_supported(SB_ISA_AVX512)) SKIP("AVX-512 VNNI panel kernel: not supported here");
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        CHECK(levels_run[SB_ISA_AVX512] > 0, "AVX-512 panel kernels were not run");
    return TEST_END();
}
