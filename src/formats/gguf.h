/*
 * gguf.h - GGUF v3 (and v2) reader and writer.
 *
 * Spec: ggml's docs/gguf.md. Layout: magic "GGUF", version u32, n_tensors
 * u64, n_kv u64, then n_kv key/value pairs, then n_tensors tensor infos
 * (name, n_dims u32, ne u64[n_dims], type u32, offset u64), padding to
 * general.alignment (default 32), then the tensor data section.
 *
 * The reader maps the file (or borrows a caller's buffer) and never trusts a
 * size in it: every count, length, offset and dimension is checked for
 * overflow and against the bytes available, and a bad one gives an error
 * naming the field ("tensor 'blk.3.attn_qkv.weight': data offset ... exceeds
 * file size ..."). Values and tensor data are returned as views into the
 * mapping and live as long as the sb_gguf handle.
 */
#ifndef SB_GGUF_H
#define SB_GGUF_H

#include "base/base.h"
#include "tensor/tensor.h"

typedef enum sb_gguf_type {
    SB_GGUF_UINT8 = 0,
    SB_GGUF_INT8 = 1,
    SB_GGUF_UINT16 = 2,
    SB_GGUF_INT16 = 3,
    SB_GGUF_UINT32 = 4,
    SB_GGUF_INT32 = 5,
    SB_GGUF_FLOAT32 = 6,
    SB_GGUF_BOOL = 7,
    SB_GGUF_STRING = 8,
    SB_GGUF_ARRAY = 9,
    SB_GGUF_UINT64 = 10,
    SB_GGUF_INT64 = 11,
    SB_GGUF_FLOAT64 = 12,
    SB_GGUF_TYPE_COUNT
} sb_gguf_type;

const char *sb_gguf_type_name(sb_gguf_type t);

/* A parsed value. Strings are NOT NUL-terminated views into the file. An
 * array's elements: numeric payload is `arr.data` (little-endian, possibly
 * unaligned: read with memcpy or the helpers below); string and nested-array
 * elements are in `arr.items` (n of them). */
typedef struct sb_gguf_value {
    sb_gguf_type type;
    union {
        uint64_t u64; /* all unsigned ints and bool */
        int64_t i64;  /* all signed ints */
        double f64;   /* float32, float64 */
        struct {
            const char *ptr;
            uint64_t len;
        } str;
        struct {
            sb_gguf_type type; /* element type */
            uint64_t n;
            const void *data;                /* numeric elements, NULL otherwise */
            const struct sb_gguf_value *items; /* string/array elements, NULL otherwise */
        } arr;
    };
} sb_gguf_value;

typedef struct sb_gguf sb_gguf;

/* Opens and maps a file. NULL on error (message in err). */
sb_gguf *sb_gguf_open(const char *path, sb_err *err);
/* Parses a caller's buffer, which must outlive the handle. */
sb_gguf *sb_gguf_open_memory(const void *data, size_t size, sb_err *err);
void sb_gguf_free(sb_gguf *g);

uint32_t sb_gguf_version(const sb_gguf *g);
size_t sb_gguf_alignment(const sb_gguf *g);
size_t sb_gguf_data_offset(const sb_gguf *g); /* start of the tensor data section */
size_t sb_gguf_file_size(const sb_gguf *g);

/* ---- metadata ---- */
int64_t sb_gguf_n_kv(const sb_gguf *g);
int64_t sb_gguf_find_key(const sb_gguf *g, const char *key); /* -1 if absent */
const char *sb_gguf_key(const sb_gguf *g, int64_t i);       /* NUL-terminated copy */
const sb_gguf_value *sb_gguf_value_at(const sb_gguf *g, int64_t i);
const sb_gguf_value *sb_gguf_get(const sb_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: false if absent or not convertible (any integer type or bool
 * converts to int64 if in range; floats and integers convert to double). */
bool sb_gguf_get_int(const sb_gguf *g, const char *key, int64_t *out);
bool sb_gguf_get_float(const sb_gguf *g, const char *key, double *out);
bool sb_gguf_get_bool(const sb_gguf *g, const char *key, bool *out);
/* Heap copy of a string value, NUL-terminated (NULL if absent/not a string). */
char *sb_gguf_get_str_dup(const sb_gguf *g, const char *key);
/* Array element accessors for numeric arrays (false if out of range or not numeric). */
bool sb_gguf_arr_int(const sb_gguf_value *arr, uint64_t i, int64_t *out);
bool sb_gguf_arr_float(const sb_gguf_value *arr, uint64_t i, double *out);

/* ---- tensors ---- */
int64_t sb_gguf_n_tensors(const sb_gguf *g);
/* Fills a view (name is NUL-terminated, owned by g). false if i out of range. */
bool sb_gguf_tensor(const sb_gguf *g, int64_t i, sb_tensor *out);
int64_t sb_gguf_find_tensor(const sb_gguf *g, const char *name); /* -1 if absent */

/* ---- writer ----
 * Collects key/values and tensors, then writes a GGUF v3 file atomically.
 * Tensor data pointers are borrowed until sb_gguf_writer_write returns.
 * Setting an existing key replaces it (order of first insertion kept). */
typedef struct sb_gguf_writer sb_gguf_writer;
sb_gguf_writer *sb_gguf_writer_new(void);
void sb_gguf_writer_free(sb_gguf_writer *w);
/* Deep-copies v (strings and arrays included). */
sb_status sb_gguf_writer_set(sb_gguf_writer *w, const char *key, const sb_gguf_value *v);
sb_status sb_gguf_writer_set_u32(sb_gguf_writer *w, const char *key, uint32_t v);
sb_status sb_gguf_writer_set_i32(sb_gguf_writer *w, const char *key, int32_t v);
sb_status sb_gguf_writer_set_u64(sb_gguf_writer *w, const char *key, uint64_t v);
sb_status sb_gguf_writer_set_f32(sb_gguf_writer *w, const char *key, float v);
sb_status sb_gguf_writer_set_bool(sb_gguf_writer *w, const char *key, bool v);
sb_status sb_gguf_writer_set_str(sb_gguf_writer *w, const char *key, const char *s);
/* Numeric array: n elements of elem_type, little-endian packed. */
sb_status sb_gguf_writer_set_arr(sb_gguf_writer *w, const char *key, sb_gguf_type elem_type,
                                 const void *data, uint64_t n);
sb_status sb_gguf_writer_set_arr_str(sb_gguf_writer *w, const char *key, const char *const *strs,
                                     uint64_t n);
/* Copies every key/value of src (e.g. to re-write a model in another type). */
sb_status sb_gguf_writer_copy_kv(sb_gguf_writer *w, const sb_gguf *src);
/* ne has n_dims entries, ne[0] innermost; nbytes must equal the type's size. */
sb_status sb_gguf_writer_add_tensor(sb_gguf_writer *w, const char *name, int type, int n_dims,
                                    const int64_t *ne, const void *data, size_t nbytes);
/* A tensor whose bytes are made only when the writer reaches it: fill(ctx,
 * dst) writes nbytes into dst (a writer buffer reused between tensors) and
 * returns SB_OK, or an error (message in the writer's err) that stops the
 * write. So a converter holds one tensor at a time, never the whole model. */
typedef sb_status (*sb_gguf_fill_fn)(void *ctx, void *dst, size_t nbytes);
sb_status sb_gguf_writer_add_tensor_fn(sb_gguf_writer *w, const char *name, int type, int n_dims,
                                       const int64_t *ne, size_t nbytes, sb_gguf_fill_fn fill, void *ctx);
/* Writes to path via a temporary file, fsync and rename. Alignment comes
 * from general.alignment if set (default 32). */
sb_status sb_gguf_writer_write(sb_gguf_writer *w, const char *path, sb_err *err);
/* Same bytes into a heap buffer (for tests and fuzzing); caller frees. */
sb_status sb_gguf_writer_to_memory(sb_gguf_writer *w, void **out, size_t *size, sb_err *err);

#endif
