/*
 * test_stories.c - a real Llama-architecture model end to end against
 * llama.cpp: stories260K.gguf (GGUF from llama.cpp's converter: Q/K rows
 * permuted for interleaved RoPE, GQA 8/4 heads) and, for 4 prompts,
 * llama.cpp's greedy 48-token completions (stories260K.greedy.json in the
 * shared assets). Greedy argmax decoding from the given prompt ids must give
 * the same text, from the GGUF and after an F32 GGUF round trip.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "tensor/ops.h"
#include "test.h"

static void run(const sb_model *m, json_t *cases, const char *label) {
    const sb_model_config *cfg = sb_model_get_config(m);
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    CHECK(tok != NULL, "%s: no tokenizer", label);
    float *logits = malloc((size_t)cfg->n_vocab * sizeof(float));
    size_t i;
    json_t *cs;
    json_array_foreach(cases, i, cs) {
        const char *prompt = json_string_value(json_object_get(cs, "prompt"));
        const char *want = json_string_value(json_object_get(cs, "completion"));
        json_t *ids_j = json_object_get(cs, "prompt_token_ids");
        int n_prompt = (int)json_array_size(ids_j);
        int n_predict = (int)json_integer_value(json_object_get(cs, "n_predict"));
        int32_t ids[256];
        if (n_prompt + n_predict > 256 || !want) {
            CHECK(0, "case %zu malformed", i);
            continue;
        }
        for (int k = 0; k < n_prompt; k++) ids[k] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)k));
        sb_err err = {0};
        sb_ctx *c = sb_ctx_new(m, n_prompt + n_predict, &err);
        CHECK(c != NULL, "%s: %s", label, err.msg);
        if (!c) continue;
        sb_status st = sb_decode(c, ids, n_prompt, logits, NULL, &err);
        int n_gen = 0;
        while (st == SB_OK && n_gen < n_predict) {
            int32_t next = (int32_t)sb_argmax(logits, cfg->n_vocab);
            ids[n_prompt + n_gen++] = next;
            if (n_gen < n_predict) st = sb_decode(c, &next, 1, logits, NULL, &err);
        }
        CHECK(st == SB_OK, "%s '%s': %s", label, prompt, err.msg);
        /* A continuation: the pieces as llama.cpp streams them (sb_detokenize
         * would drop the first piece's leading space, a rule for whole texts). */
        char *text = NULL;
        if (tok) {
            sb_buf b = {0};
            for (int k = 0; k < n_gen; k++) {
                char piece[64];
                size_t len = sb_token_to_piece(tok, ids[n_prompt + k], false, piece, sizeof piece);
                sb_buf_append(&b, piece, len < sizeof piece ? len : sizeof piece);
            }
            text = b.data ? b.data : sb_strdup("");
        }
        CHECK(text && !strcmp(text, want), "%s '%s':\n  got  [%s]\n  want [%s]", label, prompt,
              text ? text : "(null)", want);
        free(text);
        sb_ctx_free(c);
    }
    free(logits);
}

int main(void) {
    char path[512], ref[512], tmp[256];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", test_assets());
    snprintf(ref, sizeof ref, "%s/models/stories260K.greedy.json", test_assets());
    json_t *cases = json_load_file(ref, 0, NULL);
    if (!cases || !sb_file_exists(path)) {
        SKIP("%s or %s missing", path, ref);
        return TEST_END();
    }
    sb_err err = {0};
    sb_model *m = sb_model_open(path, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        const sb_model_config *c = sb_model_get_config(m);
        CHECK(!strcmp(c->arch, "llama") && !c->rope_neox && !c->fused_qkv && c->n_head == 8 &&
                  c->n_head_kv == 4 && c->n_layer == 5 && c->n_vocab == 512 && !c->tied_embeddings,
              "stories260K config: arch %s neox %d heads %d/%d layers %d vocab %d", c->arch,
              c->rope_neox, c->n_head, c->n_head_kv, c->n_layer, c->n_vocab);
        run(m, cases, "stories260K.gguf");
        snprintf(tmp, sizeof tmp, "/tmp/sabio_test_stories_%d.gguf", (int)getpid());
        CHECK(sb_model_save_gguf(m, tmp, SB_F32, &err) == SB_OK, "%s", err.msg);
        sb_model *g = sb_model_open(tmp, &err);
        CHECK(g != NULL, "reopen %s: %s", tmp, err.msg);
        if (g) run(g, cases, "stories260K round trip");
        sb_model_free(g);
        unlink(tmp);
    }
    sb_model_free(m);
    json_decref(cases);
    return TEST_END();
}
