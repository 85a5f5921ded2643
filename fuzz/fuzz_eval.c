/* fuzz_eval.c - libFuzzer target for what sabio eval and ask read from
 * outside: question files (JSONL), and model output through the citation
 * scanner, the SQuAD normalisation and the metrics. */
#include "rag/ask.h"
#include "rag/eval.h"

#include <stdlib.h>
#include <string.h>

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_eval_question *q;
    int n;
    if (sb_eval_parse((const char *)data, size, "fuzz", &q, &n, NULL) == SB_OK) {
        for (int i = 0; i < n; i++) sink += strlen(q[i].question) + (size_t)q[i].n_answers;
        sb_eval_questions_free(q, n);
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    long v;
    for (const char *c = text; sb_ask_next_citation(&c, &v);) sink += (size_t)v;
    char *plain = sb_eval_strip_citations(text), *norm = sb_eval_normalize(text);
    const char *half = text + strlen(text) / 2;
    sink += (size_t)(sb_eval_f1(text, half) * 100) + sb_eval_exact(text, half) + sb_eval_citations_ok(text, 3);
    sink += (size_t)(sb_eval_support(half, text) * 100) + sb_eval_context_recall(text, &half, 1);
    sink += (plain ? strlen(plain) : 0) + (norm ? strlen(norm) : 0);
    free(plain);
    free(norm);
    free(text);
    return 0;
}
