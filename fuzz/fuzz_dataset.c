/* fuzz_dataset.c - libFuzzer target for the fine-tuning JSONL reader: the
 * bytes as a dataset file, parsed only and, when tests/data/hf_tok/bytelevel
 * is there (run from the repository root), also rendered with ChatML,
 * tokenized and masked; then a validation split. */
#include <stdlib.h>

#include "train/dataset.h"

static sb_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tok = sb_tokenizer_from_hf("tests/data/hf_tok/bytelevel", NULL);
    sb_log_set_level(SB_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_dataset *d = sb_dataset_from_text((const char *)data, size, "fuzz", NULL, NULL, SB_CHAT_CHATML, 64, NULL);
    sb_dataset_free(d);
    if (!tok) return 0;
    d = sb_dataset_from_text((const char *)data, size, "fuzz", tok, NULL, SB_CHAT_CHATML, 64, NULL);
    if (d) {
        for (int i = 0; i < d->n; i++)
            if (sb_dataset_len(d, i) < 1 || sb_dataset_len(d, i) > 64) abort();
        sb_dataset *v = NULL;
        if (sb_dataset_split(d, 0.5, 1, &v, NULL) == SB_OK) sb_dataset_free(v);
        sb_dataset_free(d);
    }
    return 0;
}
