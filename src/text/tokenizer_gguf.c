/*
 * tokenizer_gguf.c - writing a tokenizer as GGUF tokenizer.ggml.* keys, so
 * that a model converted from a Hugging Face folder carries its vocabulary
 * (read back by sb_tokenizer_from_gguf and by llama.cpp).
 *
 * SentencePiece vocabularies are written as "llama" with their scores. A
 * Hugging Face BPE without byte-level mapping (Llama/Phi-3 tokenizer.json)
 * is written as "llama" too, its scores made from the merge ranks: the token
 * a merge of rank r produces scores -r, so merging by highest score is
 * merging by lowest rank. Byte-level BPE is written as "gpt2" with merges.
 */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

sb_status sb_tokenizer_write_gguf(const sb_tokenizer *t, sb_gguf_writer *w, sb_err *err) {
    int32_t nv = t->n_vocab;
    bool gpt2 = t->algo == SB_TOK_BPE && t->byte_level;
    const char **texts = calloc((size_t)nv, sizeof *texts);
    float *scores = calloc((size_t)nv, sizeof *scores);
    int32_t *types = calloc((size_t)nv, sizeof *types);
    char **merges = NULL;
    sb_status st = SB_OK;
    if (!texts || !scores || !types) goto nomem;
    for (int32_t i = 0; i < nv; i++) {
        texts[i] = t->text[i];
        types[i] = t->type[i];
        scores[i] = t->algo == SB_TOK_SPM ? t->score[i] : -1e9f;
    }
    if (t->algo == SB_TOK_BPE) {
        merges = calloc(t->n_merges ? t->n_merges : 1, sizeof *merges);
        if (!merges) goto nomem;
        for (size_t k = 0; k < t->merge_cap; k++) {
            int32_t rank = t->merge_rank[k];
            if (rank < 0) continue;
            int32_t a = (int32_t)(t->merge_key[k] >> 32), b = (int32_t)(t->merge_key[k] & 0xffffffffu);
            if ((size_t)rank < t->n_merges && !merges[rank])
                merges[rank] = sb_aprintf("%s %s", t->text[a], t->text[b]);
            char *joined = sb_aprintf("%s%s", t->text[a], t->text[b]);
            if (!joined) goto nomem;
            int32_t id = sb_vocab_lookup(t, joined, strlen(joined));
            free(joined);
            if (id >= 0 && -(float)rank > scores[id]) scores[id] = -(float)rank;
        }
    }
    if ((st = sb_gguf_writer_set_str(w, "tokenizer.ggml.model", gpt2 ? "gpt2" : "llama")) != SB_OK ||
        (st = sb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, (uint64_t)nv)) != SB_OK ||
        (st = sb_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SB_GGUF_INT32, types, (uint64_t)nv)) != SB_OK)
        goto fail;
    if (gpt2) {
        size_t n = 0; /* ranks may have gaps (merges naming unknown tokens): compact them */
        for (size_t k = 0; k < t->n_merges; k++)
            if (merges[k]) merges[n++] = merges[k];
        for (size_t k = n; k < t->n_merges; k++) merges[k] = NULL;
        if ((st = sb_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, n)) != SB_OK ||
            (st = sb_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default")) != SB_OK)
            goto fail;
    } else if ((st = sb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SB_GGUF_FLOAT32, scores, (uint64_t)nv)) != SB_OK) {
        goto fail;
    }
    if (t->bos >= 0) sb_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (t->eos >= 0) sb_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (t->unk >= 0) sb_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    if (t->eot >= 0) sb_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)t->eot);
    sb_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    sb_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos);
    sb_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (t->chat_template) st = sb_gguf_writer_set_str(w, "tokenizer.chat_template", t->chat_template);
    if (st != SB_OK) goto fail;
    goto done;
nomem:
    st = SB_ERR_NOMEM;
fail:
    sb_err_set(err, st, "tokenizer: cannot write GGUF keys (%s)", sb_status_name(st));
done:
    if (merges)
        for (size_t k = 0; k < t->n_merges; k++) free(merges[k]);
    free(merges);
    free(texts);
    free(scores);
    free(types);
    return st;
}
