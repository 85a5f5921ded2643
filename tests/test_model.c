/*
 * test_model.c - the decoder against Hugging Face transformers.
 *
 * tests/data/tiny_phi3_{4k,128k,gqa}/ and tiny_llama/ hold tiny random
 * checkpoints and the logits transformers' Phi3ForCausalLM /
 * LlamaForCausalLM (eager, float32) computes for
 * fixed prompts (tools/make_tiny_phi3.py). For each model, from safetensors
 * and again after sb_model_save_gguf (F32) and reload: every position's
 * logits within 1e-4 of transformers', for one-call and two-call decoding;
 * after an F16 export within a bound that f16 weight rounding allows.
 * Then load-time validation: a missing tensor, a wrong shape, head counts
 * that do not divide, a context above the trained one, a bad token id.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "test.h"

#define TOL 1e-4f

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc(n * sizeof(float));
    size_t got = v ? fread(v, sizeof(float), n, f) : 0;
    fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

static float max_abs_diff(const float *a, const float *b, size_t n, size_t *at) {
    float m = 0.0f;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) { /* NaN counts as worst */
            m = isnan(d) ? INFINITY : d;
            *at = i;
        }
    }
    return m;
}

/* Runs every case of dir/ref.json on model m; returns the largest error. */
static float run_cases(const sb_model *m, const char *dir, const char *label, float tol) {
    char path[512];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    CHECK(root != NULL, "%s: %s", path, je.text);
    if (!root) return INFINITY;
    const sb_model_config *cfg = sb_model_get_config(m);
    float worst = 0.0f;
    size_t ci;
    json_t *cs;
    json_array_foreach(json_object_get(root, "cases"), ci, cs) {
        const char *name = json_string_value(json_object_get(cs, "name"));
        json_t *ids_j = json_object_get(cs, "prompt_ids");
        int n = (int)json_array_size(ids_j);
        int rows = (int)json_integer_value(json_object_get(cs, "rows"));
        int nv = (int)json_integer_value(json_object_get(cs, "n_vocab"));
        json_t *split_j = json_object_get(cs, "split");
        int split = split_j ? (int)json_integer_value(split_j) : 0;
        CHECK(nv == cfg->n_vocab, "%s %s: n_vocab %d vs model %d", label, name, nv, cfg->n_vocab);
        CHECK(rows == n - split, "%s %s: %d rows for %d tokens split at %d", label, name, rows, n,
              split);
        if (nv != cfg->n_vocab || rows != n - split) continue;
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)i));
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(cs, "file")));
        float *ref = read_floats(path, (size_t)rows * nv);
        CHECK(ref != NULL, "cannot read %s", path);
        float *got = calloc((size_t)n * nv, sizeof(float));
        float *last = calloc((size_t)nv, sizeof(float));
        sb_err err = {0};
        sb_ctx *c = sb_ctx_new(m, cfg->n_ctx_train < 128 ? cfg->n_ctx_train : 128, &err);
        CHECK(c != NULL, "%s: %s", label, err.msg);
        if (ref && c) {
            sb_status st = SB_OK;
            if (split) st = sb_decode(c, ids, split, last, NULL, &err);
            if (st == SB_OK) st = sb_decode(c, ids + split, n - split, last, got, &err);
            CHECK(st == SB_OK, "%s %s: %s", label, name, err.msg);
            CHECK(sb_ctx_n_past(c) == n, "%s %s: n_past %d, expected %d", label, name,
                  sb_ctx_n_past(c), n);
            size_t at;
            float e = max_abs_diff(got, ref, (size_t)rows * nv, &at);
            CHECK(e <= tol, "%s %s: max |logit - transformers| = %.3g at position %zu token %zu "
                  "(ours %.6f, theirs %.6f), tolerance %.1g",
                  label, name, e, at / nv + split, at % nv, got[at], ref[at], tol);
            float e2 = max_abs_diff(last, got + (size_t)(rows - 1) * nv, (size_t)nv, &at);
            CHECK(e2 == 0.0f, "%s %s: logits differ from all_logits' last row by %g", label,
                  name, e2);
            printf("  %-28s %-6s %2d tokens%s: max abs error %.3g\n", label, name, n,
                   split ? " (2 calls)" : "", e);
            if (e > worst) worst = e;
        }
        sb_ctx_free(c);
        free(ids), free(ref), free(got), free(last);
    }
    json_decref(root);
    return worst;
}

/* Extra split cases for LongRoPE: the long prompt in two calls, once
 * crossing original_max (the cache is rebuilt with the long factors, as
 * transformers' generate() does) and once after it; both must equal the
 * one-call reference. */
static void longrope_splits(const sb_model *m, const char *dir, const char *label) {
    char path[512];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    json_t *cs = json_array_get(json_object_get(root, "cases"), 0); /* "long" */
    json_t *ids_j = json_object_get(cs, "prompt_ids");
    int n = (int)json_array_size(ids_j), nv = sb_model_get_config(m)->n_vocab;
    int32_t ids[64];
    for (int i = 0; i < n && i < 64; i++) ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)i));
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(cs, "file")));
    float *ref = read_floats(path, (size_t)n * nv);
    float *got = calloc((size_t)n * nv, sizeof(float));
    const int splits[] = {20, 40, 32};
    for (int s = 0; s < 3 && ref && n <= 64; s++) {
        int k = splits[s];
        sb_err err = {0};
        sb_ctx *c = sb_ctx_new(m, 128, &err);
        sb_status st = sb_decode(c, ids, k, NULL, NULL, &err);
        if (st == SB_OK) st = sb_decode(c, ids + k, n - k, NULL, got, &err);
        CHECK(st == SB_OK, "%s: %s", label, err.msg);
        size_t at;
        float e = max_abs_diff(got, ref + (size_t)k * nv, (size_t)(n - k) * nv, &at);
        CHECK(e <= TOL, "%s long split at %d: max error %.3g at position %zu", label, k, e,
              at / nv + k);
        printf("  %-28s long   split %d+%d: max abs error %.3g\n", label, k, n - k, e);
        sb_ctx_free(c);
    }
    /* truncate below original_max and grow again: still one-call results */
    sb_err err = {0};
    sb_ctx *c = sb_ctx_new(m, 128, &err);
    if (c && ref) {
        sb_decode(c, ids, n, NULL, NULL, &err);
        sb_ctx_truncate(c, 10);
        CHECK(sb_ctx_n_past(c) == 10, "truncate: n_past %d", sb_ctx_n_past(c));
        sb_status st = sb_decode(c, ids + 10, n - 10, NULL, got, &err);
        size_t at;
        float e = st == SB_OK ? max_abs_diff(got, ref + (size_t)10 * nv, (size_t)(n - 10) * nv, &at)
                              : INFINITY;
        CHECK(e <= TOL, "%s truncate(10) + rest: max error %.3g (%s)", label, e, err.msg);
    }
    sb_ctx_free(c);
    free(ref), free(got);
    json_decref(root);
}

static void test_model_dir(const char *name, bool longrope) {
    char dir[256], label[128], gguf[256];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    sb_err err = {0};
    sb_model *m = sb_model_open(dir, &err);
    CHECK(m != NULL, "open %s: %s", dir, err.msg);
    if (!m) return;
    const sb_model_config *c = sb_model_get_config(m);
    bool phi3 = !strncmp(name, "tiny_phi3", 9);
    CHECK(!strcmp(c->arch, phi3 ? "phi3" : "llama") && c->fused_qkv == phi3 &&
              c->fused_gate_up == phi3 && c->rope_neox,
          "%s: arch %s fused %d %d neox %d", name, c->arch, c->fused_qkv, c->fused_gate_up,
          c->rope_neox);
    CHECK(c->longrope == longrope, "%s: longrope %d", name, c->longrope);
    snprintf(label, sizeof label, "%s (safetensors)", name);
    run_cases(m, dir, label, TOL);
    if (longrope) longrope_splits(m, dir, label);

    /* GGUF F32 round trip: same logits */
    snprintf(gguf, sizeof gguf, "/tmp/sabio_test_model_%d_%s.gguf", (int)getpid(), name);
    sb_status st = sb_model_save_gguf(m, gguf, SB_F32, &err);
    CHECK(st == SB_OK, "save %s: %s", gguf, err.msg);
    sb_model *g = st == SB_OK ? sb_model_open(gguf, &err) : NULL;
    CHECK(g != NULL, "reopen %s: %s", gguf, err.msg);
    if (g) {
        const sb_model_config *gc = sb_model_get_config(g);
        CHECK(gc->n_vocab == c->n_vocab && gc->n_layer == c->n_layer && gc->n_rot == c->n_rot &&
                  gc->n_head_kv == c->n_head_kv && gc->sliding_window == c->sliding_window &&
                  gc->longrope == c->longrope && gc->n_ctx_orig == c->n_ctx_orig &&
                  gc->tied_embeddings == c->tied_embeddings &&
                  fabsf(gc->rope_attn_factor - c->rope_attn_factor) < 1e-7f &&
                  gc->rope_theta == c->rope_theta && gc->weight_type == SB_F32 &&
                  gc->rope_neox == phi3, /* llama: Q/K permuted to interleaved pairs */
              "%s: GGUF config differs from the safetensors one", name);
        snprintf(label, sizeof label, "%s (gguf f32)", name);
        run_cases(g, dir, label, TOL);
        if (longrope) longrope_splits(g, dir, label);
        sb_model_free(g);
    }
    /* F16: weights with std 0.15 round by <= 2^-11 relative; through two
     * layers that moves logits (std ~1.2) by well under 0.05. */
    st = sb_model_save_gguf(m, gguf, SB_F16, &err);
    CHECK(st == SB_OK, "save f16 %s: %s", gguf, err.msg);
    g = st == SB_OK ? sb_model_open(gguf, &err) : NULL;
    CHECK(g != NULL, "reopen f16 %s: %s", gguf, err.msg);
    if (g) {
        CHECK(sb_model_get_config(g)->weight_type == SB_F16, "f16 export has weight type %d",
              sb_model_get_config(g)->weight_type);
        snprintf(label, sizeof label, "%s (gguf f16)", name);
        run_cases(g, dir, label, 0.05f);
        sb_model_free(g);
    }
    /* sb_model_quantize (`sabio quantize`): Q8_0 everywhere (output too, as
     * llama-quantize). Q8_0's rounding error (rms ~ amax/127/sqrt(12) ~
     * 0.006 sigma for 32 normal weights) is ~40x F16's (rms ~ 1.4e-4 sigma),
     * and F16 moves these logits by 0.007: expect ~0.3, allow 0.5. A tied
     * embedding takes the output's type (Q8_0 here), as llama.cpp. Q4_K_M on rows
     * of 64/96 (not multiples of 256) takes llama.cpp's fallbacks: Q4_K ->
     * Q5_0, Q5_K (attn_qkv) -> Q5_1, Q6_K (output; ffn_down of the last
     * layer, use_more_bits) -> Q8_0. */
    if (phi3 && !longrope && c->n_layer == 2) {
        st = sb_model_quantize(m, gguf, "Q8_0", 2, &err);
        CHECK(st == SB_OK, "quantize q8_0 %s: %s", gguf, err.msg);
        g = st == SB_OK ? sb_model_open(gguf, &err) : NULL;
        CHECK(g != NULL, "reopen q8_0 %s: %s", gguf, err.msg);
        if (g) {
            snprintf(label, sizeof label, "%s (quantize q8_0)", name);
            run_cases(g, dir, label, 0.5f);
            sb_model_free(g);
        }
        st = sb_model_quantize(m, gguf, "Q4_K_M", 0, &err);
        CHECK(st == SB_OK, "quantize q4_k_m %s: %s", gguf, err.msg);
        sb_gguf *q = st == SB_OK ? sb_gguf_open(gguf, &err) : NULL;
        CHECK(q != NULL, "open q4_k_m %s: %s", gguf, err.msg);
        static const struct { const char *name; int type; } want[] = {
            {"token_embd.weight", SB_Q5_0},      {"output.weight", SB_Q8_0}, /* both Q8_0 if tied */
            {"blk.0.attn_qkv.weight", SB_Q5_1},  {"blk.0.attn_output.weight", SB_Q5_0},
            {"blk.0.ffn_up.weight", SB_Q5_0},    {"blk.0.ffn_down.weight", SB_Q5_0},
            {"blk.1.ffn_down.weight", SB_Q8_0},  {"blk.1.attn_norm.weight", SB_F32},
        };
        for (size_t i = 0; q && i < sizeof want / sizeof want[0]; i++) {
            sb_tensor t = {0};
            int wt = want[i].type;
            if (c->tied_embeddings && i == 0) wt = SB_Q8_0;
            if (c->tied_embeddings && i == 1) continue;
            int64_t at = sb_gguf_find_tensor(q, want[i].name);
            CHECK(at >= 0 && sb_gguf_tensor(q, at, &t) && t.type == wt, "%s q4_k_m: %s is %s, want %s", name,
                  want[i].name, at >= 0 ? sb_dtype_name(t.type) : "absent", sb_dtype_name(wt));
        }
        sb_gguf_free(q);
        CHECK(sb_model_quantize(m, gguf, "Q3_X", 0, &err) == SB_ERR_INVALID && strstr(err.msg, "Q3_X"),
              "quantize: unknown type names the type: %s", err.msg);
    }
    unlink(gguf);
    sb_model_free(m);
}

/* ---- validation: hand-made broken checkpoints ---- */

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    fputs(text, f);
    return fclose(f) == 0;
}

/* Copies tests/data/tiny_phi3_4k into dir, dropping tensor `drop`, or
 * writing tensor `swap` with its two dimensions exchanged. */
static bool make_broken(const char *dir, const char *drop, const char *swap) {
    sb_err err = {0};
    sb_safetensors *st = sb_st_open("tests/data/tiny_phi3_4k/model.safetensors", &err);
    if (!st) return false;
    sb_st_writer *w = sb_st_writer_new();
    for (int64_t i = 0; i < sb_st_n_tensors(st); i++) {
        sb_tensor t;
        sb_st_tensor(st, i, &t);
        if (drop && !strcmp(t.name, drop)) continue;
        int64_t ne[2] = {t.ne[0], t.ne[1]};
        if (swap && !strcmp(t.name, swap)) ne[0] = t.ne[1], ne[1] = t.ne[0];
        sb_st_writer_add(w, t.name, t.type, t.n_dims, ne, t.data, t.nbytes);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bool ok = sb_st_writer_write(w, path, &err) == SB_OK;
    sb_st_writer_free(w);
    sb_st_free(st);
    return ok;
}

static void test_validation(void) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "/tmp/sabio_test_model_%d", (int)getpid());
    mkdir(dir, 0700);
    char *cfg = NULL;
    size_t len;
    sb_err err = {0};
    CHECK(sb_read_file("tests/data/tiny_phi3_4k/config.json", 0, &cfg, &len, &err) == SB_OK,
          "%s", err.msg);
    if (!cfg) return;
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, cfg);

    const char *drop = "model.layers.1.mlp.down_proj.weight";
    CHECK(make_broken(dir, drop, NULL), "writing a checkpoint without %s", drop);
    sb_model *m = sb_model_open(dir, &err);
    CHECK(!m && err.code == SB_ERR_NOT_FOUND && strstr(err.msg, drop),
          "missing tensor: got '%s'", err.msg);
    sb_model_free(m);

    CHECK(make_broken(dir, NULL, drop), "writing a checkpoint with %s transposed", drop);
    m = sb_model_open(dir, &err);
    CHECK(!m && err.code == SB_ERR_FORMAT && strstr(err.msg, drop) &&
              strstr(err.msg, "expected [96, 64]") && strstr(err.msg, "[64, 96]"),
          "wrong shape: got '%s'", err.msg);
    sb_model_free(m);

    /* 4 query heads over 3 KV heads */
    CHECK(make_broken(dir, NULL, NULL), "writing a copy");
    char *bad = strstr(cfg, "\"num_key_value_heads\": 4");
    CHECK(bad != NULL, "config.json has no num_key_value_heads 4");
    if (bad) {
        bad[strlen("\"num_key_value_heads\": ")] = '3';
        write_text(path, cfg);
        m = sb_model_open(dir, &err);
        CHECK(!m && strstr(err.msg, "does not divide"), "GQA 4/3: got '%s'", err.msg);
        sb_model_free(m);
    }
    free(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);

    m = sb_model_open("tests/data/tiny_phi3_4k", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    sb_ctx *c = sb_ctx_new(m, 65, &err);
    CHECK(!c && err.code == SB_ERR_RANGE && strstr(err.msg, "65") && strstr(err.msg, "64"),
          "n_ctx above the trained context: got '%s'", err.msg);
    sb_ctx_free(c);
    c = sb_ctx_new(m, 4, &err);
    int32_t toks[5] = {1, 2, 3, 4, 5}, bad_tok = 512;
    CHECK(sb_decode(c, &bad_tok, 1, NULL, NULL, &err) == SB_ERR_RANGE && sb_ctx_n_past(c) == 0,
          "token 512 of 512: got '%s'", err.msg);
    CHECK(sb_decode(c, toks, 5, NULL, NULL, &err) == SB_ERR_RANGE && sb_ctx_n_past(c) == 0,
          "5 tokens into 4 positions: got '%s'", err.msg);
    sb_ctx_free(c);
    sb_model_free(m);
}

int main(void) {
    test_model_dir("tiny_phi3_4k", false);
    test_model_dir("tiny_phi3_128k", true);
    test_model_dir("tiny_phi3_gqa", false);
    test_model_dir("tiny_llama", false);
    test_validation();
    return TEST_END();
}
