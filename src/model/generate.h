/*
 * generate.h - the generation loop: a session owns one context (KV cache)
 * and the token history behind it, so that a new prompt sharing a prefix with
 * what was already evaluated (the next turn of a chat) only evaluates the new
 * part. Text is streamed through a callback as it becomes final: a piece is
 * held back while it could still be the start of a stop string or of an
 * unfinished UTF-8 character.
 */
#ifndef SB_GENERATE_H
#define SB_GENERATE_H

#include "model/model.h"
#include "model/sample.h"
#include "text/tokenizer.h"

typedef struct sb_gen_params {
    int n_predict; /* tokens to generate at most; < 0: until end of generation or context full */
    sb_sampler_params sampling;
    const char *const *stop; /* stop strings (not included in the output) */
    int n_stop;
    bool ignore_eos; /* keep going past end-of-generation tokens */
} sb_gen_params;

typedef enum sb_stop_reason {
    SB_STOP_EOG = 0,  /* the model produced an end-of-generation token */
    SB_STOP_LENGTH,   /* n_predict reached */
    SB_STOP_STRING,   /* a stop string appeared */
    SB_STOP_CALLBACK, /* the callback asked to stop */
    SB_STOP_CONTEXT,  /* the context is full */
} sb_stop_reason;

typedef struct sb_gen_result {
    int n_prompt;   /* prompt tokens given */
    int n_reused;   /* of which taken from the cache */
    int n_gen;      /* tokens generated */
    double t_prompt, t_gen; /* seconds */
    sb_stop_reason stop;
} sb_gen_result;

/* Receives final text as it streams; return false to stop generation. */
typedef bool (*sb_text_cb)(const char *text, size_t len, void *user);

typedef struct sb_session sb_session;
sb_session *sb_session_new(const sb_model *m, int n_ctx, sb_err *err);
void sb_session_free(sb_session *s);
sb_ctx *sb_session_ctx(sb_session *s);
/* Forgets the history (the cache is reused from position 0 on). */
void sb_session_reset(sb_session *s);

/* Evaluates prompt (reusing the cached common prefix), then generates.
 * Generated text goes to cb (may be NULL) and, if text is non-NULL, is
 * appended to it. ids (may be NULL) receives the generated token ids. */
sb_status sb_session_generate(sb_session *s, const int32_t *prompt, size_t n_prompt,
                              const sb_gen_params *p, sb_text_cb cb, void *user, sb_buf *text,
                              sb_tokens *ids, sb_gen_result *res, sb_err *err);

#endif
