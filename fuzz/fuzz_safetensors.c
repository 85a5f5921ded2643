/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: parse,
 * then touch every tensor's first and last byte and the metadata. */
#include "formats/safetensors.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_safetensors *st = sb_st_open_memory(data, size, NULL);
    if (!st) return 0;
    for (int64_t i = 0; i < sb_st_n_tensors(st); i++) {
        sb_tensor t;
        if (sb_st_tensor(st, i, &t) && t.nbytes)
            sink += ((const uint8_t *)t.data)[0] + ((const uint8_t *)t.data)[t.nbytes - 1] + (uint64_t)t.ne[0];
    }
    const char *m = sb_st_metadata(st, "format");
    if (m) sink += (uint8_t)m[0];
    sb_st_free(st);
    return 0;
}
