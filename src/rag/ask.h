/*
 * ask.h - grounded answers: retrieve the chunks for a question, fit them into
 * the model's context by tokens, ask the model to answer only from those
 * numbered sources and cite them as [n], then check every citation.
 */
#ifndef SB_ASK_H
#define SB_ASK_H

#include "model/generate.h"
#include "rag/store.h"
#include "text/chat.h"

typedef struct sb_ask_params {
    int k;                 /* chunks to retrieve (default 6) */
    sb_search_mode mode;   /* default hybrid */
    int answer_tokens;     /* room kept for the answer (default 256) */
    sb_chat_tmpl tmpl;     /* chat format (SB_CHAT_UNKNOWN: from the model) */
    const char *system;    /* overrides the default instruction */
    const char *query;     /* retrieval query (NULL: the question itself) */
    const char *answer_prefix; /* the answer's given first words (NULL: the default,
                                  "According to source [" when grounded; "" for none) */
    const sb_chat_msg *history; /* earlier turns (user, assistant, ...), put */
    int n_history;              /* before the question, without their sources */
    sb_gen_params gen;
} sb_ask_params;

sb_ask_params sb_ask_default_params(void);

typedef struct sb_ask_source {
    int n;         /* the number the model sees: [n] */
    sb_hit hit;    /* owned */
    bool cited;
} sb_ask_source;

typedef struct sb_ask_result {
    char *answer;           /* starts with the given answer prefix */
    int prefix_len;         /* bytes of answer that were given, not generated */
    sb_ask_source *sources; /* given to the model, in order */
    int n_sources;
    int n_dropped;          /* retrieved but not fitting the context */
    int *invalid;           /* cited numbers that match no source */
    int n_invalid;
    int prompt_tokens;
    sb_gen_result gen;
} sb_ask_result;

void sb_ask_result_free(sb_ask_result *r);

/* Answers question from the store with the model of session s. Streamed
 * text goes to cb. store may be NULL: the model answers alone, under an
 * instruction to answer briefly (the baseline of an evaluation), with the
 * same decoding. Errors: an empty store, a question that leaves no room for
 * sources and answer in the context. */
sb_status sb_ask(sb_store *store, sb_encoder *enc, sb_session *s, const sb_model *m, const char *question,
                 const sb_ask_params *p, sb_text_cb cb, void *user, sb_ask_result *out, sb_err *err);

/* sb_ask after retrieval: answers from hits (n_hits from sb_store_search,
 * taken over: freed or moved into out in every case), so a caller sharing one
 * store and encoder between threads holds its lock only while searching. */
sb_status sb_ask_hits(sb_hit *hits, int n_hits, sb_session *s, const sb_model *m, const char *question,
                      const sb_ask_params *p, sb_text_cb cb, void *user, sb_ask_result *out, sb_err *err);

/* Scans text from *cursor for the next citation: "[3]", or each number of
 * "[1, 2]". Stores it in *n, advances *cursor past it, returns false when
 * there is none left. */
bool sb_ask_next_citation(const char **cursor, long *n);

#endif
