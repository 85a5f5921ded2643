/*
 * eval.h - answer-quality metrics and question sets for grounded answers.
 *
 * Metrics follow the official SQuAD v1.1 evaluation script: answers are
 * normalised (lower case, ASCII punctuation removed, the words a/an/the
 * removed, white space collapsed), exact match compares the normalised
 * strings, token F1 the bags of normalised words. With several references
 * the best one counts. The RAG metrics: context recall (a reference, as
 * normalised words, appears in the supplied sources), citation validity
 * (see sb_eval_citations_ok) and a faithfulness proxy (share of the
 * answer's words found in the supplied sources).
 *
 * A question set is JSONL, one object per line: "question" (string),
 * "answer" (a string or a non-empty array of strings), optional "doc" (the
 * document the answer comes from) and "id".
 */
#ifndef SB_EVAL_H
#define SB_EVAL_H

#include "base/base.h"

/* SQuAD's normalize_answer, as a heap string (NULL on allocation failure). */
char *sb_eval_normalize(const char *s);
/* SQuAD exact match and token F1 of pred against ref. */
bool sb_eval_exact(const char *pred, const char *ref);
double sb_eval_f1(const char *pred, const char *ref);
/* The best over n references. */
bool sb_eval_exact_max(const char *pred, const char *const *refs, int n);
double sb_eval_f1_max(const char *pred, const char *const *refs, int n);

/* True if one of the references, normalised, occurs in the normalised
 * context as a run of whole words. */
bool sb_eval_context_recall(const char *context, const char *const *refs, int n);
/* Share of the answer's normalised words that occur in the normalised
 * context (1 for an empty answer: it claims nothing). */
double sb_eval_support(const char *answer, const char *context);

/* Citations of an answer: "[n]" markers, n counted in *n_cited, those
 * outside 1..n_sources in *n_invalid. "All valid" for the benchmark means at
 * least one citation and no invalid one. */
void sb_eval_citations(const char *answer, int n_sources, int *n_cited, int *n_invalid);
bool sb_eval_citations_ok(const char *answer, int n_sources);
/* The answer without its citation markers ("[1]", "[1, 2]"), heap string. */
char *sb_eval_strip_citations(const char *answer);
/* A valid UTF-8 copy of s, each invalid byte as U+FFFD (a model's answer
 * may end inside a character; JSON needs whole ones). Heap string. */
char *sb_eval_valid_utf8(const char *s);

/* ---- question sets ---- */

typedef struct sb_eval_question {
    char *id;       /* "id" as text, else the line number */
    char *question;
    char **answers; /* n_answers >= 1 */
    int n_answers;
    char *doc;      /* may be NULL */
} sb_eval_question;

/* Reads a JSONL question set. Errors name the file and line: a line that
 * is not a JSON object, a missing or empty question, no answer. */
sb_status sb_eval_load(const char *path, sb_eval_question **out, int *n, sb_err *err);
/* The same from text in memory (len bytes; name is used in messages). */
sb_status sb_eval_parse(const char *text, size_t len, const char *name, sb_eval_question **out, int *n,
                        sb_err *err);
void sb_eval_questions_free(sb_eval_question *q, int n);

/* A deterministic permutation of 0..n-1 for a seed (Fisher-Yates on
 * splitmix64), for fixed samples and splits. Heap array. */
int *sb_eval_shuffle(int n, uint64_t seed);

/* Bootstrap of the mean difference mean(a) - mean(b) of paired per-question
 * scores: iters resamples with a seeded generator; *lo, *hi the 2.5% and
 * 97.5% percentiles. */
sb_status sb_eval_bootstrap_diff(const double *a, const double *b, int n, int iters, uint64_t seed, double *diff,
                                 double *lo, double *hi, sb_err *err);

/* Percentile p (0..100) of n values, linear interpolation between order
 * statistics (numpy's default). The values are not modified. */
double sb_eval_percentile(const double *v, int n, double p);

#endif
