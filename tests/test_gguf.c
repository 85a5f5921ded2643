/*
 * test_gguf.c - the GGUF reader and writer against a file written by the
 * independent `gguf` Python package (tests/data/gguf/ref_writer.gguf, see
 * tools/gen_gguf_ref.py for the values), a real model, and one hand-made
 * corrupt file per failure class.
 */
#include "formats/gguf.h"
#include "test.h"

#include <unistd.h>

static void *slurp(const char *path, size_t *len) {
    char *d = NULL;
    sb_err e = {0};
    sb_read_file(path, 0, &d, len, &e);
    return d;
}

static void check_reference(const sb_gguf *g) {
    int64_t i;
    double f;
    bool b;
    CHECK(sb_gguf_version(g) == 3 && sb_gguf_n_kv(g) == 17 && sb_gguf_n_tensors(g) == 3, "counts");
    CHECK(sb_gguf_get_int(g, "t.u8", &i) && i == 200, "u8");
    CHECK(sb_gguf_get_int(g, "t.i8", &i) && i == -100, "i8");
    CHECK(sb_gguf_get_int(g, "t.u16", &i) && i == 60000, "u16");
    CHECK(sb_gguf_get_int(g, "t.i16", &i) && i == -30000, "i16");
    CHECK(sb_gguf_get_int(g, "t.u32", &i) && i == 4000000000LL, "u32");
    CHECK(sb_gguf_get_int(g, "t.i32", &i) && i == -2000000000LL, "i32");
    CHECK(sb_gguf_get_float(g, "t.f32", &f) && f == 3.25, "f32");
    CHECK(sb_gguf_get_bool(g, "t.bool", &b) && b, "bool");
    const sb_gguf_value *u64 = sb_gguf_get(g, "t.u64");
    CHECK(u64 && u64->type == SB_GGUF_UINT64 && u64->u64 == 18000000000000000000ull, "u64");
    CHECK(!sb_gguf_get_int(g, "t.u64", &i), "u64 above INT64_MAX must not convert");
    CHECK(sb_gguf_get_int(g, "t.i64", &i) && i == -9000000000000000000LL, "i64");
    CHECK(sb_gguf_get_float(g, "t.f64", &f) && f == -1.0e300, "f64");
    char *s = sb_gguf_get_str_dup(g, "t.str");
    CHECK(s && !strcmp(s, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93"), "utf-8 string: %s", s ? s : "(null)");
    free(s);
    const sb_gguf_value *a = sb_gguf_get(g, "t.arr_i32");
    CHECK(a && a->arr.type == SB_GGUF_INT32 && a->arr.n == 3 && sb_gguf_arr_int(a, 1, &i) && i == -2, "i32 array");
    CHECK(!sb_gguf_arr_int(a, 3, &i), "array index out of range must fail");
    a = sb_gguf_get(g, "t.arr_str");
    CHECK(a && a->arr.type == SB_GGUF_STRING && a->arr.n == 3 && a->arr.items[1].str.len == 0 &&
              !memcmp(a->arr.items[2].str.ptr, "\xc3\xbcn\xc3\xaf", 5),
          "string array");
    a = sb_gguf_get(g, "t.arr_nested");
    CHECK(a && a->arr.type == SB_GGUF_ARRAY && a->arr.n == 2 && a->arr.items[0].arr.n == 2 &&
              sb_gguf_arr_int(&a->arr.items[1], 0, &i) && i == 3,
          "nested array");
    a = sb_gguf_get(g, "t.arr_f32");
    CHECK(a && sb_gguf_arr_float(a, 1, &f) && f == -1.5, "f32 array");
    sb_tensor t;
    CHECK(sb_gguf_tensor(g, sb_gguf_find_tensor(g, "w.f32"), &t) && t.type == SB_F32 && t.ne[0] == 16 &&
              t.ne[1] == 4 && ((const float *)t.data)[0] == -4.0f && ((const float *)t.data)[63] == 3.875f,
          "f32 tensor");
    CHECK(sb_gguf_tensor(g, sb_gguf_find_tensor(g, "w.q8_0"), &t) && t.type == SB_Q8_0 && t.nbytes == 68,
          "q8_0 tensor");
    CHECK(sb_gguf_find_tensor(g, "nope") == -1 && sb_gguf_get(g, "nope") == NULL, "absent names");
}

/* Re-writes g with our writer; returns the bytes. */
static void *rewrite(const sb_gguf *g, size_t *len) {
    sb_gguf_writer *w = sb_gguf_writer_new();
    sb_gguf_writer_copy_kv(w, g);
    for (int64_t i = 0; i < sb_gguf_n_tensors(g); i++) {
        sb_tensor t;
        sb_gguf_tensor(g, i, &t);
        CHECK(sb_gguf_writer_add_tensor(w, t.name, t.type, t.n_dims, t.ne, t.data, t.nbytes) == SB_OK, "add %s",
              t.name);
    }
    void *out = NULL;
    sb_err e = {0};
    CHECK(sb_gguf_writer_to_memory(w, &out, len, &e) == SB_OK, "%s", e.msg);
    sb_gguf_writer_free(w);
    return out;
}

/* Expects sb_gguf_open_memory to fail with a message containing `field`. */
static void expect_bad(const void *d, size_t n, const char *what, const char *field) {
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open_memory(d, n, &e);
    CHECK(g == NULL, "%s: accepted", what);
    CHECK(g != NULL || strstr(e.msg, field), "%s: message '%s' does not name '%s'", what, e.msg, field);
    sb_gguf_free(g);
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* A small file with one key and one tensor, for patching. */
static uint8_t *small_file(size_t *n) {
    sb_gguf_writer *w = sb_gguf_writer_new();
    sb_gguf_writer_set_str(w, "general.name", "x");
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne[2] = {4, 2};
    sb_gguf_writer_add_tensor(w, "t", SB_F32, 2, ne, data, sizeof data);
    void *out = NULL;
    sb_gguf_writer_to_memory(w, &out, n, NULL);
    sb_gguf_writer_free(w);
    return out;
}
/* Offsets in small_file: magic 0, version 4, n_tensors 8, n_kv 16, key len 24,
 * "general.name" 32..44, type 44, str len 48, "x" 56, tensor name len 57,
 * "t" 65, n_dims 66, ne 70 and 78, type 86, offset 90, data at 128. */
enum { O_NT = 8, O_NKV = 16, O_KLEN = 24, O_VTYPE = 44, O_SLEN = 48, O_NDIMS = 66, O_NE0 = 70, O_TTYPE = 86,
       O_TOFF = 90 };

static void check_corrupt(void) {
    size_t n;
    uint8_t *good = small_file(&n), *d = malloc(n + 64);
    sb_err e = {0};
    sb_gguf *g = sb_gguf_open_memory(good, n, &e);
    CHECK(g != NULL && n == 160, "small file parses (%zu bytes): %s", n, e.msg);
    sb_tensor t;
    CHECK(g && sb_gguf_tensor(g, 0, &t) && ((const float *)t.data)[7] == 8, "small file tensor");
    sb_gguf_free(g);
#define FRESH() memcpy(d, good, n)
    FRESH(); d[0] = 'X'; expect_bad(d, n, "bad magic", "magic");
    FRESH(); put32(d + 4, 99); expect_bad(d, n, "version 99", "version");
    FRESH(); put64(d + O_NKV, 1ull << 60); expect_bad(d, n, "huge key count", "key/value count");
    FRESH(); put64(d + O_NT, ~0ull); expect_bad(d, n, "huge tensor count", "tensor count");
    FRESH(); put64(d + O_KLEN, ~0ull); expect_bad(d, n, "huge key length", "string length");
    FRESH(); put64(d + O_SLEN, 1ull << 40); expect_bad(d, n, "huge string length", "general.name");
    FRESH(); put32(d + O_VTYPE, 77); expect_bad(d, n, "unknown value type", "unknown value type");
    FRESH(); put32(d + O_NDIMS, 5); expect_bad(d, n, "5 dimensions", "dimensions");
    FRESH(); put64(d + O_NE0, 0); expect_bad(d, n, "zero dimension", "dimension 0");
    FRESH(); put64(d + O_NE0, 1ull << 62); put64(d + O_NE0 + 8, 1ull << 62);
    expect_bad(d, n, "dimension product overflow", "overflow");
    FRESH(); put32(d + O_TTYPE, 1000); expect_bad(d, n, "unknown tensor type", "tensor type");
    FRESH(); put32(d + O_TTYPE, SB_Q4_0); expect_bad(d, n, "row not a block multiple", "block size");
    FRESH(); put64(d + O_TOFF, 8); expect_bad(d, n, "misaligned offset", "alignment");
    FRESH(); put64(d + O_TOFF, 1024); expect_bad(d, n, "offset past the end", "exceeds file size");
    FRESH(); put64(d + O_TOFF, ~0ull & ~31ull); expect_bad(d, n, "offset overflow", "exceeds file size");
    FRESH(); put32(d + O_VTYPE, SB_GGUF_BOOL); d[O_VTYPE + 4] = 7; expect_bad(d, n, "bool 7", "bool");
    /* Truncation at every byte: each prefix fails cleanly. */
    int truncated_ok = 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t *p = malloc(k ? k : 1); /* exact-size buffer so ASan sees overreads */
        memcpy(p, good, k);
        sb_gguf *tg = sb_gguf_open_memory(p, k, &e);
        truncated_ok += tg == NULL;
        sb_gguf_free(tg);
        free(p);
    }
    CHECK(truncated_ok == (int)n, "%d of %zu truncations rejected", truncated_ok, n);
    free(d);
    free(good);

    /* Duplicate key, bad alignment, depth bomb: built with our writer. */
    sb_gguf_writer *w = sb_gguf_writer_new();
    sb_gguf_writer_set_u32(w, "general.alignment", 3);
    void *buf;
    size_t len;
    sb_gguf_writer_to_memory(w, &buf, &len, NULL);
    expect_bad(buf, len, "alignment 3", "general.alignment");
    free(buf);
    sb_gguf_writer_set_u32(w, "general.alignment", 64);
    sb_gguf_writer_set_u32(w, "k", 1);
    sb_gguf_writer_to_memory(w, &buf, &len, NULL);
    g = sb_gguf_open_memory(buf, len, &e);
    CHECK(g && sb_gguf_alignment(g) == 64 && sb_gguf_data_offset(g) % 64 == 0, "alignment 64");
    sb_gguf_free(g);
    /* rename "k" to "general.alignment"'s twin: patch the last key name to a duplicate */
    uint8_t *kpos = memmem(buf, len, "\x01\x00\x00\x00\x00\x00\x00\x00k", 9);
    CHECK(kpos != NULL, "key k in output");
    if (kpos) {
        /* make a duplicate by writing the same key twice */
        sb_gguf_writer *w2 = sb_gguf_writer_new();
        sb_gguf_writer_set_u32(w2, "a", 1);
        sb_gguf_writer_set_u32(w2, "b", 2);
        void *b2;
        size_t l2;
        sb_gguf_writer_to_memory(w2, &b2, &l2, NULL);
        uint8_t *bpos = memmem(b2, l2, "\x01\x00\x00\x00\x00\x00\x00\x00" "b", 9);
        if (bpos) bpos[8] = 'a';
        expect_bad(b2, l2, "duplicate key", "duplicate key");
        free(b2);
        sb_gguf_writer_free(w2);
    }
    free(buf);
    sb_gguf_writer_free(w);
    /* arrays nested 100 deep */
    sb_buf bomb = {0};
    uint32_t v3 = 3, arr = SB_GGUF_ARRAY;
    uint64_t one = 1, zero = 0, klen = 1;
    sb_buf_append(&bomb, "GGUF", 4);
    sb_buf_append(&bomb, &v3, 4);
    sb_buf_append(&bomb, &zero, 8);
    sb_buf_append(&bomb, &one, 8);
    sb_buf_append(&bomb, &klen, 8);
    sb_buf_append(&bomb, "k", 1);
    sb_buf_append(&bomb, &arr, 4);
    for (int k = 0; k < 100; k++) {
        sb_buf_append(&bomb, &arr, 4);
        sb_buf_append(&bomb, &one, 8);
    }
    expect_bad(bomb.data, bomb.len, "array depth bomb", "nested");
    sb_buf_free(&bomb);
}

int main(void) {
    sb_err e = {0};
    size_t ref_len = 0;
    void *ref = slurp("tests/data/gguf/ref_writer.gguf", &ref_len);
    CHECK(ref != NULL, "tests/data/gguf/ref_writer.gguf missing");
    sb_gguf *g = sb_gguf_open("tests/data/gguf/ref_writer.gguf", &e);
    CHECK(g != NULL, "%s", e.msg);
    if (g) {
        check_reference(g);
        size_t len;
        void *out = rewrite(g, &len);
        CHECK(out && len == ref_len && !memcmp(out, ref, len),
              "our writer's bytes differ from gguf-py's (%zu vs %zu bytes)", len, ref_len);
        /* and what we wrote reads back the same */
        sb_gguf *g2 = out ? sb_gguf_open_memory(out, len, &e) : NULL;
        CHECK(g2 != NULL, "%s", e.msg);
        if (g2) check_reference(g2);
        sb_gguf_free(g2);
        free(out);
        sb_gguf_free(g);
    }
    free(ref);

    /* A real model converted by llama.cpp: re-written byte for byte. */
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", test_assets());
    g = sb_gguf_open(path, &e);
    CHECK(g != NULL, "%s", e.msg);
    if (g) {
        size_t len;
        void *out = rewrite(g, &len);
        size_t orig_len;
        void *orig = slurp(path, &orig_len);
        CHECK(out && orig && len == orig_len && !memcmp(out, orig, len),
              "stories260K re-written differs (%zu vs %zu bytes)", len, orig_len);
        free(out);
        free(orig);
        sb_gguf_free(g);
    }
    /* Atomic write to a file, then open. */
    char tmp[] = "/tmp/sb_test_gguf_XXXXXX";
    int fd = mkstemp(tmp);
    close(fd);
    sb_gguf_writer *w = sb_gguf_writer_new();
    sb_gguf_writer_set_str(w, "general.architecture", "llama");
    float x[32] = {0};
    int64_t ne[1] = {32};
    sb_gguf_writer_add_tensor(w, "x", SB_F32, 1, ne, x, sizeof x);
    CHECK(sb_gguf_writer_add_tensor(w, "x", SB_F32, 1, ne, x, sizeof x) != SB_OK, "duplicate tensor accepted");
    CHECK(sb_gguf_writer_add_tensor(w, "y", SB_F32, 1, ne, x, 12) != SB_OK, "wrong byte count accepted");
    CHECK(sb_gguf_writer_write(w, tmp, &e) == SB_OK, "%s", e.msg);
    sb_gguf_writer_free(w);
    g = sb_gguf_open(tmp, &e);
    CHECK(g && sb_gguf_n_tensors(g) == 1, "written file: %s", e.msg);
    sb_gguf_free(g);
    unlink(tmp);
    g = sb_gguf_open("/nonexistent/model.gguf", &e);
    CHECK(!g && strstr(e.msg, "/nonexistent/model.gguf"), "missing file message: %s", e.msg);
    check_corrupt();
    return TEST_END();
}
