/*
 * frozen.c - products with frozen base weights, tile by tile (frozen.h).
 */
#include "train/frozen.h"

#include <cblas.h>
#include <stdlib.h>

#include "tensor/gemm.h"
#include "tensor/matvec.h"

#define MAX_THREADS 64

struct sb_frozen_ws {
    sb_pool *pool;
    int nth;
    bool bf16;
    int64_t max_in;
    float *f32[MAX_THREADS];     /* f32: SB_FROZEN_TILE rows; bf16: one row (max_in) */
    uint16_t *tile[MAX_THREADS]; /* bf16: a tile of W as bf16 rows */
    uint16_t *pack[MAX_THREADS]; /* bf16: the tile in the kernel's panels */
    uint16_t *xb;                /* bf16: (max_rows, ld) the product's left operand */
    size_t bytes;
    void *slab;
};

static int g_threads = 1;

void sb_frozen_set_threads(int n) {
    g_threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    sb_blas_single_thread();
}

int sb_frozen_threads(void) { return g_threads; }

static size_t up64(size_t b) { return (b + 63) & ~(size_t)63; }

sb_frozen_ws *sb_frozen_ws_new(int n_threads, int max_rows, int64_t max_in, int64_t max_out, bool bf16, sb_err *err) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    const size_t in = (size_t)max_in, wide = (size_t)sb_bf16_ld((int)(max_in > max_out ? max_in : max_out));
    const size_t rows = SB_FROZEN_BF16_ROWS > SB_FROZEN_BF16_K ? SB_FROZEN_BF16_ROWS : SB_FROZEN_BF16_K;
    size_t pack = sb_bf16_packed_size(SB_FROZEN_BF16_ROWS, (int)in);
    if (sb_bf16_packed_size((int)in, SB_FROZEN_BF16_K) > pack) pack = sb_bf16_packed_size((int)in, SB_FROZEN_BF16_K);
    const size_t f32 = up64((bf16 ? in : SB_FROZEN_TILE * in) * sizeof(float));
    const size_t tile = bf16 ? up64(rows * in * 2) : 0, pk = bf16 ? up64(pack * 2) : 0;
    const size_t xb = bf16 ? up64((size_t)max_rows * wide * 2) : 0;
    const size_t total = (size_t)n_threads * (f32 + tile + pk) + xb;
    sb_frozen_ws *f = sb_calloc(1, sizeof *f);
    char *s = aligned_alloc(64, up64(total));
    if (!f || !s) {
        free(f), free(s);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory for the frozen-weight tiles (%.1f MiB)",
                   (double)total / (1 << 20));
        return NULL;
    }
    f->slab = s, f->bytes = total, f->nth = n_threads, f->bf16 = bf16, f->max_in = max_in;
    for (int t = 0; t < n_threads; t++) {
        f->f32[t] = (float *)(void *)s, s += f32;
        if (bf16) f->tile[t] = (uint16_t *)(void *)s, s += tile;
        if (bf16) f->pack[t] = (uint16_t *)(void *)s, s += pk;
    }
    f->xb = bf16 ? (uint16_t *)(void *)s : NULL;
    f->pool = n_threads > 1 ? sb_pool_new(n_threads) : NULL;
    if (n_threads > 1 && (!f->pool || sb_pool_size(f->pool) != n_threads)) {
        sb_frozen_ws_free(f);
        sb_err_set(err, SB_ERR_NOMEM, "cannot start %d threads", n_threads);
        return NULL;
    }
    sb_blas_single_thread();
    return f;
}

void sb_frozen_ws_free(sb_frozen_ws *f) {
    if (!f) return;
    sb_pool_free(f->pool);
    free(f->slab);
    free(f);
}

size_t sb_frozen_ws_bytes(const sb_frozen_ws *f) { return f->bytes; }
bool sb_frozen_ws_bf16(const sb_frozen_ws *f) { return f->bf16; }
sb_pool *sb_frozen_pool(const sb_frozen_ws *f) { return f->pool; }

const float *sb_frozen_tile(const sb_tensor *w, int64_t r0, int64_t r1, float *out) {
    const int64_t n_in = w->ne[0];
    if (w->type == SB_F32) return (const float *)w->data + (size_t)r0 * (size_t)n_in;
    for (int64_t r = r0; r < r1; r++) sb_get_row(w, r, out + (size_t)(r - r0) * (size_t)n_in);
    return out;
}

/* ------------------------------------------------------------ one job -- */

typedef struct job {
    sb_frozen_ws *f;
    const sb_tensor *w;
    const float *a;    /* X or dY, f32 */
    int64_t lda;
    const uint16_t *ab; /* the same as bf16 rows (bf16 path) */
    int ldab;
    int n;
    float *c;          /* Y or dX */
    int64_t ldc;
    bool acc;
} job;

/* Columns [c0, c1) of n_cols for thread ith of nth, in whole 16-column panels. */
static void split(int64_t n_cols, int ith, int nth, int64_t *c0, int64_t *c1) {
    const int64_t panels = (n_cols + 15) / 16;
    *c0 = 16 * (panels * ith / nth);
    *c1 = 16 * (panels * (ith + 1) / nth);
    if (*c1 > n_cols) *c1 = n_cols;
}

/* bf16 rows of W[r0:r1, k0:k1] for pack_rows / pack_cols: a pointer into w for
 * BF16 (*ld = ne0), else converted into the thread's tile (*ld = k1 - k0). */
static const uint16_t *bf16_tile(sb_frozen_ws *f, int ith, const sb_tensor *w, int64_t r0, int64_t r1, int64_t k0,
                                 int64_t k1, int *ld) {
    const int64_t n_in = w->ne[0], width = k1 - k0;
    if (w->type == SB_BF16) {
        *ld = (int)n_in;
        return (const uint16_t *)w->data + (size_t)r0 * (size_t)n_in + (size_t)k0;
    }
    uint16_t *t = f->tile[ith];
    *ld = (int)width;
    if (w->type == SB_F32) {
        sb_bf16_rows((const float *)w->data + (size_t)r0 * (size_t)n_in + (size_t)k0, (int)(r1 - r0), (int)width,
                     (int)n_in, t, (int)width);
        return t;
    }
    for (int64_t r = r0; r < r1; r++) {
        sb_get_row(w, r, f->f32[ith]);
        sb_bf16_rows(f->f32[ith] + k0, 1, (int)width, (int)width, t + (size_t)(r - r0) * (size_t)width, (int)width);
    }
    return t;
}

/* Y[:, c0:c1] = X W[c0:c1]^T */
static void fwd_worker(void *arg, int ith, int nth) {
    const job *j = arg;
    sb_frozen_ws *f = j->f;
    const sb_tensor *w = j->w;
    const int64_t n_in = w->ne[0];
    int64_t c0, c1;
    split(w->ne[1], ith, nth, &c0, &c1);
    if (!f->bf16) {
        /* an F32 weight is used in place: one tile, one product, X packed once */
        const int64_t step = w->type == SB_F32 ? c1 - c0 : SB_FROZEN_TILE;
        for (int64_t t0 = c0; t0 < c1; t0 += step) {
            const int64_t rows = c1 - t0 < step ? c1 - t0 : step;
            const float *tile = sb_frozen_tile(w, t0, t0 + rows, f->f32[ith]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, (int)rows, (int)n_in, 1.0f, j->a, (int)j->lda,
                        tile, (int)n_in, j->acc ? 1.0f : 0.0f, j->c + t0, (int)j->ldc);
        }
        return;
    }
    for (int64_t t0 = c0; t0 < c1; t0 += SB_FROZEN_BF16_ROWS) {
        const int64_t rows = c1 - t0 < SB_FROZEN_BF16_ROWS ? c1 - t0 : SB_FROZEN_BF16_ROWS;
        int ld;
        const uint16_t *src = bf16_tile(f, ith, w, t0, t0 + rows, 0, n_in, &ld);
        sb_bf16_mat m;
        sb_bf16_pack_rows(&m, f->pack[ith], src, ld, (int)rows, (int)n_in);
        sb_gemm_bf16(j->ab, j->ldab, j->n, &m, NULL, j->acc ? SB_GEMM_ACC : 0, j->c + t0, (int)j->ldc, NULL, 0);
    }
}

/* dX[:, k0:k1] = dY W[:, k0:k1] */
static void bwd_worker(void *arg, int ith, int nth) {
    const job *j = arg;
    sb_frozen_ws *f = j->f;
    const sb_tensor *w = j->w;
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    int64_t k0, k1;
    split(n_in, ith, nth, &k0, &k1);
    if (k0 >= k1) return;
    if (!f->bf16) {
        /* an F32 weight is used in place: the whole sum in one product, dX written once */
        const int64_t step = w->type == SB_F32 ? n_out : SB_FROZEN_TILE;
        for (int64_t t0 = 0; t0 < n_out; t0 += step) {
            const int64_t rows = n_out - t0 < step ? n_out - t0 : step;
            const float *tile = sb_frozen_tile(w, t0, t0 + rows, f->f32[ith]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->n, (int)(k1 - k0), (int)rows, 1.0f, j->a + t0,
                        (int)j->lda, tile + k0, (int)n_in, t0 == 0 && !j->acc ? 0.0f : 1.0f, j->c + k0, (int)j->ldc);
        }
        return;
    }
    for (int64_t t0 = 0; t0 < n_out; t0 += SB_FROZEN_BF16_K) {
        const int64_t rows = n_out - t0 < SB_FROZEN_BF16_K ? n_out - t0 : SB_FROZEN_BF16_K;
        int ld;
        const uint16_t *src = bf16_tile(f, ith, w, t0, t0 + rows, k0, k1, &ld);
        sb_bf16_mat m;
        sb_bf16_pack_cols(&m, f->pack[ith], src, ld, (int)(k1 - k0), (int)rows);
        sb_gemm_bf16(j->ab + t0, j->ldab, j->n, &m, NULL, t0 == 0 && !j->acc ? 0 : SB_GEMM_ACC, j->c + k0,
                     (int)j->ldc, NULL, 0);
    }
}

/* The left operand's rows as bf16 (K = j->ldc columns), split over the
 * threads by rows. */
static void to_bf16_worker(void *arg, int ith, int nth) {
    const job *j = arg;
    const int r0 = (int)((int64_t)j->n * ith / nth), r1 = (int)((int64_t)j->n * (ith + 1) / nth);
    if (r0 < r1)
        sb_bf16_rows(j->a + (size_t)r0 * (size_t)j->lda, r1 - r0, (int)j->ldc, (int)j->lda,
                     (uint16_t *)j->ab + (size_t)r0 * (size_t)j->ldab, j->ldab);
}

static void to_bf16(sb_frozen_ws *f, const float *a, int64_t lda, int n, int64_t K) {
    job j = {.f = f, .a = a, .lda = lda, .ab = f->xb, .ldab = sb_bf16_ld((int)K), .n = n, .ldc = K};
    sb_pool_run(f->pool, to_bf16_worker, &j);
}

void sb_frozen_matmul(sb_frozen_ws *f, const sb_tensor *w, const float *x, int64_t ldx, int n, float *y, int64_t ldy,
                      float beta) {
    job j = {f, w, x, ldx, NULL, 0, n, y, ldy, beta != 0.0f};
    if (f->bf16) {
        to_bf16(f, x, ldx, n, w->ne[0]);
        j.ab = f->xb, j.ldab = sb_bf16_ld((int)w->ne[0]);
    }
    sb_pool_run(f->pool, fwd_worker, &j);
}

void sb_frozen_matmul_t(sb_frozen_ws *f, const sb_tensor *w, const float *dy, int64_t lddy, int n, float *dx,
                        int64_t lddx, float beta) {
    job j = {f, w, dy, lddy, NULL, 0, n, dx, lddx, beta != 0.0f};
    if (f->bf16) {
        to_bf16(f, dy, lddy, n, w->ne[1]);
        j.ab = f->xb, j.ldab = sb_bf16_ld((int)w->ne[1]);
    }
    sb_pool_run(f->pool, bwd_worker, &j);
}
