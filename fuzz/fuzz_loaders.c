/* fuzz_loaders.c - libFuzzer target for the document loaders (text,
 * Markdown, JSONL, CSV, HTML; the first byte picks one) and the chunker on what they
 * produce, with a WordPiece vocabulary from ../shared/assets (run from the
 * repository root). */
#include "formats/gguf.h"
#include "rag/doc.h"

#include <stdlib.h>

static sb_gguf *g;
static sb_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g) {
        g = sb_gguf_open("../shared/assets/vocab/ggml-vocab-bert-bge.gguf", NULL);
        tok = g ? sb_tokenizer_from_gguf(g, NULL) : NULL;
        if (!tok) abort();
    }
    if (size < 1) return 0;
    static const char *types[5] = {"txt", "md", "jsonl", "csv", "html"};
    sb_loader_opts o = {NULL, 1 + (data[0] >> 4)};
    sb_doc d;
    if (sb_doc_parse("fuzz", types[(data[0] & 7) % 5], (const char *)data + 1, size - 1, &o, &d, NULL) != SB_OK) return 0;
    sb_chunk *ch = NULL;
    size_t n = 0;
    sb_chunk_params p = {16 + (data[0] & 31), 4};
    if (sb_chunk_doc(&d, tok, &p, &ch, &n, NULL) == SB_OK) {
        for (size_t i = 0; i < n; i++)
            if (ch[i].start > ch[i].end || ch[i].end > d.len) abort(); /* spans inside the text */
        free(ch);
    }
    sb_doc_free(&d);
    return 0;
}
