/*
 * server.c - the HTTP side of serve.h: libmicrohttpd in thread-per-connection
 * mode, routing, authentication, body limits, and the slots that generate.
 *
 * A generating request becomes a job shared (reference counted) by its
 * connection thread and the slot thread that runs it. The slot writes text
 * into the job (SSE bytes when streaming) and signals; the connection thread
 * waits for it, sends it, and watches the socket: when the client has gone
 * it sets job->cancel, which the slot's text callback turns into "stop".
 * For streams the response is only started once the first token (or an
 * error) is there, so a prompt that does not fit still gets a 400.
 *
 * Locks: q_mu guards the queue and the busy count; each job's mu its output;
 * rag_mu the encoder and the stores (SQLite handles and the encoder's thread
 * pool are not shared between threads), held only while searching or
 * embedding, never while generating.
 */
#include "serve/serve.h"

#include "model/generate.h"
#include "rag/ask.h"
#include "serve/request.h"
#include "serve/www.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define INVALID "invalid_request_error"

typedef struct store_entry {
    const char *name, *dir;
    sb_store *store;
} store_entry;

typedef struct server server;

typedef struct job {
    server *sv;
    sv_gen_req req;
    sb_tokens prompt; /* chat and completion: tokenized by the connection thread */
    int n_predict;
    store_entry *store;
    char id[48];
    long created;
    int fd; /* the client's socket, to notice it going away */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool started, done;
    int cancel; /* atomic */
    sb_buf out;  /* SSE bytes not yet sent */
    size_t out_off;
    sb_buf text; /* the whole answer (non-streaming) */
    sb_gen_result gen;
    sb_ask_result ask;
    bool has_ask;
    sv_error err;
    bool failed;
} job;

typedef struct slot {
    server *sv;
    sb_session *sess;
    pthread_t thread;
    int threads; /* what its context uses now */
} slot;

struct server {
    sv_options o;
    sb_model *model;
    const sb_tokenizer *tok;
    sb_chat_tmpl tmpl;
    const char *jinja; /* the model's template when recognised (rendered with its defaults) */
    char *model_id, *embed_id;
    int n_ctx_slot;
    sb_encoder *enc;
    store_entry stores[SV_MAX_STORES];
    int n_stores;
    pthread_mutex_t rag_mu;
    slot *slots;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    job **queue;
    int q_head, q_len, busy;
    int quit; /* atomic */
    sv_limits lim;
    long started;
};

/* ---------------------------------------------------------------- jobs */

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    sv_gen_req_free(&j->req);
    sb_tokens_free(&j->prompt);
    sb_buf_free(&j->out);
    sb_buf_free(&j->text);
    if (j->has_ask) sb_ask_result_free(&j->ask);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static bool is_cancelled(job *j) {
    return __atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE) || __atomic_load_n(&j->sv->quit, __ATOMIC_ACQUIRE);
}

/* True if the peer has closed the connection (or it broke). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* Waits (j->mu held) until cond(j) holds; false if the client went away or
 * the server is stopping, after marking the job cancelled. */
static bool job_wait(job *j, bool (*cond)(job *)) {
    while (!cond(j)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (cond(j)) break;
        if (client_gone(j->fd) || __atomic_load_n(&j->sv->quit, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE);
            return false;
        }
    }
    return true;
}

static bool is_done(job *j) { return j->done; }
static bool is_started(job *j) { return j->started || j->done; }
static bool has_output(job *j) { return j->out_off < j->out.len || j->done; }

/* Queues j for a slot; false if the queue is full. */
static bool submit(server *sv, job *j) {
    pthread_mutex_lock(&sv->q_mu);
    bool ok = sv->q_len < sv->o.max_queue;
    if (ok) {
        j->refs++; /* the slot's reference */
        sv->queue[(sv->q_head + sv->q_len++) % sv->o.max_queue] = j;
        pthread_cond_signal(&sv->q_cv);
    }
    pthread_mutex_unlock(&sv->q_mu);
    return ok;
}

/* ------------------------------------------------------ JSON responses */

static const char *finish_reason(sb_stop_reason r) {
    return r == SB_STOP_LENGTH || r == SB_STOP_CONTEXT ? "length" : "stop";
}

static json_t *usage_json(const job *j) {
    int p = j->has_ask ? j->ask.prompt_tokens : j->gen.n_prompt, c = j->gen.n_gen;
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c);
}

static json_t *sources_json(const job *j, bool with_text) {
    json_t *a = json_array();
    for (int i = 0; j->has_ask && i < j->ask.n_sources; i++) {
        const sb_ask_source *s = &j->ask.sources[i];
        json_t *o = json_pack("{s:i, s:I, s:s, s:s, s:s?, s:i, s:i, s:i, s:f, s:b}", "n", s->n, "id",
                              (json_int_t)s->hit.chunk_id, "store", j->store->name, "path", s->hit.path, "section",
                              s->hit.section, "line_start", s->hit.line_start, "line_end", s->hit.line_end, "page",
                              s->hit.page, "score", s->hit.score, "cited", s->cited);
        if (o && with_text) json_object_set_new(o, "text", json_string(s->hit.text ? s->hit.text : ""));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *sabio_json(const job *j, bool with_text) {
    json_t *inv = json_array(), *cited = json_array();
    for (int i = 0; i < j->ask.n_invalid; i++) json_array_append_new(inv, json_integer(j->ask.invalid[i]));
    for (int i = 0; i < j->ask.n_sources; i++)
        if (j->ask.sources[i].cited) json_array_append_new(cited, json_integer(j->ask.sources[i].n));
    return json_pack("{s:s, s:o, s:o, s:o, s:i}", "store", j->store->name, "sources", sources_json(j, with_text),
                     "citations", cited, "invalid_citations", inv, "dropped_sources", j->ask.n_dropped);
}

static json_t *chunk_base(const job *j) {
    bool chat = j->req.kind == SV_CHAT;
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", j->sv->model_id);
}

/* Appends "data: <o>\n\n" to the job's stream (j->mu held); takes o. */
static void sse_push(job *j, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return;
    sb_buf_puts(&j->out, "data: ");
    sb_buf_puts(&j->out, s);
    sb_buf_puts(&j->out, "\n\n");
    free(s);
}

static json_t *delta_chunk(const job *j, const char *text, size_t len, bool role) {
    json_t *o = chunk_base(j), *choice;
    if (j->req.kind == SV_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:n}", "index", 0, "delta", delta, "logprobs", "finish_reason");
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:n}", "index", 0, "text", text, len, "logprobs", "finish_reason");
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    return o;
}

/* The slot's text callback: stream or collect, then say whether to go on. */
static bool on_text(const char *text, size_t len, void *user) {
    job *j = user;
    pthread_mutex_lock(&j->mu);
    if (j->req.stream) {
        /* json_stringn refuses invalid UTF-8; the session only emits whole characters */
        sse_push(j, delta_chunk(j, text, len, !j->started));
    } else {
        sb_buf_append(&j->text, text, len);
    }
    j->started = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return !is_cancelled(j);
}

/* -------------------------------------------------------------- slots */

static int busy_threads(server *sv) {
    pthread_mutex_lock(&sv->q_mu);
    int busy = sv->busy ? sv->busy : 1;
    pthread_mutex_unlock(&sv->q_mu);
    int t = sv->o.threads / busy;
    return t < 1 ? 1 : t;
}

static sb_gen_params gen_params(const job *j, sb_sampler_params base) {
    sb_gen_params gp = {.n_predict = j->n_predict, .sampling = base};
    if (j->req.has_temp) gp.sampling.temp = j->req.temp;
    if (j->req.has_top_p) gp.sampling.top_p = j->req.top_p;
    if (j->req.has_seed) gp.sampling.seed = j->req.seed;
    gp.stop = j->req.stop;
    gp.n_stop = j->req.n_stop;
    gp.ignore_eos = j->req.ignore_eos;
    return gp;
}

static void run_job(slot *sl, job *j) {
    server *sv = sl->sv;
    sb_err err = {0};
    sb_status st = SB_OK;
    int want = busy_threads(sv);
    if (want != sl->threads && sb_ctx_set_threads(sb_session_ctx(sl->sess), want, &err) == SB_OK) sl->threads = want;
    if (j->store) {
        sb_ask_params ap = sb_ask_default_params();
        ap.k = j->req.k ? j->req.k : 5;
        ap.tmpl = sv->tmpl;
        ap.answer_tokens = j->n_predict;
        ap.gen = gen_params(j, ap.gen.sampling);
        sb_hit *hits = NULL;
        int n_hits = 0;
        pthread_mutex_lock(&sv->rag_mu);
        st = sb_store_search(j->store->store, sv->enc, j->req.question, ap.k, ap.mode, &hits, &n_hits, &err);
        pthread_mutex_unlock(&sv->rag_mu);
        if (st == SB_OK) {
            st = sb_ask_hits(hits, n_hits, sl->sess, sv->model, j->req.question, &ap, on_text, j, &j->ask, &err);
            j->has_ask = true;
            j->gen = j->ask.gen;
        }
    } else {
        sb_gen_params gp = gen_params(j, sb_sampler_default_params());
        st = sb_session_generate(sl->sess, j->prompt.ids, j->prompt.n, &gp, on_text, j, NULL, NULL, &j->gen, &err);
    }
    pthread_mutex_lock(&j->mu);
    if (st != SB_OK) {
        j->failed = true;
        bool client = st == SB_ERR_RANGE || st == SB_ERR_INVALID;
        sv_fail(&j->err, client ? 400 : 500, client ? INVALID : "server_error", NULL,
                st == SB_ERR_RANGE ? "context_length_exceeded" : NULL, "%s", err.msg);
        if (j->req.stream && j->started) sse_push(j, json_pack("{s:{s:s, s:s}}", "error", "message", err.msg, "type",
                                                               client ? INVALID : "server_error"));
    } else if (j->req.stream) {
        if (!j->started) sse_push(j, delta_chunk(j, "", 0, true));
        json_t *o = chunk_base(j), *choice;
        if (j->req.kind == SV_CHAT)
            choice = json_pack("{s:i, s:{}, s:n, s:s}", "index", 0, "delta", "logprobs", "finish_reason",
                               finish_reason(j->gen.stop));
        else
            choice = json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", "", "logprobs", "finish_reason",
                               finish_reason(j->gen.stop));
        json_object_set_new(o, "choices", json_pack("[o]", choice));
        if (j->has_ask) json_object_set_new(o, "sabio", sabio_json(j, false));
        sse_push(j, o);
        if (j->req.include_usage) {
            o = chunk_base(j);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_json(j));
            sse_push(j, o);
        }
    }
    /* a stream that failed before its first token is answered with the error status instead */
    if (j->req.stream && (!j->failed || j->started)) sb_buf_puts(&j->out, "data: [DONE]\n\n");
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (sv->o.verbose)
        fprintf(stderr, "sabio serve: %s: prompt %d (%d cached) %.2fs, %d tokens %.2fs%s\n", j->id, j->gen.n_prompt,
                j->gen.n_reused, j->gen.t_prompt, j->gen.n_gen, j->gen.t_gen,
                j->gen.stop == SB_STOP_CALLBACK ? ", cancelled" : "");
}

/* Between requests, keeps each store's chunk list and index current with
 * what other nodes ingested (a PostgreSQL store hears of it by NOTIFY), so
 * that the first search after a large ingest does not pay the catch-up. */
static void *follow_main(void *arg) {
    server *sv = arg;
    bool failing = false;
    while (!__atomic_load_n(&sv->quit, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < sv->n_stores; i++) {
            sb_err e = {0};
            pthread_mutex_lock(&sv->rag_mu);
            sb_status st = sb_store_sync(sv->stores[i].store, &e);
            pthread_mutex_unlock(&sv->rag_mu);
            if ((st != SB_OK) != failing) sb_log(st != SB_OK ? SB_LOG_WARN : SB_LOG_INFO, "%s", st != SB_OK ? e.msg : "store reachable again");
            failing = st != SB_OK;
        }
        nanosleep(&(struct timespec){0, 200000000}, NULL);
    }
    return NULL;
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    server *sv = sl->sv;
    for (;;) {
        pthread_mutex_lock(&sv->q_mu);
        while (!sv->q_len && !__atomic_load_n(&sv->quit, __ATOMIC_ACQUIRE)) pthread_cond_wait(&sv->q_cv, &sv->q_mu);
        if (!sv->q_len) {
            pthread_mutex_unlock(&sv->q_mu);
            return NULL;
        }
        job *j = sv->queue[sv->q_head];
        sv->q_head = (sv->q_head + 1) % sv->o.max_queue;
        sv->q_len--;
        sv->busy++;
        pthread_mutex_unlock(&sv->q_mu);
        if (is_cancelled(j)) {
            pthread_mutex_lock(&j->mu);
            j->done = true;
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
        } else {
            run_job(sl, j);
        }
        job_unref(j);
        pthread_mutex_lock(&sv->q_mu);
        sv->busy--;
        pthread_mutex_unlock(&sv->q_mu);
    }
}

/* ---------------------------------------------------------- responses */

typedef struct conn {
    sb_buf body;
    bool too_big;
    bool answered;
} conn;

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, const char *type, const void *data, size_t n,
                                bool copy) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)data, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return send_buf(c, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 38, false);
    enum MHD_Result r = send_buf(c, status, "application/json", s, strlen(s), true);
    free(s);
    return r;
}

static enum MHD_Result send_error(struct MHD_Connection *c, const sv_error *e) {
    char *s = sv_error_json(e);
    if (!s) return MHD_NO;
    enum MHD_Result r = send_buf(c, e->status, "application/json", s, strlen(s), true);
    free(s);
    return r;
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *type, const char *param,
                            const char *code, const char *msg) {
    sv_error e;
    sv_fail(&e, status, type, param, code, "%s", msg);
    return send_error(c, &e);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (!job_wait(j, has_output)) {
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t avail = j->out.len - j->out_off;
    if (!avail) {
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = avail < max ? avail : max;
    memcpy(buf, j->out.data + j->out_off, n);
    j->out_off += n;
    if (j->out_off == j->out.len) j->out_off = j->out.len = 0;
    pthread_mutex_unlock(&j->mu);
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    job *j = cls;
    __atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE); /* no-op if it finished */
    job_unref(j);
}

/* ------------------------------------------------------------ routes */

static store_entry *find_store(server *sv, const char *name) {
    for (int i = 0; i < sv->n_stores; i++)
        if (!strcmp(sv->stores[i].name, name)) return &sv->stores[i];
    return NULL;
}

static char *render_chat(server *sv, const sv_gen_req *r) {
    if (sv->jinja) return sb_chat_apply_jinja(sv->jinja, r->msgs, (size_t)r->n_msgs, true);
    return sb_chat_apply(sv->tmpl, r->msgs, (size_t)r->n_msgs, true);
}

/* Runs a generating request: validation done, job built, then queue, wait
 * and answer (or stream). */
static enum MHD_Result generate(server *sv, struct MHD_Connection *c, job *j) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    if (!submit(sv, j)) {
        job_unref(j);
        return fail(c, 503, "server_error", NULL, "server_busy",
                    "all slots are busy and the queue is full; retry after a second");
    }
    pthread_mutex_lock(&j->mu);
    bool ok = job_wait(j, j->req.stream ? is_started : is_done);
    bool failed_early = j->failed && (!j->req.stream || !j->started);
    pthread_mutex_unlock(&j->mu);
    if (!ok) {
        job_unref(j);
        return MHD_NO; /* the client is gone: close */
    }
    if (failed_early) {
        enum MHD_Result r = send_error(c, &j->err);
        job_unref(j);
        return r;
    }
    if (j->req.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, j, stream_free);
        if (!r) {
            job_unref(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* the job now belongs to the response */
        return ret;
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object",
                          j->req.kind == SV_CHAT ? "chat.completion" : j->req.kind == SV_COMPLETION ? "text_completion" : "rag.answer",
                          "created", (json_int_t)j->created, "model", sv->model_id);
    const char *text = j->text.data ? j->text.data : "";
    if (j->req.kind == SV_RAG_ASK) {
        json_object_set_new(o, "answer", json_string(text));
        json_t *sj = sabio_json(j, true);
        json_object_update(o, sj);
        json_decref(sj);
    }
    if (j->req.kind == SV_CHAT) {
        json_t *choice = json_pack("{s:i, s:{s:s, s:s}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content",
                                   text, "logprobs", "finish_reason", finish_reason(j->gen.stop));
        json_object_set_new(o, "choices", json_pack("[o]", choice));
        if (j->has_ask) json_object_set_new(o, "sabio", sabio_json(j, true));
    } else if (j->req.kind == SV_COMPLETION) {
        json_t *choice = json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", text, "logprobs", "finish_reason",
                                   finish_reason(j->gen.stop));
        json_object_set_new(o, "choices", json_pack("[o]", choice));
    }
    json_object_set_new(o, "usage", usage_json(j));
    job_unref(j);
    return send_json(c, 200, o);
}

static unsigned long next_id; /* atomic */

static job *job_new(server *sv, sv_gen_req *req) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->sv = sv;
    j->req = *req;
    memset(req, 0, sizeof *req); /* moved */
    j->refs = 1;
    j->fd = -1;
    j->created = (long)time(NULL);
    unsigned long n = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    snprintf(j->id, sizeof j->id, "%s-%lx%06lx", j->req.kind == SV_COMPLETION ? "cmpl" : "chatcmpl",
             (unsigned long)sv->started, n);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    return j;
}

static enum MHD_Result route_generate(server *sv, struct MHD_Connection *c, conn *cs, sv_kind kind) {
    sv_gen_req req;
    sv_error e;
    bool ok = kind == SV_CHAT ? sv_parse_chat(cs->body.data, cs->body.len, &sv->lim, &req, &e)
              : kind == SV_COMPLETION ? sv_parse_completion(cs->body.data, cs->body.len, &sv->lim, &req, &e)
                                      : sv_parse_rag_ask(cs->body.data, cs->body.len, &sv->lim, &req, &e);
    if (!ok) return send_error(c, &e);
    store_entry *st = NULL;
    if (kind == SV_RAG_ASK || req.store) {
        const char *name = req.store ? req.store : sv->n_stores ? sv->stores[0].name : "";
        if (!sv->n_stores) ok = sv_fail(&e, 400, INVALID, "store", "no_store", "this server has no knowledge store (start it with --store DIR)");
        else if (!(st = find_store(sv, name)))
            ok = sv_fail(&e, 404, INVALID, "store", "store_not_found", "no store named '%.100s' (GET /v1/rag/stores lists them)", name);
        if (!ok) {
            sv_gen_req_free(&req);
            return send_error(c, &e);
        }
    }
    job *j = job_new(sv, &req);
    if (!j) {
        sv_gen_req_free(&req);
        return MHD_NO;
    }
    j->store = st;
    j->n_predict = j->req.max_tokens > 0 ? j->req.max_tokens : sv->o.n_predict;
    if (st) {
        if (j->n_predict >= sv->n_ctx_slot / 2 && j->req.max_tokens <= 0) j->n_predict = sv->n_ctx_slot / 4;
        return generate(sv, c, j);
    }
    sb_err err = {0};
    char *text = kind == SV_CHAT ? render_chat(sv, &j->req) : sb_strdup(j->req.prompt);
    sb_status s = text ? sb_tokenize(sv->tok, text, strlen(text), true, kind == SV_CHAT, &j->prompt, &err)
                       : sb_err_set(&err, SB_ERR_NOMEM, "out of memory");
    free(text);
    if (s != SB_OK) ok = sv_fail(&e, s == SB_ERR_NOMEM ? 500 : 400, INVALID, NULL, NULL, "%s", err.msg);
    else if ((int)j->prompt.n >= sv->n_ctx_slot)
        ok = sv_fail(&e, 400, INVALID, kind == SV_CHAT ? "messages" : "prompt", "context_length_exceeded",
                     "the prompt has %zu tokens; this server's context is %d tokens per request", j->prompt.n,
                     sv->n_ctx_slot);
    if (!ok) {
        job_unref(j);
        return send_error(c, &e);
    }
    return generate(sv, c, j);
}

static enum MHD_Result route_embeddings(server *sv, struct MHD_Connection *c, conn *cs) {
    sv_embed_req req;
    sv_error e;
    if (!sv->enc)
        return fail(c, 400, INVALID, "model", "model_not_found",
                    "this server has no embedding model (start it with --embed-model DIR or --store DIR)");
    if (!sv_parse_embeddings(cs->body.data, cs->body.len, &sv->lim, &req, &e)) return send_error(c, &e);
    int dim = sb_encoder_dim(sv->enc), n = req.n_inputs, max_tok = sb_encoder_max_tokens(sv->enc);
    long long tokens = 0;
    const sb_tokenizer *etok = sb_encoder_tokenizer(sv->enc);
    for (int i = 0; i < n; i++) {
        sb_tokens ids = {0};
        if (sb_tokenize(etok, req.inputs[i], strlen(req.inputs[i]), true, false, &ids, NULL) == SB_OK)
            tokens += (long long)ids.n < max_tok ? (long long)ids.n : max_tok;
        sb_tokens_free(&ids);
    }
    float *vec = sb_calloc((size_t)n * (size_t)dim, sizeof(float));
    sb_err err = {0};
    sb_status st = vec ? SB_OK : SB_ERR_NOMEM;
    if (vec) {
        pthread_mutex_lock(&sv->rag_mu);
        st = sb_encoder_embed(sv->enc, req.inputs, n, true, vec, &err);
        pthread_mutex_unlock(&sv->rag_mu);
    }
    json_t *data = json_array();
    for (int i = 0; st == SB_OK && i < n; i++) {
        json_t *emb;
        if (req.base64) {
            char *b = sv_base64(vec + (size_t)i * dim, (size_t)dim * sizeof(float)); /* x86-64: little-endian */
            emb = json_string(b ? b : "");
            free(b);
        } else {
            emb = json_array();
            for (int k = 0; k < dim; k++) json_array_append_new(emb, json_real(vec[(size_t)i * dim + k]));
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding", emb));
    }
    free(vec);
    sv_embed_req_free(&req);
    if (st != SB_OK) {
        json_decref(data);
        return fail(c, 500, "server_error", NULL, NULL, err.msg[0] ? err.msg : "out of memory");
    }
    return send_json(c, 200, json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model",
                                       sv->embed_id, "usage", "prompt_tokens", (json_int_t)tokens, "total_tokens",
                                       (json_int_t)tokens));
}

static enum MHD_Result route_source(server *sv, struct MHD_Connection *c, const char *id_text) {
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "store");
    store_entry *st = name ? find_store(sv, name) : sv->n_stores ? &sv->stores[0] : NULL;
    if (!st) return fail(c, 404, INVALID, "store", "store_not_found", "no such store");
    size_t len = strlen(id_text);
    if (!len || len > 18 || strspn(id_text, "0123456789") != len)
        return fail(c, 400, INVALID, "id", "invalid_value", "a source id is a chunk number");
    sb_hit h;
    sb_err err = {0};
    pthread_mutex_lock(&sv->rag_mu);
    sb_status s = sb_store_get_chunk(st->store, strtoll(id_text, NULL, 10), &h, &err);
    pthread_mutex_unlock(&sv->rag_mu);
    if (s == SB_ERR_NOT_FOUND) return fail(c, 404, INVALID, "id", "source_not_found", "no source with that id");
    if (s != SB_OK) return fail(c, 500, "server_error", NULL, NULL, err.msg);
    json_t *o = json_pack("{s:I, s:s, s:s, s:s?, s:i, s:i, s:i, s:s}", "id", (json_int_t)h.chunk_id, "store", st->name,
                          "path", h.path ? h.path : "", "section", h.section, "line_start", h.line_start, "line_end",
                          h.line_end, "page", h.page, "text", h.text ? h.text : "");
    free(h.path);
    free(h.section);
    free(h.text);
    return send_json(c, 200, o);
}

static enum MHD_Result route_stores(server *sv, struct MHD_Connection *c) {
    json_t *a = json_array();
    pthread_mutex_lock(&sv->rag_mu);
    for (int i = 0; i < sv->n_stores; i++) {
        sb_store_stats ss = {0};
        sb_store_stats_get(sv->stores[i].store, &ss, NULL);
        json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "name", sv->stores[i].name, "documents",
                                           (json_int_t)ss.documents, "chunks", (json_int_t)ss.chunks));
    }
    pthread_mutex_unlock(&sv->rag_mu);
    return send_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", a));
}

/* GET /v1/rag/search?q=TEXT[&k=N][&store=NAME]: retrieval alone (hybrid),
 * the hits as /v1/rag/ask lists its sources, without generating */
static enum MHD_Result route_search(server *sv, struct MHD_Connection *c) {
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "store");
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    const char *kt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k");
    store_entry *st = name ? find_store(sv, name) : sv->n_stores ? &sv->stores[0] : NULL;
    if (!st) return fail(c, 404, INVALID, "store", "store_not_found", "no such store");
    if (!q || !*q || strlen(q) > 4096)
        return fail(c, 400, INVALID, "q", "invalid_value", "'q' (the query, at most 4096 bytes) is required");
    char *end = NULL;
    long k = kt ? strtol(kt, &end, 10) : 5;
    if (kt && (*end || k < 1 || k > 50)) return fail(c, 400, INVALID, "k", "invalid_value", "'k' is 1 to 50");
    sb_hit *hits = NULL;
    int n = 0;
    sb_err err = {0};
    pthread_mutex_lock(&sv->rag_mu);
    sb_status s = sb_store_search(st->store, sv->enc, q, (int)k, SB_SEARCH_HYBRID, &hits, &n, &err);
    pthread_mutex_unlock(&sv->rag_mu);
    if (s != SB_OK) return fail(c, 500, "server_error", NULL, NULL, err.msg);
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:I, s:s, s:s?, s:i, s:i, s:i, s:f, s:s}", "id", (json_int_t)hits[i].chunk_id,
                                           "path", hits[i].path, "section", hits[i].section, "line_start",
                                           hits[i].line_start, "line_end", hits[i].line_end, "page", hits[i].page,
                                           "score", hits[i].score, "text", hits[i].text));
    sb_hits_free(hits, n);
    return send_json(c, 200, json_pack("{s:s, s:s, s:o}", "object", "list", "store", st->name, "data", a));
}

static enum MHD_Result route_models(server *sv, struct MHD_Connection *c) {
    const sb_model_config *cfg = sb_model_get_config(sv->model);
    json_t *a = json_array();
    json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:i, s:i}}", "id", sv->model_id, "object", "model",
                                       "created", (json_int_t)sv->started, "owned_by", "sabio", "meta", "arch",
                                       cfg->arch, "n_ctx_train", cfg->n_ctx_train, "n_ctx_slot", sv->n_ctx_slot));
    if (sv->enc)
        json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s, s:{s:i}}", "id", sv->embed_id, "object", "model",
                                           "created", (json_int_t)sv->started, "owned_by", "sabio", "meta", "dim",
                                           sb_encoder_dim(sv->enc)));
    return send_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", a));
}

static enum MHD_Result route_health(server *sv, struct MHD_Connection *c) {
    pthread_mutex_lock(&sv->q_mu);
    int busy = sv->busy, queued = sv->q_len;
    pthread_mutex_unlock(&sv->q_mu);
    return send_json(c, 200, json_pack("{s:s, s:i, s:i, s:i}", "status", "ok", "slots_idle", sv->o.n_parallel - busy,
                                       "slots_processing", busy, "queued", queued));
}

static const char *mime_type(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && !strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (dot && !strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (dot && !strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (dot && !strcmp(dot, ".svg")) return "image/svg+xml";
    return "application/octet-stream";
}

/* The page: an exact match in the table compiled into the binary, so no
 * request can reach the file system. */
static enum MHD_Result route_static(struct MHD_Connection *c, const char *url) {
    if (!strcmp(url, "/")) url = "/index.html";
    for (const sv_asset *a = sv_assets; a->path; a++)
        if (!strcmp(a->path, url)) return send_buf(c, 200, mime_type(a->path), a->data, a->size, false);
    return fail(c, 404, INVALID, NULL, "not_found", "no such page");
}

/* Constant-time comparison of the bearer token. */
static bool authorized(server *sv, struct MHD_Connection *c) {
    if (!sv->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    const char *k = h + 7, *want = sv->o.api_key;
    size_t n = strlen(k), m = strlen(want);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++) diff |= (unsigned char)want[i] ^ (unsigned char)(i < n ? k[i] : 0);
    return !diff;
}

static enum MHD_Result dispatch(server *sv, struct MHD_Connection *c, conn *cs, const char *url, const char *method) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    static const struct { const char *path; bool post; } routes[] = {
        {"/v1/chat/completions", true}, {"/v1/completions", true}, {"/v1/embeddings", true}, {"/v1/rag/ask", true},
        {"/v1/models", false},          {"/health", false},        {"/v1/rag/stores", false},
        {"/v1/rag/search", false},
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (strcmp(url, routes[i].path)) continue;
        if (routes[i].post ? !post : !get)
            return fail(c, 405, INVALID, NULL, "method_not_allowed", routes[i].post ? "use POST" : "use GET");
        switch (i) {
        case 0: return route_generate(sv, c, cs, SV_CHAT);
        case 1: return route_generate(sv, c, cs, SV_COMPLETION);
        case 2: return route_embeddings(sv, c, cs);
        case 3: return route_generate(sv, c, cs, SV_RAG_ASK);
        case 4: return route_models(sv, c);
        case 5: return route_health(sv, c);
        case 6: return route_stores(sv, c);
        default: return route_search(sv, c);
        }
    }
    if (!strncmp(url, "/v1/rag/sources/", 16)) {
        if (!get) return fail(c, 405, INVALID, NULL, "method_not_allowed", "use GET");
        return route_source(sv, c, url + 16);
    }
    if (!strncmp(url, "/v1/", 4)) return fail(c, 404, INVALID, NULL, "not_found", "no such route");
    if (!get) return fail(c, 405, INVALID, NULL, "method_not_allowed", "use GET");
    return route_static(c, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *sv = cls;
    conn *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        /* refuse before reading a body: no key, or a declared size over the limit */
        if (!strncmp(url, "/v1/", 4) && !authorized(sv, c)) {
            cs->answered = true;
            return fail(c, 401, INVALID, NULL, "invalid_api_key", "missing or wrong API key (Authorization: Bearer KEY)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > sv->o.max_body) {
            cs->answered = true;
            return fail(c, 413, INVALID, NULL, "request_too_large", "the request body is over this server's limit");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->answered && !cs->too_big) {
            if (cs->body.len + *upload_size > sv->o.max_body) {
                cs->too_big = true;
                sb_buf_free(&cs->body);
            } else if (!sb_buf_append(&cs->body, upload, *upload_size)) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->answered) return MHD_YES;
    cs->answered = true;
    if (cs->too_big) return fail(c, 413, INVALID, NULL, "request_too_large", "the request body is over this server's limit");
    return dispatch(sv, c, cs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn *cs = *con_cls;
    if (!cs) return;
    sb_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

/* --------------------------------------------------------------- setup */

void sv_options_default(sv_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->n_parallel = 4;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (int)cpus;
    o->max_tokens = 2048;
    o->n_predict = 512;
    o->max_body = 1 << 20;
    o->timeout = 60;
    o->max_conn = 64;
}

static char *base_id(const char *path) {
    char *copy = sb_strdup(path);
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    char *id = sb_strdup(basename(copy));
    free(copy);
    return id;
}

static void server_free(server *sv) {
    if (sv->slots)
        for (int i = 0; i < sv->o.n_parallel; i++) sb_session_free(sv->slots[i].sess);
    free(sv->slots);
    free(sv->queue);
    for (int i = 0; i < sv->n_stores; i++) sb_store_close(sv->stores[i].store);
    sb_encoder_free(sv->enc);
    sb_model_free(sv->model);
    free(sv->model_id);
    free(sv->embed_id);
}

static bool open_all(server *sv, char *why, size_t why_n) {
    const sv_options *o = &sv->o;
    sb_err err = {0};
    if (!o->model) return snprintf(why, why_n, "no model given (-m PATH)"), false;
    if (!(sv->model = sb_model_open(o->model, &err))) return snprintf(why, why_n, "%s", err.msg), false;
    if (!o->no_repack && sb_model_repack(sv->model, NULL, &err) != SB_OK)
        return snprintf(why, why_n, "%s: %s", o->model, err.msg), false;
    if (!(sv->tok = sb_model_tokenizer(sv->model))) return snprintf(why, why_n, "%s: the model has no tokenizer", o->model), false;
    sv->model_id = base_id(o->model);
    if (o->chat_template) {
        if ((sv->tmpl = sb_chat_from_name(o->chat_template)) == SB_CHAT_UNKNOWN)
            return snprintf(why, why_n, "unknown chat template '%s' (known: phi3, chatml, llama2)", o->chat_template), false;
    } else {
        const char *jinja = sb_tokenizer_chat_template(sv->tok);
        sv->tmpl = jinja ? sb_chat_detect(jinja) : SB_CHAT_UNKNOWN;
        if (sv->tmpl != SB_CHAT_UNKNOWN) sv->jinja = jinja;
        else sv->tmpl = !strcmp(sb_model_get_config(sv->model)->arch, "phi3") ? SB_CHAT_PHI3 : SB_CHAT_CHATML;
    }
    char *enc_path = o->embed_model ? sb_strdup(o->embed_model) : NULL;
    for (int i = 0; i < o->n_stores; i++) {
        store_entry *s = &sv->stores[sv->n_stores];
        s->name = o->store_names[i];
        s->dir = o->store_dirs[i];
        if (find_store(sv, s->name)) return snprintf(why, why_n, "two stores are named '%s'", s->name), false;
        if (!(s->store = sb_store_open(s->dir, false, &err))) return free(enc_path), snprintf(why, why_n, "%s", err.msg), false;
        sv->n_stores++;
        if (!sb_store_model(s->store))
            return free(enc_path), snprintf(why, why_n, "%s: the store is empty (run sabio ingest first)", sb_store_name(s->store)), false;
        if (!enc_path) enc_path = sb_aprintf("models/%s", sb_store_model(s->store));
    }
    if (enc_path) {
        sv->enc = sb_encoder_open(enc_path, &err);
        sv->embed_id = base_id(enc_path);
        free(enc_path);
        if (!sv->enc) return snprintf(why, why_n, "%s", err.msg), false;
        for (int i = 0; i < sv->n_stores; i++)
            if (sb_store_bind_model(sv->stores[i].store, sv->embed_id, sb_encoder_dim(sv->enc), &err) != SB_OK)
                return snprintf(why, why_n, "%s", err.msg), false;
    }
    int train = sb_model_get_config(sv->model)->n_ctx_train;
    sv->n_ctx_slot = o->n_ctx > 0 ? o->n_ctx / o->n_parallel : 2048;
    if (train > 0 && sv->n_ctx_slot > train) sv->n_ctx_slot = train;
    if (sv->n_ctx_slot < 64) return snprintf(why, why_n, "a context of %d tokens per slot is too small", sv->n_ctx_slot), false;
    sv->slots = calloc((size_t)o->n_parallel, sizeof *sv->slots);
    sv->queue = calloc((size_t)o->max_queue, sizeof *sv->queue);
    if (!sv->slots || !sv->queue) return snprintf(why, why_n, "out of memory"), false;
    int t = o->threads / o->n_parallel;
    for (int i = 0; i < o->n_parallel; i++) {
        slot *sl = &sv->slots[i];
        sl->sv = sv;
        if (!(sl->sess = sb_session_new(sv->model, sv->n_ctx_slot, &err))) return snprintf(why, why_n, "%s", err.msg), false;
        sl->threads = t < 1 ? 1 : t;
        if (sb_ctx_set_threads(sb_session_ctx(sl->sess), sl->threads, &err) != SB_OK)
            return snprintf(why, why_n, "%s", err.msg), false;
    }
    return true;
}

int sv_serve(const sv_options *opts) {
    server sv_storage = {0}, *sv = &sv_storage;
    sv->o = *opts;
    if (sv->o.n_parallel < 1) sv->o.n_parallel = 1;
    if (sv->o.max_queue < 1) sv->o.max_queue = 4 * sv->o.n_parallel;
    sv->lim = (sv_limits){.max_tokens = sv->o.max_tokens, .max_messages = 256, .max_inputs = 256};
    sv->started = (long)time(NULL);
    pthread_mutex_init(&sv->rag_mu, NULL);
    pthread_mutex_init(&sv->q_mu, NULL);
    pthread_cond_init(&sv->q_cv, NULL);
    char why[SB_ERRMSG_MAX + 64];
    if (!open_all(sv, why, sizeof why)) {
        fprintf(stderr, "sabio serve: %s\n", why);
        server_free(sv);
        return 1;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sv->o.port)};
    if (inet_pton(AF_INET, sv->o.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "sabio serve: --host '%s' is not an IPv4 address\n", sv->o.host);
        server_free(sv);
        return 1;
    }
    /* Signals go to the main thread's sigwait only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int started = 0;
    for (; started < sv->o.n_parallel; started++)
        if (pthread_create(&sv->slots[started].thread, NULL, slot_main, &sv->slots[started])) break;
    pthread_t follower;
    bool following = started == sv->o.n_parallel && sv->n_stores && !pthread_create(&follower, NULL, follow_main, sv);
    struct MHD_Daemon *d = NULL;
    if (started == sv->o.n_parallel)
        d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                                 (sv->o.verbose ? MHD_USE_ERROR_LOG : 0),
                             (uint16_t)sv->o.port, NULL, NULL, on_request, sv, MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->o.max_conn, MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)sv->o.timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv, MHD_OPTION_END);
    int rc = 0;
    if (!d) {
        fprintf(stderr, "sabio serve: cannot listen on %s:%d: %s\n", sv->o.host, sv->o.port,
                started == sv->o.n_parallel ? strerror(errno) : "cannot start the slot threads");
        rc = 1;
    } else {
        fprintf(stderr,
                "sabio serve: listening on http://%s:%d (%s; %d slots of %d tokens, %d threads, queue %d%s%s)\n",
                sv->o.host, sv->o.port, sv->model_id, sv->o.n_parallel, sv->n_ctx_slot, sv->o.threads,
                sv->o.max_queue, sv->n_stores ? ", stores: " : "", sv->n_stores ? sv->stores[0].name : "");
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "sabio serve: stopping (signal %d)\n", sig);
    }
    __atomic_store_n(&sv->quit, 1, __ATOMIC_RELEASE);
    if (d) MHD_stop_daemon(d);
    pthread_mutex_lock(&sv->q_mu);
    pthread_cond_broadcast(&sv->q_cv);
    pthread_mutex_unlock(&sv->q_mu);
    for (int i = 0; i < started; i++) pthread_join(sv->slots[i].thread, NULL);
    if (following) pthread_join(follower, NULL);
    /* jobs still queued hold a reference each */
    while (sv->q_len) {
        job_unref(sv->queue[sv->q_head]);
        sv->q_head = (sv->q_head + 1) % sv->o.max_queue;
        sv->q_len--;
    }
    server_free(sv);
    return rc;
}
