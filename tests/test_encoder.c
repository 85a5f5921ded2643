/*
 * test_encoder.c - sentence embeddings against sentence-transformers
 * (tests/data/embed_ref_minilm.bin, tools/gen_embed_ref.py): cosine >= 0.9999
 * for each of 200 varied texts, and clear errors for malformed folders.
 */
#include "model/encoder.h"
#include "test.h"

#include <unistd.h>

static void check_model(const char *dir, const char *ref_path) {
    if (!sb_is_dir(dir)) {
        SKIP("%s absent (scripts/setup fetches it)", dir);
        return;
    }
    char *ref = NULL;
    size_t len = 0;
    sb_err e = {0};
    CHECK(sb_read_file(ref_path, 0, &ref, &len, &e) == SB_OK, "%s", e.msg);
    sb_encoder *enc = sb_encoder_open(dir, &e);
    CHECK(enc != NULL, "%s", e.msg);
    if (!ref || !enc || len < 16 || memcmp(ref, "SBEMB1", 6)) goto done;
    uint32_t n, dim;
    memcpy(&n, ref + 8, 4);
    memcpy(&dim, ref + 12, 4);
    CHECK(dim == (uint32_t)sb_encoder_dim(enc), "dim %u vs %d", dim, sb_encoder_dim(enc));
    const char *p = ref + 16, *end = ref + len;
    double worst = 1;
    int n_ok = 0, worst_i = -1;
    float *got = malloc(sizeof(float) * dim);
    for (uint32_t k = 0; k < n && p + 4 <= end; k++) {
        uint32_t bl;
        memcpy(&bl, p, 4);
        p += 4;
        if (p + bl + 4 * (size_t)dim > end) break;
        char *text = sb_strndup(p, bl);
        p += bl;
        const float *want = (const float *)p;
        p += 4 * (size_t)dim;
        const char *texts[1] = {text};
        CHECK(sb_encoder_embed(enc, texts, 1, false, got, &e) == SB_OK, "text %u: %s", k, e.msg);
        double dot = 0, na = 0, nb = 0;
        for (uint32_t i = 0; i < dim; i++) {
            float w;
            memcpy(&w, want + i, 4);
            dot += (double)got[i] * w, na += (double)got[i] * got[i], nb += (double)w * w;
        }
        double cos = dot / (sqrt(na) * sqrt(nb) + 1e-30);
        n_ok += cos >= 0.9999;
        if (cos < worst) worst = cos, worst_i = (int)k;
        CHECK(cos >= 0.9999, "%s text %u '%.60s': cosine %.6f", dir, k, text, cos);
        free(text);
    }
    fprintf(stderr, "%s: %d/%u texts with cosine >= 0.9999; lowest %.7f (text %d)\n", dir, n_ok, n, worst, worst_i);
    /* All texts in one call (packed batches) give the same vectors. */
    {
        const char **all = calloc(n, sizeof *all);
        float *want_all = malloc(sizeof(float) * n * dim), *got_all = malloc(sizeof(float) * n * dim);
        const char *q = ref + 16;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t bl;
            memcpy(&bl, q, 4);
            all[k] = sb_strndup(q + 4, bl);
            memcpy(want_all + (size_t)k * dim, q + 4 + bl, 4 * (size_t)dim);
            q += 4 + bl + 4 * (size_t)dim;
        }
        CHECK(sb_encoder_embed(enc, all, (int)n, false, got_all, &e) == SB_OK, "batch: %s", e.msg);
        int batch_ok = 0;
        for (uint32_t k = 0; k < n; k++) {
            double dot = 0, na = 0, nb = 0;
            for (uint32_t i = 0; i < dim; i++) {
                double a = got_all[(size_t)k * dim + i], b = want_all[(size_t)k * dim + i];
                dot += a * b, na += a * a, nb += b * b;
            }
            batch_ok += dot / (sqrt(na * nb) + 1e-30) >= 0.9999;
        }
        CHECK(batch_ok == (int)n, "batched: %d of %u texts with cosine >= 0.9999", batch_ok, n);
        for (uint32_t k = 0; k < n; k++) free((char *)all[k]);
        free(all);
        free(want_all);
        free(got_all);
    }
    CHECK(n == 200 && n_ok == 200, "%d of %u", n_ok, n);
    free(got);
done:
    sb_encoder_free(enc);
    free(ref);
}

static void check_errors(void) {
    sb_err e = {0};
    sb_encoder *enc = sb_encoder_open("/nonexistent/encoder", &e);
    CHECK(!enc && strstr(e.msg, "/nonexistent/encoder"), "missing folder: %s", e.msg);
    char dir[] = "/tmp/sb_enc_XXXXXX";
    if (!mkdtemp(dir)) return;
    enc = sb_encoder_open(dir, &e);
    CHECK(!enc && strstr(e.msg, "config.json"), "no config.json: %s", e.msg);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
          " \"num_attention_heads\": 3, \"intermediate_size\": 16, \"max_position_embeddings\": 8}", f);
    fclose(f);
    enc = sb_encoder_open(dir, &e);
    CHECK(!enc && strstr(e.msg, "num_attention_heads"), "heads not dividing: %s", e.msg);
    f = fopen(p, "w");
    fputs("{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
          " \"num_attention_heads\": 2, \"intermediate_size\": 16, \"max_position_embeddings\": 8}", f);
    fclose(f);
    enc = sb_encoder_open(dir, &e);
    CHECK(!enc && strstr(e.msg, "model.safetensors"), "no weights: %s", e.msg);
    f = fopen(p, "w");
    fputs("{\"model_type\": \"gpt2\"}", f);
    fclose(f);
    enc = sb_encoder_open(dir, &e);
    CHECK(!enc && strstr(e.msg, "gpt2"), "wrong model type: %s", e.msg);
    f = fopen(p, "w");
    fputs("{\"model_type\": \"bert\", ", f);
    fclose(f);
    enc = sb_encoder_open(dir, &e);
    CHECK(!enc && strstr(e.msg, "JSON"), "broken JSON: %s", e.msg);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    check_model("models/all-MiniLM-L6-v2", "tests/data/embed_ref_minilm.bin");
    check_errors();
    return TEST_END();
}
