/*
 * serve.h - `sabio serve`: an OpenAI-compatible HTTP server (libmicrohttpd)
 * over libsabio, with grounded answers from knowledge stores and a small
 * web page. Option names follow llama-server's (--host, --port, -np, -c, -t,
 * --api-key, --timeout).
 *
 * Routes: GET / (the page), GET /health, GET /v1/models,
 * POST /v1/chat/completions (SSE with "stream": true; {"sabio": {"store":
 * NAME}} answers from that store), POST /v1/completions,
 * POST /v1/embeddings, POST /v1/rag/ask, GET /v1/rag/stores, GET /v1/rag/search?q=,
 * GET /v1/rag/sources/ID?store=NAME.
 *
 * Concurrency: n_parallel slots, each one sb_session (KV cache) over the one
 * shared sb_model; requests wait in a queue of at most max_queue, beyond that
 * 503 with Retry-After. The threads (-t) are shared among the busy slots. A
 * request whose client goes away stops generating at the next token.
 */
#ifndef SV_SERVE_H
#define SV_SERVE_H

#include <stddef.h>

#define SV_MAX_STORES 8

typedef struct sv_options {
    const char *model;       /* -m: the language model */
    const char *embed_model; /* --embed-model: encoder (default: the first store's, else none) */
    const char *store_names[SV_MAX_STORES];
    const char *store_dirs[SV_MAX_STORES];
    int n_stores;
    const char *host; /* default 127.0.0.1 */
    int port;         /* default 8080 */
    int n_parallel;   /* slots (default 4) */
    int n_ctx;        /* total context, split over the slots as llama-server does (default 2048 per slot) */
    int threads;      /* default: online CPUs, at most 8 */
    int max_queue;    /* waiting requests beyond the busy slots (default 4 x slots) */
    int max_tokens;   /* largest max_tokens a request may ask (default 2048) */
    int n_predict;    /* max_tokens when a request gives none (default 512) */
    size_t max_body;  /* bytes (default 1 MiB) */
    int timeout;      /* seconds a connection may idle (default 60) */
    int max_conn;     /* open connections at most (default 64) */
    const char *api_key; /* NULL: no authentication */
    const char *chat_template; /* NULL: from the model */
    int verbose;
    int no_repack; /* -nr: keep the file's weight layout (else sb_model_repack) */
} sv_options;

void sv_options_default(sv_options *o);
/* Loads the models and stores, serves until SIGINT/SIGTERM. Returns the
 * process exit code; errors go to stderr. */
int sv_serve(const sv_options *o);

#endif
