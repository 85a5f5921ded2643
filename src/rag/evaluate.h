/*
 * evaluate.h - run configurations (base, RAG, LoRA, RAG+LoRA) on the same
 * questions and write the report: the engine behind `sabio eval` and
 * bench/rag.
 *
 * A configuration is a model (with or without an adapter: the caller opens
 * it through the model API) and whether answers are grounded in the store.
 * Every configuration gets the same questions, decoding parameters and seed.
 * Each finished (configuration, question) is appended to OUT/cache.jsonl as
 * soon as it is done, so an interrupted run resumes where it stopped; the
 * reports are computed from the cache:
 *   report.json  quality metrics per configuration and the paired bootstrap
 *                95% CIs of the F1 differences (deterministic for a seed)
 *   timings.json latency p50/p95 and tokens/s (machine dependent)
 *   report.md    the table and the recommendation
 *   f1.svg       mean F1 per configuration with its 95% CI
 */
#ifndef SB_EVALUATE_H
#define SB_EVALUATE_H

#include "rag/ask.h"
#include "rag/eval.h"

typedef struct sb_eval_config {
    const char *name;   /* "base", "rag", "lora", "rag+lora" */
    const sb_model *model;
    sb_session *session;
    bool rag;           /* ground the answers in the store */
    const char *adapter; /* what was attached (sb_eval_adapter_id), recorded with each answer; may be NULL */
} sb_eval_config;

typedef struct sb_eval_opts {
    const char *out_dir;
    sb_ask_params ask;   /* retrieval and decoding, shared by all configurations */
    int bootstrap;       /* resamples for the CIs (default 2000) */
    uint64_t seed;       /* bootstrap seed; decoding uses ask.gen.sampling.seed */
    const char *data_changes; /* "often", "rarely" or NULL: the Cookbook's first criterion */
    const char *command;      /* the command line, recorded in report.md */
    bool partial;             /* write the reports over the questions every configuration
                                 has answered so far, answering nothing more */
    int shard, n_shards;      /* answer only questions i with i % n_shards == shard
                                 (n_shards <= 1: all); several processes may share OUT */
} sb_eval_opts;

/* Progress after each answer: done so far (cached ones included) of total. */
typedef void (*sb_eval_progress)(const char *config, int done, int total, double f1, void *user);

/* Runs the configurations on n questions (skipping what OUT/cache.jsonl
 * already holds for the same question set) and, once the cache holds every
 * answer, writes the reports; *n_missing (may be NULL) is how many answers
 * other shards still owe. store
 * and enc are needed if a configuration has rag set. Errors: a question
 * whose doc the store does not hold (when questions name docs), an
 * unwritable OUT. */
sb_status sb_eval_run(const sb_eval_question *q, int n, const sb_eval_config *cfg, int n_cfg, sb_store *store,
                      sb_encoder *enc, const sb_eval_opts *o, sb_eval_progress cb, void *user, int *n_missing,
                      sb_err *err);

/* Names adapters by what they hold: "file*scale fnv1a64:HASH:BYTES" per
 * adapter, comma-separated (a PEFT folder or .safetensors file hashed with
 * its adapter_config.json), so a retrained adapter under the same path is
 * not taken for the old one. Heap string; NULL on a read error. */
char *sb_eval_adapter_id(const char *const *paths, const float *scales, int n, sb_err *err);

/* The recommended configuration: the first (configurations are in order of
 * what they need: base, rag, lora, rag+lora) that the best-F1 one, best,
 * does not beat with confidence, i.e. gain_lo[c] <= 0 where gain_lo[c] is
 * the lower 95% bound of F1(best) - F1(c); best itself if it beats all
 * before it. */
int sb_eval_recommend(int best, const double *gain_lo, int n_cfg);

/* The chart of f1.svg: labelled bars (values in 0..1) with whiskers from
 * lo to hi. Heap string. */
typedef struct sb_eval_bar {
    const char *label;
    double value, lo, hi;
} sb_eval_bar;
char *sb_eval_chart_svg(const sb_eval_bar *bars, int n, const char *title);

/* Splits a question set into OUT/train.jsonl, valid.jsonl, test.jsonl with
 * the given shares (percent, summing to 100): by question, or by document
 * (all questions of a document go to the same split, so no document of the
 * test split is seen in training). Deterministic for a seed. */
sb_status sb_eval_make_splits(const sb_eval_question *q, int n, bool by_doc, const int pct[3], uint64_t seed,
                              const char *out_dir, int counts[3], sb_err *err);

#endif
