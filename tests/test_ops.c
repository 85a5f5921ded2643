/*
 * test_ops.c - the SIMD loops behind tensor/ops.h against a double
 * reference on random data: SwiGLU (silu(g) * up, silu(g) = g / (1 + e^-g))
 * at every level the CPU runs, gates in [-100, 100] (past both ends of the
 * polynomial e^x's clamp) and lengths with and without a tail of 8.
 * Bound: 4e-7 relative to max(|silu(g) up|, 1e-30) per element, which covers
 * e^x (8e-8), the division and the product; elements below 1e-30 (gates
 * under -70) must stay below 1e-30 in magnitude.
 */
#include "tensor/kernels.h"
#include "tensor/ops.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return test_frand(&rng); }

int main(void) {
    const int lens[] = {1, 7, 8, 13, 64, 1000};
    for (int level = SB_ISA_SCALAR; level <= SB_ISA_AVX2; level++) {
        if (!sb_isa_supported(level)) {
            SKIP("AVX2 SwiGLU: not supported here");
            continue;
        }
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int n = lens[li];
            float g[1000], up[1000], out[1000 + 8];
            for (int i = 0; i < n; i++) {
                g[i] = i % 9 == 0 ? 100 * frand() : 8 * frand();
                up[i] = 4 * frand();
            }
            for (int i = n; i < n + 8; i++) out[i] = 12345.0f;
            if (level == SB_ISA_AVX2) sb_swiglu_avx2(out, g, up, n);
            else sb_swiglu(out, g, up, n); /* (run under SABIO_KERNELS=scalar, the scalar loop) */
            double worst = 0;
            bool tiny_ok = true, untouched = true;
            for (int i = 0; i < n; i++) {
                const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * up[i];
                if (fabs(want) < 1e-30) tiny_ok &= fabs(out[i]) < 1e-30;
                else worst = fmax(worst, fabs(out[i] - want) / fabs(want));
            }
            for (int i = n; i < n + 8; i++) untouched &= out[i] == 12345.0f;
            CHECK(worst <= 4e-7, "isa %d SwiGLU n=%d: relative error %.3g", level, n, worst);
            CHECK(tiny_ok, "isa %d SwiGLU n=%d: a vanishing output is not tiny", level, n);
            CHECK(untouched, "isa %d SwiGLU n=%d: wrote past the end", level, n);
        }
    }
    /* sb_swiglu in place (out = gate), as the decoder calls it */
    float g[37], up[37], want[37];
    for (int i = 0; i < 37; i++) g[i] = 6 * frand(), up[i] = frand();
    for (int i = 0; i < 37; i++) want[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * up[i]);
    sb_swiglu(g, g, up, 37);
    double worst = 0;
    for (int i = 0; i < 37; i++) worst = fmax(worst, fabs(g[i] - want[i]) / fmax(fabs(want[i]), 1e-30));
    CHECK(worst <= 4e-7, "SwiGLU in place: relative error %.3g", worst);
    return TEST_END();
}
