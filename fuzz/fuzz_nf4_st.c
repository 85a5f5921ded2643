/* fuzz_nf4_st.c - libFuzzer target for bitsandbytes NF4 weights in
 * safetensors (formats/nf4_st.c): parse, read every NF4 weight's state, then
 * dequantize all of it (every index it holds must be in bounds) and run one
 * row through the matrix kernel. Seeds: fuzz/seeds/nf4_st (one double-quantized
 * and one plain weight of tests/data/tiny_phi3_nf4's 4-bit models). */
#include <stdlib.h>
#include <string.h>

#include "formats/nf4_st.h"

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_safetensors *st = sb_st_open_memory(data, size, NULL);
    if (!st) return 0;
    for (int64_t i = 0; i < sb_st_n_tensors(st); i++) {
        sb_tensor t;
        if (!sb_st_tensor(st, i, &t) || !t.name || !sb_st_is_nf4(st, t.name)) continue;
        sb_nf4 q;
        int64_t shape[2];
        if (sb_st_nf4(st, t.name, &q, shape, NULL) != SB_OK) continue;
        if (q.n <= (1 << 20)) {
            float *out = malloc((size_t)q.n * sizeof(float));
            sb_nf4_dequantize(&q, 0, q.n, out);
            sink += out[0] + out[q.n - 1];
            free(out);
            if (shape[1] % 2 == 0) {
                sb_tensor w;
                sb_nf4_view(&q, t.name, shape[1], shape[0], &w);
                float *x = calloc((size_t)shape[1], sizeof(float)), *y = calloc((size_t)shape[0], sizeof(float));
                sb_nf4_matvec(&w, x, y, shape[0] - 1, shape[0]);
                sink += y[shape[0] - 1];
                free(x);
                free(y);
            }
        }
        sb_nf4_free(&q);
    }
    sb_st_free(st);
    return 0;
}
