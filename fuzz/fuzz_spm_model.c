/* fuzz_spm_model.c - libFuzzer target for the SentencePiece tokenizer.model
 * (protocol buffers) reader; a parsed model also tokenizes a short text. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_tokenizer *t = sb_tokenizer_from_spm_memory(data, size, "fuzz", NULL);
    if (!t) return 0;
    sb_tokens ids = {0};
    sb_tokenize(t, "Hello w\xc3\xb6rld 123", 16, true, true, &ids, NULL);
    free(sb_detokenize(t, ids.ids, ids.n, true));
    sb_tokens_free(&ids);
    sb_tokenizer_free(t);
    return 0;
}
