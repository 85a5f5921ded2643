/*
 * download.c - resumable, verified downloads (download.h).
 *
 * One attempt is one libcurl transfer appending to dest.part from its
 * current size (Range: bytes=N-). A server that ignores the range and sends
 * 200 with the whole body gets the partial file truncated first; a 416
 * means the part already holds everything. Transport errors (connection
 * reset, body shorter than its Content-Length, stall) start another attempt
 * from where the bytes stopped; HTTP errors (404, 403 ...) do not.
 */
#include "base/download.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

sb_status sb_sha256_file(const char *path, char hex[65], sb_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return sb_err_set(err, SB_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], digest[32];
    unsigned int dl = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(md, buf, n);
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, digest, &dl) && dl == 32;
    EVP_MD_CTX_free(md);
    fclose(f);
    if (!ok) return sb_err_set(err, SB_ERR_IO, "%s: cannot compute its sha256", path);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return SB_OK;
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

typedef struct xfer {
    FILE *f;
    const char *part;
    int64_t have, start, total;
    long code;       /* HTTP status of the response being written */
    bool truncated;  /* the server ignored our range: restarted from 0 */
    bool write_err;
    CURL *curl;
    sb_download_cb cb;
    void *user;
    double t_last, t0;
} xfer;

static size_t on_data(char *p, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    if (!x->code) {
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->code);
        if (x->code == 200 && x->have > 0) { /* no range support: start over */
            if (ftruncate(fileno(x->f), 0) != 0 || fseek(x->f, 0, SEEK_SET) != 0) {
                x->write_err = true;
                return 0;
            }
            x->have = x->start = 0;
            x->truncated = true;
        }
        curl_off_t cl = -1;
        curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (cl >= 0 && (x->code == 200 || x->code == 206)) x->total = x->have + cl;
    }
    if (x->code != 200 && x->code != 206) return n; /* an error page: read and drop */
    if (fwrite(p, 1, n, x->f) != n) {
        x->write_err = true;
        return 0;
    }
    x->have += (int64_t)n;
    double now = sb_time_sec();
    if (x->cb && now - x->t_last >= 0.25) {
        double el = now - x->t0;
        x->cb(x->have, x->total, el > 0 ? (x->have - x->start) / el : 0, x->user);
        x->t_last = now;
    }
    return n;
}

static bool transient(CURLcode c) {
    return c == CURLE_PARTIAL_FILE || c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR || c == CURLE_OPERATION_TIMEDOUT ||
           c == CURLE_GOT_NOTHING || c == CURLE_COULDNT_CONNECT || c == CURLE_HTTP2 || c == CURLE_HTTP2_STREAM;
}

/* Size and digest of a complete file against what was expected. */
static sb_status verify(const char *path, const sb_download_opts *o, const char *url, sb_err *err) {
    int64_t size = file_size(path);
    if (o->size > 0 && size != o->size)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: size mismatch: expected %lld bytes, got %lld", url,
                          (long long)o->size, (long long)size);
    if (!o->sha256) return SB_OK;
    char hex[65];
    sb_status st = sb_sha256_file(path, hex, err);
    if (st != SB_OK) return st;
    if (strcasecmp(hex, o->sha256))
        return sb_err_set(err, SB_ERR_FORMAT, "%s: sha256 mismatch: expected %s, got %s", url, o->sha256, hex);
    return SB_OK;
}

static sb_status fsync_path(const char *path, sb_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0) close(fd);
        return sb_err_set(err, SB_ERR_IO, "%s: %s", path, strerror(errno));
    }
    close(fd);
    return SB_OK;
}

sb_status sb_download(const char *url, const char *dest, const sb_download_opts *o, sb_download_cb cb, void *user,
                      bool *fresh, sb_err *err) {
    if (fresh) *fresh = false;
    if (o->sha256 && strlen(o->sha256) != 64)
        return sb_err_set(err, SB_ERR_INVALID, "sha256 '%s' is not 64 hex digits", o->sha256);
    if (sb_file_exists(dest) && verify(dest, o, url, NULL) == SB_OK) return SB_OK;
    char *part = sb_aprintf("%s.part", dest);
    if (!part) return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    static bool inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = true;
    }
    CURL *curl = curl_easy_init();
    sb_status st = curl ? SB_OK : sb_err_set(err, SB_ERR_NOMEM, "cannot start libcurl");
    int retries = o->retries > 0 ? o->retries : 5;
    bool complete = false;
    for (int attempt = 0; st == SB_OK && !complete; attempt++) {
        FILE *f = fopen(part, "ab");
        if (!f) {
            st = sb_err_set(err, SB_ERR_IO, "%s: %s", part, strerror(errno));
            break;
        }
        int64_t have = file_size(part);
        if (o->size > 0 && have >= o->size) { /* nothing left to fetch */
            fclose(f);
            complete = true;
            break;
        }
        xfer x = {f, part, have, have, o->size > 0 ? o->size : -1, 0, false, false, curl, cb, user, 0, sb_time_sec()};
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "sabio/0.1");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)(o->stall_seconds > 0 ? o->stall_seconds : 30));
        /* CURLOPT_RANGE rather than RESUME_FROM: a 200 answer is then ours
         * to handle (restart) instead of an error. */
        char range[32];
        snprintf(range, sizeof range, "%lld-", (long long)have);
        if (have > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range);
        CURLcode rc = curl_easy_perform(curl);
        long code = x.code;
        if (!code) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        bool closed = fclose(f) == 0 && !x.write_err;
        if (!closed) {
            st = sb_err_set(err, SB_ERR_IO, "%s: cannot write: %s", part, strerror(errno));
        } else if (code == 416 && have > 0) {
            complete = true; /* the part already reaches the end */
        } else if (rc == CURLE_OK && (code == 200 || code == 206)) {
            complete = true;
        } else if (rc == CURLE_OK || (code >= 400 && !transient(rc))) {
            st = sb_err_set(err, SB_ERR_IO, "%s: HTTP %ld", url, code);
        } else if (transient(rc) && attempt < retries) {
            sb_log(SB_LOG_WARN, "download %s: %s after %lld bytes; resuming (attempt %d of %d)", url,
                   errbuf[0] ? errbuf : curl_easy_strerror(rc), (long long)file_size(part), attempt + 2, retries + 1);
            usleep((useconds_t)(200000 * (attempt + 1)));
        } else {
            st = sb_err_set(err, SB_ERR_IO, "%s: %s (after %d attempts, %lld bytes kept in %s for the next try)", url,
                            errbuf[0] ? errbuf : curl_easy_strerror(rc), attempt + 1, (long long)file_size(part), part);
        }
        if (complete && cb) cb(file_size(part), file_size(part), 0, user);
    }
    if (curl) curl_easy_cleanup(curl);
    if (st == SB_OK) {
        st = verify(part, o, url, err);
        if (st != SB_OK) unlink(part); /* a wrong file is never resumed */
    }
    if (st == SB_OK) st = fsync_path(part, err);
    if (st == SB_OK && rename(part, dest) != 0) st = sb_err_set(err, SB_ERR_IO, "%s: %s", dest, strerror(errno));
    if (st == SB_OK) {
        char *dir = sb_strdup(dest), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) *slash = 0;
        if (dir) fsync_path(slash ? (dir[0] ? dir : "/") : ".", NULL);
        free(dir);
        if (fresh) *fresh = true;
    }
    free(part);
    return st;
}
