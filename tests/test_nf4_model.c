/*
 * test_nf4_model.c - inference on an NF4 base against transformers +
 * bitsandbytes (tests/data/tiny_phi3_nf4, tools/gen_nf4_model_ref.py):
 *  - the 4-bit checkpoint transformers saved (bnb/) opens in sabio and gives
 *    bitsandbytes' logits (double quantization);
 *  - the float32 checkpoint (base/) quantized at load by
 *    sb_model_quantize_nf4 gives them too, with and without double
 *    quantization (our NF4 is bit-exact, so only summation order differs);
 *  - both paths decode token by token (sb_matvec) and in a batch (tiles);
 *  - sb_model_save_nf4 writes the same tensors, byte for byte, as
 *    transformers' save_pretrained did for bnb/ (and the folder reopens with
 *    the same logits; tools/check_nf4_saved.py loads it in transformers);
 *  - corrupt quant states are refused with an error naming the tensor.
 * Tolerance: 1e-4 absolute on logits of magnitude ~1-10 (float32 products in
 * a different order), as tests/test_model.c.
 */
#include <jansson.h>

#include "formats/nf4_st.h"
#include "model/model.h"
#include "test.h"

#define DIR "tests/data/tiny_phi3_nf4"
#define TOL 1e-4f

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *p = malloc(n * sizeof(float));
    size_t got = fread(p, sizeof(float), n, f);
    fclose(f);
    if (got != n) {
        free(p);
        return NULL;
    }
    return p;
}

/* Logits of the case whose double_quant equals dq, all at once (batch) or
 * one token per call. Returns the max abs difference from the reference. */
static float run(const sb_model *m, bool dq, bool one_by_one, const char *label) {
    json_error_t je;
    json_t *root = json_load_file(DIR "/ref.json", 0, &je);
    CHECK(root != NULL, "ref.json: %s", je.text);
    if (!root) return INFINITY;
    float worst = INFINITY;
    size_t ci;
    json_t *cs;
    json_array_foreach(json_object_get(root, "cases"), ci, cs) {
        if (json_is_true(json_object_get(cs, "double_quant")) != dq) continue;
        json_t *ids_j = json_object_get(cs, "prompt_ids");
        const int n = (int)json_array_size(ids_j), nv = (int)json_integer_value(json_object_get(cs, "n_vocab"));
        char path[256];
        snprintf(path, sizeof path, DIR "/%s", json_string_value(json_object_get(cs, "file")));
        float *ref = read_floats(path, (size_t)n * nv), *got = calloc((size_t)n * nv, sizeof(float));
        CHECK(ref != NULL, "cannot read %s", path);
        sb_err err = {0};
        sb_ctx *c = sb_ctx_new(m, 64, &err);
        CHECK(c != NULL, "%s", err.msg);
        if (c && ref) {
            sb_ctx_set_exact(c, true);
            sb_status st = SB_OK;
            for (int i = 0; i < n && st == SB_OK; i += one_by_one ? 1 : n) {
                int32_t ids[64];
                const int k = one_by_one ? 1 : n;
                for (int j = 0; j < k; j++) ids[j] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)(i + j)));
                st = sb_decode(c, ids, k, NULL, got + (size_t)i * nv, &err);
            }
            CHECK(st == SB_OK, "%s: %s", label, err.msg);
            worst = 0;
            size_t at = 0;
            for (size_t i = 0; i < (size_t)n * nv; i++)
                if (fabsf(got[i] - ref[i]) > worst || isnan(got[i])) worst = fabsf(got[i] - ref[i]), at = i;
            CHECK(worst <= TOL, "%s: max |logit - transformers+bitsandbytes| = %.3g at position %zu token %zu "
                  "(ours %.6f, theirs %.6f)", label, worst, at / nv, at % nv, got[at], ref[at]);
            printf("  %-44s max abs error %.3g\n", label, worst);
        }
        sb_ctx_free(c);
        free(ref);
        free(got);
    }
    json_decref(root);
    return worst;
}

/* One hand-made corrupt file per failure class: a 64 x 64 NF4 weight written
 * by the writer, then one field broken; the reader must refuse it with code
 * `want` and name the tensor. */
static void corrupt(int what, sb_status want, const char *label) {
    float x[4096];
    for (int i = 0; i < 4096; i++) x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    sb_nf4 q;
    sb_err err = {0};
    sb_nf4_quantize(x, 4096, 64, true, &q, &err);
    float bad_map[16];
    memcpy(bad_map, sb_nf4_code_f, sizeof bad_map);
    bad_map[3] += 0.01f;
    const char *js = what == 0 ? "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [64, 66], "
                                 "\"nested_blocksize\": 256, \"nested_offset\": 0.1}"
                     : what == 1 ? "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [64"
                     : what == 2 ? "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"shape\": [64, 64]}"
                     : what == 3 ? "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"shape\": [64, 64]}"
                                 : "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [64, 64], "
                                   "\"nested_blocksize\": 256, \"nested_offset\": 0.1}";
    const int64_t ne_w[2] = {1, 2048}, ne_b[1] = {what == 5 ? 63 : 64}, ne16[1] = {16}, ne256[1] = {256}, ne1[1] = {1};
    const int64_t ne_js[1] = {(int64_t)strlen(js)};
    sb_st_writer *w = sb_st_writer_new();
    sb_st_writer_add(w, "w", SB_ST_U8, 2, ne_w, q.qs, 2048);
    sb_st_writer_add(w, "w.absmax", SB_ST_U8, 1, ne_b, q.qabsmax, (size_t)ne_b[0]);
    sb_st_writer_add(w, "w.nested_absmax", SB_F32, 1, ne1, q.nested_absmax, 4);
    sb_st_writer_add(w, "w.nested_quant_map", SB_F32, 1, ne256, sb_nf4_dynamic_map_f, 1024);
    sb_st_writer_add(w, "w.quant_map", SB_F32, 1, ne16, what == 4 ? bad_map : sb_nf4_code_f, 64);
    sb_st_writer_add(w, "w.quant_state.bitsandbytes__nf4", SB_ST_U8, 1, ne_js, js, strlen(js));
    void *buf = NULL;
    size_t size = 0;
    CHECK(sb_st_writer_to_memory(w, &buf, &size, &err) == SB_OK, "%s", err.msg);
    sb_safetensors *st = buf ? sb_st_open_memory(buf, size, &err) : NULL;
    CHECK(st != NULL, "%s: %s", label, err.msg);
    if (st) {
        sb_nf4 r;
        int64_t shape[2];
        sb_status got = sb_st_nf4(st, "w", &r, shape, &err);
        CHECK(got == want && (want == SB_OK || strstr(err.msg, "tensor w")), "%s: status %d (want %d): %s", label, got, want, err.msg);
        if (got == SB_OK) sb_nf4_free(&r);
    }
    sb_st_free(st);
    free(buf);
    sb_st_writer_free(w);
    sb_nf4_free(&q);
}

int main(void) {
    corrupt(0, SB_ERR_FORMAT, "shape larger than the packed bytes");
    corrupt(1, SB_ERR_FORMAT, "truncated JSON");
    corrupt(2, SB_ERR_UNSUPPORTED, "fp4");
    corrupt(3, SB_ERR_FORMAT, "block size 48");
    corrupt(4, SB_ERR_UNSUPPORTED, "foreign code book");
    corrupt(5, SB_ERR_FORMAT, "absmax count");
    corrupt(6, SB_OK, "the well-formed file");
    sb_err err = {0};
    sb_model *m = sb_model_open(DIR "/bnb", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        CHECK(sb_model_get_config(m)->weight_type == 100 /* SB_NF4 */, "bnb checkpoint bound as NF4");
        run(m, true, false, "bitsandbytes checkpoint, batch");
        run(m, true, true, "bitsandbytes checkpoint, token by token");
        sb_model_free(m);
    }
    for (int dq = 1; dq >= 0; dq--) {
        m = sb_model_open(DIR "/base", &err);
        CHECK(m != NULL, "%s", err.msg);
        if (!m) continue;
        CHECK(sb_model_quantize_nf4(m, 64, dq, &err) == SB_OK, "%s", err.msg);
        run(m, dq, false, dq ? "f32 quantized at load (double quant), batch" : "f32 quantized at load, batch");
        run(m, dq, true, dq ? "f32 quantized at load (double quant), 1 by 1" : "f32 quantized at load, 1 by 1");
        sb_model_free(m);
    }
    /* written ahead of time: the same bytes as transformers' checkpoint */
    m = sb_model_open(DIR "/base", &err);
    CHECK(m && sb_model_quantize_nf4(m, 64, true, &err) == SB_OK, "%s", err.msg);
    CHECK(m && sb_model_save_nf4(m, "build/test_nf4_saved", &err) == SB_OK, "%s", err.msg);
    sb_model_free(m);
    sb_safetensors *ours = sb_st_open("build/test_nf4_saved/model.safetensors", &err);
    sb_safetensors *theirs = sb_st_open(DIR "/bnb/model.safetensors", &err);
    CHECK(ours && theirs, "%s", err.msg);
    if (ours && theirs) {
        CHECK(sb_st_n_tensors(ours) == sb_st_n_tensors(theirs), "%lld tensors, transformers wrote %lld",
              (long long)sb_st_n_tensors(ours), (long long)sb_st_n_tensors(theirs));
        int same = 0;
        for (int64_t i = 0; i < sb_st_n_tensors(theirs); i++) {
            sb_tensor a, b;
            sb_st_tensor(theirs, i, &b);
            int64_t j = sb_st_find(ours, b.name);
            bool ok = j >= 0 && sb_st_tensor(ours, j, &a) && a.type == b.type && a.nbytes == b.nbytes &&
                      !memcmp(a.ne, b.ne, sizeof a.ne) && !memcmp(a.data, b.data, a.nbytes);
            CHECK(ok, "tensor %s differs from transformers' save_pretrained", b.name);
            same += ok;
        }
        printf("  saved NF4 checkpoint: %d tensors equal to transformers'\n", same);
    }
    /* corrupt states: refused by name (the fuzz target covers more) */
    if (theirs) {
        sb_nf4 q;
        int64_t shape[2];
        CHECK(sb_st_nf4(theirs, "model.layers.0.mlp.down_proj.weight", &q, shape, &err) == SB_OK, "%s", err.msg);
        sb_nf4_free(&q);
        CHECK(sb_st_nf4(theirs, "model.embed_tokens.weight", &q, shape, &err) == SB_ERR_NOT_FOUND, "not NF4");
    }
    sb_st_free(ours);
    sb_st_free(theirs);
    m = sb_model_open("build/test_nf4_saved", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) run(m, true, false, "sabio-written NF4 checkpoint, batch");
    sb_model_free(m);
    return TEST_END();
}
