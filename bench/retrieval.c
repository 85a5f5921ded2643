/*
 * bench/retrieval.c - answer recall of the knowledge store on COVID-QA: for
 * each question, does a retrieved chunk contain the reference answer text?
 * recall@1/5/10 for dense, BM25 and hybrid retrieval, on all questions and on
 * the even and odd lines separately (a fusion parameter is chosen on the even
 * lines and judged on the odd ones: bench/fusion_split.py).
 *
 * usage: build/bench/retrieval STORE_DIR ENCODER_DIR QUESTIONS.jsonl [DUMP.jsonl]
 * (ingest first: build/sabio ingest --store STORE_DIR ../shared/assets/corpora/covid-qa/docs)
 * DUMP.jsonl receives, per question, the top-50 dense and BM25 chunks with
 * their scores and whether each contains the answer (for bench/fusion_split.py).
 * SABIO_FUSION=rrf|convex and SABIO_DENSE_WEIGHT=w set the hybrid fusion (default: the library's).
 */
#include "rag/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dump_list(FILE *f, const char *name, const sb_hit *h, int n, const char *answer) {
    fprintf(f, "\"%s\": [", name);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s[%lld, %.9g, %d]", i ? ", " : "", (long long)h[i].chunk_id, h[i].score,
                strstr(h[i].text, answer) != NULL);
    fprintf(f, "]");
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s STORE_DIR ENCODER_DIR QUESTIONS.jsonl [DUMP.jsonl]\n", argv[0]);
        return 2;
    }
    sb_err err = {0};
    sb_store *s = sb_store_open(argv[1], false, &err);
    sb_encoder *enc = s ? sb_encoder_open(argv[2], &err) : NULL;
    FILE *f = fopen(argv[3], "r");
    FILE *dump = argc == 5 ? fopen(argv[4], "w") : NULL;
    if (!s || !enc || !f || (argc == 5 && !dump)) {
        fprintf(stderr, "retrieval: %s\n", f ? err.msg : "cannot open the questions");
        return 1;
    }
    const char *w = getenv("SABIO_DENSE_WEIGHT"), *fusion = getenv("SABIO_FUSION");
    const char *names[3] = {"hybrid", "dense", "bm25"};
    int hits[3][3][3] = {{{0}}}; /* subset (all, even, odd) x mode x {1, 5, 10} */
    int n[3] = {0};
    char *line = NULL;
    size_t cap = 0;
    double t0 = sb_time_sec();
    for (int lineno = 0; getline(&line, &cap, f) > 0; lineno++) {
        json_t *q = json_loads(line, 0, NULL);
        const char *question = json_string_value(json_object_get(q, "question"));
        const char *answer = json_string_value(json_object_get(q, "answer"));
        if (!question || !answer) {
            json_decref(q);
            continue;
        }
        int sub = 1 + (lineno & 1);
        n[0]++, n[sub]++;
        if (dump) fprintf(dump, "{\"line\": %d, ", lineno);
        for (int m = 0; m < 3; m++) {
            sb_hit *h;
            int nh;
            sb_search_opts o = {.mode = (sb_search_mode)m, .k = m && dump ? 50 : 10};
            if (w) o.dense_weight = atof(w);
            if (fusion && !strcmp(fusion, "convex")) o.fusion = SB_FUSION_CONVEX;
            if (sb_store_search_opts(s, enc, question, &o, &h, &nh, &err) != SB_OK) {
                fprintf(stderr, "retrieval: %s\n", err.msg);
                return 1;
            }
            int first = -1;
            for (int i = 0; i < nh && first < 0; i++)
                if (strstr(h[i].text, answer)) first = i;
            for (int c = 0; c < 3; c++) {
                int cut = c == 0 ? 1 : c == 1 ? 5 : 10;
                if (first >= 0 && first < cut) hits[0][m][c]++, hits[sub][m][c]++;
            }
            if (dump && m) {
                dump_list(dump, names[m], h, nh, answer);
                fputs(m == 1 ? ", " : "}\n", dump);
            }
            sb_hits_free(h, nh);
        }
        json_decref(q);
    }
    printf("COVID-QA retrieval, %d questions, answer recall (a retrieved chunk contains the answer), %.1fs\n", n[0],
           sb_time_sec() - t0);
    const char *subs[3] = {"all", "even lines", "odd lines"};
    printf("| questions | mode | recall@1 | recall@5 | recall@10 |\n|---|---|---|---|---|\n");
    for (int sub = 0; sub < 3; sub++)
        for (int m = 0; m < 3; m++)
            printf("| %s (%d) | %s | %.3f | %.3f | %.3f |\n", subs[sub], n[sub], names[m],
                   (double)hits[sub][m][0] / n[sub], (double)hits[sub][m][1] / n[sub],
                   (double)hits[sub][m][2] / n[sub]);
    free(line);
    fclose(f);
    if (dump) fclose(dump);
    sb_encoder_free(enc);
    sb_store_close(s);
    return 0;
}
