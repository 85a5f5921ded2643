/*
 * sample.h - choosing the next token from logits.
 *
 * The chain is llama.cpp's default order, so users' settings mean the same
 * thing here: repetition penalty -> top-k -> top-p -> min-p -> temperature ->
 * draw. temp <= 0 means greedy (argmax after the penalty). Draws come from a
 * seeded xoshiro256** generator: the same seed gives the same text.
 */
#ifndef SB_SAMPLE_H
#define SB_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sb_sampler_params {
    float temp;           /* 0 = greedy; llama.cpp default 0.8 */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* tokens of history the penalty looks at */
    uint64_t seed;
} sb_sampler_params;

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1.0 (off), repeat_last_n 64, seed 0. */
sb_sampler_params sb_sampler_default_params(void);

typedef struct sb_sampler sb_sampler;
/* NULL on allocation failure or n_vocab <= 0. */
sb_sampler *sb_sampler_new(const sb_sampler_params *p, int n_vocab);
void sb_sampler_free(sb_sampler *s);
/* Records a token in the penalty history (prompt tokens too, as llama.cpp). */
void sb_sampler_accept(sb_sampler *s, int32_t id);
void sb_sampler_reset(sb_sampler *s);
/* Picks a token. logits (n_vocab) are modified in place. */
int32_t sb_sampler_sample(sb_sampler *s, float *logits);

#endif
