/*
 * backward.c - the decoder's training forward pass and its backward pass for
 * the LoRA parameters (train.h), in the order of transformers'
 * Phi3DecoderLayer / LlamaDecoderLayer with PEFT's lora.Linear on the
 * adapted projections. Base weights are read only through frozen.h.
 *
 * Every layer's input is kept (x_layer); the rest of a layer's activations
 * are kept per layer, or, with gradient checkpointing, in one set that the
 * backward pass refills by running the layer again from its input.
 *
 * Threads: every product and row-wise operation is split over the frozen
 * workspace's pool (OpenBLAS runs single-threaded inside each part): the
 * frozen products by output panels (frozen.c), the LoRA products by rows or
 * columns of their output, attention by (sequence, kv head), the rest by
 * rows. Each output element is computed by one thread in a fixed order, so
 * results depend on the thread count only through sgemm's blocking.
 *
 * Letters as in train.h: N rows of a micro-batch, D, V, Hq, Hkv, Hd, F, r.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "tensor/gemm.h"
#include "tensor/matvec.h"
#include "tensor/ops.h"
#include "train/frozen.h"
#include "train/train.h"

typedef struct layer_acts {
    float *rstd1;  /* (N) input_layernorm's 1/rms */
    float *xn1;    /* (N, D) input_layernorm(x) */
    float *qkv;    /* (N, Wqkv) q | k after RoPE, v */
    float *P;      /* per sequence s: (Hq, T_s, T_s) softmax weights, sequences one after another */
    float *att;    /* (N, Hq*Hd) attention output */
    float *x2;     /* (N, D) x + o_proj(att) */
    float *rstd2;  /* (N) */
    float *xn2;    /* (N, D) post_attention_layernorm(x2) */
    float *gu;     /* (N, 2F) gate | up */
    float *h;      /* (N, F) silu(gate) * up */
    float *u[SB_LORA_N_MOD]; /* (N, r) dropout(x) A^T of each adapted module */
    uint8_t *mask[SB_LORA_N_MOD]; /* (N, n_in) its dropout mask (1 kept), with dropout */
} layer_acts;

struct sb_train_ws {
    const sb_model *m;
    sb_lora *lora;
    int max_rows, max_seq;
    bool checkpoint;
    int n_sets;         /* activation sets: n_layer, or 1 with checkpointing */
    layer_acts *acts;   /* (n_sets) */
    float *x_layer;     /* (L + 1, N, D) input of each layer, then the last layer's output */
    float *xf;          /* (N, D) model.norm(x) */
    float *rstdf;       /* (N) */
    float *logits;      /* (N, V) logits, then their gradient */
    int32_t *rows;      /* (N) rows whose logits are computed */
    float *cos_t, *sin_t, *nsin_t; /* (max_seq, n_rot/2) RoPE tables, nsin = -sin */
    float *inv_freq;    /* (n_rot/2) */
    /* backward scratch */
    float *dx;          /* (N, D) gradient of the residual stream */
    float *dxn;         /* (N, D) */
    float *dqkv;        /* (N, Wqkv) */
    float *datt;        /* (N, Hq*Hd) */
    float *dgu;         /* (N, 2F) */
    float *dh;          /* (N, F) */
    float *du;          /* (N, r) */
    float *xd;          /* (N, max width) dropout(x) of one module */
    float *tmp;         /* (N, max width) */
    float *dP_th;       /* (threads, max_seq, max_seq) one head's dP per thread */
    double *row_loss;   /* (N) cross-entropy of each logits row */
    uint8_t *masks;     /* the slab of the dropout masks */
    int32_t *pos;       /* (N) position of each row in its sequence */
    int32_t *seq_of;    /* (N) sequence of each row */
    sb_frozen_ws *fz;   /* frozen products, and the threads */
    sb_pool *pool;
    int nth;
    /* the current call */
    const sb_batch *b;
    int N;
    uint64_t drop_seed;
    bool dropout_on;
    size_t bytes;
    void *slab;
};

/* ------------------------------------------------------------ workspace -- */

static int qkv_width(const sb_model_config *p) { return (p->n_head + 2 * p->n_head_kv) * p->head_dim; }

sb_train_ws *sb_train_ws_new(const sb_model *m, sb_lora *lora, int max_rows, int max_seq, bool checkpoint,
                             sb_err *err) {
    const sb_model_config *p = &m->cfg;
    if (max_seq < 1 || max_seq > p->n_ctx_train || max_rows < max_seq) {
        sb_err_set(err, SB_ERR_RANGE, "training sequence length %d is not in 1..%d (rows %d)", max_seq,
                   p->n_ctx_train, max_rows);
        return NULL;
    }
    const size_t N = (size_t)max_rows, D = (size_t)p->n_embd, V = (size_t)p->n_vocab, F = (size_t)p->n_ff;
    const size_t nq = (size_t)p->n_head * p->head_dim, Wqkv = (size_t)qkv_width(p), R = (size_t)p->n_rot / 2;
    const size_t r = (size_t)lora->cfg.r, T = (size_t)max_seq, L = (size_t)p->n_layer;
    size_t W = D > nq ? D : nq;
    if (2 * F > W) W = 2 * F;
    if (Wqkv > W) W = Wqkv;
    const int n_sets = checkpoint ? 1 : p->n_layer;
    unsigned mods = 0;
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (lora->mats[i].A) mods |= 1u << i; /* layer 0 holds the pattern of every layer */
    const size_t per_set = 2 * N + 2 * N * D + N * Wqkv + (size_t)p->n_head * T * N + N * nq + N * D + N * 2 * F +
                           N * F + (size_t)__builtin_popcount(mods) * N * r;
    const int nth = sb_frozen_threads();
    const size_t total = (size_t)n_sets * per_set + (L + 1) * N * D + N * D + N + N * V + 3 * T * R + R +
                         2 * N * D + N * Wqkv + N * nq + N * 2 * F + N * F + (size_t)nth * T * T + N * r +
                         2 * N * W;
    sb_train_ws *ws = sb_calloc(1, sizeof *ws);
    float *s = sb_calloc(total, sizeof(float));
    layer_acts *acts = sb_calloc((size_t)n_sets, sizeof *acts);
    int32_t *rows = sb_calloc(3 * N, sizeof(int32_t));
    double *row_loss = sb_calloc(N, sizeof(double));
    size_t mask_bytes = 0;
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (mods & 1u << i && lora->cfg.dropout > 0) mask_bytes += N * (size_t)lora->mats[i].n_in;
    uint8_t *masks = mask_bytes ? sb_calloc((size_t)n_sets * mask_bytes, 1) : NULL;
    sb_frozen_ws *fz = sb_frozen_ws_new(nth, max_rows, (int64_t)W, (int64_t)(V > W ? V : W), false, err);
    if (!ws || !s || !acts || !rows || !row_loss || !fz || (mask_bytes && !masks)) {
        free(ws), free(s), free(acts), free(rows), free(row_loss), free(masks);
        sb_frozen_ws_free(fz);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory for the training activations (%.1f MiB)",
                   (double)total * 4 / (1 << 20));
        return NULL;
    }
    ws->m = m, ws->lora = lora, ws->max_rows = max_rows, ws->max_seq = max_seq, ws->checkpoint = checkpoint;
    ws->n_sets = n_sets, ws->acts = acts, ws->rows = rows, ws->slab = s;
    ws->pos = rows + N, ws->seq_of = rows + 2 * N;
    ws->fz = fz, ws->pool = sb_frozen_pool(fz), ws->nth = nth;
    ws->bytes = total * sizeof(float) + (size_t)n_sets * mask_bytes;
    ws->masks = masks;
    for (int k = 0; k < n_sets; k++) {
        layer_acts *a = &acts[k];
        a->rstd1 = s, s += N;
        a->rstd2 = s, s += N;
        a->xn1 = s, s += N * D;
        a->xn2 = s, s += N * D;
        a->qkv = s, s += N * Wqkv;
        a->P = s, s += (size_t)p->n_head * T * N;
        a->att = s, s += N * nq;
        a->x2 = s, s += N * D;
        a->gu = s, s += N * 2 * F;
        a->h = s, s += N * F;
        for (int i = 0; i < SB_LORA_N_MOD; i++)
            if (mods & 1u << i) a->u[i] = s, s += N * r;
        for (int i = 0; i < SB_LORA_N_MOD && masks; i++)
            if (mods & 1u << i) a->mask[i] = masks, masks += N * (size_t)lora->mats[i].n_in;
    }
    ws->x_layer = s, s += (L + 1) * N * D;
    ws->xf = s, s += N * D;
    ws->rstdf = s, s += N;
    ws->logits = s, s += N * V;
    ws->cos_t = s, s += T * R;
    ws->sin_t = s, s += T * R;
    ws->nsin_t = s, s += T * R;
    ws->inv_freq = s, s += R;
    ws->dx = s, s += N * D;
    ws->dxn = s, s += N * D;
    ws->dqkv = s, s += N * Wqkv;
    ws->datt = s, s += N * nq;
    ws->dgu = s, s += N * 2 * F;
    ws->dh = s, s += N * F;
    ws->dP_th = s, s += (size_t)nth * T * T;
    ws->du = s, s += N * r;
    ws->xd = s, s += N * W;
    ws->tmp = s, s += N * W;
    ws->row_loss = row_loss;
    return ws;
}

void sb_train_ws_free(sb_train_ws *ws) {
    if (!ws) return;
    sb_frozen_ws_free(ws->fz);
    free(ws->slab);
    free(ws->acts);
    free(ws->rows);
    free(ws->row_loss);
    free(ws->masks);
    free(ws);
}

size_t sb_train_ws_bytes(const sb_train_ws *ws) { return ws->bytes + sb_frozen_ws_bytes(ws->fz); }

sb_status sb_train_ws_set_bf16(sb_train_ws *ws, bool bf16, sb_err *err) {
    if (sb_frozen_ws_bf16(ws->fz) == bf16) return SB_OK;
    const sb_model_config *p = &ws->m->cfg;
    int64_t W = p->n_embd, nq = (int64_t)p->n_head * p->head_dim;
    if (nq > W) W = nq;
    if (2 * (int64_t)p->n_ff > W) W = 2 * (int64_t)p->n_ff;
    if (qkv_width(p) > W) W = qkv_width(p);
    sb_frozen_ws *fz = sb_frozen_ws_new(ws->nth, ws->max_rows, W, p->n_vocab > W ? p->n_vocab : W, bf16, err);
    if (!fz) return err->code;
    sb_frozen_ws_free(ws->fz);
    ws->fz = fz, ws->pool = sb_frozen_pool(fz);
    return SB_OK;
}

/* --------------------------------------------------------- parallel parts -- */

/* C = alpha op(A) op(B) + beta C (row-major), split over the threads by rows
 * of C when it has at least as many rows as columns, else by columns. */
typedef struct gemm_job {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
} gemm_job;

static void gemm_worker(void *arg, int ith, int nth) {
    const gemm_job *g = arg;
    if (g->M >= g->N) {
        const int m0 = (int)((int64_t)g->M * ith / nth), m1 = (int)((int64_t)g->M * (ith + 1) / nth);
        if (m0 < m1)
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, m1 - m0, g->N, g->K, g->alpha,
                        g->A + (g->ta == CblasNoTrans ? (size_t)m0 * g->lda : (size_t)m0), g->lda, g->B, g->ldb,
                        g->beta, g->C + (size_t)m0 * g->ldc, g->ldc);
    } else {
        const int n0 = (int)((int64_t)g->N * ith / nth), n1 = (int)((int64_t)g->N * (ith + 1) / nth);
        if (n0 < n1)
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, n1 - n0, g->K, g->alpha, g->A, g->lda,
                        g->B + (g->tb == CblasNoTrans ? (size_t)n0 : (size_t)n0 * g->ldb), g->ldb, g->beta,
                        g->C + n0, g->ldc);
    }
}

static void sgemm_par(const sb_train_ws *ws, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                      float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    gemm_job g = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    sb_pool_run(ws->pool, gemm_worker, &g);
}

/* A row-wise step over the N rows of the micro-batch, split over the threads:
 * fn(j, r0, r1) with the job's operands. */
typedef struct rows_job rows_job;
struct rows_job {
    sb_train_ws *ws;
    void (*fn)(const rows_job *j, int r0, int r1);
    const sb_layer *L;
    layer_acts *a;
    const float *x; /* the layer's input, or an operand */
    float *y;       /* an output */
    const float *w; /* a norm's weight */
    uint8_t *mask;  /* a dropout mask */
    float *rstd;    /* a norm's 1/rms per row */
    int layer, mod, n;
    int rows;       /* rows to split: 0 for N */
    float scale;
    bool backward;
};

static void rows_worker(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    const int N = j->rows ? j->rows : j->ws->N, r0 = (int)((int64_t)N * ith / nth), r1 = (int)((int64_t)N * (ith + 1) / nth);
    if (r0 < r1) j->fn(j, r0, r1);
}

static void par_rows(rows_job *j) { sb_pool_run(j->ws->pool, rows_worker, j); }

/* ------------------------------------------------- LoRA-adapted linear -- */

/* PEFT's lora_dropout(x) (nn.Dropout: zero with probability p, else x / (1-p))
 * into ws->xd; the mask of (layer, module, row, column) comes from the
 * call's seed, so the recomputation of checkpointing draws the same one. */
static uint64_t dropout_seed(const sb_train_ws *ws, int layer, int mod) {
    return sb_rng_at(ws->drop_seed, (uint64_t)layer * SB_LORA_N_MOD + (uint64_t)mod);
}

static uint32_t dropout_p16(float p) { return (uint32_t)lrintf(p * 65536.0f); }

/* The forward pass draws the mask of (layer, module) into j->mask and
 * applies it: element i is kept when bits 16 (i % 4) .. of draw i / 4 are
 * >= p (in steps of 1/65536). */
static void dropout_rows(const rows_job *j, int r0, int r1) {
    const float p = j->ws->lora->cfg.dropout, keep = 1.0f / (1.0f - p);
    const uint64_t seed = dropout_seed(j->ws, j->layer, j->mod);
    const uint32_t p16 = dropout_p16(p);
    const size_t end = (size_t)r1 * (size_t)j->n;
    for (size_t i = (size_t)r0 * (size_t)j->n; i < end;) {
        const uint64_t r = sb_rng_at(seed, i >> 2);
        const size_t e = ((i | 3) + 1) < end ? (i | 3) + 1 : end;
        for (; i < e; i++) {
            const bool k = (uint32_t)((r >> ((i & 3) * 16)) & 0xFFFF) >= p16;
            j->mask[i] = k;
            j->y[i] = k ? j->x[i] * keep : 0.0f;
        }
    }
}

/* The backward pass re-applies the stored mask: y = x masked (add 0) or y +=
 * x masked (add 1, the backward of the mask itself). */
static void mask_rows(const rows_job *j, int r0, int r1) {
    const float keep = 1.0f / (1.0f - j->ws->lora->cfg.dropout);
    const uint8_t *m = j->mask;
    float *y = j->y;
    const float *x = j->x;
    const size_t end = (size_t)r1 * (size_t)j->n;
    /* (m * keep) * x: keep * x where kept, 0 where dropped, without a branch */
    if (j->mod)
        for (size_t i = (size_t)r0 * (size_t)j->n; i < end; i++) y[i] += (float)m[i] * keep * x[i];
    else
        for (size_t i = (size_t)r0 * (size_t)j->n; i < end; i++) y[i] = (float)m[i] * keep * x[i];
}

/* dropout(x) into ws->xd (x itself without dropout): drawn in the forward
 * pass, from a's stored mask in the backward pass. */
static const float *dropout_in(sb_train_ws *ws, int layer, int mod, const float *x, int n_in, layer_acts *a,
                               bool draw) {
    const float p = ws->lora->cfg.dropout;
    if (!ws->dropout_on || p <= 0) return x;
    rows_job j = {.ws = ws, .fn = draw ? dropout_rows : mask_rows, .x = x, .y = ws->xd, .mask = a->mask[mod],
                  .layer = layer, .mod = draw ? mod : 0, .n = n_in};
    par_rows(&j);
    return ws->xd;
}

/* y[:, 0:n_out] = x W^T + scale * (dropout(x) A^T) B^T, keeping u = dropout(x) A^T.
 * x (N, n_in) dense; y has row stride ldy. */
static void linear_fwd(sb_train_ws *ws, const sb_tensor *w, int layer, int mod, const float *x, float *y, int ldy,
                       layer_acts *a) {
    const int N = ws->N, n_in = (int)w->ne[0], n_out = (int)w->ne[1];
    sb_frozen_matmul(ws->fz, w, x, n_in, N, y, ldy, 0.0f);
    const sb_lora_mat *lm = &ws->lora->mats[(size_t)layer * SB_LORA_N_MOD + mod];
    if (!lm->A) return;
    const int r = ws->lora->cfg.r;
    const float *xd = dropout_in(ws, layer, mod, x, n_in, a, true);
    sgemm_par(ws, CblasNoTrans, CblasTrans, N, r, n_in, 1.0f, xd, n_in, lm->A, n_in, 0.0f, a->u[mod], r);
    sgemm_par(ws, CblasNoTrans, CblasTrans, N, n_out, r, ws->lora->scale, a->u[mod], r, lm->B, r, 1.0f, y, ldy);
}

/* Backward of linear_fwd for dy (N, n_out, stride lddy): dB += scale dy^T u,
 * du = scale dy B, dA += du^T dropout(x), dx (+)= dy W + dropout'(du A).
 * beta 0 writes dx, 1 adds to it; dx NULL: no input gradient is wanted. */
static void linear_bwd(sb_train_ws *ws, const sb_tensor *w, int layer, int mod, const float *x, const float *dy,
                       int lddy, float *dx, float beta, layer_acts *a) {
    const int N = ws->N, n_in = (int)w->ne[0], n_out = (int)w->ne[1];
    if (dx) sb_frozen_matmul_t(ws->fz, w, dy, lddy, N, dx, n_in, beta);
    sb_lora_mat *lm = &ws->lora->mats[(size_t)layer * SB_LORA_N_MOD + mod];
    if (!lm->A) return;
    const int r = ws->lora->cfg.r;
    const float s = ws->lora->scale;
    sgemm_par(ws, CblasTrans, CblasNoTrans, n_out, r, N, s, dy, lddy, a->u[mod], r, 1.0f, lm->dB, r);
    sgemm_par(ws, CblasNoTrans, CblasNoTrans, N, r, n_out, s, dy, lddy, lm->B, r, 0.0f, ws->du, r);
    const float *xd = dropout_in(ws, layer, mod, x, n_in, a, false);
    sgemm_par(ws, CblasTrans, CblasNoTrans, r, n_in, N, 1.0f, ws->du, r, xd, n_in, 1.0f, lm->dA, n_in);
    if (!dx) return;
    if (xd == x) {
        sgemm_par(ws, CblasNoTrans, CblasNoTrans, N, n_in, r, 1.0f, ws->du, r, lm->A, n_in, 1.0f, dx, n_in);
        return;
    }
    /* dropout backward: the same mask and 1/(1-p) (xd is x masked and scaled) */
    sgemm_par(ws, CblasNoTrans, CblasNoTrans, N, n_in, r, 1.0f, ws->du, r, lm->A, n_in, 0.0f, ws->tmp, n_in);
    rows_job j = {.ws = ws, .fn = mask_rows, .x = ws->tmp, .y = dx, .mask = a->mask[mod], .mod = 1, .n = n_in};
    par_rows(&j);
}

/* The fused q|k|v (or gate|up) projection as PEFT sees it: one module for
 * phi3, three (two) for llama writing column ranges of the same rows. */
static void qkv_fwd(sb_train_ws *ws, const sb_layer *L, int l, const float *x, float *y, layer_acts *a) {
    const sb_model_config *p = &ws->m->cfg;
    const int W = qkv_width(p), nq = p->n_head * p->head_dim, nkv = p->n_head_kv * p->head_dim;
    if (p->fused_qkv) {
        linear_fwd(ws, &L->wqkv, l, SB_LORA_QKV, x, y, W, a);
    } else {
        linear_fwd(ws, &L->wq, l, SB_LORA_Q, x, y, W, a);
        linear_fwd(ws, &L->wk, l, SB_LORA_K, x, y + nq, W, a);
        linear_fwd(ws, &L->wv, l, SB_LORA_V, x, y + nq + nkv, W, a);
    }
}

static void qkv_bwd(sb_train_ws *ws, const sb_layer *L, int l, const float *x, const float *dy, float *dx,
                    layer_acts *a) {
    const sb_model_config *p = &ws->m->cfg;
    const int W = qkv_width(p), nq = p->n_head * p->head_dim, nkv = p->n_head_kv * p->head_dim;
    if (p->fused_qkv) {
        linear_bwd(ws, &L->wqkv, l, SB_LORA_QKV, x, dy, W, dx, 0.0f, a);
    } else {
        linear_bwd(ws, &L->wq, l, SB_LORA_Q, x, dy, W, dx, 0.0f, a);
        linear_bwd(ws, &L->wk, l, SB_LORA_K, x, dy + nq, W, dx, 1.0f, a);
        linear_bwd(ws, &L->wv, l, SB_LORA_V, x, dy + nq + nkv, W, dx, 1.0f, a);
    }
}

static void gate_up_fwd(sb_train_ws *ws, const sb_layer *L, int l, const float *x, float *y, layer_acts *a) {
    const int F = ws->m->cfg.n_ff;
    if (ws->m->cfg.fused_gate_up) {
        linear_fwd(ws, &L->w_gate_up, l, SB_LORA_GATE_UP, x, y, 2 * F, a);
    } else {
        linear_fwd(ws, &L->w_gate, l, SB_LORA_GATE, x, y, 2 * F, a);
        linear_fwd(ws, &L->w_up, l, SB_LORA_UP, x, y + F, 2 * F, a);
    }
}

static void gate_up_bwd(sb_train_ws *ws, const sb_layer *L, int l, const float *x, const float *dy, float *dx,
                        layer_acts *a) {
    const int F = ws->m->cfg.n_ff;
    if (ws->m->cfg.fused_gate_up) {
        linear_bwd(ws, &L->w_gate_up, l, SB_LORA_GATE_UP, x, dy, 2 * F, dx, 0.0f, a);
    } else {
        linear_bwd(ws, &L->w_gate, l, SB_LORA_GATE, x, dy, 2 * F, dx, 0.0f, a);
        linear_bwd(ws, &L->w_up, l, SB_LORA_UP, x, dy + F, 2 * F, dx, 1.0f, a);
    }
}

/* ------------------------------------------------------------ attention -- */

/* Offset of sequence s's weights in P: Hq * sum of T^2 before it. */
static size_t p_offset(const sb_train_ws *ws, int s) {
    size_t off = 0;
    for (int i = 0; i < s; i++) off += (size_t)ws->b->seq_len[i] * (size_t)ws->b->seq_len[i];
    return off * (size_t)ws->m->cfg.n_head;
}

/* Causal attention by blocks of ATT_BLOCK query rows: block [t0, t1) reads
 * keys 0..t1 only, so the products skip the masked upper triangle beyond
 * the diagonal blocks (about half the work for T = 256). */
#define ATT_BLOCK 64

/* attn = softmax(q k^T * head_dim^-0.5 + causal/sliding mask) v of sequence
 * s, query heads of kv head g (query head h reads kv head h / n_rep,
 * repeat_kv). Row t of P holds its weights in 0..t, zeros after. */
static void attention_fwd_one(sb_train_ws *ws, layer_acts *a, int s, int g, size_t row0) {
    const sb_model_config *p = &ws->m->cfg;
    const int Hd = p->head_dim, nq = p->n_head * Hd, nkv = p->n_head_kv * Hd, W = qkv_width(p);
    const int n_rep = p->n_head / p->n_head_kv, win = p->sliding_window;
    const float scale = (float)(1.0 / sqrt((double)Hd));
    const int T = ws->b->seq_len[s];
    const float *q = a->qkv + row0 * W, *k = q + nq, *v = q + nq + nkv;
    float *P = a->P + p_offset(ws, s);
    for (int h = g * n_rep; h < (g + 1) * n_rep; h++) {
        float *Ph = P + (size_t)h * T * T;
        for (int b0 = 0; b0 < T; b0 += ATT_BLOCK) {
            const int b1 = b0 + ATT_BLOCK < T ? b0 + ATT_BLOCK : T;
            float *Pb = Ph + (size_t)b0 * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b1 - b0, b1, Hd, scale, q + (size_t)b0 * W + h * Hd,
                        W, k + g * Hd, W, 0.0f, Pb, T);
            for (int t = b0; t < b1; t++) {
                float *row = Ph + (size_t)t * T;
                int t0 = win > 0 && t - win + 1 > 0 ? t - win + 1 : 0;
                for (int j = 0; j < t0; j++) row[j] = 0;
                sb_softmax(row + t0, t - t0 + 1);
                for (int j = t + 1; j < T; j++) row[j] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b1 - b0, Hd, b1, 1.0f, Pb, T, v + g * Hd, W, 0.0f,
                        a->att + (row0 + b0) * nq + h * Hd, nq);
        }
    }
}

/* Backward of attention_fwd_one: from datt (N, Hq*Hd) into dqkv (N, Wqkv),
 * gradients of q and k after RoPE and of v; dP: (T, T) scratch. */
static void attention_bwd_one(sb_train_ws *ws, layer_acts *a, int s, int g, size_t row0, float *dP) {
    const sb_model_config *p = &ws->m->cfg;
    const int Hd = p->head_dim, nq = p->n_head * Hd, nkv = p->n_head_kv * Hd, W = qkv_width(p);
    const int n_rep = p->n_head / p->n_head_kv;
    const float scale = (float)(1.0 / sqrt((double)Hd));
    const int T = ws->b->seq_len[s];
    const float *q = a->qkv + row0 * W, *k = q + nq, *v = q + nq + nkv;
    float *dq = ws->dqkv + row0 * W, *dk = dq + nq, *dv = dq + nq + nkv;
    const float *P = a->P + p_offset(ws, s);
    const float *dO = ws->datt + row0 * nq;
    for (int h = g * n_rep; h < (g + 1) * n_rep; h++) {
        const float *Ph = P + (size_t)h * T * T;
        for (int b0 = 0; b0 < T; b0 += ATT_BLOCK) {
            const int b1 = b0 + ATT_BLOCK < T ? b0 + ATT_BLOCK : T, m = b1 - b0;
            const float *Pb = Ph + (size_t)b0 * T, *dOb = dO + (size_t)b0 * nq + h * Hd;
            float *dPb = dP + (size_t)b0 * T;
            /* dP = dO v^T ; dv += P^T dO (keys 0..b1) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, b1, Hd, 1.0f, dOb, nq, v + g * Hd, W, 0.0f, dPb,
                        T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b1, Hd, m, 1.0f, Pb, T, dOb, nq, 1.0f, dv + g * Hd,
                        W);
            /* softmax backward: dS = P * (dP - sum_j P dP), times the score scale (zero after t) */
            for (int t = b0; t < b1; t++) {
                const float *pr = Ph + (size_t)t * T;
                float *dr = dP + (size_t)t * T;
                double dot = 0;
                for (int j = 0; j <= t; j++) dot += (double)pr[j] * dr[j];
                for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - (float)dot) * scale;
                for (int j = t + 1; j < b1; j++) dr[j] = 0;
            }
            /* dq = dS k ; dk += dS^T q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, Hd, b1, 1.0f, dPb, T, k + g * Hd, W, 1.0f,
                        dq + (size_t)b0 * W + h * Hd, W);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b1, Hd, m, 1.0f, dPb, T, q + (size_t)b0 * W + h * Hd,
                        W, 1.0f, dk + g * Hd, W);
        }
    }
}

/* (sequence, kv head) pairs dealt round-robin to the threads: the query
 * heads sharing a kv head stay in one thread, which alone adds into its dk,
 * dv. */
typedef struct att_job {
    sb_train_ws *ws;
    layer_acts *a;
    bool backward;
} att_job;

static void att_worker(void *arg, int ith, int nth) {
    const att_job *j = arg;
    sb_train_ws *ws = j->ws;
    const int G = ws->m->cfg.n_head_kv, T = ws->max_seq;
    size_t row0 = 0;
    int task = 0;
    for (int s = 0; s < ws->b->n_seq; s++) {
        for (int g = 0; g < G; g++, task++) {
            if (task % nth != ith) continue;
            if (j->backward) attention_bwd_one(ws, j->a, s, g, row0, ws->dP_th + (size_t)ith * T * T);
            else attention_fwd_one(ws, j->a, s, g, row0);
        }
        row0 += (size_t)ws->b->seq_len[s];
    }
}

static void attention_fwd(sb_train_ws *ws, layer_acts *a) {
    att_job j = {ws, a, false};
    sb_pool_run(ws->pool, att_worker, &j);
}

static void attention_bwd(sb_train_ws *ws, layer_acts *a) {
    memset(ws->dqkv, 0, (size_t)ws->N * qkv_width(&ws->m->cfg) * sizeof(float));
    att_job j = {ws, a, true};
    sb_pool_run(ws->pool, att_worker, &j);
}

/* RoPE on the q and k parts of rows r0..r1 (position = row within its
 * sequence); j->x = the sin table, or its negation for the backward pass
 * (the rotation's transpose, scaled by the same attention factor). */
static void rope_part(const rows_job *j, int r0, int r1) {
    const sb_train_ws *ws = j->ws;
    const sb_model_config *p = &ws->m->cfg;
    const int Hd = p->head_dim, nq = p->n_head * Hd, W = qkv_width(p), R = p->n_rot / 2;
    for (int row = r0; row < r1; row++) {
        float *x = j->y + (size_t)row * W;
        const int t = ws->pos[row];
        const float *c = ws->cos_t + (size_t)t * R, *sn = j->x + (size_t)t * R;
        sb_rope_apply(x, p->n_head, Hd, p->n_rot, c, sn, p->rope_neox);
        sb_rope_apply(x + nq, p->n_head_kv, Hd, p->n_rot, c, sn, p->rope_neox);
    }
}

static void rope_rows(sb_train_ws *ws, float *qkv, const float *sin_t) {
    rows_job j = {.ws = ws, .fn = rope_part, .x = sin_t, .y = qkv};
    par_rows(&j);
}

/* --------------------------------------------------------------- layers -- */

/* Row-wise parts: y = RMSNorm(x) with its rstd (width n) */
static void norm_part(const rows_job *j, int r0, int r1) {
    const float eps = j->ws->m->cfg.rms_eps;
    for (int i = r0; i < r1; i++) {
        const float *x = j->x + (size_t)i * j->n;
        j->rstd[i] = sb_rmsnorm_rstd(x, j->n, eps);
        sb_rmsnorm(j->y + (size_t)i * j->n, x, j->w, j->n, eps);
    }
}

/* y += d RMSNorm(x) / dx ^T (tmp = the gradient of its output): y = ws->dx */
static void norm_bwd_part(const rows_job *j, int r0, int r1) {
    for (int i = r0; i < r1; i++)
        sb_rmsnorm_backward(j->y + (size_t)i * j->n, j->ws->dxn + (size_t)i * j->n, j->x + (size_t)i * j->n, j->w,
                            j->rstd[i], j->n);
}

static void add_part(const rows_job *j, int r0, int r1) {
    sb_add(j->y + (size_t)r0 * j->n, j->x + (size_t)r0 * j->n, (r1 - r0) * j->n);
}

/* h = silu(gate) * up; and its backward into dgu */
static void swiglu_part(const rows_job *j, int r0, int r1) {
    const int F = j->n;
    for (int i = r0; i < r1; i++)
        sb_swiglu(j->a->h + (size_t)i * F, j->a->gu + (size_t)i * 2 * F, j->a->gu + (size_t)i * 2 * F + F, F);
}

static void swiglu_bwd_part(const rows_job *j, int r0, int r1) {
    const int F = j->n;
    for (int i = r0; i < r1; i++) {
        const float *gu = j->a->gu + (size_t)i * 2 * F;
        float *dgu = j->ws->dgu + (size_t)i * 2 * F;
        sb_swiglu_backward(dgu, dgu + F, j->ws->dh + (size_t)i * F, gu, gu + F, F);
    }
}

static void run_rows(sb_train_ws *ws, void (*fn)(const rows_job *, int, int), layer_acts *a, const float *x, float *y,
                     const float *w, float *rstd, int n) {
    rows_job j = {.ws = ws, .fn = fn, .a = a, .x = x, .y = y, .w = w, .rstd = rstd, .n = n};
    par_rows(&j);
}

/* One decoder layer from x (N, D) to out (N, D), activations into a. */
static void layer_fwd(sb_train_ws *ws, int l, const float *x, float *out, layer_acts *a) {
    const sb_model *m = ws->m;
    const sb_model_config *p = &m->cfg;
    const sb_layer *L = &m->layers[l];
    const int D = p->n_embd, F = p->n_ff;

    /* h = input_layernorm(x) */
    run_rows(ws, norm_part, a, x, a->xn1, L->attn_norm, a->rstd1, D);
    /* q, k, v = qkv_proj(h)  |  q_proj(h), k_proj(h), v_proj(h); then RoPE */
    qkv_fwd(ws, L, l, a->xn1, a->qkv, a);
    rope_rows(ws, a->qkv, ws->sin_t);
    attention_fwd(ws, a);
    /* x2 = x + o_proj(attn) */
    linear_fwd(ws, &L->wo, l, SB_LORA_O, a->att, a->x2, D, a);
    run_rows(ws, add_part, a, x, a->x2, NULL, NULL, D);
    /* h = post_attention_layernorm(x2) */
    run_rows(ws, norm_part, a, a->x2, a->xn2, L->ffn_norm, a->rstd2, D);
    /* gate, up = gate_up_proj(h).chunk(2)  |  gate_proj(h), up_proj(h) */
    gate_up_fwd(ws, L, l, a->xn2, a->gu, a);
    run_rows(ws, swiglu_part, a, NULL, NULL, NULL, NULL, F);
    /* out = x2 + down_proj(silu(gate) * up) */
    linear_fwd(ws, &L->w_down, l, SB_LORA_DOWN, a->h, out, D, a);
    run_rows(ws, add_part, a, a->x2, out, NULL, NULL, D);
}

/* Backward of layer l: ws->dx holds d(out) on entry, d(x) on return (for
 * l > 0; layer 0 leaves the residual part only). */
static void layer_bwd(sb_train_ws *ws, int l, const float *x, layer_acts *a) {
    const sb_model *m = ws->m;
    const sb_model_config *p = &m->cfg;
    const sb_layer *L = &m->layers[l];
    const int D = p->n_embd, F = p->n_ff;

    /* down_proj, SwiGLU, gate/up */
    linear_bwd(ws, &L->w_down, l, SB_LORA_DOWN, a->h, ws->dx, D, ws->dh, 0.0f, a);
    run_rows(ws, swiglu_bwd_part, a, NULL, NULL, NULL, NULL, F);
    gate_up_bwd(ws, L, l, a->xn2, ws->dgu, ws->dxn, a);
    run_rows(ws, norm_bwd_part, a, a->x2, ws->dx, L->ffn_norm, a->rstd2, D);
    /* o_proj, attention, RoPE, qkv */
    linear_bwd(ws, &L->wo, l, SB_LORA_O, a->att, ws->dx, D, ws->datt, 0.0f, a);
    attention_bwd(ws, a);
    rope_rows(ws, ws->dqkv, ws->nsin_t);
    /* the first layer's input comes from the frozen embeddings: its gradient
     * is not needed, so neither is dY W of qkv nor the norm's backward */
    qkv_bwd(ws, L, l, a->xn1, ws->dqkv, l > 0 ? ws->dxn : NULL, a);
    if (l > 0) run_rows(ws, norm_bwd_part, a, x, ws->dx, L->attn_norm, a->rstd1, D);
}

/* ----------------------------------------------------------------- step -- */

/* Cross-entropy of logits rows r0..r1 (row j of ws->logits is batch row
 * ws->rows[j]) into ws->row_loss, the softmax by gemm.h's row kernel:
 * -log p[target] = log(sum exp(z - max)) + max - z[target], where the sum is
 * 1 / p[argmax]. With backward the row becomes its gradient (p - onehot) *
 * scale; rows without a target become zero. */
static void xent_part(const rows_job *j, int r0, int r1) {
    sb_train_ws *ws = j->ws;
    const int V = ws->m->cfg.n_vocab;
    for (int r = r0; r < r1; r++) {
        float *z = ws->logits + (size_t)r * V;
        const int tgt = ws->b->targets[ws->rows[r]];
        ws->row_loss[r] = 0;
        if (tgt < 0) {
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        const int64_t am = sb_argmax(z, V);
        const float mx = z[am], zt = z[tgt];
        sb_softmax_rows(z, 1, V, V, 1.0f, NULL, 0);
        ws->row_loss[r] = -log((double)z[am]) + (double)mx - (double)zt;
        if (!j->backward) continue;
        for (int c = 0; c < V; c++) z[c] *= j->scale;
        z[tgt] -= j->scale;
    }
}

static void rope_tables(sb_train_ws *ws, int max_len) {
    const sb_model *m = ws->m;
    const sb_model_config *p = &m->cfg;
    const int R = p->n_rot / 2;
    /* LongRoPE: the set transformers picks for max(position_ids) + 1 */
    const float *factor = !p->longrope ? NULL : max_len > p->n_ctx_orig ? m->rope_long : m->rope_short;
    sb_rope_inv_freq(ws->inv_freq, p->n_rot, p->rope_theta, factor);
    for (int t = 0; t < max_len; t++) {
        sb_rope_table(ws->cos_t + (size_t)t * R, ws->sin_t + (size_t)t * R, ws->inv_freq, p->n_rot, t,
                      p->rope_attn_factor);
        for (int i = 0; i < R; i++) ws->nsin_t[(size_t)t * R + i] = -ws->sin_t[(size_t)t * R + i];
    }
}

sb_status sb_train_step(sb_train_ws *ws, const sb_batch *b, bool backward, float grad_scale, uint64_t dropout_seed,
                        double *loss_sum, int *n_target, float *logits, sb_err *err) {
    const sb_model *m = ws->m;
    const sb_model_config *p = &m->cfg;
    const int D = p->n_embd, V = p->n_vocab, Ln = p->n_layer;
    int N = 0, max_len = 0;
    for (int s = 0; s < b->n_seq; s++) {
        if (b->seq_len[s] < 1 || b->seq_len[s] > ws->max_seq)
            return sb_err_set(err, SB_ERR_RANGE, "sequence %d has %d tokens (allowed 1..%d)", s, b->seq_len[s],
                              ws->max_seq);
        N += b->seq_len[s];
        if (b->seq_len[s] > max_len) max_len = b->seq_len[s];
        if (N > ws->max_rows)
            return sb_err_set(err, SB_ERR_RANGE, "micro-batch of more than %d rows", ws->max_rows);
    }
    if (N == 0) return sb_err_set(err, SB_ERR_INVALID, "empty micro-batch");
    if (backward && !ws->lora->grads) return sb_err_set(err, SB_ERR_INVALID, "the adapter has no gradient slab");
    for (int i = 0; i < N; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= V || b->targets[i] >= V)
            return sb_err_set(err, SB_ERR_RANGE, "token %d or target %d at row %d is out of the vocabulary 0..%d",
                              b->tokens[i], b->targets[i], i, V - 1);
    ws->b = b, ws->N = N, ws->drop_seed = dropout_seed, ws->dropout_on = backward;
    rope_tables(ws, max_len);
    for (int s = 0, row = 0; s < b->n_seq; s++)
        for (int t = 0; t < b->seq_len[s]; t++, row++) ws->pos[row] = t, ws->seq_of[row] = s;

    /* x = embed_tokens(input_ids); the layers */
    for (int i = 0; i < N; i++) sb_get_row(&m->tok_embd, b->tokens[i], ws->x_layer + (size_t)i * D);
    for (int l = 0; l < Ln; l++)
        layer_fwd(ws, l, ws->x_layer + (size_t)l * N * D, ws->x_layer + (size_t)(l + 1) * N * D,
                  &ws->acts[ws->checkpoint ? 0 : l]);
    /* logits = lm_head(norm(x)) of the rows with a target (all rows if asked for) */
    const float *xL = ws->x_layer + (size_t)Ln * N * D;
    run_rows(ws, norm_part, NULL, xL, ws->xf, m->output_norm, ws->rstdf, D);
    int M = 0;
    for (int i = 0; i < N; i++)
        if (logits || b->targets[i] >= 0) ws->rows[M++] = i;
    float *xg = ws->tmp; /* (M, D) gathered rows */
    for (int j = 0; j < M; j++) memcpy(xg + (size_t)j * D, ws->xf + (size_t)ws->rows[j] * D, (size_t)D * sizeof(float));
    if (M > 0) sb_frozen_matmul(ws->fz, &m->output, xg, D, M, ws->logits, V, 0.0f);
    if (logits) memcpy(logits, ws->logits, (size_t)N * V * sizeof(float));
    /* loss = cross_entropy(logits, targets), summed in row order; dlogits = (softmax - onehot) * grad_scale */
    rows_job cj = {.ws = ws, .fn = xent_part, .rows = M, .scale = grad_scale, .backward = backward};
    if (M > 0) par_rows(&cj);
    double loss = 0;
    int nt = 0;
    for (int j = 0; j < M; j++)
        if (b->targets[ws->rows[j]] >= 0) loss += ws->row_loss[j], nt++;
    if (loss_sum) *loss_sum = loss;
    if (n_target) *n_target = nt;
    if (!backward) return SB_OK;

    /* d(norm(x)) for the gathered rows, scattered; then model.norm backward */
    memset(ws->dxn, 0, (size_t)N * D * sizeof(float));
    if (M > 0) sb_frozen_matmul_t(ws->fz, &m->output, ws->logits, V, M, xg, D, 0.0f);
    for (int j = 0; j < M; j++) memcpy(ws->dxn + (size_t)ws->rows[j] * D, xg + (size_t)j * D, (size_t)D * sizeof(float));
    memset(ws->dx, 0, (size_t)N * D * sizeof(float));
    run_rows(ws, norm_bwd_part, NULL, xL, ws->dx, m->output_norm, ws->rstdf, D);
    for (int l = Ln - 1; l >= 0; l--) {
        const float *x = ws->x_layer + (size_t)l * N * D;
        layer_acts *a = &ws->acts[ws->checkpoint ? 0 : l];
        if (ws->checkpoint) layer_fwd(ws, l, x, ws->tmp, a); /* recompute; the output is not needed */
        layer_bwd(ws, l, x, a);
    }
    return SB_OK;
}
