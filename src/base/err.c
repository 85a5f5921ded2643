/*
 * err.c - status names, error messages, checked allocation, growable buffers,
 * logging and time. See base.h for the conventions.
 */
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *sb_status_name(sb_status s) {
    switch (s) {
    case SB_OK: return "ok";
    case SB_ERR_IO: return "I/O error";
    case SB_ERR_FORMAT: return "format error";
    case SB_ERR_NOMEM: return "out of memory";
    case SB_ERR_INVALID: return "invalid argument";
    case SB_ERR_UNSUPPORTED: return "unsupported";
    case SB_ERR_RANGE: return "out of range";
    case SB_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

sb_status sb_err_set(sb_err *e, sb_status code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

sb_status sb_err_prefix(sb_err *e, const char *fmt, ...) {
    if (!e) return SB_ERR_INVALID;
    char prefix[SB_ERRMSG_MAX], old[SB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 < sizeof e->msg) {
        memcpy(e->msg, prefix, n);
        memcpy(e->msg + n, ": ", 2);
        size_t room = sizeof e->msg - n - 3, m = strlen(old);
        if (m > room) m = room;
        memcpy(e->msg + n + 2, old, m);
        e->msg[n + 2 + m] = 0;
    }
    return e->code;
}

void sb_err_clear(sb_err *e) {
    if (e) {
        e->code = SB_OK;
        e->msg[0] = 0;
    }
}

void *sb_malloc(size_t n) { return malloc(n ? n : 1); }

void *sb_calloc(size_t count, size_t size) {
    size_t n;
    if (!sb_mul_ok(count, size, &n)) return NULL;
    return calloc(n ? n : 1, 1);
}

void *sb_realloc_array(void *p, size_t count, size_t size) {
    size_t n;
    if (!sb_mul_ok(count, size, &n)) return NULL;
    return realloc(p, n ? n : 1);
}

char *sb_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *sb_strdup(const char *s) { return sb_strndup(s, strlen(s)); }

char *sb_aprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

bool sb_buf_append(sb_buf *b, const void *p, size_t n) {
    size_t need;
    if (!sb_add_ok(b->len, n + 1, &need)) return false;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) {
            if (!sb_mul_ok(cap, 2, &cap)) return false;
        }
        char *d = realloc(b->data, cap);
        if (!d) return false;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

bool sb_buf_puts(sb_buf *b, const char *s) { return sb_buf_append(b, s, strlen(s)); }

bool sb_buf_printf(sb_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    bool ok = sb_buf_append(b, s, (size_t)n);
    free(s);
    return ok;
}

void sb_buf_free(sb_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static sb_log_level g_log_level = SB_LOG_WARN;

void sb_log_set_level(sb_log_level lvl) { g_log_level = lvl; }

void sb_log(sb_log_level lvl, const char *fmt, ...) {
    if (lvl > g_log_level) return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sabio: %s: %s\n", names[lvl], line);
}

double sb_time_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
