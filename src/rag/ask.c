/*
 * ask.c - the grounded-answer loop of ask.h.
 *
 * The prompt is one user turn: the numbered sources (document and lines),
 * then the question, under a system instruction to answer only from them and
 * cite them. Sources are added in retrieval order while the whole prompt plus
 * the answer budget fits the context; those that do not fit are counted as
 * dropped, never cut in the middle.
 */
#include "rag/ask.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *DEFAULT_SYSTEM =
    "You answer questions using only the numbered sources given with the question. "
    "Cite the sources you use with their numbers in square brackets, like [1] or [2]. "
    "If the sources do not contain the answer, say that you do not know.";

/* Repeated after the question: a small model follows the last thing it read. */
static const char *ANSWER_HINT = "Answer with one sentence from the sources and its source number, like [1].";

/* Grounded answers start with these words (given, not generated): a small
 * model then names the source it answers from, which it otherwise forgets
 * to do. The number is the model's choice, checked like any citation. */
static const char *DEFAULT_PREFIX = "According to source [";

static const char *BASE_SYSTEM = "Answer the question briefly.";

sb_ask_params sb_ask_default_params(void) {
    sb_ask_params p = {.k = 6, .mode = SB_SEARCH_HYBRID, .answer_tokens = 256, .tmpl = SB_CHAT_UNKNOWN};
    p.gen.n_predict = 256;
    p.gen.sampling = sb_sampler_default_params();
    p.gen.sampling.temp = 0; /* grounded answers: greedy by default */
    return p;
}

void sb_ask_result_free(sb_ask_result *r) {
    free(r->answer);
    for (int i = 0; i < r->n_sources; i++) {
        free(r->sources[i].hit.path);
        free(r->sources[i].hit.section);
        free(r->sources[i].hit.text);
    }
    free(r->sources);
    free(r->invalid);
    memset(r, 0, sizeof *r);
}

static char *render(sb_chat_tmpl t, const char *system, const sb_ask_params *p, const char *question,
                    const sb_hit *hits, int n, bool grounded) {
    sb_buf u = {0};
    if (grounded) {
        sb_buf_puts(&u, "Sources:\n\n");
        for (int i = 0; i < n; i++) sb_buf_printf(&u, "[%d] %s\n\n", i + 1, hits[i].text);
        if (!n) sb_buf_puts(&u, "(none)\n\n");
        sb_buf_printf(&u, "Question: %s\n%s", question, ANSWER_HINT);
    } else {
        sb_buf_puts(&u, question);
    }
    size_t n_msgs = (size_t)p->n_history + 2;
    sb_chat_msg *msgs = sb_calloc(n_msgs, sizeof *msgs);
    char *text = NULL;
    if (msgs && u.data) {
        msgs[0] = (sb_chat_msg){"system", system};
        for (int i = 0; i < p->n_history; i++) msgs[1 + i] = p->history[i];
        msgs[n_msgs - 1] = (sb_chat_msg){"user", u.data};
        text = sb_chat_apply(t, msgs, n_msgs, true);
    }
    free(msgs);
    sb_buf_free(&u);
    return text;
}

bool sb_ask_next_citation(const char **cursor, long *n) {
    /* The cursor is left on the comma after a number of a list "[1, 2]", so
     * starting on a comma means continuing that list. */
    for (const char *c = *cursor; *c; c++) {
        if (*c != '[' && !(*c == ',' && c == *cursor)) continue;
        const char *d = c + 1;
        while (*d == ' ') d++;
        char *end;
        long v = strtol(d, &end, 10);
        if (end == d || !isdigit((unsigned char)*d)) continue;
        while (*end == ' ') end++;
        if (*end != ']' && *end != ',') continue;
        *n = v;
        *cursor = end;
        return true;
    }
    *cursor += strlen(*cursor);
    return false;
}

/* The answer from hits (taken over), grounded in them or, without a store,
 * from the model alone. */
static sb_status answer_from(sb_hit *hits, int n_hits, bool grounded, sb_session *s, const sb_model *m,
                             const char *question, const sb_ask_params *p, sb_text_cb cb, void *user,
                             sb_ask_result *out, sb_err *err) {
    memset(out, 0, sizeof *out);
    sb_status st = SB_OK;
    const sb_tokenizer *tok = sb_model_tokenizer(m);
    if (!tok) {
        sb_hits_free(hits, n_hits);
        return sb_err_set(err, SB_ERR_INVALID, "the model has no tokenizer");
    }
    sb_chat_tmpl t = p->tmpl;
    if (t == SB_CHAT_UNKNOWN) t = sb_chat_detect(sb_tokenizer_chat_template(tok));
    if (t == SB_CHAT_UNKNOWN) t = !strcmp(sb_model_get_config(m)->arch, "phi3") ? SB_CHAT_PHI3 : SB_CHAT_CHATML;
    const char *system = p->system ? p->system : grounded ? DEFAULT_SYSTEM : BASE_SYSTEM;
    const char *prefix = p->answer_prefix ? p->answer_prefix : grounded ? DEFAULT_PREFIX : "";
    int n_ctx = sb_ctx_n_ctx(sb_session_ctx(s));
    int budget = n_ctx - p->answer_tokens;

    /* Grow the prompt source by source while it fits. */
    sb_tokens ids = {0};
    int used = 0;
    for (int n = 0; n <= n_hits; n++) {
        char *text = render(t, system, p, question, hits, n, grounded);
        if (text && prefix[0]) { /* the answer's first words, in the assistant's turn */
            char *withp = sb_aprintf("%s%s", text, prefix);
            free(text);
            text = withp;
        }
        sb_tokens tryids = {0};
        st = text ? sb_tokenize(tok, text, strlen(text), true, true, &tryids, err)
                  : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        free(text);
        if (st != SB_OK) {
            sb_tokens_free(&tryids);
            goto done;
        }
        if ((int)tryids.n > budget) {
            sb_tokens_free(&tryids);
            if (n == 0) {
                st = sb_err_set(err, SB_ERR_RANGE,
                                "the question and instructions take more than the %d tokens left for them in a "
                                "context of %d (answer budget %d)",
                                budget, n_ctx, p->answer_tokens);
                goto done;
            }
            break;
        }
        sb_tokens_free(&ids);
        ids = tryids;
        used = n;
    }
    out->n_dropped = n_hits - used;
    out->prompt_tokens = (int)ids.n;
    out->sources = calloc((size_t)(used ? used : 1), sizeof *out->sources);
    if (!out->sources) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < used; i++) {
        out->sources[i].n = i + 1;
        out->sources[i].hit = hits[i];
        hits[i].path = hits[i].section = hits[i].text = NULL; /* moved */
    }
    out->n_sources = used;
    sb_buf answer = {0};
    if (prefix[0]) {
        sb_buf_puts(&answer, prefix);
        if (cb) cb(prefix, strlen(prefix), user);
    }
    sb_gen_params gp = p->gen;
    if (gp.n_predict < 0 || gp.n_predict > p->answer_tokens) gp.n_predict = p->answer_tokens;
    st = sb_session_generate(s, ids.ids, ids.n, &gp, cb, user, &answer, NULL, &out->gen, err);
    out->answer = answer.data ? answer.data : sb_strdup("");
    out->prefix_len = (int)strlen(prefix);
    if (st != SB_OK) goto done;
    /* Citation check: every [n] must name a source that was given. */
    long v;
    for (const char *c = out->answer; sb_ask_next_citation(&c, &v);) {
        if (v >= 1 && v <= used) {
            out->sources[v - 1].cited = true;
        } else {
            int *inv = sb_realloc_array(out->invalid, (size_t)out->n_invalid + 1, sizeof *inv);
            if (inv) {
                out->invalid = inv;
                out->invalid[out->n_invalid++] = (int)v;
            }
        }
    }
done:
    sb_tokens_free(&ids);
    sb_hits_free(hits, n_hits);
    return st;
}

sb_status sb_ask(sb_store *store, sb_encoder *enc, sb_session *s, const sb_model *m, const char *question,
                 const sb_ask_params *p, sb_text_cb cb, void *user, sb_ask_result *out, sb_err *err) {
    memset(out, 0, sizeof *out);
    if (!store) return answer_from(NULL, 0, false, s, m, question, p, cb, user, out, err);
    sb_hit *hits = NULL;
    int n_hits = 0;
    sb_status st = sb_store_search(store, enc, p->query ? p->query : question, p->k, p->mode, &hits, &n_hits, err);
    if (st != SB_OK) return st;
    return sb_ask_hits(hits, n_hits, s, m, question, p, cb, user, out, err);
}

sb_status sb_ask_hits(sb_hit *hits, int n_hits, sb_session *s, const sb_model *m, const char *question,
                      const sb_ask_params *p, sb_text_cb cb, void *user, sb_ask_result *out, sb_err *err) {
    if (!n_hits) {
        memset(out, 0, sizeof *out);
        sb_hits_free(hits, n_hits);
        return sb_err_set(err, SB_ERR_NOT_FOUND, "the store has no chunks (run sabio ingest first)");
    }
    return answer_from(hits, n_hits, true, s, m, question, p, cb, user, out, err);
}
