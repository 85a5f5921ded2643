/* test_sample.c - the sampling chain against its mathematical definition:
 * frequencies of draws against softmax probabilities, truncations by top-k,
 * top-p and min-p, the repetition penalty and seeding. */
#include "model/sample.h"
#include "test.h"

#define NV 8
static const float base_logits[NV] = {2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 3.0f, -2.0f};

static void freqs(sb_sampler_params p, int draws, double *f) {
    sb_sampler *s = sb_sampler_new(&p, NV);
    memset(f, 0, sizeof(double) * NV);
    float l[NV];
    for (int i = 0; i < draws; i++) {
        memcpy(l, base_logits, sizeof l);
        f[sb_sampler_sample(s, l)] += 1.0 / draws;
    }
    sb_sampler_free(s);
}

int main(void) {
    sb_sampler_params p = {.temp = 0, .repeat_penalty = 1, .top_p = 1};
    sb_sampler *s = sb_sampler_new(&p, NV);
    float l[NV];
    memcpy(l, base_logits, sizeof l);
    CHECK(sb_sampler_sample(s, l) == 6, "greedy must pick the argmax (6)");
    sb_sampler_free(s);

    /* Pure temperature sampling: frequencies follow softmax(logits / T). */
    const int draws = 200000;
    for (int ti = 0; ti < 2; ti++) {
        float T = ti ? 0.5f : 1.0f;
        p = (sb_sampler_params){.temp = T, .repeat_penalty = 1, .top_p = 1, .seed = 42};
        double f[NV], z = 0, q[NV];
        freqs(p, draws, f);
        for (int i = 0; i < NV; i++) z += q[i] = exp(base_logits[i] / T);
        for (int i = 0; i < NV; i++) {
            q[i] /= z;
            double sd = sqrt(q[i] * (1 - q[i]) / draws);
            CHECK(fabs(f[i] - q[i]) < 5 * sd + 1e-9, "T=%.1f token %d: freq %.5f vs p %.5f", T, i,
                  f[i], q[i]);
        }
    }
    /* top-k = 2 keeps tokens 6 and 0 only, renormalised. */
    p = (sb_sampler_params){.temp = 1, .top_k = 2, .repeat_penalty = 1, .top_p = 1, .seed = 7};
    double f[NV];
    freqs(p, draws, f);
    double p6 = 1 / (1 + exp(-1.0));
    CHECK(fabs(f[6] - p6) < 0.01 && fabs(f[0] - (1 - p6)) < 0.01, "top-k 2: %.4f %.4f", f[6], f[0]);
    /* top-p: softmax of base logits: p(6)=0.61.., p(0)=0.22..; top_p 0.7 keeps {6,0}. */
    p = (sb_sampler_params){.temp = 1, .top_p = 0.7f, .repeat_penalty = 1, .seed = 9};
    freqs(p, draws, f);
    CHECK(f[1] == 0 && f[2] == 0 && fabs(f[6] - p6) < 0.01, "top-p 0.7: %.4f %.4f %.4f", f[6],
          f[0], f[1]);
    /* min-p 0.3: keep tokens with p >= 0.3 * p(6): exp(l - 3) >= 0.3 -> l >= 1.796: {6, 0}. */
    p = (sb_sampler_params){.temp = 1, .top_p = 1, .min_p = 0.3f, .repeat_penalty = 1, .seed = 3};
    freqs(p, draws, f);
    CHECK(f[1] == 0 && f[0] > 0.2, "min-p 0.3: %.4f %.4f", f[0], f[1]);

    /* Repetition penalty 2 on token 6 (logit 3 -> 1.5) makes 0 (logit 2) the argmax;
     * on a negative logit it multiplies. */
    p = (sb_sampler_params){.temp = 0, .top_p = 1, .repeat_penalty = 2, .repeat_last_n = 4};
    s = sb_sampler_new(&p, NV);
    sb_sampler_accept(s, 6);
    sb_sampler_accept(s, 6);
    sb_sampler_accept(s, 7);
    memcpy(l, base_logits, sizeof l);
    CHECK(sb_sampler_sample(s, l) == 0, "penalised argmax should move to token 0");
    CHECK(l[6] == 1.5f && l[7] == -4.0f, "penalised logits %.2f %.2f", l[6], l[7]);
    sb_sampler_free(s);

    /* Same seed, same draws; another seed, other draws. */
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p = (sb_sampler_params){.temp = 1.5f, .top_p = 1, .repeat_penalty = 1, .seed = run == 2 ? 2 : 1};
        s = sb_sampler_new(&p, NV);
        for (int i = 0; i < 64; i++) {
            memcpy(l, base_logits, sizeof l);
            (run == 0 ? a : run == 1 ? b : c)[i] = sb_sampler_sample(s, l);
        }
        sb_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed gave different draws");
    CHECK(memcmp(a, c, sizeof a) != 0, "different seeds gave identical draws");
    return TEST_END();
}
