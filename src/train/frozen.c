/*
 * frozen.c - products with frozen base weights, tile by tile (frozen.h).
 */
#include "train/frozen.h"

#include <cblas.h>

#include "tensor/matvec.h"

const float *sb_frozen_tile(const sb_tensor *w, int64_t r0, int64_t r1, float *out) {
    const int64_t n_in = w->ne[0];
    if (w->type == SB_F32) return (const float *)w->data + (size_t)r0 * (size_t)n_in;
    for (int64_t r = r0; r < r1; r++) sb_get_row(w, r, out + (size_t)(r - r0) * (size_t)n_in);
    return out;
}

void sb_frozen_matmul(const sb_tensor *w, const float *x, int64_t ldx, int n, float *y, int64_t ldy, float beta,
                      float *scratch) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const int64_t step = w->type == SB_F32 ? n_out : SB_FROZEN_TILE;
    for (int64_t t0 = 0; t0 < n_out; t0 += step) {
        int64_t rows = n_out - t0 < step ? n_out - t0 : step;
        const float *tile = sb_frozen_tile(w, t0, t0 + rows, scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, (int)n_in, 1.0f, x, (int)ldx, tile,
                    (int)n_in, beta, y + t0, (int)ldy);
    }
}

void sb_frozen_matmul_t(const sb_tensor *w, const float *dy, int64_t lddy, int n, float *dx, int64_t lddx, float beta,
                        float *scratch) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const int64_t step = w->type == SB_F32 ? n_out : SB_FROZEN_TILE;
    for (int64_t t0 = 0; t0 < n_out; t0 += step) {
        int64_t rows = n_out - t0 < step ? n_out - t0 : step;
        const float *tile = sb_frozen_tile(w, t0, t0 + rows, scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)n_in, (int)rows, 1.0f, dy + t0, (int)lddy,
                    tile, (int)n_in, t0 == 0 ? beta : 1.0f, dx, (int)lddx);
    }
}

extern void openblas_set_num_threads(int);

void sb_frozen_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }
