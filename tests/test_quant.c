/*
 * test_quant.c - dequantization and quantization, bit for bit against the
 * `gguf` Python package (tests/data/quant_ref.bin, made by
 * tools/gen_quant_ref.py), block sizes against gguf.GGML_QUANT_SIZES, and
 * sb_matvec against dequantize-then-dot in double precision.
 */
#include "tensor/matvec.h"
#include "tensor/tensor.h"
#include "test.h"

#include "base/base.h"

static uint32_t rd32(const uint8_t **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
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
    uint32_t n = rd32(&p);
    int n_deq = 0, n_q = 0;
    for (uint32_t r = 0; r < n && p + 20 <= end; r++) {
        uint32_t kind = rd32(&p), type = rd32(&p), elems = rd32(&p), bytes = rd32(&p), blocks = rd32(&p);
        const sb_type_traits *t = sb_type_traits_get((int)type);
        CHECK(t && t->blck_size == elems && t->type_size == bytes,
              "type %u: our block %lld elements / %zu bytes, gguf says %u / %u", type,
              t ? (long long)t->blck_size : -1LL, t ? t->type_size : 0, elems, bytes);
        size_t nel = (size_t)blocks * elems, nraw = (size_t)blocks * bytes;
        if (!t || p + nraw + nel * 4 > end) break;
        if (kind == 0) {
            float *want = malloc(nel * 4), *got = malloc(nel * 4);
            memcpy(want, p + nraw, nel * 4);
            t->to_float(p, got, (int64_t)nel);
            size_t bad = nel;
            for (size_t i = 0; i < nel && bad == nel; i++)
                if (memcmp(&want[i], &got[i], 4)) bad = i;
            CHECK(bad == nel, "dequantize %s: element %zu of %zu: got %.9g want %.9g", t->name, bad, nel,
                  bad < nel ? got[bad] : 0, bad < nel ? want[bad] : 0);
            n_deq++;
            free(want);
            free(got);
            p += nraw + nel * 4;
        } else {
            float *x = malloc(nel * 4);
            uint8_t *got = malloc(nraw);
            memcpy(x, p, nel * 4);
            CHECK(t->from_float != NULL, "%s: no quantizer", t->name);
            if (t->from_float) {
                t->from_float(x, got, (int64_t)nel);
                size_t bad = nraw;
                for (size_t i = 0; i < nraw && bad == nraw; i++)
                    if (got[i] != p[nel * 4 + i]) bad = i;
                CHECK(bad == nraw, "quantize %s: byte %zu (block %zu) got %02x want %02x", t->name, bad,
                      bad / bytes, bad < nraw ? got[bad] : 0, bad < nraw ? p[nel * 4 + bad] : 0);
            }
            n_q++;
            free(x);
            free(got);
            p += nel * 4 + nraw;
        }
    }
    CHECK(n_deq >= 11 && n_q >= 7, "reference covers %d dequantize and %d quantize types", n_deq, n_q);
    free(data);
}

/* sb_matvec against dequantize-then-dot in double precision. */
static void check_matvec(void) {
    const int types[] = {SB_F32, SB_F16, SB_BF16, SB_Q4_0, SB_Q4_1, SB_Q5_0, SB_Q5_1, SB_Q8_0};
    const int64_t cols = 512, rows = 7;
    float *w = malloc(sizeof(float) * cols * rows), *x = malloc(sizeof(float) * cols), *deq = malloc(sizeof(float) * cols);
    uint64_t s = 42;
    for (int64_t i = 0; i < cols * rows; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((int64_t)(s >> 40) % 2001 - 1000) / 700.0f;
    }
    for (int64_t i = 0; i < cols; i++) x[i] = sinf((float)i * 0.37f);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const sb_type_traits *t = sb_type_traits_get(types[k]);
        size_t rb;
        sb_dtype_row_bytes(types[k], cols, &rb);
        uint8_t *q = malloc(rb * rows);
        for (int64_t r = 0; r < rows; r++) t->from_float(w + r * cols, q + r * rb, cols);
        sb_tensor tw = {.name = "w", .type = types[k], .n_dims = 2, .ne = {cols, rows, 1, 1}, .data = q,
                        .nbytes = rb * rows};
        float y[8];
        sb_matvec(&tw, x, y, 0, rows);
        double worst = 0;
        for (int64_t r = 0; r < rows; r++) {
            sb_get_row(&tw, r, deq);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < cols; i++) ref += (double)deq[i] * x[i], mag += fabs((double)deq[i] * x[i]);
            double rel = fabs(y[r] - ref) / (mag + 1e-30);
            if (rel > worst) worst = rel;
        }
        CHECK(worst < 1e-5, "matvec %s: relative error %.3g", t->name, worst);
        free(q);
    }
    free(w);
    free(x);
    free(deq);
}

int main(void) {
    check_reference();
    check_matvec();
    /* f16 edge cases: the conversions round to nearest even like numpy. */
    CHECK(sb_f32_to_f16(65520.0f) == 0x7c00 && sb_f32_to_f16(65519.0f) == 0x7bff, "f16 overflow rounding");
    CHECK(sb_f16_to_f32(0x0001) == 0x1p-24f && sb_f32_to_f16(0x1p-25f) == 0 && sb_f32_to_f16(0x1.8p-25f) == 1,
          "f16 subnormal rounding");
    CHECK(sb_f32_to_bf16(1.00390625f) == 0x3f80 && sb_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even");
    CHECK(sb_dtype_from_name("Q4_K") == SB_Q4_K && sb_dtype_from_name("nope") == -1, "type names");
    return TEST_END();
}
