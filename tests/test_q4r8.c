/*
 * test_q4r8.c - Q4_0 repacked 8 rows at a time (tensor/q4r8.h, SB_Q4_0_R8)
 * against Q4_0 itself.
 *
 * 1. Layout: packing random Q4_0 rows and reading every row back gives the
 *    original bytes; sb_get_row equals Q4_0's to_float.
 * 2. Kernel: at every level the CPU runs, for 1..6 activation rows and row
 *    ranges that start and end inside a group, each output equals
 *    sb_qdot_q4_0_scalar of the original row bit for bit (the layout's
 *    promise: the scalar kernel's operations in its order), and nothing
 *    outside the range is written.
 * 3. The generic entry points on an R8 view: sb_matvec (float x) equals it
 *    on the Q4_0 view bit for bit, sb_matvec_q / sb_matmul_q equal the
 *    scalar row kernel, and the prompt panels (sb_pgemm, every level that
 *    has R8) equal Q4_0's panels at the same level bit for bit.
 * 4. A model: tiny Phi-3 quantized to Q4_0 (sb_model_quantize), then
 *    repacked (sb_model_repack): prompt logits (panels) and exact-mode logits
 *    equal the unrepacked model's bit for bit, decode logits agree within the
 *    float reordering bound, and results do not depend on the thread count.
 */
#include "model/model.h"
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "tensor/pgemm.h"
#include "tensor/q4r8.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static uint64_t rng = 0x243f6a8885a308d3ull;

/* rows random Q4_0 rows of n elements: every nibble pattern, small f16 scales */
static uint8_t *random_q4_0(int64_t n, int64_t rows) {
    const size_t rb = (size_t)(n / 32) * 18, bytes = rb * (size_t)rows;
    uint8_t *w = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)test_xorshift(&rng);
    for (size_t b = 0; b < bytes; b += 18) {
        uint16_t h = sb_f32_to_f16(0.001f + 0.05f * test_frand(&rng));
        memcpy(w + b, &h, 2);
    }
    return w;
}

static void layout(void) {
    const int64_t n = 96, rows = 24;
    const size_t rb = (size_t)(n / 32) * 18;
    uint8_t *w = random_q4_0(n, rows), *p = malloc(rb * rows), back[18 * 3];
    sb_q4r8_pack_scalar(w, p, n, 0, 8);
    sb_q4r8_pack_scalar(w, p, n, 8, rows); /* in two calls, as threads would */
    uint8_t *p2 = malloc(rb * rows);
    if (sb_isa_supported(SB_ISA_AVX2)) {
        memset(p2, 0, rb * rows);
        sb_q4r8_pack_avx2(w, p2, n, 0, rows);
        CHECK(!memcmp(p, p2, rb * rows), "the AVX2 packing writes the scalar one's bytes");
    }
    free(p2);
    bool same = true, deq = true;
    float a[96], b[96];
    sb_tensor q = {.type = SB_Q4_0, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = w, .nbytes = rb * rows};
    sb_tensor r = q;
    r.type = SB_Q4_0_R8, r.data = p;
    for (int64_t i = 0; i < rows; i++) {
        sb_q4r8_row_bytes(p, n, i, back);
        same &= !memcmp(back, w + (size_t)i * rb, rb);
        sb_get_row(&q, i, a);
        sb_get_row(&r, i, b);
        deq &= !memcmp(a, b, sizeof a);
    }
    CHECK(same, "every row packed and read back is the original Q4_0 bytes");
    CHECK(deq, "sb_get_row of the repacked view equals Q4_0's to_float");
    CHECK(sb_q4r8_fits(96, 24) && !sb_q4r8_fits(96, 20) && !sb_q4r8_fits(40, 8) &&
              !sb_q4r8_fits(SB_Q4R8_MAX_IN + 32, 8),
          "sb_q4r8_fits wants rows %% 8 == 0 and whole blocks");
    CHECK(sb_dtype_from_name("q4_0_r8") < 0, "the in-memory layout is not a type one can ask for");
    free(w), free(p);
}

static void kernel(void) {
    const int64_t lens[] = {32, 96, 3072};
    int levels_run = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li], rows = 40;
        const size_t rb = (size_t)(n / 32) * 18;
        uint8_t *w = random_q4_0(n, rows), *p = malloc(rb * rows);
        sb_q4r8_pack(w, p, n, 0, rows);
        const int NX = 6;
        const size_t xs = sb_act_bytes(SB_Q8_0, n) + 8; /* a stride that is not the row size */
        uint8_t *xq = malloc(xs * NX);
        float *x = malloc(sizeof(float) * (size_t)n);
        for (int j = 0; j < NX; j++) {
            for (int64_t i = 0; i < n; i++) x[i] = 2 * test_frand(&rng) - 1;
            sb_act_quantize(SB_Q8_0, x, xq + (size_t)j * xs, n);
        }
        float ref[6 * 40];
        for (int j = 0; j < NX; j++)
            for (int64_t r = 0; r < rows; r++)
                ref[j * rows + r] = sb_qdot_q4_0_scalar(w + (size_t)r * rb, xq + (size_t)j * xs, n);
        for (int l = 0; l < SB_ISA_COUNT; l++) {
            if (!sb_isa_supported(l) || !sb_q4r8_at(l)) continue;
            levels_run++;
            const int64_t ranges[][2] = {{0, 40}, {3, 29}, {8, 16}, {17, 18}, {0, 0}};
            for (int nx = 1; nx <= NX; nx++)
                for (size_t g = 0; g < sizeof ranges / sizeof ranges[0]; g++) {
                    const int64_t r0 = ranges[g][0], r1 = ranges[g][1];
                    float y[6 * 40];
                    for (int i = 0; i < 6 * 40; i++) y[i] = 12345.0f;
                    sb_q4r8_matmul(p, n, xq, xs, nx, y, rows, r0, r1, l);
                    bool ok = true;
                    for (int j = 0; j < NX; j++)
                        for (int64_t r = 0; r < rows; r++) {
                            const bool in = j < nx && r >= r0 && r < r1;
                            ok &= in ? y[j * rows + r] == ref[j * rows + r] : y[j * rows + r] == 12345.0f;
                        }
                    CHECK(ok, "n=%lld level %d, %d activation rows, rows [%lld, %lld): equals the scalar Q4_0 kernel "
                              "bit for bit, nothing else written",
                          (long long)n, l, nx, (long long)r0, (long long)r1);
                }
        }
        /* the generic entry points */
        sb_tensor q = {.type = SB_Q4_0, .n_dims = 2, .ne = {n, rows, 1, 1}, .data = w, .nbytes = rb * rows};
        sb_tensor r8 = q;
        r8.type = SB_Q4_0_R8, r8.data = p;
        CHECK(sb_act_type(SB_Q4_0_R8) == SB_Q8_0, "R8 reads Q4_0's activations");
        float a[40], b[40];
        sb_matvec_q(&r8, xq, a, 0, rows);
        CHECK(!memcmp(a, ref, sizeof a), "n=%lld: sb_matvec_q on R8 equals the scalar kernel", (long long)n);
        float mq[3 * 40];
        sb_matmul_q(&r8, xq, xs, 3, mq, rows, 0, rows);
        CHECK(!memcmp(mq, ref, sizeof mq), "n=%lld: sb_matmul_q (3 rows) on R8 equals the scalar kernel", (long long)n);
        for (int64_t i = 0; i < n; i++) x[i] = 2 * test_frand(&rng) - 1;
        sb_matvec(&q, x, a, 0, rows);
        sb_matvec(&r8, x, b, 0, rows);
        CHECK(!memcmp(a, b, sizeof a), "n=%lld: sb_matvec (float x) on R8 equals Q4_0's", (long long)n);
        /* prompt panels: 20 activation rows (JMAX passes and a tail) */
        if (n % 32 == 0) {
            const int NB = 20;
            const size_t ps = sb_pgemm_act_bytes(n);
            uint8_t *xa = malloc(ps * NB);
            for (int j = 0; j < NB; j++) {
                for (int64_t i = 0; i < n; i++) x[i] = 2 * test_frand(&rng) - 1;
                sb_pgemm_quantize(SB_Q4_0_R8, x, (sb_q8p *)(void *)(xa + (size_t)j * ps), n);
            }
            void *scratch = malloc(sb_pgemm_scratch_bytes(n));
            float *yq = malloc(sizeof(float) * NB * rows), *yr = malloc(sizeof(float) * NB * rows);
            for (int l = 0; l < SB_ISA_COUNT; l++) {
                if (!sb_isa_supported(l) || !sb_pgemm_has(SB_Q4_0_R8, l)) continue;
                sb_pgemm(&q, xa, ps, NB, yq, rows, 0, rows, scratch, l);
                sb_pgemm(&r8, xa, ps, NB, yr, rows, 0, rows, scratch, l);
                CHECK(!memcmp(yq, yr, sizeof(float) * NB * rows), "n=%lld: pgemm level %d on R8 equals Q4_0's",
                      (long long)n, l);
            }
            CHECK(sb_pgemm_level(SB_Q4_0_R8) == (sb_isa_supported(SB_ISA_AVX2) ? SB_ISA_AVX2 : -1),
                  "R8 prompts use the AVX2 panels");
            free(xa), free(scratch), free(yq), free(yr);
        }
        free(w), free(p), free(xq), free(x);
    }
    CHECK(levels_run >= 3 * (sb_isa_supported(SB_ISA_AVX2) ? 2 : 1), "the scalar and every SIMD kernel ran (%d)",
          levels_run);
}

/* logits of a 20-token prompt (panels), then of one decoded token */
static void logits(const sb_model *m, int threads, bool exact, float *out, int nv) {
    sb_err e = {0};
    sb_ctx *c = sb_ctx_new(m, 32, &e);
    CHECK(c && sb_ctx_set_threads(c, threads, &e) == SB_OK, "%s", e.msg);
    if (!c) return;
    sb_ctx_set_exact(c, exact);
    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = (int32_t)((i * 37 + 5) % nv);
    CHECK(sb_decode(c, ids, 20, out, NULL, &e) == SB_OK, "%s", e.msg);
    CHECK(sb_decode(c, ids + 3, 1, out + nv, NULL, &e) == SB_OK, "%s", e.msg);
    sb_ctx_free(c);
}

static void model(void) {
    sb_err err = {0};
    sb_model *src = sb_model_open("tests/data/tiny_phi3_4k", &err);
    CHECK(src != NULL, "%s", err.msg);
    if (!src) return;
    char path[128];
    snprintf(path, sizeof path, "/tmp/sabio_test_q4r8_%d.gguf", (int)getpid());
    CHECK(sb_model_quantize(src, path, "Q4_0", 1, &err) == SB_OK, "quantize: %s", err.msg);
    sb_model_free(src);
    sb_model *a = sb_model_open(path, &err), *b = sb_model_open(path, &err);
    CHECK(a && b, "%s", err.msg);
    if (!a || !b) goto out;
    int n = -1;
    CHECK(sb_model_repack(b, &n, &err) == SB_OK, "repack: %s", err.msg);
    if (!sb_model_repack_applies()) {
        CHECK(n == 0, "no repacking where the best kernels are not AVX2 (%d)", n);
        SKIP("repacked model: this CPU's kernels are %s, not avx2", sb_kernels_isa());
        goto out;
    }
    /* tiny_phi3: 2 layers of qkv, o, gate_up, down; lm_head is Q6_K (sb_model_quantize) */
    CHECK(n == 8, "repacked %d matrices, expected the 8 Q4_0 projections", n);
    int again = -1;
    CHECK(sb_model_repack(b, &again, &err) == SB_OK && again == 0, "a second repack changes nothing (%d)", again);
    const int nv = sb_model_get_config(a)->n_vocab;
    float *la = malloc(sizeof(float) * 2 * nv), *lb = malloc(sizeof(float) * 2 * nv);
    logits(a, 1, true, la, nv);
    logits(b, 1, true, lb, nv);
    CHECK(!memcmp(la, lb, sizeof(float) * 2 * nv), "exact mode: repacked logits equal Q4_0's bit for bit");
    logits(a, 1, false, la, nv);
    logits(b, 1, false, lb, nv);
    CHECK(!memcmp(la, lb, sizeof(float) * nv), "20-token prompt (8-bit panels): repacked logits equal Q4_0's");
    /* decode: the same integers, float sums in another order (the AVX2 row
     * kernels add blocks in lanes, R8 in order); through two layers that
     * moves a logit by rounding only */
    float worst = 0, scale = 0;
    for (int i = 0; i < nv; i++) {
        worst = fmaxf(worst, fabsf(la[nv + i] - lb[nv + i]));
        scale = fmaxf(scale, fabsf(la[nv + i]));
    }
    CHECK(worst <= 1e-4f * scale + 1e-6f, "decode: repacked logits within 1e-4 of the largest (%.3g of %.3g)", worst,
          scale);
    float *lt = malloc(sizeof(float) * 2 * nv);
    for (int t = 2; t <= 3; t++) {
        logits(b, t, false, lt, nv);
        CHECK(!memcmp(lb, lt, sizeof(float) * 2 * nv), "repacked: %d threads give the 1-thread logits", t);
    }
    free(la), free(lb), free(lt);
out:
    sb_model_free(a);
    sb_model_free(b);
    unlink(path);
}

int main(void) {
    layout();
    kernel();
    model();
    return TEST_END();
}
