/* test_base.c - checked arithmetic, buffers and atomic file replacement. */
#include "base/base.h"
#include "test.h"

#include <unistd.h>

int main(void) {
    size_t r;
    CHECK(!sb_mul_ok(SIZE_MAX / 2 + 1, 2, &r), "multiplication overflow not caught");
    CHECK(sb_mul_ok(1000, 1000, &r) && r == 1000000, "1000*1000 = %zu", r);
    CHECK(!sb_add_ok(SIZE_MAX, 1, &r), "addition overflow not caught");
    CHECK(sb_calloc(SIZE_MAX / 4, 8) == NULL, "calloc overflow not refused");

    sb_buf b = {0};
    for (int i = 0; i < 1000; i++) sb_buf_printf(&b, "%d,", i);
    CHECK(b.len == 3890 && strncmp(b.data, "0,1,2,", 6) == 0, "buf len %zu", b.len);
    sb_buf_free(&b);

    char path[] = "/tmp/sb_test_base_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    sb_err e = {0};
    CHECK(sb_write_file_atomic(path, "old", 3, &e) == SB_OK, "%s", e.msg);
    sb_afile f;
    CHECK(sb_afile_open(&f, path, &e) == SB_OK, "%s", e.msg);
    sb_afile_write(&f, "new contents", 12);
    sb_afile_abort(&f); /* an aborted replacement leaves the old file */
    char *data = NULL;
    size_t len = 0;
    CHECK(sb_read_file(path, 0, &data, &len, &e) == SB_OK && len == 3 && !memcmp(data, "old", 3),
          "after abort: %zu bytes", len);
    free(data);
    CHECK(sb_write_file_atomic(path, "new contents", 12, &e) == SB_OK, "%s", e.msg);
    CHECK(sb_read_file(path, 0, &data, &len, &e) == SB_OK && len == 12, "after commit: %zu", len);
    free(data);
    CHECK(sb_read_file(path, 5, &data, &len, &e) == SB_ERR_RANGE, "size limit not enforced");
    sb_mmap m;
    CHECK(sb_mmap_open(&m, path, &e) == SB_OK && m.size == 12, "mmap size %zu", m.size);
    sb_mmap_close(&m);
    CHECK(sb_mmap_open(&m, "/nonexistent/x", &e) == SB_ERR_IO && strstr(e.msg, "/nonexistent/x"),
          "missing file message: %s", e.msg);
    unlink(path);
    return TEST_END();
}
