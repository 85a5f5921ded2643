/*
 * safetensors.c - safetensors reader (single files and sharded sets) and
 * writer. See safetensors.h for the format. The JSON header is parsed with
 * jansson; every field is validated before a view is handed out.
 */
#include "formats/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20) /* 100 MiB of JSON is already absurd */

typedef struct st_tensor {
    char *name;
    int type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} st_tensor;

typedef struct st_file {
    sb_mmap map;
    const uint8_t *data;
    size_t size;
} st_file;

struct sb_safetensors {
    st_file *files;
    int n_files;
    st_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    char **meta; /* key, value, key, value, ... */
    int n_meta;
};

static int dtype_from_st(const char *s, size_t *elsize) {
    static const struct {
        const char *name;
        int type;
        size_t size;
    } map[] = {
        {"F64", SB_F64, 8},  {"F32", SB_F32, 4},   {"F16", SB_F16, 2},  {"BF16", SB_BF16, 2},
        {"I64", SB_I64, 8},  {"I32", SB_I32, 4},   {"I16", SB_I16, 2},  {"I8", SB_I8, 1},
        {"U64", -1, 8},      {"U32", -1, 4},       {"U16", -1, 2},      {"U8", -1, 1},
        {"BOOL", -1, 1},     {"F8_E4M3", -1, 1},   {"F8_E5M2", -1, 1},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name)) {
            *elsize = map[i].size;
            return map[i].type;
        }
    *elsize = 0;
    return -2; /* unknown */
}

static const char *dtype_to_st(int type) {
    switch (type) {
    case SB_F64: return "F64";
    case SB_F32: return "F32";
    case SB_F16: return "F16";
    case SB_BF16: return "BF16";
    case SB_I64: return "I64";
    case SB_I32: return "I32";
    case SB_I16: return "I16";
    case SB_I8: return "I8";
    case SB_ST_U8: return "U8";
    default: return NULL;
    }
}

void sb_st_free(sb_safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) sb_mmap_close(&st->files[i].map);
    free(st->files);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st);
}

static bool add_meta(sb_safetensors *st, const char *k, const char *v) {
    char **m = sb_realloc_array(st->meta, (size_t)(st->n_meta + 1) * 2, sizeof *m);
    if (!m) return false;
    st->meta = m;
    m[2 * st->n_meta] = sb_strdup(k);
    m[2 * st->n_meta + 1] = sb_strdup(v);
    st->n_meta++;
    return m[2 * st->n_meta - 2] && m[2 * st->n_meta - 1];
}

/* Parses one file's header and appends its tensors. `name` is for messages. */
static sb_status parse_file(sb_safetensors *st, const st_file *f, const char *name, bool take_meta,
                            sb_err *err) {
    if (f->size < 8)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors header", name,
                          f->size);
    uint64_t hlen;
    memcpy(&hlen, f->data, 8);
    if (hlen > f->size - 8 || hlen > ST_MAX_HEADER)
        return sb_err_set(err, SB_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu (or %u MiB)",
                          name, (unsigned long long)hlen, f->size, ST_MAX_HEADER >> 20);
    const uint8_t *buf = f->data + 8 + hlen;
    size_t buf_size = f->size - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return sb_err_set(err, SB_ERR_FORMAT, "%s: header JSON: %s (line %d)", name, jerr.text, jerr.line);
    sb_status status = SB_OK;
    if (!json_is_object(root)) {
        status = sb_err_set(err, SB_ERR_FORMAT, "%s: header is not a JSON object", name);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                status = sb_err_set(err, SB_ERR_FORMAT, "%s: __metadata__ is not an object", name);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    status = sb_err_set(err, SB_ERR_FORMAT, "%s: __metadata__ '%s' is not a string", name, mk);
                    goto done;
                }
                if (take_meta && !add_meta(st, mk, json_string_value(mv))) {
                    status = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                    goto done;
                }
            }
            continue;
        }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            status = sb_err_set(err, SB_ERR_FORMAT,
                                "%s: tensor '%.200s': needs dtype (string), shape (array) and "
                                "data_offsets (two integers)",
                                name, key);
            goto done;
        }
        size_t elsize;
        int type = dtype_from_st(json_string_value(jd), &elsize);
        if (type == -2) {
            status = sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: tensor '%.200s': unknown dtype '%.32s'", name, key,
                                json_string_value(jd));
            goto done;
        }
        size_t nd = json_array_size(js);
        if (nd > 4) {
            status = sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: tensor '%.200s': %zu dimensions (at most 4)", name,
                                key, nd);
            goto done;
        }
        st_tensor t = {.type = type, .n_dims = (int)nd, .ne = {1, 1, 1, 1}};
        size_t nel = 1;
        for (size_t d = 0; d < nd; d++) {
            json_t *x = json_array_get(js, d);
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
            if (v < 0 || !sb_mul_ok(nel, (size_t)v, &nel)) {
                status = sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%.200s': shape[%zu] is not a valid size",
                                    name, key, d);
                goto done;
            }
            t.ne[nd - 1 - d] = v; /* row-major: the last dimension is contiguous */
        }
        json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
        json_int_t begin = json_is_integer(b0) ? json_integer_value(b0) : -1;
        json_int_t end = json_is_integer(b1) ? json_integer_value(b1) : -1;
        size_t want;
        if (!sb_mul_ok(nel, elsize, &want) || begin < 0 || end < begin || (uint64_t)end > buf_size ||
            (uint64_t)(end - begin) != want) {
            status = sb_err_set(err, SB_ERR_FORMAT,
                                "%s: tensor '%.200s': data_offsets [%lld, %lld] do not hold %zu elements of "
                                "%zu bytes within the %zu-byte buffer",
                                name, key, (long long)begin, (long long)end, nel, elsize, buf_size);
            goto done;
        }
        for (int64_t i = 0; i < st->n_tensors; i++)
            if (!strcmp(st->tensors[i].name, key)) {
                status = sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%.200s' appears twice", name, key);
                goto done;
            }
        t.data = buf + begin;
        t.nbytes = want;
        t.name = sb_strdup(key);
        if (st->n_tensors == st->cap_tensors) {
            int64_t cap = st->cap_tensors ? st->cap_tensors * 2 : 64;
            st_tensor *nt = sb_realloc_array(st->tensors, (size_t)cap, sizeof *nt);
            if (!nt) {
                free(t.name);
                status = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                goto done;
            }
            st->tensors = nt;
            st->cap_tensors = cap;
        }
        if (!t.name) {
            status = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto done;
        }
        st->tensors[st->n_tensors++] = t;
    }
done:
    json_decref(root);
    return status;
}

static bool add_file(sb_safetensors *st, const char *path, sb_err *err) {
    st_file *f = sb_realloc_array(st->files, (size_t)st->n_files + 1, sizeof *f);
    if (!f) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return false;
    }
    st->files = f;
    st_file *nf = &st->files[st->n_files];
    memset(nf, 0, sizeof *nf);
    if (sb_mmap_open(&nf->map, path, err) != SB_OK) return false;
    nf->data = nf->map.data;
    nf->size = nf->map.size;
    st->n_files++;
    return parse_file(st, nf, path, st->n_files == 1, err) == SB_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A sharded set: index.json's weight_map names a shard per tensor. */
static bool open_index(sb_safetensors *st, const char *index_path, sb_err *err) {
    char *text = NULL;
    size_t len;
    if (sb_read_file(index_path, 64 << 20, &text, &len, err) != SB_OK) return false;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: JSON: %s (line %d)", index_path, jerr.text, jerr.line);
        return false;
    }
    bool ok = false;
    char *dir = sb_strdup(index_path);
    char **shards = NULL;
    size_t n_shards = 0;
    json_t *map = json_object_get(root, "weight_map");
    if (!dir || !json_is_object(map)) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: no weight_map object", index_path);
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    const char *tname;
    json_t *jf;
    json_object_foreach(map, tname, jf) {
        const char *file = json_string_value(jf);
        if (!file || strchr(file, '/') || !strcmp(file, "..")) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: weight_map['%.200s'] is not a file name in the folder",
                       index_path, tname);
            goto done;
        }
        bool seen = false;
        for (size_t i = 0; i < n_shards; i++) seen |= !strcmp(shards[i], file);
        if (seen) continue;
        char **ns = sb_realloc_array(shards, n_shards + 1, sizeof *ns);
        if (!ns) goto nomem;
        shards = ns;
        if (!(shards[n_shards] = sb_strdup(file))) goto nomem;
        n_shards++;
    }
    for (size_t i = 0; i < n_shards; i++) {
        char *p = sb_aprintf("%s%s", dir, shards[i]);
        if (!p) goto nomem;
        bool fine = add_file(st, p, err);
        free(p);
        if (!fine) goto done;
    }
    json_object_foreach(map, tname, jf) {
        if (sb_st_find(st, tname) < 0) {
            sb_err_set(err, SB_ERR_FORMAT, "%s: tensor '%.200s' is listed for %s but not found there",
                       index_path, tname, json_string_value(jf));
            goto done;
        }
    }
    ok = true;
    goto done;
nomem:
    sb_err_set(err, SB_ERR_NOMEM, "out of memory");
done:
    for (size_t i = 0; i < n_shards; i++) free(shards[i]);
    free(shards);
    free(dir);
    json_decref(root);
    return ok;
}

sb_safetensors *sb_st_open(const char *path, sb_err *err) {
    sb_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    bool ok;
    if (sb_is_dir(path)) {
        char *idx = sb_path_join(path, "model.safetensors.index.json");
        char *one = sb_path_join(path, "model.safetensors");
        if (!idx || !one) ok = false, sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        else if (sb_file_exists(idx)) ok = open_index(st, idx, err);
        else if (sb_file_exists(one)) ok = add_file(st, one, err);
        else ok = false, sb_err_set(err, SB_ERR_NOT_FOUND,
                                    "%s: no model.safetensors or model.safetensors.index.json", path);
        free(idx);
        free(one);
    } else if (ends_with(path, ".json")) {
        ok = open_index(st, path, err);
    } else {
        ok = add_file(st, path, err);
    }
    if (!ok) {
        sb_st_free(st);
        return NULL;
    }
    return st;
}

sb_safetensors *sb_st_open_memory(const void *data, size_t size, sb_err *err) {
    sb_safetensors *st = calloc(1, sizeof *st);
    st_file *f = calloc(1, sizeof *f);
    if (!st || !f) {
        free(st);
        free(f);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->data = data;
    f->size = size;
    st->files = f;
    st->n_files = 1;
    if (parse_file(st, f, "safetensors", true, err) != SB_OK) {
        sb_st_free(st);
        return NULL;
    }
    return st;
}

int64_t sb_st_n_tensors(const sb_safetensors *st) { return st->n_tensors; }

bool sb_st_tensor(const sb_safetensors *st, int64_t i, sb_tensor *out) {
    if (i < 0 || i >= st->n_tensors) return false;
    const st_tensor *t = &st->tensors[i];
    *out = (sb_tensor){.name = t->name, .type = t->type, .n_dims = t->n_dims, .data = t->data,
                       .nbytes = t->nbytes};
    memcpy(out->ne, t->ne, sizeof out->ne);
    return true;
}

int64_t sb_st_find(const sb_safetensors *st, const char *name) {
    for (int64_t i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return i;
    return -1;
}

const char *sb_st_metadata(const sb_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

/* ================================ writer ================================ */

typedef struct wt {
    char *name;
    int type, n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} wt;

struct sb_st_writer {
    wt *t;
    size_t n, cap;
    json_t *meta;
};

sb_st_writer *sb_st_writer_new(void) {
    sb_st_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        return NULL;
    }
    return w;
}

void sb_st_writer_free(sb_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

sb_status sb_st_writer_add(sb_st_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                           const void *data, size_t nbytes) {
    const sb_type_traits *tr = sb_type_traits_get(type);
    const size_t esize = type == SB_ST_U8 ? 1 : tr ? tr->type_size : 0;
    if (!dtype_to_st(type) || !esize || n_dims < 0 || n_dims > 4 || !strcmp(name, "__metadata__"))
        return SB_ERR_INVALID;
    size_t nel = 1, want;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 0 || !sb_mul_ok(nel, (size_t)ne[d], &nel)) return SB_ERR_INVALID;
    if (!sb_mul_ok(nel, esize, &want) || want != nbytes) return SB_ERR_INVALID;
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return SB_ERR_INVALID;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        wt *nt = sb_realloc_array(w->t, cap, sizeof *nt);
        if (!nt) return SB_ERR_NOMEM;
        w->t = nt;
        w->cap = cap;
    }
    wt *t = &w->t[w->n];
    *t = (wt){.name = sb_strdup(name), .type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1},
              .data = data, .nbytes = nbytes};
    if (!t->name) return SB_ERR_NOMEM;
    for (int d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    w->n++;
    return SB_OK;
}

sb_status sb_st_writer_set_metadata(sb_st_writer *w, const char *key, const char *value) {
    return json_object_set_new(w->meta, key, json_string(value)) == 0 ? SB_OK : SB_ERR_NOMEM;
}

/* The header JSON, padded with spaces so the data starts 8-byte aligned. */
static char *build_header(sb_st_writer *w, size_t *len) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wt *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = t->n_dims - 1; d >= 0; d--) json_array_append_new(shape, json_integer(t->ne[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_to_st(t->type), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        if (!e || json_object_set_new(root, t->name, e)) {
            json_decref(root);
            return NULL;
        }
        off += t->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) return NULL;
    size_t n = strlen(s), padded = (n + 7) / 8 * 8;
    char *p = realloc(s, padded + 1);
    if (!p) {
        free(s);
        return NULL;
    }
    memset(p + n, ' ', padded - n);
    p[padded] = 0;
    *len = padded;
    return p;
}

static sb_status write_to(sb_st_writer *w, sb_afile *f, sb_buf *b, sb_err *err) {
    size_t hlen;
    char *h = build_header(w, &hlen);
    if (!h) return sb_err_set(err, SB_ERR_NOMEM, "safetensors: out of memory building the header");
    uint64_t n = hlen;
    bool ok = f ? sb_afile_write(f, &n, 8) && sb_afile_write(f, h, hlen)
                : sb_buf_append(b, &n, 8) && sb_buf_append(b, h, hlen);
    free(h);
    for (size_t i = 0; ok && i < w->n; i++)
        ok = f ? sb_afile_write(f, w->t[i].data, w->t[i].nbytes) : sb_buf_append(b, w->t[i].data, w->t[i].nbytes);
    return ok ? SB_OK : sb_err_set(err, SB_ERR_IO, "safetensors: write failed");
}

sb_status sb_st_writer_write(sb_st_writer *w, const char *path, sb_err *err) {
    sb_afile f;
    sb_status st = sb_afile_open(&f, path, err);
    if (st != SB_OK) return st;
    if ((st = write_to(w, &f, NULL, err)) != SB_OK) {
        sb_afile_abort(&f);
        return st;
    }
    return sb_afile_commit(&f, err);
}

sb_status sb_st_writer_to_memory(sb_st_writer *w, void **out, size_t *size, sb_err *err) {
    sb_buf b = {0};
    sb_status st = write_to(w, NULL, &b, err);
    if (st != SB_OK) {
        sb_buf_free(&b);
        return st;
    }
    *out = b.data;
    *size = b.len;
    return SB_OK;
}
