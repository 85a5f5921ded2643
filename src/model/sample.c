/*
 * sample.c - the sampling chain of sample.h. One candidate array is
 * allocated with the sampler and reused for every token.
 */
#include "model/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    int32_t id;
    float logit;
    float p;
} cand;

struct sb_sampler {
    sb_sampler_params p;
    int n_vocab;
    cand *cands;
    int32_t *hist; /* ring of the last repeat_last_n accepted tokens */
    int hist_n, hist_pos;
    uint64_t rng[4];
};

sb_sampler_params sb_sampler_default_params(void) {
    return (sb_sampler_params){.temp = 0.8f,
                               .top_k = 40,
                               .top_p = 0.95f,
                               .min_p = 0.05f,
                               .repeat_penalty = 1.0f,
                               .repeat_last_n = 64,
                               .seed = 0};
}

/* splitmix64 seeds xoshiro256** (Blackman & Vigna). */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}
static double rng_uniform(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

void sb_sampler_reset(sb_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->hist_n = s->hist_pos = 0;
}

sb_sampler *sb_sampler_new(const sb_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    sb_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->n_vocab = n_vocab;
    s->cands = calloc((size_t)n_vocab, sizeof *s->cands);
    s->hist = calloc((size_t)(s->p.repeat_last_n ? s->p.repeat_last_n : 1), sizeof *s->hist);
    if (!s->cands || !s->hist) {
        sb_sampler_free(s);
        return NULL;
    }
    sb_sampler_reset(s);
    return s;
}

void sb_sampler_free(sb_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s->hist);
    free(s);
}

void sb_sampler_accept(sb_sampler *s, int32_t id) {
    int n = s->p.repeat_last_n;
    if (n <= 0) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % n;
    if (s->hist_n < n) s->hist_n++;
}

static void apply_repeat_penalty(sb_sampler *s, float *logits) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->hist_n == 0) return;
    /* Each distinct token is penalised once, however often it occurs. */
    for (int i = 0; i < s->hist_n; i++) {
        int32_t id = s->hist[i];
        if (id < 0 || id >= s->n_vocab) continue;
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= s->hist[j] == id;
        if (seen) continue;
        logits[id] = logits[id] > 0 ? logits[id] / pen : logits[id] * pen;
    }
}

static int cmp_cand_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->logit, y = ((const cand *)b)->logit;
    if (x != y) return x < y ? 1 : -1;
    return ((const cand *)a)->id - ((const cand *)b)->id;
}

/* Softmax over the first n candidates (sorted descending) into .p. */
static void softmax_cands(cand *c, int n, float temp) {
    double sum = 0;
    float max = c[0].logit;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temp);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

int32_t sb_sampler_sample(sb_sampler *s, float *logits) {
    apply_repeat_penalty(s, logits);
    int nv = s->n_vocab;
    if (s->p.temp <= 0) {
        int32_t best = 0;
        for (int i = 1; i < nv; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = s->cands;
    int n = 0;
    for (int i = 0; i < nv; i++)
        if (!isnan(logits[i])) c[n++] = (cand){i, logits[i], 0};
    if (n == 0) return 0;
    int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    /* Partial selection would be faster for huge vocabularies; a full sort of
     * 32k-150k floats costs well under a millisecond next to a forward pass. */
    qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
    n = k;
    if (s->p.top_p < 1.0f) {
        softmax_cands(c, n, 1.0f);
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0) {
        softmax_cands(c, n, 1.0f);
        float thresh = c[0].p * s->p.min_p;
        int keep = 1;
        while (keep < n && c[keep].p >= thresh) keep++;
        n = keep;
    }
    softmax_cands(c, n, s->p.temp);
    double r = rng_uniform(s->rng), cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
