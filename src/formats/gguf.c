/*
 * gguf.c - GGUF reader and writer (see gguf.h for the layout).
 *
 * The reader walks the header with a bounds-checked cursor: every read asks
 * for the bytes it needs first, and every count read from the file is checked
 * against what the remaining bytes could possibly hold before anything is
 * allocated for it. Values are views into the mapping; only keys, tensor
 * names and the item arrays of string / nested arrays are allocated.
 */
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 8 /* nesting of arrays of arrays */
#define GGUF_MAX_DIMS 4

typedef struct kv {
    char *key;
    sb_gguf_value v;
} kv;

typedef struct tinfo {
    char *name;
    int type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t offset; /* relative to the data section */
    size_t nbytes;
} tinfo;

struct sb_gguf {
    sb_mmap map; /* owned mapping, or empty for open_memory */
    const uint8_t *data;
    size_t size;
    uint32_t version;
    size_t alignment, data_offset;
    int64_t n_kv, n_tensors;
    kv *kvs;
    tinfo *tensors;
};

static const size_t type_size[SB_GGUF_TYPE_COUNT] = {
    [SB_GGUF_UINT8] = 1, [SB_GGUF_INT8] = 1,    [SB_GGUF_UINT16] = 2,  [SB_GGUF_INT16] = 2,
    [SB_GGUF_UINT32] = 4, [SB_GGUF_INT32] = 4,  [SB_GGUF_FLOAT32] = 4, [SB_GGUF_BOOL] = 1,
    [SB_GGUF_STRING] = 0, [SB_GGUF_ARRAY] = 0,  [SB_GGUF_UINT64] = 8,  [SB_GGUF_INT64] = 8,
    [SB_GGUF_FLOAT64] = 8,
};

const char *sb_gguf_type_name(sb_gguf_type t) {
    static const char *names[SB_GGUF_TYPE_COUNT] = {"u8",   "i8",  "u16",   "i16", "u32",
                                                    "i32",  "f32", "bool",  "str", "arr",
                                                    "u64",  "i64", "f64"};
    return (unsigned)t < SB_GGUF_TYPE_COUNT ? names[t] : "unknown";
}

/* ---- bounds-checked cursor ---- */

typedef struct cursor {
    const uint8_t *p;
    size_t size, off;
    sb_err *err;
    const char *what; /* the field being read, for messages */
} cursor;

static size_t left(const cursor *c) { return c->size - c->off; }

static bool need(cursor *c, size_t n) {
    if (n <= left(c)) return true;
    sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: needs %zu bytes at offset %zu but the file ends at %zu",
               c->what, n, c->off, c->size);
    return false;
}

static bool rd(cursor *c, void *out, size_t n) {
    if (!need(c, n)) return false;
    memcpy(out, c->p + c->off, n);
    c->off += n;
    return true;
}

static bool rd_u32(cursor *c, uint32_t *v) { return rd(c, v, 4); }
static bool rd_u64(cursor *c, uint64_t *v) { return rd(c, v, 8); }

/* A string: u64 length then bytes. Returns a view. */
static bool rd_str(cursor *c, const char **s, uint64_t *len) {
    uint64_t n;
    if (!rd_u64(c, &n)) return false;
    if (n > left(c)) {
        sb_err_set(c->err, SB_ERR_FORMAT,
                   "gguf: %s: string length %llu exceeds the remaining %zu bytes (offset %zu)", c->what,
                   (unsigned long long)n, left(c), c->off);
        return false;
    }
    *s = (const char *)c->p + c->off;
    *len = n;
    c->off += (size_t)n;
    return true;
}

static void value_free(sb_gguf_value *v) {
    if (v->type == SB_GGUF_ARRAY && v->arr.items) {
        sb_gguf_value *items = (sb_gguf_value *)v->arr.items;
        for (uint64_t i = 0; i < v->arr.n; i++) value_free(&items[i]);
        free(items);
        v->arr.items = NULL;
    }
}

static bool rd_value(cursor *c, sb_gguf_type type, sb_gguf_value *v, int depth);

static bool rd_array(cursor *c, sb_gguf_value *v, int depth) {
    uint32_t et;
    uint64_t n;
    if (!rd_u32(c, &et) || !rd_u64(c, &n)) return false;
    if (et >= SB_GGUF_TYPE_COUNT) {
        sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: unknown array element type %u", c->what, et);
        return false;
    }
    if (depth >= GGUF_MAX_DEPTH) {
        sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: arrays nested deeper than %d", c->what,
                   GGUF_MAX_DEPTH);
        return false;
    }
    v->arr.type = (sb_gguf_type)et;
    v->arr.n = n;
    v->arr.data = NULL;
    v->arr.items = NULL;
    /* The least each element can take: its fixed size, or 8 bytes for a
     * string length, or 12 for a nested array's header. */
    size_t min_elem = type_size[et] ? type_size[et] : et == SB_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min_elem) {
        sb_err_set(c->err, SB_ERR_FORMAT,
                   "gguf: %s: array of %llu %s elements exceeds the remaining %zu bytes", c->what,
                   (unsigned long long)n, sb_gguf_type_name((sb_gguf_type)et), left(c));
        return false;
    }
    if (type_size[et]) {
        v->arr.data = c->p + c->off;
        c->off += (size_t)n * type_size[et];
        return true;
    }
    sb_gguf_value *items = sb_calloc((size_t)n, sizeof *items);
    if (!items) {
        sb_err_set(c->err, SB_ERR_NOMEM, "gguf: %s: out of memory for %llu array items", c->what,
                   (unsigned long long)n);
        return false;
    }
    v->arr.items = items;
    for (uint64_t i = 0; i < n; i++) {
        items[i].type = (sb_gguf_type)et;
        if (!rd_value(c, (sb_gguf_type)et, &items[i], depth + 1)) {
            v->arr.n = i + 1; /* free what was parsed, the failed item included */
            return false;
        }
    }
    return true;
}

static bool rd_value(cursor *c, sb_gguf_type type, sb_gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    uint8_t b1;
    uint16_t b2;
    uint32_t b4;
    uint64_t b8;
    switch (type) {
    case SB_GGUF_UINT8: if (!rd(c, &b1, 1)) return false; v->u64 = b1; return true;
    case SB_GGUF_INT8: if (!rd(c, &b1, 1)) return false; v->i64 = (int8_t)b1; return true;
    case SB_GGUF_UINT16: if (!rd(c, &b2, 2)) return false; v->u64 = b2; return true;
    case SB_GGUF_INT16: if (!rd(c, &b2, 2)) return false; v->i64 = (int16_t)b2; return true;
    case SB_GGUF_UINT32: if (!rd(c, &b4, 4)) return false; v->u64 = b4; return true;
    case SB_GGUF_INT32: if (!rd(c, &b4, 4)) return false; v->i64 = (int32_t)b4; return true;
    case SB_GGUF_UINT64: if (!rd(c, &b8, 8)) return false; v->u64 = b8; return true;
    case SB_GGUF_INT64: if (!rd(c, &b8, 8)) return false; v->i64 = (int64_t)b8; return true;
    case SB_GGUF_FLOAT32: {
        float f;
        if (!rd(c, &f, 4)) return false;
        v->f64 = f;
        return true;
    }
    case SB_GGUF_FLOAT64: {
        double d;
        if (!rd(c, &d, 8)) return false;
        v->f64 = d;
        return true;
    }
    case SB_GGUF_BOOL:
        if (!rd(c, &b1, 1)) return false;
        if (b1 > 1) {
            sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: bool value %u is neither 0 nor 1", c->what, b1);
            return false;
        }
        v->u64 = b1;
        return true;
    case SB_GGUF_STRING: return rd_str(c, &v->str.ptr, &v->str.len);
    case SB_GGUF_ARRAY: return rd_array(c, v, depth);
    default:
        sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: unknown value type %d", c->what, (int)type);
        return false;
    }
}

void sb_gguf_free(sb_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        value_free(&g->kvs[i].v);
    }
    free(g->kvs);
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    sb_mmap_close(&g->map);
    free(g);
}

static char *dup_name(cursor *c, const char *s, uint64_t len, const char *kind) {
    if (memchr(s, 0, (size_t)len)) {
        sb_err_set(c->err, SB_ERR_FORMAT, "gguf: %s: %s contains a NUL byte", c->what, kind);
        return NULL;
    }
    char *d = sb_strndup(s, (size_t)len);
    if (!d) sb_err_set(c->err, SB_ERR_NOMEM, "gguf: out of memory");
    return d;
}

static bool parse(sb_gguf *g, sb_err *err) {
    cursor c = {.p = g->data, .size = g->size, .err = err, .what = "header"};
    char magic[4];
    if (!rd(&c, magic, 4)) return false;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
        sb_err_set(err, SB_ERR_FORMAT, "gguf: bad magic %02x %02x %02x %02x (not a GGUF file)",
                   (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
        return false;
    }
    uint64_t n_tensors, n_kv;
    c.what = "version";
    if (!rd_u32(&c, &g->version)) return false;
    if (g->version != 2 && g->version != 3) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "gguf: version %u is not supported (2 and 3 are)", g->version);
        return false;
    }
    c.what = "tensor count";
    if (!rd_u64(&c, &n_tensors)) return false;
    c.what = "key/value count";
    if (!rd_u64(&c, &n_kv)) return false;
    /* Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes,
     * each tensor info at least 8 + 4 + 4 + 8. */
    if (n_kv > left(&c) / 13) {
        sb_err_set(err, SB_ERR_FORMAT, "gguf: key/value count %llu exceeds what %zu bytes can hold",
                   (unsigned long long)n_kv, left(&c));
        return false;
    }
    if (n_tensors > left(&c) / 24) {
        sb_err_set(err, SB_ERR_FORMAT, "gguf: tensor count %llu exceeds what %zu bytes can hold",
                   (unsigned long long)n_tensors, left(&c));
        return false;
    }
    g->kvs = sb_calloc((size_t)n_kv, sizeof *g->kvs);
    g->tensors = sb_calloc((size_t)n_tensors, sizeof *g->tensors);
    if (!g->kvs || !g->tensors) {
        sb_err_set(err, SB_ERR_NOMEM, "gguf: out of memory");
        return false;
    }

    char what[320];
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(what, sizeof what, "key #%llu", (unsigned long long)i);
        c.what = what;
        const char *ks;
        uint64_t klen;
        uint32_t type;
        if (!rd_str(&c, &ks, &klen)) return false;
        char *key = dup_name(&c, ks, klen, "key name");
        if (!key) return false;
        g->kvs[i].key = key;
        g->n_kv = (int64_t)i + 1;
        snprintf(what, sizeof what, "key #%llu '%.256s'", (unsigned long long)i, key);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->kvs[j].key, key)) {
                sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: duplicate key", what);
                return false;
            }
        if (!rd_u32(&c, &type)) return false;
        if (type >= SB_GGUF_TYPE_COUNT) {
            sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: unknown value type %u", what, type);
            return false;
        }
        if (!rd_value(&c, (sb_gguf_type)type, &g->kvs[i].v, 0)) return false;
        if (!strcmp(key, "general.alignment")) {
            const sb_gguf_value *v = &g->kvs[i].v;
            uint64_t a = v->type == SB_GGUF_UINT32 || v->type == SB_GGUF_UINT64 ? v->u64 : 0;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                sb_err_set(err, SB_ERR_FORMAT,
                           "gguf: general.alignment must be a power of two up to 1 MiB (u32), got %llu "
                           "(type %s)",
                           (unsigned long long)a, sb_gguf_type_name(v->type));
                return false;
            }
            g->alignment = (size_t)a;
        }
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        snprintf(what, sizeof what, "tensor #%llu", (unsigned long long)i);
        c.what = what;
        tinfo *t = &g->tensors[i];
        const char *ns;
        uint64_t nlen;
        uint32_t n_dims, type;
        if (!rd_str(&c, &ns, &nlen)) return false;
        t->name = dup_name(&c, ns, nlen, "tensor name");
        if (!t->name) return false;
        g->n_tensors = (int64_t)i + 1;
        snprintf(what, sizeof what, "tensor '%.256s'", t->name);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->tensors[j].name, t->name)) {
                sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: duplicate tensor name", what);
                return false;
            }
        if (!rd_u32(&c, &n_dims)) return false;
        if (n_dims > GGUF_MAX_DIMS) {
            sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: %u dimensions (at most %d)", what, n_dims,
                       GGUF_MAX_DIMS);
            return false;
        }
        t->n_dims = (int)n_dims;
        int64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if (!rd_u64(&c, &ne)) return false;
            if (ne == 0 || ne > (uint64_t)INT64_MAX || __builtin_mul_overflow(nel, (int64_t)ne, &nel)) {
                sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: dimension %u of size %llu is zero or overflows",
                           what, d, (unsigned long long)ne);
                return false;
            }
            t->ne[d] = (int64_t)ne;
        }
        if (!rd_u32(&c, &type)) return false;
        const sb_type_traits *tr = sb_type_traits_get((int)type);
        if (!tr || type >= SB_NF4) { /* sabio's in-memory types are never in a file */
            sb_err_set(err, SB_ERR_UNSUPPORTED, "gguf: %s: unknown tensor type %u", what, type);
            return false;
        }
        t->type = (int)type;
        if (t->ne[0] % tr->blck_size) {
            sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: row length %lld is not a multiple of the %s block size %lld",
                       what, (long long)t->ne[0], tr->name, (long long)tr->blck_size);
            return false;
        }
        if (!sb_dtype_row_bytes(t->type, nel, &t->nbytes)) {
            sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: data size overflows", what);
            return false;
        }
        if (!rd_u64(&c, &t->offset)) return false;
        if (t->offset % g->alignment) {
            sb_err_set(err, SB_ERR_FORMAT, "gguf: %s: data offset %llu is not a multiple of the alignment %zu",
                       what, (unsigned long long)t->offset, g->alignment);
            return false;
        }
    }

    /* The data section starts at the next multiple of the alignment. */
    size_t off = c.off;
    size_t pad = (g->alignment - off % g->alignment) % g->alignment;
    g->data_offset = off + pad;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tinfo *t = &g->tensors[i];
        size_t start, end;
        if (g->n_tensors && (g->data_offset > g->size || !sb_add_ok(g->data_offset, (size_t)t->offset, &start) ||
                             t->offset > SIZE_MAX || !sb_add_ok(start, t->nbytes, &end) || end > g->size)) {
            sb_err_set(err, SB_ERR_FORMAT,
                       "gguf: tensor '%.256s': data offset %llu + %zu bytes exceeds file size %zu "
                       "(data section at %zu)",
                       t->name, (unsigned long long)t->offset, t->nbytes, g->size, g->data_offset);
            return false;
        }
    }
    return true;
}

static sb_gguf *open_common(sb_gguf *g, sb_err *err, const char *path) {
    if (!parse(g, err)) {
        if (path) sb_err_prefix(err, "%s", path);
        sb_gguf_free(g);
        return NULL;
    }
    return g;
}

sb_gguf *sb_gguf_open(const char *path, sb_err *err) {
    sb_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (sb_mmap_open(&g->map, path, err) != SB_OK) {
        free(g);
        return NULL;
    }
    g->data = g->map.data;
    g->size = g->map.size;
    return open_common(g, err, path);
}

sb_gguf *sb_gguf_open_memory(const void *data, size_t size, sb_err *err) {
    sb_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    g->data = data;
    g->size = size;
    return open_common(g, err, NULL);
}

uint32_t sb_gguf_version(const sb_gguf *g) { return g->version; }
size_t sb_gguf_alignment(const sb_gguf *g) { return g->alignment; }
size_t sb_gguf_data_offset(const sb_gguf *g) { return g->data_offset; }
size_t sb_gguf_file_size(const sb_gguf *g) { return g->size; }
int64_t sb_gguf_n_kv(const sb_gguf *g) { return g->n_kv; }

int64_t sb_gguf_find_key(const sb_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kvs[i].key, key)) return i;
    return -1;
}

const char *sb_gguf_key(const sb_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL;
}

const sb_gguf_value *sb_gguf_value_at(const sb_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i].v : NULL;
}

const sb_gguf_value *sb_gguf_get(const sb_gguf *g, const char *key) {
    return sb_gguf_value_at(g, sb_gguf_find_key(g, key));
}

static bool is_unsigned(sb_gguf_type t) {
    return t == SB_GGUF_UINT8 || t == SB_GGUF_UINT16 || t == SB_GGUF_UINT32 || t == SB_GGUF_UINT64 ||
           t == SB_GGUF_BOOL;
}
static bool is_signed(sb_gguf_type t) {
    return t == SB_GGUF_INT8 || t == SB_GGUF_INT16 || t == SB_GGUF_INT32 || t == SB_GGUF_INT64;
}

bool sb_gguf_get_int(const sb_gguf *g, const char *key, int64_t *out) {
    const sb_gguf_value *v = sb_gguf_get(g, key);
    if (!v) return false;
    if (is_unsigned(v->type)) {
        if (v->u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->u64;
        return true;
    }
    if (is_signed(v->type)) {
        *out = v->i64;
        return true;
    }
    return false;
}

bool sb_gguf_get_float(const sb_gguf *g, const char *key, double *out) {
    const sb_gguf_value *v = sb_gguf_get(g, key);
    if (!v) return false;
    if (v->type == SB_GGUF_FLOAT32 || v->type == SB_GGUF_FLOAT64) *out = v->f64;
    else if (is_unsigned(v->type)) *out = (double)v->u64;
    else if (is_signed(v->type)) *out = (double)v->i64;
    else return false;
    return true;
}

bool sb_gguf_get_bool(const sb_gguf *g, const char *key, bool *out) {
    const sb_gguf_value *v = sb_gguf_get(g, key);
    if (!v || v->type != SB_GGUF_BOOL) return false;
    *out = v->u64 != 0;
    return true;
}

char *sb_gguf_get_str_dup(const sb_gguf *g, const char *key) {
    const sb_gguf_value *v = sb_gguf_get(g, key);
    if (!v || v->type != SB_GGUF_STRING) return NULL;
    return sb_strndup(v->str.ptr, (size_t)v->str.len);
}

bool sb_gguf_arr_int(const sb_gguf_value *arr, uint64_t i, int64_t *out) {
    if (!arr || arr->type != SB_GGUF_ARRAY || !arr->arr.data || i >= arr->arr.n) return false;
    const uint8_t *p = (const uint8_t *)arr->arr.data + i * type_size[arr->arr.type];
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (arr->arr.type) {
    case SB_GGUF_UINT8: case SB_GGUF_BOOL: memcpy(&u8, p, 1); *out = u8; return true;
    case SB_GGUF_INT8: memcpy(&u8, p, 1); *out = (int8_t)u8; return true;
    case SB_GGUF_UINT16: memcpy(&u16, p, 2); *out = u16; return true;
    case SB_GGUF_INT16: memcpy(&u16, p, 2); *out = (int16_t)u16; return true;
    case SB_GGUF_UINT32: memcpy(&u32, p, 4); *out = u32; return true;
    case SB_GGUF_INT32: memcpy(&u32, p, 4); *out = (int32_t)u32; return true;
    case SB_GGUF_UINT64: memcpy(&u64, p, 8); if (u64 > INT64_MAX) return false; *out = (int64_t)u64; return true;
    case SB_GGUF_INT64: memcpy(&u64, p, 8); *out = (int64_t)u64; return true;
    default: return false;
    }
}

bool sb_gguf_arr_float(const sb_gguf_value *arr, uint64_t i, double *out) {
    if (!arr || arr->type != SB_GGUF_ARRAY || !arr->arr.data || i >= arr->arr.n) return false;
    const uint8_t *p = (const uint8_t *)arr->arr.data + i * type_size[arr->arr.type];
    if (arr->arr.type == SB_GGUF_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return true;
    }
    if (arr->arr.type == SB_GGUF_FLOAT64) {
        memcpy(out, p, 8);
        return true;
    }
    int64_t x;
    if (!sb_gguf_arr_int(arr, i, &x)) return false;
    *out = (double)x;
    return true;
}

int64_t sb_gguf_n_tensors(const sb_gguf *g) { return g->n_tensors; }

bool sb_gguf_tensor(const sb_gguf *g, int64_t i, sb_tensor *out) {
    if (i < 0 || i >= g->n_tensors) return false;
    const tinfo *t = &g->tensors[i];
    out->name = t->name;
    out->type = t->type;
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->data = g->data + g->data_offset + t->offset;
    out->nbytes = t->nbytes;
    return true;
}

int64_t sb_gguf_find_tensor(const sb_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return i;
    return -1;
}

/* ================================ writer ================================ */

typedef struct wtensor {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
    sb_gguf_fill_fn fill; /* data made at write time (data NULL) */
    void *fill_ctx;
} wtensor;

struct sb_gguf_writer {
    kv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

sb_gguf_writer *sb_gguf_writer_new(void) { return calloc(1, sizeof(sb_gguf_writer)); }

/* Deep copy of a value: strings and arrays get their own storage, so that a
 * writer outlives the reader it copied from. Copied strings and numeric
 * payloads live in one block per value (freed by value_free_owned). */
static void value_free_owned(sb_gguf_value *v) {
    if (v->type == SB_GGUF_STRING) free((void *)v->str.ptr);
    if (v->type == SB_GGUF_ARRAY) {
        free((void *)v->arr.data);
        if (v->arr.items) {
            sb_gguf_value *items = (sb_gguf_value *)v->arr.items;
            for (uint64_t i = 0; i < v->arr.n; i++) value_free_owned(&items[i]);
            free(items);
        }
    }
}

static bool value_copy(sb_gguf_value *dst, const sb_gguf_value *src, int depth) {
    *dst = *src;
    if (depth > GGUF_MAX_DEPTH) return false;
    if (src->type == SB_GGUF_STRING) {
        char *s = sb_malloc((size_t)src->str.len + 1);
        if (!s) return false;
        memcpy(s, src->str.ptr, (size_t)src->str.len);
        s[src->str.len] = 0;
        dst->str.ptr = s;
        return true;
    }
    if (src->type != SB_GGUF_ARRAY) return true;
    dst->arr.data = NULL;
    dst->arr.items = NULL;
    if ((unsigned)src->arr.type >= SB_GGUF_TYPE_COUNT) return false;
    size_t es = type_size[src->arr.type];
    if (es) {
        size_t n;
        if (!sb_mul_ok((size_t)src->arr.n, es, &n)) return false;
        void *d = sb_malloc(n);
        if (!d) return false;
        if (n) memcpy(d, src->arr.data, n);
        dst->arr.data = d;
        return true;
    }
    sb_gguf_value *items = sb_calloc((size_t)src->arr.n, sizeof *items);
    if (!items) return false;
    dst->arr.items = items;
    for (uint64_t i = 0; i < src->arr.n; i++) {
        if (!value_copy(&items[i], &src->arr.items[i], depth + 1)) {
            dst->arr.n = i;
            value_free_owned(dst);
            return false;
        }
    }
    return true;
}

void sb_gguf_writer_free(sb_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        value_free_owned(&w->kvs[i].v);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

sb_status sb_gguf_writer_set(sb_gguf_writer *w, const char *key, const sb_gguf_value *v) {
    sb_gguf_value copy;
    if (!value_copy(&copy, v, 0)) return SB_ERR_NOMEM;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key)) {
            value_free_owned(&w->kvs[i].v);
            w->kvs[i].v = copy;
            return SB_OK;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        kv *k = sb_realloc_array(w->kvs, cap, sizeof *k);
        if (!k) {
            value_free_owned(&copy);
            return SB_ERR_NOMEM;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *name = sb_strdup(key);
    if (!name) {
        value_free_owned(&copy);
        return SB_ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (kv){name, copy};
    return SB_OK;
}

sb_status sb_gguf_writer_set_u32(sb_gguf_writer *w, const char *key, uint32_t v) {
    return sb_gguf_writer_set(w, key, &(sb_gguf_value){.type = SB_GGUF_UINT32, .u64 = v});
}
sb_status sb_gguf_writer_set_i32(sb_gguf_writer *w, const char *key, int32_t v) {
    return sb_gguf_writer_set(w, key, &(sb_gguf_value){.type = SB_GGUF_INT32, .i64 = v});
}
sb_status sb_gguf_writer_set_u64(sb_gguf_writer *w, const char *key, uint64_t v) {
    return sb_gguf_writer_set(w, key, &(sb_gguf_value){.type = SB_GGUF_UINT64, .u64 = v});
}
sb_status sb_gguf_writer_set_f32(sb_gguf_writer *w, const char *key, float v) {
    return sb_gguf_writer_set(w, key, &(sb_gguf_value){.type = SB_GGUF_FLOAT32, .f64 = v});
}
sb_status sb_gguf_writer_set_bool(sb_gguf_writer *w, const char *key, bool v) {
    return sb_gguf_writer_set(w, key, &(sb_gguf_value){.type = SB_GGUF_BOOL, .u64 = v});
}
sb_status sb_gguf_writer_set_str(sb_gguf_writer *w, const char *key, const char *s) {
    sb_gguf_value v = {.type = SB_GGUF_STRING};
    v.str.ptr = s;
    v.str.len = strlen(s);
    return sb_gguf_writer_set(w, key, &v);
}
sb_status sb_gguf_writer_set_arr(sb_gguf_writer *w, const char *key, sb_gguf_type elem_type,
                                 const void *data, uint64_t n) {
    if ((unsigned)elem_type >= SB_GGUF_TYPE_COUNT || !type_size[elem_type]) return SB_ERR_INVALID;
    sb_gguf_value v = {.type = SB_GGUF_ARRAY};
    v.arr.type = elem_type;
    v.arr.n = n;
    v.arr.data = data;
    return sb_gguf_writer_set(w, key, &v);
}
sb_status sb_gguf_writer_set_arr_str(sb_gguf_writer *w, const char *key, const char *const *strs,
                                     uint64_t n) {
    sb_gguf_value *items = sb_calloc((size_t)n, sizeof *items);
    if (!items && n) return SB_ERR_NOMEM;
    for (uint64_t i = 0; i < n; i++) {
        items[i].type = SB_GGUF_STRING;
        items[i].str.ptr = strs[i];
        items[i].str.len = strlen(strs[i]);
    }
    sb_gguf_value v = {.type = SB_GGUF_ARRAY};
    v.arr.type = SB_GGUF_STRING;
    v.arr.n = n;
    v.arr.items = items;
    sb_status st = sb_gguf_writer_set(w, key, &v);
    free(items);
    return st;
}

sb_status sb_gguf_writer_copy_kv(sb_gguf_writer *w, const sb_gguf *src) {
    for (int64_t i = 0; i < src->n_kv; i++) {
        sb_status st = sb_gguf_writer_set(w, src->kvs[i].key, &src->kvs[i].v);
        if (st != SB_OK) return st;
    }
    return SB_OK;
}

sb_status sb_gguf_writer_add_tensor(sb_gguf_writer *w, const char *name, int type, int n_dims,
                                    const int64_t *ne, const void *data, size_t nbytes) {
    return sb_gguf_writer_add_tensor_fn(w, name, type, n_dims, ne, nbytes, NULL, (void *)data);
}

sb_status sb_gguf_writer_add_tensor_fn(sb_gguf_writer *w, const char *name, int type, int n_dims,
                                       const int64_t *ne, size_t nbytes, sb_gguf_fill_fn fill, void *ctx) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return SB_ERR_INVALID;
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || __builtin_mul_overflow(nel, ne[d], &nel)) return SB_ERR_INVALID;
    size_t want;
    if (!sb_dtype_row_bytes(type, nel, &want) || want != nbytes) return SB_ERR_INVALID;
    const sb_type_traits *tr = sb_type_traits_get(type);
    if (ne[0] % tr->blck_size) return SB_ERR_INVALID;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return SB_ERR_INVALID;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = sb_realloc_array(w->tensors, cap, sizeof *t);
        if (!t) return SB_ERR_NOMEM;
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = sb_strdup(name);
    if (!t->name) return SB_ERR_NOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = fill ? NULL : ctx;
    t->fill = fill;
    t->fill_ctx = ctx;
    t->nbytes = nbytes;
    w->n_tensors++;
    return SB_OK;
}

/* Output goes to either an atomic file or a memory buffer. */
typedef struct sink {
    sb_afile *f;
    sb_buf *b;
    size_t written;
    bool failed;
    sb_status fill_status; /* of a fill callback that failed, else SB_OK */
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (s->failed) return;
    bool ok = s->f ? sb_afile_write(s->f, p, n) : sb_buf_append(s->b, p, n);
    if (!ok) s->failed = true;
    s->written += n;
}
static void put_u32(sink *s, uint32_t v) { put(s, &v, 4); }
static void put_u64(sink *s, uint64_t v) { put(s, &v, 8); }
static void put_str(sink *s, const char *p, uint64_t n) {
    put_u64(s, n);
    put(s, p, (size_t)n);
}
static void put_pad(sink *s, size_t align) {
    static const uint8_t zeros[64] = {0};
    size_t pad = (align - s->written % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        put(s, zeros, k);
        pad -= k;
    }
}

static void put_value(sink *s, const sb_gguf_value *v) {
    uint8_t b1;
    uint16_t b2;
    uint32_t b4;
    float f;
    switch (v->type) {
    case SB_GGUF_UINT8: case SB_GGUF_BOOL: b1 = (uint8_t)v->u64; put(s, &b1, 1); break;
    case SB_GGUF_INT8: b1 = (uint8_t)(int8_t)v->i64; put(s, &b1, 1); break;
    case SB_GGUF_UINT16: b2 = (uint16_t)v->u64; put(s, &b2, 2); break;
    case SB_GGUF_INT16: b2 = (uint16_t)(int16_t)v->i64; put(s, &b2, 2); break;
    case SB_GGUF_UINT32: b4 = (uint32_t)v->u64; put(s, &b4, 4); break;
    case SB_GGUF_INT32: b4 = (uint32_t)(int32_t)v->i64; put(s, &b4, 4); break;
    case SB_GGUF_UINT64: put_u64(s, v->u64); break;
    case SB_GGUF_INT64: put_u64(s, (uint64_t)v->i64); break;
    case SB_GGUF_FLOAT32: f = (float)v->f64; put(s, &f, 4); break;
    case SB_GGUF_FLOAT64: put(s, &v->f64, 8); break;
    case SB_GGUF_STRING: put_str(s, v->str.ptr, v->str.len); break;
    case SB_GGUF_ARRAY:
        put_u32(s, (uint32_t)v->arr.type);
        put_u64(s, v->arr.n);
        if (type_size[v->arr.type]) put(s, v->arr.data, (size_t)v->arr.n * type_size[v->arr.type]);
        else
            for (uint64_t i = 0; i < v->arr.n; i++) put_value(s, &v->arr.items[i]);
        break;
    default: s->failed = true; break;
    }
}

static size_t writer_alignment(const sb_gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, "general.alignment") &&
            (w->kvs[i].v.type == SB_GGUF_UINT32 || w->kvs[i].v.type == SB_GGUF_UINT64)) {
            uint64_t a = w->kvs[i].v.u64;
            if (a && !(a & (a - 1)) && a <= (1u << 20)) return (size_t)a;
        }
    return GGUF_DEFAULT_ALIGNMENT;
}

static void write_all(sb_gguf_writer *w, sink *s) {
    size_t align = writer_alignment(w);
    put(s, GGUF_MAGIC, 4);
    put_u32(s, 3);
    put_u64(s, w->n_tensors);
    put_u64(s, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(s, w->kvs[i].key, strlen(w->kvs[i].key));
        put_u32(s, (uint32_t)w->kvs[i].v.type);
        put_value(s, &w->kvs[i].v);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        put_str(s, t->name, strlen(t->name));
        put_u32(s, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(s, (uint64_t)t->ne[d]);
        put_u32(s, (uint32_t)t->type);
        put_u64(s, offset);
        offset += (t->nbytes + align - 1) / align * align;
    }
    put_pad(s, align);
    void *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < w->n_tensors && !s->failed; i++) {
        const wtensor *t = &w->tensors[i];
        const void *data = t->data;
        if (t->fill) {
            if (t->nbytes > cap) {
                free(buf);
                cap = t->nbytes;
                if (!(buf = sb_malloc(cap))) {
                    s->failed = true;
                    s->fill_status = SB_ERR_NOMEM;
                    break;
                }
            }
            sb_status st = t->fill(t->fill_ctx, buf, t->nbytes);
            if (st != SB_OK) {
                s->failed = true;
                s->fill_status = st;
                break;
            }
            data = buf;
        }
        put(s, data, t->nbytes);
        put_pad(s, align);
    }
    free(buf);
}

sb_status sb_gguf_writer_write(sb_gguf_writer *w, const char *path, sb_err *err) {
    sb_afile f;
    sb_status st = sb_afile_open(&f, path, err);
    if (st != SB_OK) return st;
    sink s = {.f = &f};
    write_all(w, &s);
    if (s.failed) {
        sb_afile_abort(&f);
        if (s.fill_status != SB_OK) return s.fill_status; /* the callback set err */
        return sb_err_set(err, SB_ERR_IO, "%s: write failed", path);
    }
    return sb_afile_commit(&f, err);
}

sb_status sb_gguf_writer_to_memory(sb_gguf_writer *w, void **out, size_t *size, sb_err *err) {
    sb_buf b = {0};
    sink s = {.b = &b};
    write_all(w, &s);
    if (s.failed) {
        sb_buf_free(&b);
        if (s.fill_status != SB_OK) return s.fill_status;
        return sb_err_set(err, SB_ERR_NOMEM, "gguf: out of memory writing to a buffer");
    }
    *out = b.data;
    *size = b.len;
    return SB_OK;
}
