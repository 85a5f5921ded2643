/*
 * request.h - the JSON bodies of the server's routes, parsed and validated
 * into plain structs before anything runs. A bad body yields an sv_error in
 * the OpenAI error shape ({"error": {"message", "type", "param", "code"}})
 * naming the field that was wrong; nothing here touches the model, so the
 * parsers are what fuzz/fuzz_serve.c exercises.
 *
 * Ownership: a request keeps the parsed JSON document (root) and borrows its
 * strings from it; sv_*_free releases both.
 */
#ifndef SV_REQUEST_H
#define SV_REQUEST_H

#include "text/chat.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sv_error {
    int status;        /* HTTP status */
    const char *type;  /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *param; /* the offending field or NULL (static string or borrowed from the request) */
    const char *code;  /* machine-readable code or NULL */
    char message[320];
} sv_error;

/* Fills e and returns false, so parsers can `return sv_fail(...)`. */
bool sv_fail(sv_error *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {...}} as a heap string. */
char *sv_error_json(const sv_error *e);

typedef struct sv_limits {
    int max_tokens;   /* largest max_tokens a request may ask for */
    int max_messages; /* chat messages per request */
    int max_inputs;   /* embedding inputs per request */
} sv_limits;

#define SV_MAX_STOP 4

typedef enum { SV_CHAT = 0, SV_COMPLETION, SV_RAG_ASK } sv_kind;

typedef struct sv_gen_req {
    sv_kind kind;
    json_t *root;
    bool stream, include_usage;
    bool ignore_eos; /* llama-server's extension: generate max_tokens whatever comes */
    int max_tokens; /* -1: not given */
    bool has_temp, has_top_p, has_seed;
    float temp, top_p;
    uint64_t seed;
    const char *stop[SV_MAX_STOP];
    int n_stop;
    /* chat: the conversation (contents borrowed or in owned[]) */
    sb_chat_msg *msgs;
    int n_msgs;
    char **owned;
    int n_owned;
    /* completion */
    const char *prompt;
    /* RAG: the "sabio" extension of chat ({"store": NAME, "k": N}) or /v1/rag/ask */
    const char *store; /* NULL: no retrieval */
    int k;             /* 0: default */
    const char *question;
} sv_gen_req;

/* POST /v1/chat/completions, /v1/completions, /v1/rag/ask. On failure e is
 * filled, the request is left empty and false is returned. */
bool sv_parse_chat(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e);
bool sv_parse_completion(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e);
bool sv_parse_rag_ask(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e);
void sv_gen_req_free(sv_gen_req *r);

typedef struct sv_embed_req {
    json_t *root;
    const char **inputs;
    int n_inputs;
    bool base64; /* encoding_format "base64": little-endian float32, as the openai client asks by default */
} sv_embed_req;

bool sv_parse_embeddings(const char *body, size_t len, const sv_limits *lim, sv_embed_req *r, sv_error *e);
void sv_embed_req_free(sv_embed_req *r);

/* Standard base64 of n bytes, heap string. */
char *sv_base64(const void *data, size_t n);

#endif
