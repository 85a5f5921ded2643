/*
 * test_safetensors.c - the safetensors reader against files written by the
 * `safetensors` Python package (tests/data/st, tools/gen_safetensors_ref.py:
 * tensor k holds ((i * 7 + k) % 13 - 6) * 0.25 at flat index i), our writer's
 * round trip, and corrupt headers.
 */
#include "formats/safetensors.h"
#include "test.h"

#include <unistd.h>

static double expect(int k, int64_t i) { return (double)((i * 7 + k) % 13 - 6) * 0.25; }

static double value_at(const sb_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->type) {
    case SB_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case SB_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return sb_f16_to_f32(h); }
    case SB_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return sb_bf16_to_f32(h); }
    case SB_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v / 4.0; }
    default: return NAN;
    }
}

static void check_tensor(const sb_safetensors *st, const char *name, int k, int type, int n_dims,
                         int64_t ne0, int64_t ne1, int64_t ne2) {
    sb_tensor t;
    int64_t idx = sb_st_find(st, name);
    CHECK(idx >= 0 && sb_st_tensor(st, idx, &t), "%s missing", name);
    if (idx < 0) return;
    CHECK(t.type == type && t.n_dims == n_dims && t.ne[0] == ne0 && t.ne[1] == ne1 && t.ne[2] == ne2,
          "%s: type %d dims %d ne [%lld %lld %lld]", name, t.type, t.n_dims, (long long)t.ne[0],
          (long long)t.ne[1], (long long)t.ne[2]);
    int64_t bad = -1, n = sb_tensor_nelements(&t);
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (value_at(&t, i) != expect(k, i)) bad = i;
    CHECK(bad < 0, "%s: element %lld is %g, want %g", name, (long long)bad, bad >= 0 ? value_at(&t, bad) : 0,
          bad >= 0 ? expect(k, bad) : 0);
}

static void expect_bad(const void *d, size_t n, const char *what, const char *field) {
    sb_err e = {0};
    sb_safetensors *st = sb_st_open_memory(d, n, &e);
    CHECK(st == NULL, "%s: accepted", what);
    CHECK(st != NULL || strstr(e.msg, field), "%s: message '%s' does not name '%s'", what, e.msg, field);
    sb_st_free(st);
}

static void *with_header(const char *json, const void *data, size_t dlen, size_t *n) {
    size_t hl = strlen(json);
    uint8_t *b = malloc(8 + hl + dlen);
    uint64_t h = hl;
    memcpy(b, &h, 8);
    memcpy(b + 8, json, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    *n = 8 + hl + dlen;
    return b;
}

int main(void) {
    sb_err e = {0};
    sb_safetensors *st = sb_st_open("tests/data/st/one.safetensors", &e);
    CHECK(st != NULL, "%s", e.msg);
    if (st) {
        CHECK(sb_st_n_tensors(st) == 5, "5 tensors");
        check_tensor(st, "a.f32", 0, SB_F32, 2, 5, 3, 1);
        check_tensor(st, "b.f16", 1, SB_F16, 2, 8, 4, 1);
        check_tensor(st, "c.bf16", 2, SB_BF16, 1, 16, 1, 1);
        check_tensor(st, "d.i32", 3, SB_I32, 2, 3, 2, 1);
        check_tensor(st, "e.3d", 4, SB_F32, 3, 4, 3, 2);
        const char *m = sb_st_metadata(st, "note");
        CHECK(m && !strcmp(m, "sabio"), "metadata");

        /* our writer: write everything back, read it again */
        sb_st_writer *w = sb_st_writer_new();
        for (int64_t i = 0; i < sb_st_n_tensors(st); i++) {
            sb_tensor t;
            sb_st_tensor(st, i, &t);
            CHECK(sb_st_writer_add(w, t.name, t.type, t.n_dims, t.ne, t.data, t.nbytes) == SB_OK, "add %s", t.name);
        }
        sb_st_writer_set_metadata(w, "note", "sabio");
        char tmp[] = "/tmp/sb_test_st_XXXXXX";
        int fd = mkstemp(tmp);
        close(fd);
        CHECK(sb_st_writer_write(w, tmp, &e) == SB_OK, "%s", e.msg);
        sb_st_writer_free(w);
        sb_safetensors *st2 = sb_st_open(tmp, &e);
        CHECK(st2 != NULL, "%s", e.msg);
        if (st2) {
            check_tensor(st2, "a.f32", 0, SB_F32, 2, 5, 3, 1);
            check_tensor(st2, "e.3d", 4, SB_F32, 3, 4, 3, 2);
            check_tensor(st2, "c.bf16", 2, SB_BF16, 1, 16, 1, 1);
            CHECK(sb_st_metadata(st2, "note") != NULL, "metadata written");
            sb_st_free(st2);
        }
        /* header length is a multiple of 8 so the data is aligned, as the Python library writes */
        char *raw = NULL;
        size_t rl;
        sb_read_file(tmp, 0, &raw, &rl, &e);
        uint64_t hl = 0;
        if (raw) memcpy(&hl, raw, 8);
        CHECK(hl % 8 == 0, "header length %llu not 8-aligned", (unsigned long long)hl);
        free(raw);
        unlink(tmp);
        sb_st_free(st);
    }
    /* sharded: by folder and by index path */
    const char *paths[] = {"tests/data/st/sharded", "tests/data/st/sharded/model.safetensors.index.json"};
    for (int k = 0; k < 2; k++) {
        st = sb_st_open(paths[k], &e);
        CHECK(st != NULL, "%s: %s", paths[k], e.msg);
        if (!st) continue;
        CHECK(sb_st_n_tensors(st) == 3, "sharded: %lld tensors", (long long)sb_st_n_tensors(st));
        check_tensor(st, "x.weight", 5, SB_F32, 2, 4, 4, 1);
        check_tensor(st, "y.weight", 6, SB_F16, 2, 8, 2, 1);
        check_tensor(st, "z.bias", 7, SB_F32, 1, 8, 1, 1);
        sb_st_free(st);
    }
    /* corrupt inputs */
    float data[4] = {1, 2, 3, 4};
    size_t n;
    void *b;
    expect_bad("abc", 3, "too short", "too short");
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 16, &n);
    sb_safetensors *ok = sb_st_open_memory(b, n, &e);
    CHECK(ok != NULL, "valid hand-made file: %s", e.msg);
    sb_st_free(ok);
    uint64_t huge = 1ull << 62;
    memcpy(b, &huge, 8);
    expect_bad(b, n, "header length past the end", "header length");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,32]}}", data, 16, &n);
    expect_bad(b, n, "offsets past the buffer", "'a'");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", data, 16, &n);
    expect_bad(b, n, "shape disagrees with offsets", "data_offsets");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", data, 16, &n);
    expect_bad(b, n, "shape overflow", "'a'");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"Q9\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 16, &n);
    expect_bad(b, n, "unknown dtype", "dtype");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,0]}}", data, 16, &n);
    expect_bad(b, n, "reversed offsets", "data_offsets");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", data, 16, &n);
    expect_bad(b, n, "negative dim", "shape");
    free(b);
    b = with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"a\":{}}", data, 16, &n);
    expect_bad(b, n, "duplicate name", "JSON");
    free(b);
    b = with_header("{\"a\": [1,2", data, 16, &n);
    expect_bad(b, n, "broken JSON", "JSON");
    free(b);
    b = with_header("[1,2]", data, 16, &n);
    expect_bad(b, n, "not an object", "object");
    free(b);
    st = sb_st_open("/nonexistent/dir/x.safetensors", &e);
    CHECK(!st && strstr(e.msg, "/nonexistent/dir/x.safetensors"), "missing file message: %s", e.msg);
    return TEST_END();
}
