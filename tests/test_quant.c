/*
 * test_quant.c - element types against independent references:
 *  - dequantization of every type, bit for bit (memcmp of float bits), and
 *    quantization of F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, byte for byte,
 *    against the `gguf` Python package (tests/data/quant_ref.bin, made by
 *    tools/gen_quant_ref.py; F32, Q8_1 and Q8_K dequantization come from the
 *    script's numpy formulas, since gguf has no code for them);
 *  - block sizes and names against gguf.GGML_QUANT_SIZES (same file);
 *  - K-quant quantization (Q4_K, Q5_K, Q6_K, Q8_K) and Q8_1: no reference
 *    implementation exists in Python, so these are checked by round-trip
 *    error bounds (dequantize(quantize(x)) vs x, stated below) through the
 *    dequantizers verified bit for bit above;
 *  - sb_matvec / sb_get_row for every type against dequantize-then-dot in
 *    double precision (relative tolerance 1e-5 of sum |w_i x_i|).
 * Output buffers carry sentinel bytes to catch overruns.
 */
#include "tensor/matvec.h"
#include "tensor/tensor.h"
#include "test.h"

#include "base/base.h"

#define GUARD 64 /* sentinel bytes after every output buffer */

static uint32_t rd32(const uint8_t **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

static bool guard_ok(const void *buf, size_t n) {
    const uint8_t *g = (const uint8_t *)buf + n;
    for (int i = 0; i < GUARD; i++)
        if (g[i] != 0xa5) return false;
    return true;
}
static void *guarded(size_t n) {
    uint8_t *p = malloc(n + GUARD);
    memset(p, 0x5a, n);
    memset(p + n, 0xa5, GUARD);
    return p;
}

static void check_dequant(const sb_type_traits *t, const uint8_t *raw, const float *want_unaligned, size_t nel) {
    float *want = malloc(nel * 4), *got = guarded(nel * 4);
    memcpy(want, want_unaligned, nel * 4);
    CHECK(t->to_float != NULL, "%s: no dequantizer", t->name);
    if (t->to_float) {
        t->to_float(raw, got, (int64_t)nel);
        size_t bad = nel;
        for (size_t i = 0; i < nel && bad == nel; i++)
            if (memcmp(&want[i], &got[i], 4)) bad = i;
        CHECK(bad == nel, "dequantize %s: element %zu of %zu: got %.9g want %.9g", t->name, bad, nel,
              bad < nel ? got[bad] : 0, bad < nel ? want[bad] : 0);
        CHECK(guard_ok(got, nel * 4), "dequantize %s wrote past %zu floats", t->name, nel);
    }
    free(want);
    free(got);
}

static void check_quant(const sb_type_traits *t, const float *x_unaligned, const uint8_t *want, size_t nel,
                        size_t nraw) {
    float *x = malloc(nel * 4);
    uint8_t *got = guarded(nraw);
    memcpy(x, x_unaligned, nel * 4);
    CHECK(t->from_float != NULL, "%s: no quantizer", t->name);
    if (t->from_float) {
        t->from_float(x, got, (int64_t)nel);
        size_t bad = nraw;
        for (size_t i = 0; i < nraw && bad == nraw; i++)
            if (got[i] != want[i]) bad = i;
        CHECK(bad == nraw, "quantize %s: byte %zu (block %zu) got %02x want %02x", t->name, bad,
              bad / t->type_size, bad < nraw ? got[bad] : 0, bad < nraw ? want[bad] : 0);
        CHECK(guard_ok(got, nraw), "quantize %s wrote past %zu bytes", t->name, nraw);
    }
    free(x);
    free(got);
}

static void check_reference(void) {
    char *data = NULL;
    size_t len = 0;
    sb_err e = {0};
    CHECK(sb_read_file("tests/data/quant_ref.bin", 0, &data, &len, &e) == SB_OK, "%s", e.msg);
    if (!data) return;
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    CHECK(len > 12 && !memcmp(p, "SBQREF1", 8), "bad reference header");
    p += 8;
    uint32_t n = rd32(&p), r = 0;
    int n_deq = 0, n_q = 0, n_size = 0;
    for (; r < n && p + 20 <= end; r++) {
        uint32_t kind = rd32(&p), type = rd32(&p), elems = rd32(&p), bytes = rd32(&p), blocks = rd32(&p);
        const sb_type_traits *t = sb_type_traits_get((int)type);
        if (kind == 2) { /* gguf.GGML_QUANT_SIZES entry */
            if (p + 16 > end) break;
            char name[17] = {0};
            memcpy(name, p, 16);
            p += 16;
            if (!t) {
                CHECK(type >= SB_DTYPE_COUNT || sb_dtype_from_name(name) < 0,
                      "gguf type %u (%s) unknown to us but its name parses", type, name);
                continue;
            }
            n_size++;
            CHECK(sb_dtype_from_name(name) == (int)type, "gguf name %s -> %d, want %u", name,
                  sb_dtype_from_name(name), type);
            if (type == SB_Q8_1) {
                /* gguf-py still lists the obsolete {f32 d, s; i8 qs[32]} = 40 bytes;
                 * ggml's block_q8_1 is {f16 d, s; i8 qs[32]} = 36. */
                CHECK(t->blck_size == 32 && t->type_size == 36, "q8_1: %lld / %zu, want 32 / 36",
                      (long long)t->blck_size, t->type_size);
                continue;
            }
            CHECK(t->blck_size == elems && t->type_size == bytes,
                  "%s: our block %lld elements / %zu bytes, gguf says %u / %u", name, (long long)t->blck_size,
                  t->type_size, elems, bytes);
            continue;
        }
        CHECK(t && t->blck_size == elems && t->type_size == bytes,
              "type %u: our block %lld elements / %zu bytes, reference says %u / %u", type,
              t ? (long long)t->blck_size : -1LL, t ? t->type_size : 0, elems, bytes);
        size_t nel = (size_t)blocks * elems, nraw = (size_t)blocks * bytes;
        if (!t || (size_t)(end - p) < nraw + nel * 4) break;
        if (kind == 0) {
            check_dequant(t, p, (const float *)(p + nraw), nel);
            n_deq++;
            p += nraw + nel * 4;
        } else {
            check_quant(t, (const float *)p, p + nel * 4, nel, nraw);
            n_q++;
            p += nel * 4 + nraw;
        }
    }
    CHECK(r == n && p == end, "reference file: stopped at record %u of %u, byte %td of %zu", r, n,
          p - (const uint8_t *)data, len);
    /* F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K */
    CHECK(n_deq == 15 && n_q == 7 && n_size == 20,
          "reference covers %d dequantize, %d quantize, %d size entries; want 15, 7, 20", n_deq, n_q, n_size);
    free(data);
}

/* ---- round-trip bounds for the quantizers without a reference ---- */

static uint64_t rng_state = 42;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }

/* Relative RMS error sqrt(sum (x - deq(q(x)))^2 / sum x^2); also checks the
 * round trip stays finite and within the buffers. */
static double roundtrip_rel_rmse(int type, const float *x, int64_t n) {
    const sb_type_traits *t = sb_type_traits_get(type);
    size_t rb = 0;
    sb_dtype_row_bytes(type, n, &rb);
    uint8_t *q = guarded(rb);
    float *y = guarded((size_t)n * 4);
    t->from_float(x, q, n);
    t->to_float(q, y, n);
    CHECK(guard_ok(q, rb) && guard_ok(y, (size_t)n * 4), "%s round trip wrote past its buffers", t->name);
    double se = 0, ss = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i]) && bad < 0) bad = i;
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        ss += (double)x[i] * x[i];
    }
    CHECK(bad < 0, "%s round trip: element %lld is %g", t->name, (long long)bad, bad >= 0 ? y[bad] : 0);
    free(q);
    free(y);
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

static void check_roundtrip(void) {
    const int64_t n = 8192;
    float *g = malloc(n * 4), *c = malloc(n * 4), *z = calloc(n, 4), *w = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) {
        g[i] = gauss();
        c[i] = 0.1f + 2 * cosf((float)i);     /* ggml's test-quantize-fns data */
        w[i] = gauss() * ((i / 32) % 8 == 3 ? 1000.0f : 0.001f); /* one loud sub-block per 256 */
    }
    /* Bounds: measured errors (Gaussian: Q4_K 0.070, Q5_K 0.036, Q6_K 0.017,
     * Q8_K 0.0070, Q8_1 0.0053) plus ~15% margin; a layout or packing bug
     * gives errors of order 1. The K-quants must also do no worse than the
     * 32-block type of the same bit width (Q4_1, Q5_1, Q8_0), whose quantizers
     * are verified bit for bit against gguf above. */
    struct { int type, peer; double bound; } cases[] = {
        {SB_Q4_K, SB_Q4_1, 0.08}, {SB_Q5_K, SB_Q5_1, 0.041}, {SB_Q6_K, SB_Q5_1, 0.02},
        {SB_Q8_K, -1, 0.008}, {SB_Q8_1, SB_Q8_0, 0.006},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *name = sb_dtype_name(cases[k].type);
        double eg = roundtrip_rel_rmse(cases[k].type, g, n), ec = roundtrip_rel_rmse(cases[k].type, c, n);
        printf("round trip %-5s relative rmse: gaussian %.5f, cosine %.5f\n", name, eg, ec);
        CHECK(eg < cases[k].bound && ec < cases[k].bound, "%s round trip: relative rmse %.4g / %.4g, bound %.3g",
              name, eg, ec, cases[k].bound);
        if (cases[k].peer >= 0) {
            double pg = roundtrip_rel_rmse(cases[k].peer, g, n), pc = roundtrip_rel_rmse(cases[k].peer, c, n);
            CHECK(eg <= pg * 1.001 && ec <= pc * 1.001, "%s worse than %s: %.4g vs %.4g, %.4g vs %.4g", name,
                  sb_dtype_name(cases[k].peer), eg, pg, ec, pc);
        }
        CHECK(roundtrip_rel_rmse(cases[k].type, z, n) == 0, "%s: zeros do not round-trip to zeros", name);
        /* sub-blocks 1e6 apart: the loud ones must keep their precision */
        double ew = roundtrip_rel_rmse(cases[k].type, w, n);
        CHECK(ew < cases[k].bound, "%s wide-range round trip: relative rmse %.4g", name, ew);
    }
    /* Q8_K's bsums are the sums of its quants (used by the K-quant dot products). */
    uint8_t blk[292];
    sb_type_traits_get(SB_Q8_K)->from_float(g, blk, 256);
    bool sums_ok = true;
    for (int k = 0; k < 16; k++) {
        int s = 0;
        int16_t bs;
        for (int j = 0; j < 16; j++) s += (int8_t)blk[4 + 16 * k + j];
        memcpy(&bs, blk + 260 + 2 * k, 2);
        sums_ok &= bs == s;
    }
    CHECK(sums_ok, "q8_K bsums differ from the sums of qs");
    free(g);
    free(c);
    free(z);
    free(w);
}

/* ---- sb_matvec / sb_get_row against dequantize-then-dot in double ---- */

/* Fills rows of type t: quantized from random floats where we have a
 * quantizer, else random bytes with every f16 field set to a small finite
 * value (Q2_K, Q3_K). */
static void fill_rows(int type, const float *w, uint8_t *q, int64_t cols, int64_t rows, size_t rb) {
    const sb_type_traits *t = sb_type_traits_get(type);
    if (t->from_float) {
        for (int64_t r = 0; r < rows; r++) t->from_float(w + r * cols, q + r * rb, cols);
        return;
    }
    for (size_t i = 0; i < rb * rows; i++) q[i] = (uint8_t)(urand() * 256);
    const int off[2] = {type == SB_Q2_K ? 80 : 108, type == SB_Q2_K ? 82 : 108};
    for (size_t b = 0; b < rb * rows; b += t->type_size)
        for (int k = 0; k < 2; k++) {
            uint16_t h = sb_f32_to_f16((float)(urand() * 0.01));
            memcpy(q + b + off[k], &h, 2);
        }
}

static void check_matvec(void) {
    const int types[] = {SB_F32,  SB_F16,  SB_BF16, SB_Q4_0, SB_Q4_1, SB_Q5_0, SB_Q5_1, SB_Q8_0,
                         SB_Q8_1, SB_Q2_K, SB_Q3_K, SB_Q4_K, SB_Q5_K, SB_Q6_K, SB_Q8_K};
    const int64_t rows = 7, max_cols = 1024 + 32;
    float *w = malloc(sizeof(float) * max_cols * rows), *x = malloc(sizeof(float) * max_cols);
    float *deq = guarded(sizeof(float) * max_cols);
    for (int64_t i = 0; i < max_cols * rows; i++) w[i] = gauss();
    for (int64_t i = 0; i < max_cols; i++) x[i] = sinf((float)i * 0.37f);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const sb_type_traits *t = sb_type_traits_get(types[k]);
        /* a tail shorter than the kernel's chunk for 32-element types */
        const int64_t cols = t->blck_size == 256 ? 1024 : 1024 + 32;
        size_t rb;
        sb_dtype_row_bytes(types[k], cols, &rb);
        uint8_t *q = malloc(rb * rows);
        fill_rows(types[k], w, q, cols, rows, rb);
        sb_tensor tw = {.name = "w", .type = types[k], .n_dims = 2, .ne = {cols, rows, 1, 1}, .data = q,
                        .nbytes = rb * rows};
        float y[rows + 1];
        for (int64_t r = 0; r <= rows; r++) y[r] = -12345.0f;
        sb_matvec(&tw, x, y, 0, 2);
        sb_matvec(&tw, x, y, 2, rows); /* ranges compose */
        CHECK(y[rows] == -12345.0f, "matvec %s wrote past row_end", t->name);
        double worst = 0;
        int64_t worst_r = 0;
        for (int64_t r = 0; r < rows; r++) {
            sb_get_row(&tw, r, deq);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < cols; i++) ref += (double)deq[i] * x[i], mag += fabs((double)deq[i] * x[i]);
            double rel = fabs(y[r] - ref) / (mag + 1e-30);
            if (rel > worst) worst = rel, worst_r = r;
        }
        CHECK(guard_ok(deq, sizeof(float) * cols) || cols < max_cols, "get_row %s wrote past the row", t->name);
        CHECK(worst < 1e-5, "matvec %s (%lld x %lld): row %lld relative error %.3g", t->name, (long long)rows,
              (long long)cols, (long long)worst_r, worst);
        free(q);
    }
    free(w);
    free(x);
    free(deq);
}

/* Every f16 value against the IEEE 754 binary16 definition (computed in
 * double with ldexp), and f32 -> f16 rounding at every midpoint between
 * neighbouring halves (ties go to the even one), just above and just below. */
static void check_f16_exhaustive(void) {
    int bad_dec = -1, bad_round = -1;
    for (uint32_t h = 0; h < 0x10000; h++) {
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        if (h & 0x8000) v = -v;
        float f = sb_f16_to_f32((uint16_t)h);
        bool ok = isnan(v) ? isnan(f) && (signbit(f) != 0) == ((h & 0x8000) != 0) : (double)f == v && !signbit(f) == !signbit(v);
        if (!ok && bad_dec < 0) bad_dec = (int)h;
        if (e == 31) continue;
        if (sb_f32_to_f16(f) != h && bad_round < 0) bad_round = (int)h;
        /* midpoint to the next half of larger magnitude (the last finite one
         * rounds its midpoint, 65520, up to infinity) */
        uint16_t up = (uint16_t)(h + 1);
        double next = (up & 0x7c00) == 0x7c00 ? ldexp(1, 16) : fabs((double)sb_f16_to_f32(up));
        double mid = (fabs(v) + next) / 2; /* exact in float: 12 significant bits */
        float fm = (float)(h & 0x8000 ? -mid : mid);
        uint16_t even = (h & 1) ? up : (uint16_t)h;
        float above = nextafterf(fm, h & 0x8000 ? -INFINITY : INFINITY);
        float below = nextafterf(fm, 0);
        if ((sb_f32_to_f16(fm) != even || sb_f32_to_f16(above) != up || sb_f32_to_f16(below) != h) && bad_round < 0)
            bad_round = (int)h;
    }
    CHECK(bad_dec < 0, "f16 0x%04x decodes to %.9g", bad_dec, bad_dec >= 0 ? sb_f16_to_f32((uint16_t)bad_dec) : 0);
    CHECK(bad_round < 0, "f32 -> f16 rounding wrong next to half 0x%04x", bad_round);
}

int main(void) {
    check_f16_exhaustive();
    check_reference();
    check_roundtrip();
    check_matvec();
    /* f16 / bf16 edge cases: round to nearest even like numpy and PyTorch. */
    CHECK(sb_f32_to_f16(65520.0f) == 0x7c00 && sb_f32_to_f16(65519.0f) == 0x7bff, "f16 overflow rounding");
    CHECK(sb_f16_to_f32(0x0001) == 0x1p-24f && sb_f32_to_f16(0x1p-25f) == 0 && sb_f32_to_f16(0x1.8p-25f) == 1,
          "f16 subnormal rounding");
    CHECK(isnan(sb_f16_to_f32(0x7e00)) && sb_f16_to_f32(0xfc00) == -INFINITY && sb_f32_to_f16(NAN) >= 0x7c01,
          "f16 inf / nan");
    CHECK(sb_f32_to_bf16(1.00390625f) == 0x3f80 && sb_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even");
    CHECK(sb_dtype_from_name("Q4_K") == SB_Q4_K && sb_dtype_from_name("nope") == -1, "type names");
    size_t nb = 0;
    CHECK(sb_dtype_row_bytes(SB_Q4_K, 512, &nb) && nb == 288, "q4_K row of 512: %zu bytes", nb);
    CHECK(!sb_dtype_row_bytes(SB_Q4_K, 100, &nb) && !sb_dtype_row_bytes(99, 32, &nb) &&
              !sb_dtype_row_bytes(SB_F64, INT64_MAX, &nb) && !sb_dtype_row_bytes(SB_F32, -4, &nb),
          "row_bytes accepts a partial block, an unknown type, an overflow or a negative count");
    return TEST_END();
}
