/*
 * file.c - whole-file mapping and reading, and atomic replacement of files
 * (temporary name, fsync, rename, fsync of the directory) so that a crash at
 * any moment leaves either the old file or the new one.
 */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

sb_status sb_mmap_open(sb_mmap *m, const char *path, sb_err *e) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sb_err_set(e, SB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return sb_err_set(e, SB_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sb_err_set(e, SB_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return sb_err_set(e, SB_ERR_IO, "%s: cannot map %lld bytes: %s", path,
                              (long long)st.st_size, strerror(err));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return SB_OK;
}

void sb_mmap_close(sb_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

sb_status sb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, sb_err *e) {
    *out = NULL;
    if (len) *len = 0;
    if (!max_bytes) max_bytes = (size_t)1 << 30;
    FILE *f = fopen(path, "rb");
    if (!f) return sb_err_set(e, SB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sb_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max_bytes) {
            fclose(f);
            sb_buf_free(&b);
            return sb_err_set(e, SB_ERR_RANGE, "%s: larger than the limit of %zu bytes", path, max_bytes);
        }
        if (!sb_buf_append(&b, chunk, n)) {
            fclose(f);
            sb_buf_free(&b);
            return sb_err_set(e, SB_ERR_NOMEM, "%s: out of memory reading file", path);
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        sb_buf_free(&b);
        return sb_err_set(e, SB_ERR_IO, "%s: read error", path);
    }
    if (!b.data && !sb_buf_append(&b, "", 0)) return sb_err_set(e, SB_ERR_NOMEM, "out of memory");
    *out = b.data;
    if (len) *len = b.len;
    return SB_OK;
}

sb_status sb_afile_open(sb_afile *f, const char *path, sb_err *e) {
    memset(f, 0, sizeof *f);
    f->path = sb_strdup(path);
    f->tmp = sb_aprintf("%s.tmp.%d", path, (int)getpid());
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        return sb_err_set(e, SB_ERR_NOMEM, "out of memory");
    }
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        sb_status st = sb_err_set(e, SB_ERR_IO, "%s: cannot create: %s", f->tmp, strerror(errno));
        free(f->path);
        free(f->tmp);
        f->path = f->tmp = NULL;
        return st;
    }
    return SB_OK;
}

bool sb_afile_write(sb_afile *f, const void *p, size_t n) {
    if (f->failed || !f->fp) return false;
    if (n && fwrite(p, 1, n, (FILE *)f->fp) != n) f->failed = true;
    return !f->failed;
}

static void fsync_dir_of(const char *path) {
    char *copy = sb_strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

sb_status sb_afile_commit(sb_afile *f, sb_err *e) {
    sb_status st = SB_OK;
    FILE *fp = f->fp;
    f->fp = NULL;
    if (!fp) return sb_err_set(e, SB_ERR_INVALID, "atomic file not open");
    if (f->failed || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        st = sb_err_set(e, SB_ERR_IO, "%s: write failed: %s", f->tmp, strerror(errno));
        fclose(fp);
    } else if (fclose(fp) != 0) {
        st = sb_err_set(e, SB_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
    } else if (rename(f->tmp, f->path) != 0) {
        st = sb_err_set(e, SB_ERR_IO, "%s: cannot rename to %s: %s", f->tmp, f->path, strerror(errno));
    } else {
        fsync_dir_of(f->path);
    }
    if (st != SB_OK) unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    return st;
}

void sb_afile_abort(sb_afile *f) {
    if (f->fp) fclose((FILE *)f->fp);
    if (f->tmp) unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    memset(f, 0, sizeof *f);
}

sb_status sb_write_file_atomic(const char *path, const void *data, size_t n, sb_err *e) {
    sb_afile f;
    sb_status st = sb_afile_open(&f, path, e);
    if (st != SB_OK) return st;
    sb_afile_write(&f, data, n);
    return sb_afile_commit(&f, e);
}

bool sb_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool sb_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *sb_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/') return sb_aprintf("%s%s", dir, name);
    return sb_aprintf("%s/%s", dir, name);
}
