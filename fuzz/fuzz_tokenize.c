/* fuzz_tokenize.c - libFuzzer target for the tokenizers: arbitrary bytes
 * (invalid UTF-8, NULs, special-token text) through the SentencePiece vocab of
 * Phi-3 and, when present, SmolLM2's byte-level BPE; then decode. Run from
 * the repository root (the vocabularies are read from ../shared/assets and
 * models/). */
#include "formats/gguf.h"
#include "text/tokenizer.h"

#include <stdlib.h>

static sb_gguf *g[2];
static sb_tokenizer *tok[2];

static void load(int i, const char *path) {
    g[i] = sb_gguf_open(path, NULL);
    tok[i] = g[i] ? sb_tokenizer_from_gguf(g[i], NULL) : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g[0]) {
        load(0, "../shared/assets/vocab/ggml-vocab-phi-3.gguf");
        load(1, "models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if (!tok[0]) abort(); /* wrong working directory */
    }
    for (int i = 0; i < 2; i++) {
        if (!tok[i]) continue;
        sb_tokens ids = {0};
        if (sb_tokenize(tok[i], (const char *)data, size, true, size & 1, &ids, NULL) == SB_OK) {
            char *s = sb_detokenize(tok[i], ids.ids, ids.n, true);
            free(s);
        }
        sb_tokens_free(&ids);
    }
    return 0;
}
