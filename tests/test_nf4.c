/*
 * test_nf4.c - NF4 against bitsandbytes, and the NF4 kernels against their
 * scalar reference.
 *
 *  - tests/data/nf4_ref.bin (tools/gen_nf4_ref.py: bitsandbytes 0.50.2 on
 *    CPU): for every case our quantization gives the same packed bytes,
 *    absmax (or, with double quantization, the same offset, 8-bit absmax
 *    codes and nested absmax) byte for byte, and our dequantization of
 *    bitsandbytes' own quantized state gives its float32 (or bfloat16) values
 *    bit for bit. Cases: random normals at block sizes 32..256, tails, odd n,
 *    zero / constant / subnormal blocks, values on the code book's midpoints
 *    and one float step either side, bf16 input, real SmolLM2 weights (read
 *    here from the same GGUF; skipped when models/ is absent).
 *  - kernels: row dequantization at every instruction set level equals the
 *    scalar one bit for bit; row dots, sb_matvec and sb_matmul on SB_NF4 views
 *    match the double-precision dot of the dequantized rows within 1e-5 of
 *    sum |w x|; output buffers carry sentinels.
 */
#include "base/base.h"
#include "formats/gguf.h"
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "tensor/nf4.h"
#include "test.h"

#define REF "tests/data/nf4_ref.bin"
#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static const void *take(rd *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const void *q = r->p;
    r->p += n;
    return q;
}
static uint32_t u32(rd *r) {
    uint32_t v = 0;
    const void *q = take(r, 4);
    if (q) memcpy(&v, q, 4);
    return v;
}
static uint64_t u64(rd *r) {
    uint64_t v = 0;
    const void *q = take(r, 8);
    if (q) memcpy(&v, q, 8);
    return v;
}
static float f32(rd *r) {
    float v = 0;
    const void *q = take(r, 4);
    if (q) memcpy(&v, q, 4);
    return v;
}

static uint64_t fnv(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static size_t first_diff(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return i;
    return n;
}

/* ---------------------------------------------------- bitsandbytes -- */

static int n_cases_run;

static void check_case(rd *r, sb_gguf *model) {
    char name[49] = {0};
    const void *nm = take(r, 48);
    if (nm) memcpy(name, nm, 48);
    const int bs = (int)u32(r), nested = (int)u32(r), source = (int)u32(r);
    const int64_t n = (int64_t)u64(r);
    if (r->bad || n <= 0 || n > (1 << 26)) {
        r->bad = true;
        return;
    }
    const int64_t nb = (n + bs - 1) / bs, nn = (nb + 255) / 256;
    float *x = malloc((size_t)n * 4), *deq = malloc((size_t)n * 4);
    bool have_input = true;
    if (source == 0) {
        const void *in = take(r, (size_t)n * 4);
        if (in) memcpy(x, in, (size_t)n * 4);
    } else if (source == 1) {
        const uint8_t *in = take(r, (size_t)n * 2);
        for (int64_t i = 0; in && i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            x[i] = sb_bf16_to_f32(h);
        }
    } else {
        int64_t ti = model ? sb_gguf_find_tensor(model, name) : -1;
        sb_tensor t;
        have_input = ti >= 0 && sb_gguf_tensor(model, ti, &t) && sb_tensor_nelements(&t) == n;
        if (have_input) sb_type_traits_get(t.type)->to_float(t.data, x, n);
    }
    const bool full = u32(r) != 0;
    const size_t qb = (size_t)((n + 1) / 2);
    const uint8_t *ref_qs = NULL, *ref_qa = NULL;
    const float *ref_absmax = NULL, *ref_nabs = NULL;
    float ref_offset = 0;
    const void *ref_deq = NULL;
    uint64_t h_qs = 0, h_abs = 0, h_nabs = 0, h_deq = 0;
    if (full) {
        ref_qs = take(r, qb);
        if (nested) {
            ref_qa = take(r, (size_t)nb);
            ref_nabs = take(r, (size_t)nn * 4);
            ref_offset = f32(r);
        } else {
            ref_absmax = take(r, (size_t)nb * 4);
        }
        ref_deq = take(r, (size_t)n * (source == 1 ? 2 : 4));
    } else {
        h_qs = u64(r), h_abs = u64(r), h_nabs = u64(r), ref_offset = f32(r), h_deq = u64(r);
    }
    if (r->bad) goto done;
    if (!have_input) {
        SKIP("%s: %s not readable (models/ absent?)", name, MODEL);
        goto done;
    }
    n_cases_run++;

    sb_nf4 q;
    sb_err err = {0};
    CHECK(sb_nf4_quantize(x, n, bs, nested, &q, &err) == SB_OK, "%s: %s", name, err.msg);
    if (!q.qs) goto done;
    const size_t ab = nested ? (size_t)nb : (size_t)nb * 4;
    const void *our_abs = nested ? (const void *)q.qabsmax : (const void *)q.absmax;
    if (full) {
        size_t d = first_diff(q.qs, ref_qs, qb);
        CHECK(d == qb, "%s bs=%d nested=%d: packed byte %zu: ours 0x%02x, bitsandbytes 0x%02x", name, bs,
              nested, d, q.qs[d < qb ? d : 0], ref_qs[d < qb ? d : 0]);
        if (nested) {
            CHECK(memcmp(&q.offset, &ref_offset, 4) == 0, "%s: offset ours %.9g, bitsandbytes %.9g", name,
                  (double)q.offset, (double)ref_offset);
            d = first_diff(q.qabsmax, ref_qa, (size_t)nb);
            CHECK(d == (size_t)nb, "%s bs=%d: 8-bit absmax %zu: ours %u, bitsandbytes %u", name, bs, d,
                  q.qabsmax[d < (size_t)nb ? d : 0], ref_qa[d < (size_t)nb ? d : 0]);
            CHECK(memcmp(q.nested_absmax, ref_nabs, (size_t)nn * 4) == 0, "%s: nested absmax differ", name);
        } else {
            size_t i = first_diff(q.absmax, ref_absmax, (size_t)nb * 4) / 4;
            CHECK(i == (size_t)nb, "%s bs=%d: absmax %zu: ours %.9g, bitsandbytes %.9g", name, bs, i,
                  (double)q.absmax[i < (size_t)nb ? i : 0], (double)ref_absmax[i < (size_t)nb ? i : 0]);
        }
        /* dequantize bitsandbytes' own state (its float arrays copied: the file's are unaligned) */
        float *abs_copy = NULL, *nabs_copy = NULL;
        if (ref_absmax) abs_copy = malloc((size_t)nb * 4), memcpy(abs_copy, ref_absmax, (size_t)nb * 4);
        if (ref_nabs) nabs_copy = malloc((size_t)nn * 4), memcpy(nabs_copy, ref_nabs, (size_t)nn * 4);
        sb_nf4 b = {.n = n, .blocksize = bs, .n_blocks = nb, .qs = ref_qs, .absmax = abs_copy,
                    .nested = nested, .qabsmax = ref_qa, .nested_absmax = nabs_copy,
                    .nested_blocksize = 256, .offset = ref_offset};
        CHECK(sb_nf4_check(&b, &err) == SB_OK, "%s: %s", name, err.msg);
        sb_nf4_dequantize(&b, 0, n, deq);
        if (source == 1) {
            const uint8_t *ref16 = ref_deq;
            int64_t bad = -1;
            for (int64_t i = 0; i < n && bad < 0; i++) {
                uint16_t h = sb_f32_to_bf16(deq[i]), want;
                memcpy(&want, ref16 + 2 * i, 2);
                if (h != want) bad = i;
            }
            CHECK(bad < 0, "%s: bf16 dequantized element %lld differs", name, (long long)bad);
        } else {
            size_t i = first_diff(deq, ref_deq, (size_t)n * 4) / 4;
            float want = 0;
            if (i < (size_t)n) memcpy(&want, (const uint8_t *)ref_deq + 4 * i, 4);
            CHECK(i == (size_t)n, "%s bs=%d nested=%d: dequantized %zu: ours %.9g, bitsandbytes %.9g", name,
                  bs, nested, i, (double)deq[i < (size_t)n ? i : 0], (double)want);
        }
        /* a piece in the middle, from an odd element */
        if (n > 100) {
            float piece[37];
            sb_nf4_dequantize(&b, 63, 37, piece);
            CHECK(!memcmp(piece, deq + 63, sizeof piece), "%s: dequantize from element 63", name);
        }
        free(abs_copy);
        free(nabs_copy);
    } else {
        CHECK(fnv(q.qs, qb) == h_qs, "%s bs=%d nested=%d: packed bytes differ from bitsandbytes'", name, bs,
              nested);
        CHECK(fnv(our_abs, ab) == h_abs, "%s nested=%d: absmax differ from bitsandbytes'", name, nested);
        if (nested) {
            CHECK(memcmp(&q.offset, &ref_offset, 4) == 0, "%s: offset ours %.9g, bitsandbytes %.9g", name,
                  (double)q.offset, (double)ref_offset);
            CHECK(fnv(q.nested_absmax, (size_t)nn * 4) == h_nabs, "%s: nested absmax differ", name);
        }
        sb_nf4_dequantize(&q, 0, n, deq);
        CHECK(fnv(deq, (size_t)n * 4) == h_deq, "%s nested=%d: dequantized values differ from bitsandbytes'",
              name, nested);
    }
    /* the quantizer given bitsandbytes' offset reproduces the rest alone */
    if (nested) {
        sb_nf4 q2;
        CHECK(sb_nf4_quantize_offset(x, n, bs, ref_offset, &q2, &err) == SB_OK, "%s", err.msg);
        CHECK(full ? !memcmp(q2.qabsmax, ref_qa, (size_t)nb) : fnv(q2.qabsmax, (size_t)nb) == h_abs,
              "%s: 8-bit absmax from bitsandbytes' offset", name);
        sb_nf4_free(&q2);
    }
    sb_nf4_free(&q);
done:
    free(x);
    free(deq);
}

static void test_reference(void) {
    sb_err err = {0};
    sb_mmap f = {0};
    CHECK(sb_mmap_open(&f, REF, &err) == SB_OK, "%s: %s", REF, err.msg);
    if (!f.data) return;
    rd r = {f.data, (const uint8_t *)f.data + f.size, false};
    const void *magic = take(&r, 4);
    CHECK(magic && !memcmp(magic, "NF4R", 4), "bad magic");
    CHECK(u32(&r) == 1, "version");
    const uint32_t n = u32(&r);
    sb_gguf *model = sb_file_exists(MODEL) ? sb_gguf_open(MODEL, NULL) : NULL;
    for (uint32_t i = 0; i < n && !r.bad; i++) check_case(&r, model);
    CHECK(!r.bad && r.p == r.end, "%s: truncated or trailing bytes", REF);
    CHECK(n_cases_run >= 20, "only %d of %u cases ran", n_cases_run, n);
    sb_gguf_free(model);
    sb_mmap_close(&f);
}

/* ---------------------------------------------------------- kernels -- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

#define GUARD 16

static void test_kernels(int bs, bool nested, int64_t n_in, int64_t rows) {
    const int64_t n = n_in * rows;
    float *w = malloc((size_t)n * 4), *x = malloc((size_t)n_in * 4 * 8);
    for (int64_t i = 0; i < n; i++) w[i] = frand() * frand() * 0.1f;
    for (int64_t i = 0; i < n_in * 8; i++) x[i] = frand();
    sb_nf4 q;
    sb_err err = {0};
    CHECK(sb_nf4_quantize(w, n, bs, nested, &q, &err) == SB_OK, "%s", err.msg);
    sb_tensor t;
    sb_nf4_view(&q, "w", n_in, rows, &t);
    float *ref = malloc((size_t)n * 4), *got = malloc(((size_t)n + GUARD) * 4);
    sb_nf4_dequantize(&q, 0, n, ref);

    /* rows dequantized at every level == the scalar dequantizer */
    for (int isa = 0; isa < SB_ISA_COUNT; isa++) {
        sb_nf4_deq_fn deq = sb_nf4_deq_at(isa);
        sb_nf4_dot_fn dot = sb_nf4_dot_at(isa);
        if (!deq || !dot) continue;
        float scale[256];
        const int64_t bpr = n_in / bs;
        int bad_rows = 0, bad_dots = 0;
        for (int64_t r = 0; r < rows; r++) {
            if (bpr > 256 || n_in % bs) break;
            for (int64_t b = 0; b < bpr; b++) scale[b] = sb_nf4_scale(&q, r * bpr + b);
            for (int g = 0; g < GUARD; g++) got[n_in + g] = 12345.0f;
            deq(q.qs + r * n_in / 2, scale, bpr, bs, got);
            bool guard = true;
            for (int g = 0; g < GUARD; g++) guard &= got[n_in + g] == 12345.0f;
            if (memcmp(got, ref + r * n_in, (size_t)n_in * 4) || !guard) bad_rows++;
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n_in; i++) {
                want += (double)ref[r * n_in + i] * x[i];
                mag += fabs((double)ref[r * n_in + i] * x[i]);
            }
            float d = dot(q.qs + r * n_in / 2, scale, bpr, bs, x);
            if (fabs(d - want) > 1e-5 * mag + 1e-30) bad_dots++;
        }
        CHECK(bad_rows == 0, "isa %d bs=%d nested=%d: %d rows dequantize differently from scalar", isa, bs, nested,
              bad_rows);
        CHECK(bad_dots == 0, "isa %d bs=%d: %d row dots off", isa, bs, bad_dots);
    }

    /* the generic entry points on an SB_NF4 view */
    float *y = malloc(((size_t)rows * 8 + GUARD) * 4), *scratch = malloc((size_t)SB_MATMUL_TILE * n_in * 4);
    for (int g = 0; g < GUARD; g++) y[rows + g] = 777.0f;
    sb_matvec(&t, x, y, 0, rows);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n_in; i++) {
            want += (double)ref[r * n_in + i] * x[i];
            mag += fabs((double)ref[r * n_in + i] * x[i]);
        }
        if (fabs(y[r] - want) > 1e-5 * mag + 1e-30) bad++;
    }
    CHECK(bad == 0 && y[rows] == 777.0f, "sb_matvec on NF4: %d rows off", bad);
    sb_matmul(&t, x, 8, y, rows, scratch);
    bad = 0;
    for (int b = 0; b < 8; b++)
        for (int64_t r = 0; r < rows; r++) {
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n_in; i++) {
                want += (double)ref[r * n_in + i] * x[b * n_in + i];
                mag += fabs((double)ref[r * n_in + i] * x[b * n_in + i]);
            }
            if (fabs(y[b * rows + r] - want) > 1e-5 * mag + 1e-30) bad++;
        }
    CHECK(bad == 0, "sb_matmul on NF4: %d outputs off", bad);
    sb_get_row(&t, rows - 1, got);
    CHECK(!memcmp(got, ref + (rows - 1) * n_in, (size_t)n_in * 4), "sb_get_row on NF4");
    free(y);
    free(scratch);
    free(ref);
    free(got);
    free(w);
    free(x);
    sb_nf4_free(&q);
}

static void test_errors(void) {
    sb_nf4 q;
    float x[64] = {0};
    CHECK(sb_nf4_quantize(x, 64, 48, false, &q, NULL) == SB_ERR_INVALID, "block size 48 refused");
    CHECK(sb_nf4_quantize(x, 0, 64, false, &q, NULL) == SB_ERR_INVALID, "n = 0 refused");
    sb_nf4 b = {.n = 100, .blocksize = 64, .n_blocks = 1};
    CHECK(sb_nf4_check(&b, NULL) == SB_ERR_FORMAT, "wrong block count refused");
}

int main(void) {
    fprintf(stderr, "NF4 kernels: %s\n", sb_nf4_isa());
    test_reference();
    test_kernels(64, false, 576, 37);
    test_kernels(64, true, 3072, 9);
    test_kernels(32, true, 96, 300);
    test_kernels(128, false, 1536, 5);
    test_kernels(64, true, 96, 40); /* rows straddle blocks */
    test_errors();
    return TEST_END();
}
