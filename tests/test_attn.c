/*
 * test_attn.c - tensor/attn.h (the prompt path's attention) on random data
 * against a double-precision reference: causal, with and without a sliding
 * window, blocks that start at 0 and past it. Bounds: f32 products and sums
 * over Hd and the keys, |ours - exact| <= 1e-5 * (1 + max |v|) per output.
 * The AVX-512 and AVX2 softmaxes alone against the double softmax: 1e-6
 * relative to the largest weight (their e^x is within 8e-8; the sum adds
 * rounding), on lengths with and without a tail of the vector width.
 */
#include "tensor/attn.h"
#include "tensor/kernels.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { return test_frand(&rng); }

static void reference(const float *q, const float *k, const float *v, int ld, int m, int pos0, int window, float scale,
                      int hd, double *out) {
    double *w = malloc(sizeof(double) * (size_t)(pos0 + m));
    for (int i = 0; i < m; i++) {
        const int pos = pos0 + i, t0 = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        double mx = -INFINITY, sum = 0;
        for (int t = t0; t <= pos; t++) {
            double s = 0;
            for (int d = 0; d < hd; d++) s += (double)q[(size_t)i * ld + d] * k[(size_t)t * ld + d];
            w[t] = s * scale;
            mx = fmax(mx, w[t]);
        }
        for (int t = t0; t <= pos; t++) w[t] = exp(w[t] - mx), sum += w[t];
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int t = t0; t <= pos; t++) o += w[t] / sum * v[(size_t)t * ld + d];
            out[(size_t)i * hd + d] = o;
        }
    }
    free(w);
}

int main(void) {
    const int hd = 64, ld = 96; /* rows wider than a head, as the cache's */
    const struct { int m, pos0, window; } cases[] = {{1, 0, 0}, {32, 0, 0}, {17, 40, 0}, {32, 200, 0}, {32, 200, 50}, {5, 3, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int m = cases[c].m, pos0 = cases[c].pos0, window = cases[c].window, T = pos0 + m;
        float *q = malloc(sizeof(float) * (size_t)(m * ld)), *k = malloc(sizeof(float) * (size_t)(T * ld));
        float *v = malloc(sizeof(float) * (size_t)(T * ld)), *out = malloc(sizeof(float) * (size_t)(m * ld));
        float *scratch = malloc(sizeof(float) * (size_t)(m * T));
        double *want = malloc(sizeof(double) * (size_t)(m * hd));
        for (int i = 0; i < m * ld; i++) q[i] = 3 * frand();
        for (int i = 0; i < T * ld; i++) k[i] = 3 * frand(), v[i] = frand();
        for (int i = 0; i < m * ld; i++) out[i] = 12345.0f;
        const float scale = 0.125f;
        sb_attn_causal(q, ld, k, v, ld, m, pos0, window, scale, hd, out, ld, scratch);
        reference(q, k, v, ld, m, pos0, window, scale, hd, want);
        double worst = 0;
        bool untouched = true;
        for (int i = 0; i < m; i++) {
            for (int d = 0; d < hd; d++) worst = fmax(worst, fabs(out[i * ld + d] - want[i * hd + d]) / 2e-5);
            for (int d = hd; d < ld; d++) untouched &= out[i * ld + d] == 12345.0f;
        }
        CHECK(worst <= 1, "attention m=%d pos0=%d window=%d: error x%.3g of the bound", m, pos0, window, worst);
        CHECK(untouched, "attention m=%d pos0=%d: wrote outside the head's columns", m, pos0);
        free(q), free(k), free(v), free(out), free(scratch), free(want);
    }
    /* the decode path's one-query attention, at every level the CPU runs:
     * head widths 64, 96 (8-lane multiples, the AVX2 loops: 32-float chunks
     * and a partial one) and 36 (the scalar fallback), against the double
     * reference of the query at pos */
    const int hds[] = {64, 96, 36};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int hdd = hds[hi], ldd = 100, pos = cases[c].pos0 + cases[c].m - 1, window = cases[c].window;
            const int t0 = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0, T = pos + 1;
            float *q = malloc(sizeof(float) * (size_t)ldd), *k = malloc(sizeof(float) * (size_t)(T * ldd));
            float *v = malloc(sizeof(float) * (size_t)(T * ldd)), *att = malloc(sizeof(float) * (size_t)T);
            float out[101];
            double want[100];
            for (int i = 0; i < ldd; i++) q[i] = 3 * frand();
            for (int i = 0; i < T * ldd; i++) k[i] = 3 * frand(), v[i] = frand();
            /* reference() takes query row 0 at position pos0 = pos */
            double *wk = malloc(sizeof(double) * (size_t)T);
            {
                double mx = -INFINITY, sum = 0;
                for (int t = t0; t <= pos; t++) {
                    double sdot = 0;
                    for (int d = 0; d < hdd; d++) sdot += (double)q[d] * k[(size_t)t * ldd + d];
                    wk[t] = sdot * 0.125, mx = fmax(mx, wk[t]);
                }
                for (int t = t0; t <= pos; t++) wk[t] = exp(wk[t] - mx), sum += wk[t];
                for (int d = 0; d < hdd; d++) {
                    double o = 0;
                    for (int t = t0; t <= pos; t++) o += wk[t] / sum * v[(size_t)t * ldd + d];
                    want[d] = o;
                }
            }
            for (int l = SB_ISA_SCALAR; l <= SB_ISA_AVX2 && sb_isa_supported(l); l++) {
                for (int d = 0; d <= hdd; d++) out[d] = 12345.0f;
                (l == SB_ISA_AVX2 ? sb_attn_decode_avx2 : sb_attn_decode_scalar)(q, k, v, ldd, t0, pos, 0.125f, hdd, att, out);
                double worst = 0;
                for (int d = 0; d < hdd; d++) worst = fmax(worst, fabs(out[d] - want[d]) / 2e-5);
                CHECK(worst <= 1 && out[hdd] == 12345.0f,
                      "decode attention isa %d hd=%d pos=%d window=%d: error x%.3g of the bound, or wrote past hd", l, hdd,
                      pos, window, worst);
            }
            free(q), free(k), free(v), free(att), free(wk);
        }
    if (!sb_isa_supported(SB_ISA_AVX2)) SKIP("AVX2 decode attention: not supported here");
    const int lens[] = {1, 7, 9, 16, 33, 512};
    for (int level = SB_ISA_AVX2; level <= SB_ISA_AVX512; level++) {
        if (!sb_isa_supported(level)) {
            SKIP("%s softmax: not supported here", level == SB_ISA_AVX512 ? "AVX-512" : "AVX2");
            continue;
        }
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int n = lens[li];
            float x[512 + 8];
            double e[512], sum = 0, mx = -INFINITY, worst = 0;
            for (int i = 0; i < n; i++) x[i] = 30 * frand() - (i % 5 == 0 ? 60 : 0), mx = fmax(mx, x[i]);
            for (int i = n; i < n + 8; i++) x[i] = 12345.0f;
            for (int i = 0; i < n; i++) e[i] = exp((double)x[i] - mx), sum += e[i];
            if (level == SB_ISA_AVX512) sb_attn_softmax_avx512(x, n);
            else sb_attn_softmax_avx2(x, n);
            bool untouched = true;
            for (int i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - e[i] / sum));
            for (int i = n; i < n + 8; i++) untouched &= x[i] == 12345.0f;
            CHECK(worst <= 1e-6, "isa %d softmax n=%d: error %.3g", level, n, worst);
            CHECK(untouched, "isa %d softmax n=%d: wrote past the end", level, n);
        }
    }
    return TEST_END();
}
