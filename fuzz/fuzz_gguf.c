/* fuzz_gguf.c - libFuzzer target for the GGUF reader: parse, then touch every
 * key, value (nested arrays included) and tensor byte range. */
#include "formats/gguf.h"

static volatile uint64_t sink;

static void walk(const sb_gguf_value *v) {
    switch (v->type) {
    case SB_GGUF_STRING:
        if (v->str.len) sink += (uint8_t)v->str.ptr[0] + (uint8_t)v->str.ptr[v->str.len - 1];
        break;
    case SB_GGUF_ARRAY:
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items) walk(&v->arr.items[i]);
            else {
                double d;
                int64_t x;
                if (sb_gguf_arr_float(v, i, &d)) sink += (uint64_t)(d != 0);
                if (sb_gguf_arr_int(v, i, &x)) sink += (uint64_t)x;
            }
        }
        break;
    default: sink += v->u64; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_gguf *g = sb_gguf_open_memory(data, size, NULL);
    if (!g) return 0;
    for (int64_t i = 0; i < sb_gguf_n_kv(g); i++) {
        sink += (uint8_t)sb_gguf_key(g, i)[0];
        walk(sb_gguf_value_at(g, i));
    }
    for (int64_t i = 0; i < sb_gguf_n_tensors(g); i++) {
        sb_tensor t;
        if (sb_gguf_tensor(g, i, &t) && t.nbytes)
            sink += ((const uint8_t *)t.data)[0] + ((const uint8_t *)t.data)[t.nbytes - 1];
    }
    sb_gguf_free(g);
    return 0;
}
