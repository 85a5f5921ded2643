/*
 * request.c - parsing and validation of request bodies (request.h).
 *
 * Field names and ranges are OpenAI's (temperature 0..2, top_p 0..1, stop: a
 * string or up to 4, n must be 1 here). Fields we do not use
 * (frequency_penalty, user, ...) are accepted and ignored, as llama-server
 * does, so that existing clients work; a known field of the wrong type is an
 * error naming it.
 */
#include "serve/request.h"

#include "base/base.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

bool sv_fail(sv_error *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

char *sv_error_json(const sv_error *e) {
    json_t *o = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", e->message, "type",
                          e->type ? e->type : INVALID, "param", e->param, "code", e->code);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Parses a body that must be a JSON object. */
static json_t *load_object(const char *body, size_t len, sv_error *e) {
    if (!body || !len) {
        sv_fail(e, 400, INVALID, NULL, "invalid_json", "the request body is empty; a JSON object is expected");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        sv_fail(e, 400, INVALID, NULL, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)", je.text,
                je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        sv_fail(e, 400, INVALID, NULL, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A present-but-null field counts as absent, as in OpenAI's API. */
static json_t *field(json_t *o, const char *name) {
    json_t *v = json_object_get(o, name);
    return json_is_null(v) ? NULL : v;
}

static bool get_number(json_t *o, const char *name, double lo, double hi, bool *has, float *out, sv_error *e) {
    json_t *v = field(o, name);
    if (!v) return true;
    if (!json_is_number(v)) return sv_fail(e, 400, INVALID, name, "invalid_type", "'%s' must be a number", name);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return sv_fail(e, 400, INVALID, name, "invalid_value", "'%s' is %g; it must be from %g to %g", name, x, lo, hi);
    *has = true;
    *out = (float)x;
    return true;
}

static bool get_int(json_t *o, const char *name, long long lo, long long hi, long long *out, sv_error *e) {
    json_t *v = field(o, name);
    if (!v) return true;
    if (!json_is_integer(v)) return sv_fail(e, 400, INVALID, name, "invalid_type", "'%s' must be an integer", name);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return sv_fail(e, 400, INVALID, name, "invalid_value", "'%s' is %lld; it must be from %lld to %lld", name, x,
                       lo, hi);
    *out = x;
    return true;
}

static bool get_bool(json_t *o, const char *name, bool *out, sv_error *e) {
    json_t *v = field(o, name);
    if (!v) return true;
    if (!json_is_boolean(v)) return sv_fail(e, 400, INVALID, name, "invalid_type", "'%s' must be true or false", name);
    *out = json_is_true(v);
    return true;
}

static bool get_string(json_t *o, const char *name, bool required, const char **out, sv_error *e) {
    json_t *v = field(o, name);
    if (!v) {
        if (required) return sv_fail(e, 400, INVALID, name, "missing_field", "'%s' is required", name);
        return true;
    }
    if (!json_is_string(v)) return sv_fail(e, 400, INVALID, name, "invalid_type", "'%s' must be a string", name);
    *out = json_string_value(v);
    return true;
}

/* The sampling and length fields every generating route shares. */
static bool parse_common(json_t *o, const sv_limits *lim, sv_gen_req *r, sv_error *e) {
    const char *model = NULL;
    if (!get_string(o, "model", false, &model, e)) return false;
    if (!get_bool(o, "stream", &r->stream, e) || !get_bool(o, "ignore_eos", &r->ignore_eos, e)) return false;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return sv_fail(e, 400, INVALID, "stream_options", "invalid_type", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &r->include_usage, e)) return false;
    }
    if (!get_number(o, "temperature", 0, 2, &r->has_temp, &r->temp, e)) return false;
    if (!get_number(o, "top_p", 0, 1, &r->has_top_p, &r->top_p, e)) return false;
    long long mt = -1, n = 1, seed = 0;
    const char *mt_name = field(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(o, mt_name, 1, 1LL << 40, &mt, e)) return false;
    if (mt > lim->max_tokens)
        return sv_fail(e, 400, INVALID, mt_name, "invalid_value",
                       "'%s' is %lld; this server allows at most %d tokens per request", mt_name, mt, lim->max_tokens);
    r->max_tokens = (int)mt;
    if (!get_int(o, "n", 1, 1LL << 40, &n, e)) return false;
    if (n != 1) return sv_fail(e, 400, INVALID, "n", "invalid_value", "'n' must be 1 (one choice per request)");
    if (field(o, "seed")) {
        if (!get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e)) return false;
        r->has_seed = true;
        r->seed = (uint64_t)seed;
    }
    json_t *stop = field(o, "stop");
    if (json_is_string(stop)) {
        r->stop[r->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > SV_MAX_STOP)
            return sv_fail(e, 400, INVALID, "stop", "invalid_value", "'stop' has %zu strings; at most %d are allowed",
                           json_array_size(stop), SV_MAX_STOP);
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s) {
            if (!json_is_string(s))
                return sv_fail(e, 400, INVALID, "stop", "invalid_type", "'stop' must be a string or an array of strings");
            if (json_string_length(s)) r->stop[r->n_stop++] = json_string_value(s);
        }
    } else if (stop) {
        return sv_fail(e, 400, INVALID, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    }
    for (int i = 0; i < r->n_stop; i++)
        if (strlen(r->stop[i]) > 256)
            return sv_fail(e, 400, INVALID, "stop", "invalid_value", "stop strings are at most 256 bytes");
    return true;
}

static bool parse_sabio(json_t *o, sv_gen_req *r, sv_error *e) {
    json_t *x = field(o, "sabio");
    if (!x) return true;
    if (!json_is_object(x)) return sv_fail(e, 400, INVALID, "sabio", "invalid_type", "'sabio' must be an object");
    if (!get_string(x, "store", false, &r->store, e)) return false;
    long long k = 0;
    if (!get_int(x, "k", 1, 50, &k, e)) return false;
    r->k = (int)k;
    return true;
}

static bool own(sv_gen_req *r, char *s) {
    char **o = sb_realloc_array(r->owned, (size_t)r->n_owned + 1, sizeof *o);
    if (!o) return false;
    r->owned = o;
    r->owned[r->n_owned++] = s;
    return true;
}

/* Message content: a string, or an array of {"type": "text", "text": ...} parts. */
static bool message_content(sv_gen_req *r, json_t *c, const char **out, sv_error *e) {
    if (!c) {
        *out = "";
        return true;
    }
    if (json_is_string(c)) {
        *out = json_string_value(c);
        return true;
    }
    if (!json_is_array(c))
        return sv_fail(e, 400, INVALID, "messages", "invalid_type",
                       "a message's 'content' must be a string or an array of text parts");
    sb_buf b = {0};
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            sb_buf_free(&b);
            return sv_fail(e, 400, INVALID, "messages", "unsupported_content",
                           "content parts must be {\"type\": \"text\", \"text\": ...} (no images or audio)");
        }
        sb_buf_append(&b, json_string_value(text), json_string_length(text));
    }
    char *s = b.data ? b.data : sb_strdup("");
    if (!s || !own(r, s)) {
        free(s);
        return sv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    *out = s;
    return true;
}

static bool finish(bool ok, sv_gen_req *r) {
    if (!ok) sv_gen_req_free(r);
    return ok;
}

bool sv_parse_chat(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = SV_CHAT;
    if (!(r->root = load_object(body, len, e))) return false;
    if (!parse_common(r->root, lim, r, e) || !parse_sabio(r->root, r, e)) return finish(false, r);
    json_t *msgs = field(r->root, "messages");
    if (!msgs) return finish(sv_fail(e, 400, INVALID, "messages", "missing_field", "'messages' is required"), r);
    if (!json_is_array(msgs) || !json_array_size(msgs))
        return finish(sv_fail(e, 400, INVALID, "messages", "invalid_type", "'messages' must be a non-empty array"), r);
    if (json_array_size(msgs) > (size_t)lim->max_messages)
        return finish(sv_fail(e, 400, INVALID, "messages", "invalid_value", "'messages' has %zu entries; at most %d",
                              json_array_size(msgs), lim->max_messages),
                      r);
    r->msgs = calloc(json_array_size(msgs), sizeof *r->msgs);
    if (!r->msgs) return finish(sv_fail(e, 500, "server_error", NULL, NULL, "out of memory"), r);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m))
            return finish(sv_fail(e, 400, INVALID, "messages", "invalid_type", "messages[%zu] must be an object", i), r);
        json_t *role = json_object_get(m, "role");
        const char *rs = json_is_string(role) ? json_string_value(role) : NULL;
        if (rs && !strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for it */
        if (!rs || (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant")))
            return finish(sv_fail(e, 400, INVALID, "messages", "invalid_value",
                                  "messages[%zu].role must be \"system\", \"user\" or \"assistant\"", i),
                          r);
        const char *content = "";
        if (!message_content(r, field(m, "content"), &content, e)) return finish(false, r);
        r->msgs[r->n_msgs++] = (sb_chat_msg){rs, content};
    }
    if (strcmp(r->msgs[r->n_msgs - 1].role, "user"))
        return finish(sv_fail(e, 400, INVALID, "messages", "invalid_value", "the last message must be the user's"), r);
    r->question = r->msgs[r->n_msgs - 1].content;
    if (r->store && !*r->question)
        return finish(sv_fail(e, 400, INVALID, "messages", "invalid_value", "the question (last user message) is empty"),
                      r);
    return true;
}

bool sv_parse_completion(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = SV_COMPLETION;
    if (!(r->root = load_object(body, len, e))) return false;
    if (!parse_common(r->root, lim, r, e)) return finish(false, r);
    json_t *p = field(r->root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (!p) return finish(sv_fail(e, 400, INVALID, "prompt", "missing_field", "'prompt' is required"), r);
    if (!json_is_string(p))
        return finish(sv_fail(e, 400, INVALID, "prompt", "invalid_type", "'prompt' must be a string (or one string in an array)"),
                      r);
    if (!json_string_length(p)) return finish(sv_fail(e, 400, INVALID, "prompt", "invalid_value", "'prompt' is empty"), r);
    r->prompt = json_string_value(p);
    return true;
}

bool sv_parse_rag_ask(const char *body, size_t len, const sv_limits *lim, sv_gen_req *r, sv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = SV_RAG_ASK;
    if (!(r->root = load_object(body, len, e))) return false;
    if (!parse_common(r->root, lim, r, e) || !get_string(r->root, "question", true, &r->question, e) ||
        !get_string(r->root, "store", false, &r->store, e))
        return finish(false, r);
    long long k = 0;
    if (!get_int(r->root, "k", 1, 50, &k, e)) return finish(false, r);
    r->k = (int)k;
    if (!*r->question) return finish(sv_fail(e, 400, INVALID, "question", "invalid_value", "'question' is empty"), r);
    if (r->stream)
        return finish(sv_fail(e, 400, INVALID, "stream", "unsupported",
                              "/v1/rag/ask answers in one piece; stream through /v1/chat/completions with "
                              "{\"sabio\": {\"store\": ...}}"),
                      r);
    return true;
}

void sv_gen_req_free(sv_gen_req *r) {
    json_decref(r->root);
    free(r->msgs);
    for (int i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    memset(r, 0, sizeof *r);
}

bool sv_parse_embeddings(const char *body, size_t len, const sv_limits *lim, sv_embed_req *r, sv_error *e) {
    memset(r, 0, sizeof *r);
    if (!(r->root = load_object(body, len, e))) return false;
    const char *model = NULL, *fmt = NULL;
    bool ok = get_string(r->root, "model", false, &model, e) && get_string(r->root, "encoding_format", false, &fmt, e);
    if (ok && fmt && strcmp(fmt, "float") && strcmp(fmt, "base64"))
        ok = sv_fail(e, 400, INVALID, "encoding_format", "invalid_value", "'encoding_format' must be \"float\" or \"base64\"");
    r->base64 = ok && fmt && !strcmp(fmt, "base64");
    json_t *in = ok ? field(r->root, "input") : NULL;
    if (ok && !in) ok = sv_fail(e, 400, INVALID, "input", "missing_field", "'input' is required");
    if (ok && json_is_string(in)) {
        r->inputs = malloc(sizeof *r->inputs);
        if (r->inputs) r->inputs[r->n_inputs++] = json_string_value(in);
        else ok = sv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    } else if (ok && json_is_array(in)) {
        size_t n = json_array_size(in);
        if (!n) ok = sv_fail(e, 400, INVALID, "input", "invalid_value", "'input' is an empty array");
        else if (n > (size_t)lim->max_inputs)
            ok = sv_fail(e, 400, INVALID, "input", "invalid_value", "'input' has %zu texts; at most %d per request", n,
                         lim->max_inputs);
        else if (!(r->inputs = calloc(n, sizeof *r->inputs)))
            ok = sv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        for (size_t i = 0; ok && i < n; i++) {
            json_t *s = json_array_get(in, i);
            if (!json_is_string(s))
                ok = sv_fail(e, 400, INVALID, "input", "invalid_type",
                             "'input' must be a string or an array of strings (token arrays are not supported)");
            else r->inputs[r->n_inputs++] = json_string_value(s);
        }
    } else if (ok) {
        ok = sv_fail(e, 400, INVALID, "input", "invalid_type", "'input' must be a string or an array of strings");
    }
    if (!ok) sv_embed_req_free(r);
    return ok;
}

void sv_embed_req_free(sv_embed_req *r) {
    json_decref(r->root);
    free(r->inputs);
    memset(r, 0, sizeof *r);
}

char *sv_base64(const void *data, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    size_t out_len;
    if (!sb_mul_ok((n + 2) / 3, 4, &out_len) || !sb_add_ok(out_len, 1, &out_len)) return NULL;
    char *s = malloc(out_len), *w = s;
    if (!s) return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3, w += 4) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        w[0] = tab[v >> 18], w[1] = tab[v >> 12 & 63], w[2] = tab[v >> 6 & 63], w[3] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        w[0] = tab[v >> 18], w[1] = tab[v >> 12 & 63];
        w[2] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        w[3] = '=';
        w += 4;
    }
    *w = 0;
    return s;
}
