/*
 * test_kernels.c - every SIMD row-dot kernel this CPU runs against the
 * scalar reference (dequantize, then dot in double precision) on random data,
 * with sentinels around the output of sb_matvec. Bound: the kernels compute
 * the same products and only add them in another order, so the difference
 * is float rounding: |fast - exact| <= 1e-5 * sum |w_i x_i|.
 */
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(void) {
    const int types[] = {SB_F32, SB_Q8_0, SB_Q4_0, SB_Q4_1, SB_Q4_K, SB_Q6_K};
    fprintf(stderr, "kernels: %s\n", sb_kernels_isa());
    int tested = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int type = types[k];
        const sb_type_traits *t = sb_type_traits_get(type);
        sb_row_dot_fn fast = sb_row_dot_for(type);
        if (!fast) {
            SKIP("%s: no SIMD kernel on this CPU (%s)", t->name, sb_kernels_isa());
            continue;
        }
        tested++;
        const int64_t lens[] = {32, 64, 96, 256, 576, 1536, 3072};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t n = lens[li], rows = 7;
            if (n % t->blck_size) continue;
            size_t rb;
            sb_dtype_row_bytes(type, n, &rb);
            float *w = malloc(sizeof(float) * n * rows), *x = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
            uint8_t *q = malloc(rb * rows);
            for (int64_t i = 0; i < n * rows; i++) w[i] = frand() * (1 + (i % 7));
            for (int64_t i = 0; i < n; i++) x[i] = frand() * 3;
            for (int64_t r = 0; r < rows; r++) t->from_float(w + r * n, q + r * rb, n);
            double worst = 0;
            for (int64_t r = 0; r < rows; r++) {
                t->to_float(q + r * rb, deq, n);
                double exact = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) exact += (double)deq[i] * x[i], mag += fabs((double)deq[i] * x[i]);
                double err = fabs(fast(q + r * rb, x, n) - exact) / (mag + 1e-30);
                if (err > worst) worst = err;
            }
            CHECK(worst <= 1e-5, "%s n=%lld: relative error %.3g", t->name, (long long)n, worst);
            /* sb_matvec uses the kernel; rows outside the range stay untouched */
            float y[9];
            for (int i = 0; i < 9; i++) y[i] = 12345.0f;
            sb_tensor tw = {.name = "w", .type = type, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = q, .nbytes = rb * rows};
            sb_matvec(&tw, x, y + 1, 1, rows - 1);
            CHECK(y[0] == 12345.0f && y[1] == 12345.0f && y[rows] == 12345.0f && y[8] == 12345.0f,
                  "%s: sb_matvec wrote outside rows 1..%lld", t->name, (long long)rows - 2);
            CHECK(y[2] == fast(q + rb, x, n), "%s: sb_matvec uses the kernel", t->name);
            free(w), free(x), free(deq), free(q);
        }
    }
    if (!getenv("SABIO_KERNELS") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(tested == 6, "this CPU has AVX2+FMA: all six kernels must be tested (%d)", tested);
    return TEST_END();
}
