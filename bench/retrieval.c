/*
 * bench/retrieval.c - answer recall of the knowledge store on COVID-QA: for
 * each question, does a retrieved chunk contain the reference answer text?
 * recall@1/5/10 for dense, BM25 and hybrid retrieval.
 *
 * usage: build/bench/retrieval STORE_DIR ENCODER_DIR QUESTIONS.jsonl
 * (ingest first: build/sabio ingest --store STORE_DIR ../shared/assets/corpora/covid-qa/docs)
 */
#include "rag/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s STORE_DIR ENCODER_DIR QUESTIONS.jsonl\n", argv[0]);
        return 2;
    }
    sb_err err = {0};
    sb_store *s = sb_store_open(argv[1], false, &err);
    sb_encoder *enc = s ? sb_encoder_open(argv[2], &err) : NULL;
    FILE *f = fopen(argv[3], "r");
    if (!s || !enc || !f) {
        fprintf(stderr, "retrieval: %s\n", f ? err.msg : "cannot open the questions");
        return 1;
    }
    const char *names[3] = {"hybrid", "dense", "bm25"};
    int hits[3][3] = {{0}}; /* mode x {1, 5, 10} */
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    double t0 = sb_time_sec();
    while (getline(&line, &cap, f) > 0) {
        json_t *q = json_loads(line, 0, NULL);
        const char *question = json_string_value(json_object_get(q, "question"));
        const char *answer = json_string_value(json_object_get(q, "answer"));
        if (!question || !answer) {
            json_decref(q);
            continue;
        }
        n++;
        for (int m = 0; m < 3; m++) {
            sb_hit *h;
            int nh;
            if (sb_store_search(s, enc, question, 10, (sb_search_mode)m, &h, &nh, &err) != SB_OK) {
                fprintf(stderr, "retrieval: %s\n", err.msg);
                return 1;
            }
            int first = -1;
            for (int i = 0; i < nh && first < 0; i++)
                if (strstr(h[i].text, answer)) first = i;
            if (first >= 0 && first < 1) hits[m][0]++;
            if (first >= 0 && first < 5) hits[m][1]++;
            if (first >= 0 && first < 10) hits[m][2]++;
            sb_hits_free(h, nh);
        }
        json_decref(q);
    }
    printf("COVID-QA retrieval, %d questions, answer recall (a retrieved chunk contains the answer), %.1fs\n", n,
           sb_time_sec() - t0);
    printf("| mode | recall@1 | recall@5 | recall@10 |\n|---|---|---|---|\n");
    for (int m = 0; m < 3; m++)
        printf("| %s | %.3f | %.3f | %.3f |\n", names[m], (double)hits[m][0] / n, (double)hits[m][1] / n,
               (double)hits[m][2] / n);
    free(line);
    fclose(f);
    sb_encoder_free(enc);
    sb_store_close(s);
    return 0;
}
