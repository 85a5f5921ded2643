/*
 * nf4_st.c - bitsandbytes' 4-bit weights in a safetensors file, the layout
 * transformers' save_pretrained writes for a model loaded with
 * BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"):
 *
 *   W                              U8 [(n + 1) / 2, 1]  packed NF4 (nf4.h)
 *   W.absmax                       F32 [nb], or U8 [nb] with double quantization
 *   W.quant_map                    F32 [16]   the NF4 code book
 *   W.nested_absmax                F32 [ceil(nb / nested_blocksize)]   (nested only)
 *   W.nested_quant_map             F32 [256]  the dynamic map           (nested only)
 *   W.quant_state.bitsandbytes__nf4  U8 [k]: JSON {"quant_type": "nf4",
 *       "blocksize": 64, "dtype": "bfloat16", "shape": [out, in],
 *       "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.38}
 *
 * Every size is checked against the JSON and against each other before use;
 * the code books must be bitsandbytes' own (our kernels hold them as
 * constants). The packed bytes stay in the mapped file; the float scales are
 * copied (they may be unaligned there, and are small: 1/16 of the bytes).
 */
#include "formats/nf4_st.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool get(const sb_safetensors *st, const char *base, const char *suffix, sb_tensor *t) {
    char name[512];
    if (snprintf(name, sizeof name, "%s%s", base, suffix) >= (int)sizeof name) return false;
    int64_t i = sb_st_find(st, name);
    return i >= 0 && sb_st_tensor(st, i, t);
}

/* A tensor of exactly `count` elements of `bytes` each (type -1 for U8). */
static bool sized(const sb_tensor *t, int type, size_t bytes, int64_t count) {
    if (type >= 0 && t->type != type) return false;
    if (type < 0 && t->type >= 0) return false;
    return sb_tensor_nelements(t) == count && t->nbytes == (size_t)count * bytes;
}

bool sb_st_is_nf4(const sb_safetensors *st, const char *name) {
    sb_tensor t;
    return get(st, name, ".quant_state.bitsandbytes__nf4", &t);
}

sb_status sb_st_nf4(const sb_safetensors *st, const char *name, sb_nf4 *q, int64_t shape[2], sb_err *err) {
    memset(q, 0, sizeof *q);
    sb_tensor qs_t, abs_t, map_t, js_t;
    if (!get(st, name, ".quant_state.bitsandbytes__nf4", &js_t))
        return sb_err_set(err, SB_ERR_NOT_FOUND, "tensor %s: no bitsandbytes NF4 quant state", name);
    if (js_t.type >= 0 || js_t.nbytes == 0 || js_t.nbytes > 65536)
        return sb_err_set(err, SB_ERR_FORMAT, "tensor %s.quant_state: not a U8 JSON blob (%zu bytes)", name,
                          js_t.nbytes);
    json_error_t je;
    json_t *j = json_loadb(js_t.data, js_t.nbytes, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return sb_err_set(err, SB_ERR_FORMAT, "tensor %s.quant_state: bad JSON: %s", name, je.text);
    }
    sb_status rc = SB_OK;
    const char *qt = json_string_value(json_object_get(j, "quant_type"));
    json_t *jshape = json_object_get(j, "shape"), *jbs = json_object_get(j, "blocksize");
    json_t *jnbs = json_object_get(j, "nested_blocksize"), *joff = json_object_get(j, "nested_offset");
    if (!qt || strcmp(qt, "nf4")) {
        rc = sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s: quant_type %s (only nf4)", name, qt ? qt : "missing");
        goto done;
    }
    if (!json_is_array(jshape) || json_array_size(jshape) != 2 || !json_is_integer(json_array_get(jshape, 0)) ||
        !json_is_integer(json_array_get(jshape, 1)) || !json_is_integer(jbs)) {
        rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.quant_state: shape must be [out, in] and blocksize an integer",
                        name);
        goto done;
    }
    const json_int_t rows = json_integer_value(json_array_get(jshape, 0));
    const json_int_t cols = json_integer_value(json_array_get(jshape, 1));
    const json_int_t bs = json_integer_value(jbs);
    if (rows <= 0 || cols <= 0 || rows > (1 << 24) || cols > (1 << 24) || bs < 32 || bs > 4096 || (bs & (bs - 1))) {
        rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.quant_state: shape [%lld, %lld], blocksize %lld", name,
                        (long long)rows, (long long)cols, (long long)bs);
        goto done;
    }
    const int64_t n = (int64_t)rows * cols, nb = (n + bs - 1) / bs;
    const bool nested = jnbs != NULL;
    q->n = n;
    q->blocksize = (int)bs;
    q->n_blocks = nb;
    if (!get(st, name, "", &qs_t) || !sized(&qs_t, -1, 1, (n + 1) / 2)) {
        rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s: packed weights must be %lld U8 bytes", name,
                        (long long)((n + 1) / 2));
        goto done;
    }
    if (!get(st, name, ".quant_map", &map_t) || !sized(&map_t, SB_F32, 4, 16) ||
        memcmp(map_t.data, sb_nf4_code_f, sizeof sb_nf4_code_f)) {
        rc = sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s.quant_map: not bitsandbytes' NF4 code book", name);
        goto done;
    }
    int64_t nn = 0;
    if (nested) {
        const json_int_t nbs = json_integer_value(jnbs);
        sb_tensor nmap_t;
        if (!json_is_integer(jnbs) || nbs <= 0 || nbs > (1 << 20) || !json_is_number(joff) ||
            !isfinite(json_number_value(joff))) {
            rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.quant_state: nested_blocksize / nested_offset", name);
            goto done;
        }
        nn = (nb + nbs - 1) / nbs;
        q->nested = true;
        q->nested_blocksize = (int)nbs;
        q->offset = (float)json_number_value(joff);
        if (!get(st, name, ".absmax", &abs_t) || !sized(&abs_t, -1, 1, nb)) {
            rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.absmax: must be %lld U8 codes", name, (long long)nb);
            goto done;
        }
        if (!get(st, name, ".nested_quant_map", &nmap_t) || !sized(&nmap_t, SB_F32, 4, 256) ||
            memcmp(nmap_t.data, sb_nf4_dynamic_map_f, sizeof sb_nf4_dynamic_map_f)) {
            rc = sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s.nested_quant_map: not bitsandbytes' dynamic map",
                            name);
            goto done;
        }
        sb_tensor nabs_t;
        if (!get(st, name, ".nested_absmax", &nabs_t) || !sized(&nabs_t, SB_F32, 4, nn)) {
            rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.nested_absmax: must be %lld F32", name, (long long)nn);
            goto done;
        }
        float *slab = sb_malloc((size_t)nn * 4 + (size_t)nb);
        if (!slab) {
            rc = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(slab, nabs_t.data, (size_t)nn * 4);
        memcpy((uint8_t *)(slab + nn), abs_t.data, (size_t)nb);
        q->nested_absmax = slab;
        q->qabsmax = (const uint8_t *)(slab + nn);
        q->owned = slab;
    } else {
        if (!get(st, name, ".absmax", &abs_t) || !sized(&abs_t, SB_F32, 4, nb)) {
            rc = sb_err_set(err, SB_ERR_FORMAT, "tensor %s.absmax: must be %lld F32", name, (long long)nb);
            goto done;
        }
        float *slab = sb_malloc((size_t)nb * 4);
        if (!slab) {
            rc = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(slab, abs_t.data, (size_t)nb * 4);
        q->absmax = slab;
        q->owned = slab;
    }
    q->qs = qs_t.data;
    shape[0] = rows;
    shape[1] = cols;
    rc = sb_nf4_check(q, err);
done:
    json_decref(j);
    if (rc != SB_OK) sb_nf4_free(q);
    return rc;
}

/* ---------------------------------------------------------- writer -- */

/* The shortest %g form that reads back as the same double (Python's repr
 * writes nested_offset the same way). */
static void shortest(char *buf, size_t cap, double v) {
    for (int prec = 9; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

sb_status sb_st_writer_add_nf4(sb_st_writer *w, const char *name, const sb_nf4 *q, int64_t rows, int64_t cols,
                               const char *dtype, char **state_json, sb_err *err) {
    *state_json = NULL;
    if (rows * cols != q->n) return sb_err_set(err, SB_ERR_INVALID, "tensor %s: shape does not hold %lld elements",
                                               name, (long long)q->n);
    char off[40] = "0", js[512];
    if (q->nested) shortest(off, sizeof off, (double)q->offset);
    int len = q->nested
                  ? snprintf(js, sizeof js, "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", "
                             "\"shape\": [%lld, %lld], \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", "
                             "\"nested_offset\": %s}", q->blocksize, dtype, (long long)rows, (long long)cols,
                             q->nested_blocksize, off)
                  : snprintf(js, sizeof js, "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", "
                             "\"shape\": [%lld, %lld]}", q->blocksize, dtype, (long long)rows, (long long)cols);
    if (len < 0 || len >= (int)sizeof js || !(*state_json = sb_strdup(js)))
        return sb_err_set(err, SB_ERR_NOMEM, "tensor %s: quant state", name);
    const int64_t nn = q->nested ? (q->n_blocks + q->nested_blocksize - 1) / q->nested_blocksize : 0;
    char key[512];
    sb_status st;
#define ADD(suffix, type, nd, ne, data, bytes)                                                     \
    do {                                                                                          \
        snprintf(key, sizeof key, "%s%s", name, suffix);                                          \
        if ((st = sb_st_writer_add(w, key, type, nd, ne, data, bytes)) != SB_OK)                  \
            return sb_err_set(err, st, "tensor %s: cannot add to the safetensors writer", key);   \
    } while (0)
    const int64_t ne_w[2] = {1, (q->n + 1) / 2}, ne_b[1] = {q->n_blocks}, ne_16[1] = {16}, ne_256[1] = {256};
    const int64_t ne_n[1] = {nn}, ne_js[1] = {len};
    ADD("", SB_ST_U8, 2, ne_w, q->qs, (size_t)ne_w[1]);
    if (q->nested) {
        ADD(".absmax", SB_ST_U8, 1, ne_b, q->qabsmax, (size_t)q->n_blocks);
        ADD(".nested_absmax", SB_F32, 1, ne_n, q->nested_absmax, (size_t)nn * 4);
        ADD(".nested_quant_map", SB_F32, 1, ne_256, sb_nf4_dynamic_map_f, sizeof sb_nf4_dynamic_map_f);
    } else {
        ADD(".absmax", SB_F32, 1, ne_b, q->absmax, (size_t)q->n_blocks * 4);
    }
    ADD(".quant_map", SB_F32, 1, ne_16, sb_nf4_code_f, sizeof sb_nf4_code_f);
    ADD(".quant_state.bitsandbytes__nf4", SB_ST_U8, 1, ne_js, *state_json, (size_t)len);
#undef ADD
    return SB_OK;
}
