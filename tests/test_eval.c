/*
 * test_eval.c - the answer metrics against the official SQuAD v1.1 script
 * (tests/data/squad_ref.jsonl, made by tools/squad_ref.py), citations,
 * context recall, support, question files and their errors, splits.
 */
#include "rag/ask.h"
#include "rag/eval.h"
#include "rag/evaluate.h"
#include "test.h"

#include <jansson.h>
#include <unistd.h>

static void test_squad(void) {
    FILE *f = fopen("tests/data/squad_ref.jsonl", "r");
    CHECK(f != NULL, "tests/data/squad_ref.jsonl");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, bad_norm = 0, bad_em = 0, bad_f1 = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *pred = json_string_value(json_object_get(o, "pred"));
        const char *ref = json_string_value(json_object_get(o, "ref"));
        char *np = sb_eval_normalize(pred), *nr = sb_eval_normalize(ref);
        if (strcmp(np, json_string_value(json_object_get(o, "norm_pred"))) ||
            strcmp(nr, json_string_value(json_object_get(o, "norm_ref")))) {
            bad_norm++;
            fprintf(stderr, "normalize: [%s] -> [%s], SQuAD: [%s]\n", pred, np,
                    json_string_value(json_object_get(o, "norm_pred")));
        }
        if (sb_eval_exact(pred, ref) != json_is_true(json_object_get(o, "em"))) bad_em++;
        double f1 = sb_eval_f1(pred, ref), want = json_real_value(json_object_get(o, "f1"));
        if (fabs(f1 - want) > 1e-12) {
            bad_f1++;
            fprintf(stderr, "f1 [%s] vs [%s]: %.6f, SQuAD %.6f\n", pred, ref, f1, want);
        }
        free(np);
        free(nr);
        json_decref(o);
        n++;
    }
    free(line);
    fclose(f);
    CHECK(n >= 70, "%d reference pairs", n);
    CHECK(bad_norm == 0, "%d of %d normalisations differ from SQuAD's", bad_norm, n);
    CHECK(bad_em == 0, "%d of %d exact matches differ", bad_em, n);
    CHECK(bad_f1 == 0, "%d of %d F1 differ", bad_f1, n);
    const char *refs[2] = {"no match here", "the virus spreads"};
    CHECK(sb_eval_f1_max("Virus spreads.", refs, 2) == 1.0, "best of several references");
    CHECK(sb_eval_exact_max("Virus spreads.", refs, 2), "exact over several references");
}

static void test_citations(void) {
    long v[8];
    int k = 0;
    const char *c = "MERS is a virus [1]. It spreads [2, 3][4] and [x] or [5a] but not (6) [ 7 ]";
    while (k < 8 && sb_ask_next_citation(&c, &v[k])) k++;
    CHECK(k == 5 && v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4 && v[4] == 7, "citations found: %d", k);
    int cited, invalid;
    sb_eval_citations("see [1] and [3, 9]", 3, &cited, &invalid);
    CHECK(cited == 3 && invalid == 1, "cited %d, invalid %d", cited, invalid);
    CHECK(sb_eval_citations_ok("yes [2]", 2), "a valid citation");
    CHECK(!sb_eval_citations_ok("yes [3]", 2), "an invalid citation");
    CHECK(!sb_eval_citations_ok("no citation at all", 2), "no citation is not valid");
    char *s = sb_eval_strip_citations("It spreads [2, 3][4] by air [1]. [x] stays");
    CHECK(!strcmp(s, "It spreads  by air . [x] stays"), "stripped: [%s]", s);
    free(s);
    /* an answer cut inside a character (the first two bytes of U+2010) */
    s = sb_eval_valid_utf8("HCoV\xE2\x80");
    CHECK(!strcmp(s, "HCoV\xEF\xBF\xBD\xEF\xBF\xBD"), "invalid bytes become U+FFFD: [%s]", s);
    free(s);
    s = sb_eval_valid_utf8("caf\xC3\xA9 \xE2\x80\x90 ok");
    CHECK(!strcmp(s, "caf\xC3\xA9 \xE2\x80\x90 ok"), "valid UTF-8 is kept: [%s]", s);
    free(s);
}

static void test_context(void) {
    const char *refs[1] = {"The ACE2 receptor"};
    CHECK(sb_eval_context_recall("It binds to the ACE2 receptor, as shown.", refs, 1), "answer in context");
    CHECK(!sb_eval_context_recall("It binds to the ACE20 receptor.", refs, 1), "whole words only");
    CHECK(fabs(sb_eval_support("ACE2 binds spike proteins", "spike binds to ACE2") - 0.75) < 1e-12,
          "3 of 4 words supported");
    CHECK(sb_eval_support("", "anything") == 1.0, "an empty answer claims nothing");
}

static void test_stats(void) {
    double v[4] = {4, 1, 3, 2};
    CHECK(sb_eval_percentile(v, 4, 50) == 2.5 && sb_eval_percentile(v, 4, 100) == 4 && v[0] == 4,
          "percentiles as numpy's linear method");
    int *a = sb_eval_shuffle(100, 7), *b = sb_eval_shuffle(100, 7), *c = sb_eval_shuffle(100, 8);
    int same = 1, differs = 0, sum = 0;
    for (int i = 0; i < 100; i++) {
        same &= a[i] == b[i];
        differs |= a[i] != c[i];
        sum += a[i];
    }
    CHECK(same && differs && sum == 4950, "shuffle is a seeded permutation");
    free(a);
    free(b);
    free(c);
    /* Paired bootstrap: a constant difference has a zero-width interval; a
     * noisy one an interval around the mean. */
    double x[50], y[50], d, lo, hi;
    for (int i = 0; i < 50; i++) {
        x[i] = (i % 5) / 4.0;
        y[i] = x[i] - 0.1;
    }
    sb_eval_bootstrap_diff(x, y, 50, 500, 1, &d, &lo, &hi, NULL);
    CHECK(fabs(d - 0.1) < 1e-12 && fabs(lo - 0.1) < 1e-12 && fabs(hi - 0.1) < 1e-12, "constant difference");
    for (int i = 0; i < 50; i++) y[i] = 0.5;
    sb_eval_bootstrap_diff(x, y, 50, 2000, 1, &d, &lo, &hi, NULL);
    double lo2, hi2;
    sb_eval_bootstrap_diff(x, y, 50, 2000, 1, &d, &lo2, &hi2, NULL);
    CHECK(lo < d && d < hi && hi - lo > 0.1 && hi - lo < 0.4 && lo == lo2 && hi == hi2,
          "noisy difference %.3f in [%.3f, %.3f], deterministic", d, lo, hi);
}

static const char *write_tmp(const char *dir, const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_questions(const char *dir) {
    sb_eval_question *q;
    int n;
    sb_err err = {0};
    const char *p = write_tmp(dir, "q.jsonl",
                              "{\"id\": 3, \"question\": \"Q1?\", \"answer\": \"A1\", \"doc\": \"d1.txt\"}\n\n"
                              "{\"question\": \"Q2?\", \"answer\": [\"A2\", \"B2\"]}\n");
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_OK && n == 2, "load: %s", err.msg);
    if (n == 2) {
        CHECK(!strcmp(q[0].id, "3") && !strcmp(q[0].doc, "d1.txt") && q[1].n_answers == 2 && !strcmp(q[1].id, "line3"),
              "fields");
        sb_eval_questions_free(q, n);
    }
    p = write_tmp(dir, "bad1.jsonl", "{\"question\": \"Q1?\", \"answer\": \"A1\"}\n{\"question\": \"Q2?\"}\n");
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_ERR_FORMAT && strstr(err.msg, ":2: no \"answer\""), "%s", err.msg);
    p = write_tmp(dir, "bad2.jsonl", "{\"question\": \"Q1?\", \"answer\": []}\n");
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_ERR_FORMAT && strstr(err.msg, "no \"answer\""), "%s", err.msg);
    p = write_tmp(dir, "bad3.jsonl", "{\"question\": \"Q1?\", \"answer\": \"A\"}\nnot json\n");
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_ERR_FORMAT && strstr(err.msg, ":2: bad JSON"), "%s", err.msg);
    p = write_tmp(dir, "bad4.jsonl", "\n");
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_ERR_FORMAT && strstr(err.msg, "no questions"), "%s", err.msg);

    /* Splits by document: 30 questions over 10 documents. */
    sb_buf b = {0};
    for (int i = 0; i < 30; i++)
        sb_buf_printf(&b, "{\"id\": %d, \"question\": \"Q%d?\", \"answer\": \"A\", \"doc\": \"doc%d.txt\"}\n", i, i,
                      i % 10);
    p = write_tmp(dir, "all.jsonl", b.data);
    sb_buf_free(&b);
    CHECK(sb_eval_load(p, &q, &n, &err) == SB_OK && n == 30, "load 30");
    char out[512];
    snprintf(out, sizeof out, "%s/splits", dir);
    int pct[3] = {60, 20, 20}, counts[3];
    CHECK(sb_eval_make_splits(q, n, true, pct, 1, out, counts, &err) == SB_OK, "%s", err.msg);
    CHECK(counts[0] + counts[1] + counts[2] == 30 && counts[2] == 6 && counts[1] == 6, "by doc %d/%d/%d", counts[0],
          counts[1], counts[2]);
    const char *names[3] = {"train.jsonl", "valid.jsonl", "test.jsonl"};
    int doc_split[10];
    for (int i = 0; i < 10; i++) doc_split[i] = -1;
    bool disjoint = true;
    int total = 0;
    for (int s = 0; s < 3; s++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", out, names[s]);
        sb_eval_question *sq;
        int sn;
        if (sb_eval_load(path, &sq, &sn, &err) != SB_OK) continue;
        total += sn;
        for (int i = 0; i < sn; i++) {
            int d = atoi(sq[i].doc + 3);
            if (doc_split[d] >= 0 && doc_split[d] != s) disjoint = false;
            doc_split[d] = s;
        }
        sb_eval_questions_free(sq, sn);
    }
    CHECK(total == 30 && disjoint, "every question once, no document in two splits (%d)", total);
    int pct_bad[3] = {50, 20, 20};
    CHECK(sb_eval_make_splits(q, n, true, pct_bad, 1, out, counts, &err) == SB_ERR_INVALID, "shares must add up");
    free(q[3].doc);
    q[3].doc = NULL;
    CHECK(sb_eval_make_splits(q, n, true, pct, 1, out, counts, &err) == SB_ERR_FORMAT && strstr(err.msg, "no \"doc\""),
          "%s", err.msg);
    CHECK(sb_eval_make_splits(q, n, false, pct, 1, out, counts, &err) == SB_OK && counts[2] == 6, "by question");
    sb_eval_questions_free(q, n);
}

/* The chart as a person sees it: rendered by rsvg-convert, four bars of the
 * right heights with labels (tests/check_chart.py reads the PNG). */
static void test_chart(const char *dir) {
    sb_eval_bar bars[4] = {{"base", 0.12, 0.08, 0.16}, {"rag", 0.35, 0.28, 0.42}, {"lora", 0.2, 0.15, 0.26},
                           {"rag+lora", 0.5, 0.41, 0.58}};
    char *svg = sb_eval_chart_svg(bars, 4, "Token F1 per configuration");
    CHECK(svg && strstr(svg, ">rag+lora</text>") && strstr(svg, ">base</text>"), "labels in the SVG");
    char path[512], cmd[1600];
    snprintf(path, sizeof path, "%s/f1.svg", dir);
    FILE *f = fopen(path, "w");
    fputs(svg ? svg : "", f);
    fclose(f);
    free(svg);
    if (system("command -v rsvg-convert >/dev/null 2>&1") != 0) {
        SKIP("rsvg-convert absent (Debian librsvg2-bin; scripts/setup installs it)");
        return;
    }
    snprintf(cmd, sizeof cmd, "rsvg-convert -o '%s/f1.png' '%s' && python3 tests/check_chart.py '%s/f1.png' 0.12 0.35 0.2 0.5 >&2",
             dir, path, dir);
    CHECK(system(cmd) == 0, "the rendered chart shows four labelled bars of the right heights (%s)", cmd);
    const char *keep = getenv("SABIO_KEEP_CHART");
    if (keep) {
        snprintf(cmd, sizeof cmd, "cp '%s/f1.png' '%s'", dir, keep);
        if (system(cmd)) fprintf(stderr, "could not copy the chart to %s\n", keep);
    }
}

/* The recommendation rule: the simplest configuration the best one does not
 * beat with confidence (the bounds are made up: the rule, not the numbers). */
static void test_recommend(void) {
    double gain_lo[4] = {+0.05, -0.01, +0.09, 0}; /* best = 3 (rag+lora) */
    CHECK(sb_eval_recommend(3, gain_lo, 4) == 1, "rag+lora not surely better than rag: rag");
    gain_lo[1] = +0.01;
    CHECK(sb_eval_recommend(3, gain_lo, 4) == 3, "rag+lora beats base, rag and lora: rag+lora");
    gain_lo[0] = -0.02;
    CHECK(sb_eval_recommend(3, gain_lo, 4) == 0, "not surely better than base: base");
    double two[2] = {+0.07, 0};
    CHECK(sb_eval_recommend(1, two, 2) == 1 && sb_eval_recommend(0, two, 2) == 0, "the best, when first or ahead");
}

int main(void) {
    char dir[] = "/tmp/sabio-test-eval-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_squad();
    test_citations();
    test_context();
    test_stats();
    test_recommend();
    test_questions(dir);
    test_chart(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return TEST_END();
}
