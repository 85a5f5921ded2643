/*
 * base.h - the bottom layer of libsabio: status codes and error detail,
 * checked arithmetic and allocation, mapped and atomically replaced files,
 * logging and time.
 *
 * Error convention (used by every layer above): a function that can fail
 * returns an sb_status (or NULL) and, when given a non-NULL `sb_err *`, writes
 * a human message there that names the file, field and value that were wrong.
 * Nothing here keeps error state in a global; handles embed their own sb_err.
 * Library code never exits and never prints to stdout.
 */
#ifndef SB_BASE_H
#define SB_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sabio.h"

#define SB_ERRMSG_MAX 512

typedef struct sb_err {
    sb_status code;
    char msg[SB_ERRMSG_MAX];
} sb_err;

/* Records code and message in e (if e is non-NULL) and returns code. */
sb_status sb_err_set(sb_err *e, sb_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "<prefix>: <old message>". Returns e->code. */
sb_status sb_err_prefix(sb_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_err_clear(sb_err *e);

/* ---- checked arithmetic: true on success, false on overflow ---- */
static inline bool sb_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool sb_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- allocation: NULL on failure or on count*size overflow ---- */
void *sb_malloc(size_t n);
void *sb_calloc(size_t count, size_t size);
void *sb_realloc_array(void *p, size_t count, size_t size);
char *sb_strdup(const char *s);
char *sb_strndup(const char *s, size_t n);
/* printf into a fresh heap string (NULL on failure). */
char *sb_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Growable byte buffer; always NUL-terminated when non-empty. */
typedef struct sb_buf {
    char *data;
    size_t len, cap;
} sb_buf;
bool sb_buf_append(sb_buf *b, const void *p, size_t n);
bool sb_buf_puts(sb_buf *b, const char *s);
bool sb_buf_printf(sb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_buf_free(sb_buf *b);

/* ---- files ---- */

/* A read-only mapping of a whole file. An empty file maps to data == NULL,
 * size == 0. */
typedef struct sb_mmap {
    void *data;
    size_t size;
} sb_mmap;
sb_status sb_mmap_open(sb_mmap *m, const char *path, sb_err *e);
void sb_mmap_close(sb_mmap *m);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees).
 * Files over max_bytes (0 = 1 GiB) are refused. */
sb_status sb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, sb_err *e);

/* Atomic replacement: writes go to "<path>.tmp.<pid>", commit fsyncs, renames
 * over path and fsyncs the directory; abort removes the temporary. A crash at
 * any moment leaves either the old file or the new one. */
typedef struct sb_afile {
    void *fp; /* FILE* */
    char *path, *tmp;
    bool failed;
} sb_afile;
sb_status sb_afile_open(sb_afile *f, const char *path, sb_err *e);
bool sb_afile_write(sb_afile *f, const void *p, size_t n);
sb_status sb_afile_commit(sb_afile *f, sb_err *e);
void sb_afile_abort(sb_afile *f);
sb_status sb_write_file_atomic(const char *path, const void *data, size_t n, sb_err *e);

bool sb_file_exists(const char *path);
bool sb_is_dir(const char *path);
/* Joins a directory and a name into a fresh heap string. */
char *sb_path_join(const char *dir, const char *name);

/* ---- logging (stderr) and time ---- */
typedef enum { SB_LOG_ERROR = 0, SB_LOG_WARN, SB_LOG_INFO, SB_LOG_DEBUG } sb_log_level;
void sb_log_set_level(sb_log_level lvl);
void sb_log(sb_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double sb_time_sec(void); /* monotonic seconds */

#endif
