/*
 * download.h - HTTP(S) downloads that survive broken connections (libcurl):
 * bytes go to "<dest>.part", a dropped connection is resumed with an HTTP
 * Range request, and the file is renamed to dest only after its size and
 * sha256 match what was expected. SHA-256 from OpenSSL's libcrypto.
 */
#ifndef SB_DOWNLOAD_H
#define SB_DOWNLOAD_H

#include "base/base.h"

typedef struct sb_download_opts {
    int64_t size;       /* expected bytes; <= 0: unknown */
    const char *sha256; /* expected digest, 64 hex digits; NULL: unknown */
    int retries;        /* resumes after a broken connection (default 5) */
    int stall_seconds;  /* a transfer below 1 byte/s for this long is broken (default 30) */
} sb_download_opts;

/* Progress, at most a few times a second: bytes on disk, total (<= 0 if
 * unknown), current rate in bytes/s. */
typedef void (*sb_download_cb)(int64_t have, int64_t total, double rate, void *user);

/* Downloads url to dest. An existing dest that matches the expected size
 * and digest is kept (*fresh = false). An existing dest.part is resumed.
 * A size or digest mismatch deletes the partial file and is an error
 * giving both values; dest is never left holding a wrong file. */
sb_status sb_download(const char *url, const char *dest, const sb_download_opts *o, sb_download_cb cb, void *user,
                      bool *fresh, sb_err *err);

/* The sha256 of a file as 64 lower-case hex digits. */
sb_status sb_sha256_file(const char *path, char hex[65], sb_err *err);

#endif
