/*
 * generate.c - sessions and the generation loop of generate.h.
 */
#include "model/generate.h"

#include <stdlib.h>
#include <string.h>

struct sb_session {
    const sb_model *model;
    sb_ctx *ctx;
    sb_tokens hist; /* tokens whose keys/values are in ctx, in order */
    float *logits;  /* n_vocab */
    int n_ctx, n_vocab;
};

sb_session *sb_session_new(const sb_model *m, int n_ctx, sb_err *err) {
    sb_session *s = calloc(1, sizeof *s);
    if (!s) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->model = m;
    s->n_vocab = sb_model_get_config(m)->n_vocab;
    s->n_ctx = n_ctx;
    s->ctx = sb_ctx_new(m, n_ctx, err);
    s->logits = calloc((size_t)s->n_vocab, sizeof(float));
    if (!s->ctx || !s->logits) {
        if (s->ctx && !s->logits) sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        sb_session_free(s);
        return NULL;
    }
    return s;
}

void sb_session_free(sb_session *s) {
    if (!s) return;
    sb_ctx_free(s->ctx);
    sb_tokens_free(&s->hist);
    free(s->logits);
    free(s);
}

sb_ctx *sb_session_ctx(sb_session *s) { return s->ctx; }

void sb_session_reset(sb_session *s) {
    s->hist.n = 0;
    sb_ctx_truncate(s->ctx, 0);
}

/* Length of the longest suffix of text[0..n) that is a proper prefix of a
 * stop string, or the start of an unfinished UTF-8 sequence: such bytes may
 * not be shown yet. */
static size_t holdback(const char *text, size_t n, const sb_gen_params *p) {
    size_t hold = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t m = strlen(p->stop[i]);
        for (size_t k = m > 1 ? m - 1 : 0; k > hold; k--) {
            if (k <= n && memcmp(text + n - k, p->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    /* An incomplete UTF-8 character at the end: find its lead byte. */
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)text[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k && k > hold) hold = k;
        break;
    }
    return hold;
}

/* Position of the first stop string in text[from..n), or -1. */
static long find_stop(const char *text, size_t n, size_t from, const sb_gen_params *p) {
    long best = -1;
    for (int i = 0; i < p->n_stop; i++) {
        size_t m = strlen(p->stop[i]);
        if (!m) continue;
        const char *hit = memmem(text + from, n - from, p->stop[i], m);
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

sb_status sb_session_generate(sb_session *s, const int32_t *prompt, size_t n_prompt,
                              const sb_gen_params *p, sb_text_cb cb, void *user, sb_buf *text,
                              sb_tokens *ids, sb_gen_result *res, sb_err *err) {
    sb_gen_result r = {.n_prompt = (int)n_prompt};
    const sb_tokenizer *tok = sb_model_tokenizer(s->model);
    if (n_prompt == 0) return sb_err_set(err, SB_ERR_INVALID, "empty prompt");
    if (n_prompt >= (size_t)s->n_ctx)
        return sb_err_set(err, SB_ERR_RANGE,
                          "prompt of %zu tokens does not fit the context of %d tokens "
                          "(raise -c or shorten the prompt)",
                          n_prompt, s->n_ctx);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->n_vocab)
            return sb_err_set(err, SB_ERR_RANGE, "prompt token %zu: id %d outside the vocabulary of %d",
                              i, prompt[i], s->n_vocab);

    /* Reuse the cached common prefix; at least the last prompt token is
     * evaluated again, since its logits are needed. */
    size_t keep = 0;
    while (keep < s->hist.n && keep < n_prompt && s->hist.ids[keep] == prompt[keep]) keep++;
    if (keep == n_prompt) keep--;
    sb_ctx_truncate(s->ctx, (int)keep);
    s->hist.n = keep;
    r.n_reused = (int)keep;

    double t0 = sb_time_sec();
    sb_status st = sb_decode(s->ctx, prompt + keep, (int)(n_prompt - keep), s->logits, NULL, err);
    if (st != SB_OK) {
        sb_session_reset(s);
        return st;
    }
    for (size_t i = keep; i < n_prompt; i++) sb_tokens_push(&s->hist, prompt[i]);
    r.t_prompt = sb_time_sec() - t0;

    sb_sampler *smp = sb_sampler_new(&p->sampling, s->n_vocab);
    if (!smp) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_prompt; i++) sb_sampler_accept(smp, prompt[i]);

    sb_buf all = {0}; /* generated text, including the part not yet shown */
    size_t shown = 0;
    t0 = sb_time_sec();
    r.stop = SB_STOP_LENGTH;
    for (;;) {
        if (p->n_predict >= 0 && r.n_gen >= p->n_predict) {
            r.stop = SB_STOP_LENGTH;
            break;
        }
        if ((int)s->hist.n >= s->n_ctx) {
            r.stop = SB_STOP_CONTEXT;
            break;
        }
        int32_t id = sb_sampler_sample(smp, s->logits);
        sb_sampler_accept(smp, id);
        if (!p->ignore_eos && tok && sb_tokenizer_is_eog(tok, id)) {
            r.stop = SB_STOP_EOG;
            break;
        }
        r.n_gen++;
        if (ids) sb_tokens_push(ids, id);
        char piece[256];
        size_t len = tok ? sb_token_to_piece(tok, id, false, piece, sizeof piece) : 0;
        if (len > sizeof piece) len = sizeof piece;
        size_t search_from = all.len > 64 ? all.len - 64 : 0;
        if (!sb_buf_append(&all, piece, len)) {
            st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            break;
        }
        long at = p->n_stop ? find_stop(all.data, all.len, search_from < shown ? shown : search_from, p) : -1;
        size_t upto = at >= 0 ? (size_t)at : all.len - holdback(all.data, all.len, p);
        bool go_on = true;
        if (upto > shown) {
            if (text) sb_buf_append(text, all.data + shown, upto - shown);
            if (cb) go_on = cb(all.data + shown, upto - shown, user);
            shown = upto;
        }
        if (at >= 0) {
            r.stop = SB_STOP_STRING;
            /* The sampled token is in the text; keep it in the cache too. */
        }
        /* Evaluate the new token so the cache holds everything generated. */
        st = sb_decode(s->ctx, &id, 1, s->logits, NULL, err);
        if (st != SB_OK) break;
        sb_tokens_push(&s->hist, id);
        if (at >= 0) break;
        if (!go_on) {
            r.stop = SB_STOP_CALLBACK;
            break;
        }
    }
    /* Whatever was held back is final now (unless a stop string cut it). */
    if (st == SB_OK && r.stop != SB_STOP_STRING && all.len > shown) {
        if (text) sb_buf_append(text, all.data + shown, all.len - shown);
        if (cb) cb(all.data + shown, all.len - shown, user);
    }
    r.t_gen = sb_time_sec() - t0;
    sb_buf_free(&all);
    sb_sampler_free(smp);
    if (res) *res = r;
    return st;
}
