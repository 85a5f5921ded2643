/*
 * forward.c - the decoder's forward pass over a KV cache, one token at a
 * time, in the order of transformers' Phi3DecoderLayer / LlamaDecoderLayer
 * (the line each block implements is written above it).
 *
 * An sb_ctx holds one sequence: post-RoPE keys and values of every cached
 * position (f32), the tokens behind them (to rebuild keys when LongRoPE
 * switches factor sets) and the activations of the token in flight, all in
 * one slab allocated by sb_ctx_new. sb_decode allocates nothing.
 *
 * Dimension letters: D n_embd, V n_vocab, Hq/Hkv heads, Hd head_dim,
 * F n_ff, T n_ctx, L n_layer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model_impl.h"
#include "base/threadpool.h"
#include "model/lora.h"
#include "tensor/matvec.h"
#include "tensor/attn.h"
#include "tensor/ops.h"
#include "tensor/pgemm.h"

struct sb_ctx {
    const sb_model *m;
    int n_ctx;       /* T */
    int n_past;      /* positions 0..n_past-1 are cached */
    int rope_long;   /* factor set inv_freq holds: -1 none yet, 0 short, 1 long */
    /* activations of the current token */
    float *x;        /* (D) residual stream */
    float *xb;       /* (D) normed input of a sub-block */
    float *xb2;      /* (D) output of a sub-block */
    float *qkv;      /* (Hq*Hd + 2*Hkv*Hd) q | k | v */
    float *att_out;  /* (Hq*Hd) attention output, heads concatenated */
    float *att;      /* (T) attention weights of one head */
    float *hb;       /* (2F) gate | up, then silu(gate)*up in the first F */
    float *inv_freq; /* (n_rot/2) */
    float *rope_cos; /* (n_rot/2) for the current position, times the attention factor */
    float *rope_sin; /* (n_rot/2) */
    float *key_cache;   /* (L, T, Hkv*Hd) after RoPE */
    float *value_cache; /* (L, T, Hkv*Hd) */
    int32_t *tokens;    /* (T) token at each cached position */
    /* prompt batches: the same activations for B tokens at once (rows) */
    float *bx, *bxb, *bxb2; /* (B, D) */
    float *bq, *bk, *bv;    /* (B, Hq*Hd), (B, Hkv*Hd), (B, Hkv*Hd) */
    float *batt;            /* (B, Hq*Hd) */
    float *bhb;             /* (B, 2F) */
    float *wtile;           /* (MAX_THREADS, SB_MATMUL_TILE, max input width) dequantized weight rows */
    size_t wtile_stride;    /* floats per thread in wtile */
    float *batt_w;          /* (MAX_THREADS, ATT_ROWS, T) attention weights, one block per thread */
    float *bslab;
    uint8_t *pos_long;  /* (T) 1 if that position's keys used LongRoPE's long factors */
    float *slab;
    sb_pool *pool;      /* threads for the matrix-vector products (may be NULL) */
    void *xq;           /* (SMALL_BATCH, xq_stride bytes) the current product's input rows
                           quantized for the integer kernels */
    size_t xq_stride;
    bool exact;         /* decode with float activations (sb_matvec) instead */
    const sb_lora *lora[SB_CTX_MAX_ADAPTERS]; /* adapters added to the projections (borrowed) */
    int n_lora;
    bool prefill_int8;  /* fast mode: long prompts through the integer panels too (SABIO_PREFILL=float: no) */
};

/* ------------------------------------------------------------ context -- */

#define PREFILL_BATCH 128 /* B: prompt tokens pushed through the matrices together */
#define MAX_THREADS 8    /* threads a context uses at most */
#define SMALL_BATCH 16   /* prompt batches up to this size use the integer kernels (fast mode) */
#define ATT_ROWS 32      /* prompt rows per block of attention (sb_attn_causal) */

sb_ctx *sb_ctx_new(const sb_model *m, int n_ctx, sb_err *err) {
    const sb_model_config *p = &m->cfg;
    if (n_ctx <= 0 || n_ctx > p->n_ctx_train) {
        sb_err_set(err, SB_ERR_RANGE,
                   "context size %d is out of range 1..%d (the model's trained context, %s)",
                   n_ctx, p->n_ctx_train,
                   m->source == SB_SRC_GGUF ? "<arch>.context_length" : "max_position_embeddings");
        return NULL;
    }
    size_t D = (size_t)p->n_embd, Hd = (size_t)p->head_dim;
    size_t nq = (size_t)p->n_head * Hd, nkv = (size_t)p->n_head_kv * Hd;
    size_t F = (size_t)p->n_ff, R = (size_t)p->n_rot / 2, T = (size_t)n_ctx;
    size_t cache = 0, total = 0;
    bool ok = sb_mul_ok((size_t)p->n_layer * T, nkv, &cache) &&
              sb_mul_ok(cache, 2, &total) &&
              sb_add_ok(total, 3 * D + (nq + 2 * nkv) + nq + T + 2 * F + 3 * R, &total);
    sb_ctx *c = sb_calloc(1, sizeof *c);
    float *slab = ok ? sb_calloc(total, sizeof(float)) : NULL;
    int32_t *tokens = sb_calloc(T, sizeof(int32_t));
    uint8_t *pos_long = sb_calloc(T, 1);
    if (!c || !slab || !tokens || !pos_long) {
        free(c), free(slab), free(tokens), free(pos_long);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory for a context of %d positions (%.1f MiB)",
                   n_ctx, ok ? (double)total * 4 / (1 << 20) : INFINITY);
        return NULL;
    }
    c->m = m;
    c->n_ctx = n_ctx;
    c->rope_long = -1;
    const char *exact = getenv("SABIO_EXACT"); /* "1": float activations by default (measurements) */
    c->exact = exact && strcmp(exact, "0") != 0;
    /* Long prompts quantize the matrices' inputs to 8 bits like decoding
     * (tensor/pgemm.h panels, where the CPU and weight type have them), as
     * llama.cpp does; SABIO_PREFILL=float or sb_ctx_set_prompt_float keeps
     * float activations (dequantized tiles + sgemm) for them. Exact mode
     * uses float everywhere. */
    const char *prefill = getenv("SABIO_PREFILL");
    c->prefill_int8 = !(prefill && !strcmp(prefill, "float"));
    c->slab = slab;
    c->tokens = tokens;
    c->pos_long = pos_long;
    float *s = slab;
    c->key_cache = s, s += cache;
    c->value_cache = s, s += cache;
    c->x = s, s += D;
    c->xb = s, s += D;
    c->xb2 = s, s += D;
    c->qkv = s, s += nq + 2 * nkv;
    c->att_out = s, s += nq;
    c->att = s, s += T;
    c->hb = s, s += 2 * F;
    c->inv_freq = s, s += R;
    c->rope_cos = s, s += R;
    c->rope_sin = s, s += R;
    size_t B = PREFILL_BATCH, W = D > nq ? D : nq;
    if (F > W) W = F;
    size_t bn = B * (3 * D + nq + 2 * nkv + nq + 2 * F) + (size_t)MAX_THREADS * SB_MATMUL_TILE * W +
                (size_t)MAX_THREADS * ATT_ROWS * T;
    c->bslab = sb_calloc(bn, sizeof(float));
    if (!c->bslab) {
        sb_ctx_free(c);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory for the prompt batch buffers");
        return NULL;
    }
    s = c->bslab;
    c->bx = s, s += B * D;
    c->bxb = s, s += B * D;
    c->bxb2 = s, s += B * D;
    c->bq = s, s += B * nq;
    c->bk = s, s += B * nkv;
    c->bv = s, s += B * nkv;
    c->batt = s, s += B * nq;
    c->bhb = s, s += B * 2 * F;
    c->batt_w = s, s += (size_t)MAX_THREADS * ATT_ROWS * T;
    c->wtile = s;
    c->wtile_stride = (size_t)SB_MATMUL_TILE * W;
    c->xq_stride = sb_act_bytes(SB_Q8_0, (int64_t)W + 256) + sb_act_bytes(SB_Q8_K, (int64_t)W + 256);
    if (sb_pgemm_act_bytes((int64_t)W) > c->xq_stride) c->xq_stride = sb_pgemm_act_bytes((int64_t)W);
    c->xq = sb_calloc(PREFILL_BATCH, c->xq_stride); /* SMALL_BATCH rows for sb_matmul_q, all for sb_pgemm */
    if (!c->xq) {
        sb_ctx_free(c);
        sb_err_set(err, SB_ERR_NOMEM, "out of memory for the quantized activations");
        return NULL;
    }
    int nt = (int)sysconf(_SC_NPROCESSORS_ONLN);
    c->pool = sb_pool_new(nt > MAX_THREADS ? MAX_THREADS : nt); /* NULL: one thread */
    sb_blas_single_thread(); /* products are split over our own threads */
    return c;
}

sb_status sb_ctx_set_threads(sb_ctx *c, int n_threads, sb_err *err) {
    if (n_threads < 1 || n_threads > MAX_THREADS)
        return sb_err_set(err, SB_ERR_RANGE, "threads: %d is not in 1..%d", n_threads, MAX_THREADS);
    if (sb_pool_size(c->pool) == n_threads) return SB_OK;
    sb_pool_free(c->pool);
    c->pool = n_threads > 1 ? sb_pool_new(n_threads) : NULL;
    if (n_threads > 1 && !c->pool) return sb_err_set(err, SB_ERR_NOMEM, "cannot start %d threads", n_threads);
    return SB_OK;
}

sb_pool *sb_ctx_pool(const sb_ctx *c) { return c->pool; }

void sb_ctx_free(sb_ctx *c) {
    if (!c) return;
    sb_pool_free(c->pool);
    free(c->slab);
    free(c->bslab);
    free(c->xq);
    free(c->tokens);
    free(c->pos_long);
    free(c);
}

void sb_ctx_set_exact(sb_ctx *c, bool exact) { c->exact = exact; }

void sb_ctx_set_prompt_float(sb_ctx *c, bool on) { c->prefill_int8 = !on; }

sb_status sb_ctx_set_adapters(sb_ctx *c, const sb_lora *const *adapters, int n, sb_err *err) {
    if (n < 0 || n > SB_CTX_MAX_ADAPTERS)
        return sb_err_set(err, SB_ERR_RANGE, "%d adapters (at most %d)", n, SB_CTX_MAX_ADAPTERS);
    for (int i = 0; i < n; i++)
        if (adapters[i]->n_layer != c->m->cfg.n_layer || strcmp(adapters[i]->arch, c->m->cfg.arch))
            return sb_err_set(err, SB_ERR_INVALID, "adapter %d is for a %d-layer %s model, not this %d-layer %s",
                              i, adapters[i]->n_layer, adapters[i]->arch, c->m->cfg.n_layer, c->m->cfg.arch);
    for (int i = 0; i < n; i++) c->lora[i] = adapters[i];
    c->n_lora = n;
    return SB_OK;
}

/* LoRA: y[:, 0..o1-o0) += the adapters' outputs o0..o1 of module mod for n rows x. */
static void lora(const sb_ctx *c, int l, int mod, const float *x, int n, float *y, int64_t ldy, int o0, int o1) {
    for (int i = 0; i < c->n_lora; i++) sb_lora_apply(c->lora[i], l, mod, x, n, y, ldy, o0, o1);
}

int sb_ctx_n_past(const sb_ctx *c) { return c->n_past; }
int sb_ctx_n_ctx(const sb_ctx *c) { return c->n_ctx; }

void sb_ctx_truncate(sb_ctx *c, int n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < c->n_past) c->n_past = n_keep;
}

/* --------------------------------------------------------------- RoPE -- */

/* The factor set of LongRoPE (short or long), or none. */
static void set_rope_freqs(sb_ctx *c, int use_long) {
    if (c->rope_long == use_long) return;
    const sb_model *m = c->m;
    const sb_model_config *p = &m->cfg;
    const float *factor = !p->longrope ? NULL : use_long ? m->rope_long : m->rope_short;
    sb_rope_inv_freq(c->inv_freq, p->n_rot, p->rope_theta, factor);
    c->rope_long = use_long;
}

/* ------------------------------------------------------------ forward -- */

/* y = W x with the rows split over the context's threads; each row is
 * computed by one thread in the same order, so results do not depend on the
 * thread count. Quantized weights read x quantized once here (sb_matvec_q)
 * unless the context is exact. */
typedef struct mv_task {
    const sb_tensor *w;
    const float *x;
    const void *xq; /* NULL: float path */
    float *y;
    int64_t n;
    int64_t next; /* rows handed out so far past the static shares (atomic; mv_worker) */
    bool two;     /* xq holds two-level activations (sb_matvec_q2: the logits, mv_logits) */
} mv_task;

static void mv_rows(const mv_task *t, int64_t r0, int64_t r1) {
    if (t->two) sb_matvec_q2(t->w, t->xq, t->y, r0, r1);
    else if (t->xq) sb_matvec_q(t->w, t->xq, t->y, r0, r1);
    else sb_matvec(t->w, t->x, t->y, r0, r1);
}

/* Rows split as "guided" scheduling does: every thread first takes its own
 * static share of 3/4 of the rows (long contiguous runs for the prefetcher),
 * then the last quarter goes out in chunks of GUIDE rows to whichever thread
 * is free, so a thread slowed by its memory bandwidth or by the scheduler
 * does not keep the other waiting at the barrier. A row is computed the
 * same way whichever thread takes it. */
#define GUIDE 64
static void mv_worker(void *arg, int ith, int nth) {
    mv_task *t = arg;
    int64_t stat = t->n * 3 / 4 / (GUIDE * nth) * (GUIDE * nth); /* a multiple of GUIDE per thread */
    if (nth == 1 || t->n < 4 * GUIDE * nth) stat = t->n;             /* small: static only */
    const int64_t per = (stat + nth - 1) / nth, r0 = (int64_t)ith * per, r1 = r0 + per < stat ? r0 + per : stat;
    if (r0 < r1) mv_rows(t, r0, r1);
    for (;;) {
        const int64_t a = stat + __atomic_fetch_add(&t->next, GUIDE, __ATOMIC_RELAXED);
        if (a >= t->n) break;
        mv_rows(t, a, a + GUIDE < t->n ? a + GUIDE : t->n);
    }
}

static void mv_as(sb_ctx *c, const sb_tensor *w, const float *x, float *y, int64_t n, int act) {
    mv_task t = {w, x, NULL, y, n, 0, false};
    if (act != SB_F32) {
        sb_act_quantize(act, x, c->xq, w->ne[0]);
        t.xq = c->xq;
    }
    if (n < 256 || !c->pool) mv_rows(&t, 0, n);
    else sb_pool_run(c->pool, mv_worker, &t);
}

static void mv(sb_ctx *c, const sb_tensor *w, const float *x, float *y, int64_t n) {
    mv_as(c, w, x, y, n, c->exact ? SB_F32 : sb_act_type(w->type));
}

/* Two or three products of the same input (q, k, v; gate, up) in one run of
 * the pool: one barrier instead of one each (a decode step of SmolLM2 had
 * eight per layer). Each matrix's rows are split over the threads as mv()
 * splits them, so every y is what mv() writes. x is quantized once per
 * activation type, into its own row of c->xq. */
typedef struct mv_group {
    mv_task t[3];
    int count;
} mv_group;

static void mv_group_worker(void *arg, int ith, int nth) {
    mv_group *g = arg;
    for (int k = 0; k < g->count; k++) mv_worker(&g->t[k], ith, nth);
}

static void mv_multi(sb_ctx *c, const float *x, int count, const sb_tensor *const w[], float *const y[], const int64_t n[]) {
    mv_group g = {.count = count};
    int acts[3], slots = 0;
    int64_t rows = 0;
    for (int k = 0; k < count; k++) {
        const int act = c->exact ? SB_F32 : sb_act_type(w[k]->type);
        g.t[k] = (mv_task){w[k], x, NULL, y[k], n[k], 0, false};
        rows += n[k];
        acts[k] = act;
        if (act == SB_F32) continue;
        for (int j = 0; j < k && !g.t[k].xq; j++)
            if (acts[j] == act) g.t[k].xq = g.t[j].xq;
        if (!g.t[k].xq) {
            void *buf = (uint8_t *)c->xq + (size_t)slots++ * c->xq_stride;
            sb_act_quantize(act, x, buf, w[k]->ne[0]);
            g.t[k].xq = buf;
        }
    }
    if (rows < 256 || !c->pool)
        for (int k = 0; k < count; k++) mv_rows(&g.t[k], 0, n[k]);
    else sb_pool_run(c->pool, mv_group_worker, &g);
}

/* The logits: what the sampler reads. The final hidden state's outliers
 * make 8-bit blocks lose most (SmolLM2: up to 0.42 on logits up to 39 from
 * lm_head alone, enough to change a greedy answer), so fast mode gives a
 * Q8_0 or Q6_K lm_head two-level activations (sb_matvec_q2: the block's
 * 8-bit rounding plus its error rounded again with 1/254 of the step; per
 * element within 1/64516 of the block's largest |x|, 1/254 of one level's
 * error, bound tested in test_kernels). Measured against float activations
 * (sb_matvec), the largest logit difference: SmolLM2 (Q8_0) 0.0017 (one
 * level: 0.42), Phi-3-mini random weights Q6_K 1.7e-4, Q8_0 1.1e-4 (one
 * level: 0.037, 0.030). Speed: Q6_K 15 GB/s a thread (float: 7; one level:
 * 21), Q8_0 20 (13; 25); decode of the Phi-3-mini Q4_0 file 1-5% faster
 * (median about 2.5%) at 2 threads, Q8_0 about 2.5% (bench/infer -n 32,
 * six and three alternated A/B pairs, noisy host). Other types, exact mode
 * and a prompt's all-position logits keep float activations (sb_matvec).
 * Rows split over the threads as mv() splits them; xq (2 blocks per block
 * of D) fits in c->xq's first rows. */

static void mv_logits(sb_ctx *c, const sb_tensor *w, const float *x, float *y, int64_t n) {
    if (c->exact || !sb_act2_bytes(w->type, w->ne[0])) {
        mv_as(c, w, x, y, n, SB_F32);
        return;
    }
    sb_act2_quantize(w->type, x, c->xq, w->ne[0]);
    mv_task t = {w, x, c->xq, y, n, 0, true};
    if (n < 256 || !c->pool) mv_rows(&t, 0, n);
    else sb_pool_run(c->pool, mv_worker, &t);
}

/* Per-row steps of a prompt batch (norms, SwiGLU, activation quantizing),
 * rows split over the threads; each row is computed alike in any thread. */
typedef struct rows_task {
    int op; /* ROW_NORM, ROW_SWIGLU, ROW_QUANT */
    int n;
    const float *x;
    float *out;
    const float *weight; /* ROW_NORM: the norm's weight */
    float eps;
    const sb_tensor *w; /* ROW_QUANT: the product's weight */
    void *xq;
    size_t xq_stride;
    int width; /* D, F, or the product's input width */
} rows_task;
enum { ROW_NORM, ROW_SWIGLU, ROW_QUANT };

static void rows_worker(void *arg, int ith, int nth) {
    const rows_task *t = arg;
    const int per = (t->n + nth - 1) / nth, b1 = (ith + 1) * per < t->n ? (ith + 1) * per : t->n;
    const size_t W = (size_t)t->width;
    for (int b = ith * per; b < b1; b++) {
        if (t->op == ROW_NORM) sb_rmsnorm(t->out + b * W, t->x + b * W, t->weight, t->width, t->eps);
        else if (t->op == ROW_SWIGLU) sb_swiglu(t->out + 2 * b * W, t->x + 2 * b * W, t->x + (2 * b + 1) * W, t->width);
        else sb_pgemm_quantize(t->w->type, t->x + b * W, (sb_q8p *)(void *)((uint8_t *)t->xq + b * t->xq_stride), t->width);
    }
}

/* out row b = rmsnorm(x row b) * weight for b < n (D wide) */
static void norm_rows(sb_ctx *c, float *out, const float *x, const float *weight, int n) {
    rows_task t = {.op = ROW_NORM, .n = n, .x = x, .out = out, .weight = weight, .eps = c->m->cfg.rms_eps,
                   .width = c->m->cfg.n_embd};
    sb_pool_run(c->pool, rows_worker, &t);
}

/* Y = X W^T for B rows, output columns split over the threads in whole
 * tiles; each thread dequantizes into its own tile buffer. */
typedef struct mm_task {
    sb_ctx *c;
    const sb_tensor *w;
    const float *x;
    int n;
    float *y;
    int64_t ldy;
} mm_task;

static void mm_worker(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int64_t tiles = (t->w->ne[1] + SB_MATMUL_TILE - 1) / SB_MATMUL_TILE, per = (tiles + nth - 1) / nth;
    int64_t r0 = (int64_t)ith * per * SB_MATMUL_TILE, r1 = r0 + per * SB_MATMUL_TILE;
    if (r1 > t->w->ne[1]) r1 = t->w->ne[1];
    sb_matmul_rows(t->w, t->x, t->n, t->y, t->ldy, t->c->wtile + (size_t)ith * t->c->wtile_stride, r0, r1);
}

/* Short batches in fast mode: the rows quantized once, each weight row
 * dotted with all of them (sb_matmul_q) -- cheaper than dequantizing every
 * weight for sgemm, and the same dots as decoding one token at a time. */
typedef struct mmq_task {
    const sb_tensor *w;
    const void *xq;
    size_t xq_stride;
    int n;
    float *y;
    int64_t ldy;
} mmq_task;

static void mmq_worker(void *arg, int ith, int nth) {
    const mmq_task *t = arg;
    const int64_t rows = t->w->ne[1], per = (rows + nth - 1) / nth, r0 = (int64_t)ith * per;
    const int64_t r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 < r1) sb_matmul_q(t->w, t->xq, t->xq_stride, t->n, t->y, t->ldy, r0, r1);
}

/* Long batches in fast mode: the rows quantized once, the weights read in
 * panels of 16 rows (tensor/pgemm.h), output columns split over the threads
 * in whole panels; each thread builds its panels in its tile buffer. */
typedef struct pg_task {
    sb_ctx *c;
    const sb_tensor *w;
    int n, level;
    float *y;
    int64_t ldy;
} pg_task;

static void pg_worker(void *arg, int ith, int nth) {
    const pg_task *t = arg;
    const int64_t rows = t->w->ne[1], panels = (rows + SB_PGEMM_ROWS - 1) / SB_PGEMM_ROWS;
    const int64_t per = (panels + nth - 1) / nth, r0 = (int64_t)ith * per * SB_PGEMM_ROWS;
    const int64_t r1 = r0 + per * SB_PGEMM_ROWS < rows ? r0 + per * SB_PGEMM_ROWS : rows;
    if (r0 < r1)
        sb_pgemm(t->w, t->c->xq, t->c->xq_stride, t->n, t->y, t->ldy, r0, r1,
                 t->c->wtile + (size_t)ith * t->c->wtile_stride, t->level);
}

static void mm_as(sb_ctx *c, const sb_tensor *w, const float *x, int n, float *y, int64_t ldy, int act) {
    const int level = act != SB_F32 && n > SMALL_BATCH && c->prefill_int8 ? sb_pgemm_level(w->type) : -1;
    if (level >= 0) {
        rows_task q = {.op = ROW_QUANT, .n = n, .x = x, .w = w, .xq = c->xq, .xq_stride = c->xq_stride,
                       .width = (int)w->ne[0]};
        sb_pool_run(c->pool, rows_worker, &q);
        pg_task t = {c, w, n, level, y, ldy};
        sb_pool_run(c->pool, pg_worker, &t);
        return;
    }
    if (act != SB_F32 && n <= SMALL_BATCH) {
        for (int b = 0; b < n; b++)
            sb_act_quantize(act, x + (size_t)b * (size_t)w->ne[0], (uint8_t *)c->xq + (size_t)b * c->xq_stride, w->ne[0]);
        mmq_task t = {w, c->xq, c->xq_stride, n, y, ldy};
        sb_pool_run(c->pool, mmq_worker, &t);
        return;
    }
    mm_task t = {c, w, x, n, y, ldy};
    sb_pool_run(c->pool, mm_worker, &t);
}

static void mm(sb_ctx *c, const sb_tensor *w, const float *x, int n, float *y, int64_t ldy) {
    mm_as(c, w, x, n, y, ldy, c->exact ? SB_F32 : sb_act_type(w->type));
}

/* Causal attention of head h of one query row q at position pos over the
 * cached keys/values kc, vc (T, Hkv*Hd) of one layer, into out (Hq*Hd);
 * att: scratch for T weights. The sliding-window mask keeps keys t with
 * pos - W < t <= pos (masking_utils.sliding_window_overlay); query head h
 * reads kv head h / n_rep (repeat_kv). */
static void attend_head(const sb_ctx *c, const float *q, int pos, const float *kc, const float *vc, float *out,
                        float *att, int h) {
    const sb_model_config *p = &c->m->cfg;
    const int Hd = p->head_dim, nkv = p->n_head_kv * Hd, n_rep = p->n_head / p->n_head_kv;
    const float scale = (float)(1.0 / sqrt((double)Hd)); /* head_dim ** -0.5 */
    int t0 = 0;
    if (p->sliding_window > 0 && pos - p->sliding_window + 1 > 0) t0 = pos - p->sliding_window + 1;
    const size_t koff = (size_t)(h / n_rep) * Hd;
    sb_attn_decode(q + (size_t)h * Hd, kc + koff, vc + koff, nkv, t0, pos, scale, Hd, att, out + (size_t)h * Hd);
}

/* All heads of one query row, in one thread. */
static void attend(sb_ctx *c, const float *q, int pos, const float *kc, const float *vc, float *out, float *att) {
    for (int h = 0; h < c->m->cfg.n_head; h++) attend_head(c, q, pos, kc, vc, out, att, h);
}

typedef struct head_task {
    sb_ctx *c;
    const float *q, *kc, *vc;
    float *out;
    int pos;
} head_task;

static void head_worker(void *arg, int ith, int nth) {
    const head_task *t = arg;
    for (int h = ith; h < t->c->m->cfg.n_head; h += nth)
        attend_head(t->c, t->q, t->pos, t->kc, t->vc, t->out, t->c->batt_w + (size_t)ith * t->c->n_ctx, h);
}

/* One query row, heads split over the threads (each head in one thread: the
 * result does not depend on the thread count). */
static void attention(sb_ctx *c, const float *q, int pos, const float *kc, const float *vc, float *out) {
    if (!c->pool) {
        attend(c, q, pos, kc, vc, out, c->att);
        return;
    }
    head_task t = {c, q, kc, vc, out, pos};
    sb_pool_run(c->pool, head_worker, &t);
}

/* Runs one token at position pos (keys/values of 0..pos-1 are cached),
 * stores its keys/values, and writes its logits if logits != NULL. */
static void forward_token(sb_ctx *c, int32_t token, int pos, float *logits) {
    const sb_model *m = c->m;
    const sb_model_config *p = &m->cfg;
    const int D = p->n_embd, Hd = p->head_dim, F = p->n_ff;
    const int nq = p->n_head * Hd, nkv = p->n_head_kv * Hd;
    float *x = c->x, *q = c->qkv, *k = q + nq, *v = k + nkv;

    /* x = embed_tokens(input_ids) */
    sb_get_row(&m->tok_embd, token, x);
    /* cos, sin = rotary_emb(x, position_ids): cat(freqs, freqs).cos() * attention_scaling */
    sb_rope_table(c->rope_cos, c->rope_sin, c->inv_freq, p->n_rot, pos, p->rope_attn_factor);

    for (int l = 0; l < p->n_layer; l++) {
        const sb_layer *L = &m->layers[l];
        float *kc = c->key_cache + (size_t)l * c->n_ctx * nkv;
        float *vc = c->value_cache + (size_t)l * c->n_ctx * nkv;

        /* h = input_layernorm(x) */
        sb_rmsnorm(c->xb, x, L->attn_norm, D, p->rms_eps);
        /* q, k, v = qkv_proj(h) split [Hq*Hd, Hkv*Hd, Hkv*Hd]  |  q_proj(h), k_proj(h), v_proj(h) */
        if (p->fused_qkv) {
            mv(c, &L->wqkv, c->xb, q, nq + 2 * nkv);
            lora(c, l, SB_LORA_QKV, c->xb, 1, q, 0, 0, nq + 2 * nkv);
        } else {
            mv_multi(c, c->xb, 3, (const sb_tensor *const[]){&L->wq, &L->wk, &L->wv}, (float *const[]){q, k, v},
                     (const int64_t[]){nq, nkv, nkv});
            lora(c, l, SB_LORA_Q, c->xb, 1, q, 0, 0, nq);
            lora(c, l, SB_LORA_K, c->xb, 1, k, 0, 0, nkv);
            lora(c, l, SB_LORA_V, c->xb, 1, v, 0, 0, nkv);
        }
        /* q, k = apply_rotary_pos_emb(q, k, cos, sin) */
        sb_rope_apply(q, p->n_head, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
        sb_rope_apply(k, p->n_head_kv, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
        /* k, v = past_key_values.update(k, v) */
        memcpy(kc + (size_t)pos * nkv, k, (size_t)nkv * sizeof(float));
        memcpy(vc + (size_t)pos * nkv, v, (size_t)nkv * sizeof(float));

        /* attn = softmax(q k^T * scale + mask) v, heads split over the threads */
        attention(c, q, pos, kc, vc, c->att_out);
        /* x = x + o_proj(attn) */
        mv(c, &L->wo, c->att_out, c->xb2, D);
        lora(c, l, SB_LORA_O, c->att_out, 1, c->xb2, 0, 0, D);
        sb_add(x, c->xb2, D);

        /* h = post_attention_layernorm(x) */
        sb_rmsnorm(c->xb, x, L->ffn_norm, D, p->rms_eps);
        /* gate, up = gate_up_proj(h).chunk(2)  |  gate_proj(h), up_proj(h) */
        if (p->fused_gate_up) {
            mv(c, &L->w_gate_up, c->xb, c->hb, 2 * F);
            lora(c, l, SB_LORA_GATE_UP, c->xb, 1, c->hb, 0, 0, 2 * F);
        } else {
            mv_multi(c, c->xb, 2, (const sb_tensor *const[]){&L->w_gate, &L->w_up}, (float *const[]){c->hb, c->hb + F},
                     (const int64_t[]){F, F});
            lora(c, l, SB_LORA_GATE, c->xb, 1, c->hb, 0, 0, F);
            lora(c, l, SB_LORA_UP, c->xb, 1, c->hb + F, 0, 0, F);
        }
        /* x = x + down_proj(silu(gate) * up) */
        sb_swiglu(c->hb, c->hb, c->hb + F, F);
        mv(c, &L->w_down, c->hb, c->xb2, D);
        lora(c, l, SB_LORA_DOWN, c->hb, 1, c->xb2, 0, 0, D);
        sb_add(x, c->xb2, D);
    }
    if (!logits) return;
    /* logits = lm_head(norm(x)) */
    sb_rmsnorm(x, x, m->output_norm, D, p->rms_eps);
    mv_logits(c, &m->output, x, logits, p->n_vocab);
}

typedef struct att_task {
    sb_ctx *c;
    int B, pos0;
    const float *kc, *vc;
} att_task;

/* The B rows' attention in blocks of ATT_ROWS query rows per head
 * (sb_attn_causal: two sgemm), the (block, head) pairs split over the
 * threads; each pair is computed by one thread, whatever their number. */
static void att_worker(void *arg, int ith, int nth) {
    const att_task *t = arg;
    const sb_model_config *p = &t->c->m->cfg;
    const int Hd = p->head_dim, nq = p->n_head * Hd, nkv = p->n_head_kv * Hd, n_rep = p->n_head / p->n_head_kv;
    const float scale = (float)(1.0 / sqrt((double)Hd)); /* head_dim ** -0.5 */
    const int n_blk = (t->B + ATT_ROWS - 1) / ATT_ROWS;
    float *scratch = t->c->batt_w + (size_t)ith * ATT_ROWS * (size_t)t->c->n_ctx;
    for (int job = ith; job < n_blk * p->n_head; job += nth) {
        const int h = job % p->n_head, b0 = job / p->n_head * ATT_ROWS;
        const int rows = t->B - b0 < ATT_ROWS ? t->B - b0 : ATT_ROWS;
        const size_t koff = (size_t)(h / n_rep) * Hd; /* repeat_kv */
        sb_attn_causal(t->c->bq + (size_t)b0 * nq + (size_t)h * Hd, nq, t->kc + koff, t->vc + koff, nkv, rows,
                       t->pos0 + b0, p->sliding_window, scale, Hd, t->c->batt + (size_t)b0 * nq + (size_t)h * Hd, nq,
                       scratch);
    }
}

/* Runs B <= PREFILL_BATCH prompt tokens at positions pos0.. together: every
 * weight matrix is applied to all B rows at once (sb_matmul), attention stays
 * per token and causal. Logits of row b go to all_logits + b*V when
 * all_logits, and those of the last row to last_logits. */
static void forward_batch(sb_ctx *c, const int32_t *tokens, int B, int pos0, float *all_logits, float *last_logits) {
    const sb_model *m = c->m;
    const sb_model_config *p = &m->cfg;
    const int D = p->n_embd, Hd = p->head_dim, F = p->n_ff;
    const int nq = p->n_head * Hd, nkv = p->n_head_kv * Hd, V = p->n_vocab;

    for (int b = 0; b < B; b++) sb_get_row(&m->tok_embd, tokens[b], c->bx + (size_t)b * D);
    for (int l = 0; l < p->n_layer; l++) {
        const sb_layer *L = &m->layers[l];
        float *kc = c->key_cache + (size_t)l * c->n_ctx * nkv;
        float *vc = c->value_cache + (size_t)l * c->n_ctx * nkv;
        norm_rows(c, c->bxb, c->bx, L->attn_norm, B);
        if (p->fused_qkv) {
            /* qkv_proj's rows are q | k | v: three views of the fused weight */
            sb_tensor wq = L->wqkv, wk = L->wqkv, wv = L->wqkv;
            size_t rb = L->wqkv.nbytes / (size_t)L->wqkv.ne[1];
            wq.ne[1] = nq;
            wk.ne[1] = nkv, wk.data = (const uint8_t *)L->wqkv.data + rb * (size_t)nq;
            wv.ne[1] = nkv, wv.data = (const uint8_t *)L->wqkv.data + rb * (size_t)(nq + nkv);
            mm(c, &wq, c->bxb, B, c->bq, nq);
            mm(c, &wk, c->bxb, B, c->bk, nkv);
            mm(c, &wv, c->bxb, B, c->bv, nkv);
            lora(c, l, SB_LORA_QKV, c->bxb, B, c->bq, nq, 0, nq);
            lora(c, l, SB_LORA_QKV, c->bxb, B, c->bk, nkv, nq, nq + nkv);
            lora(c, l, SB_LORA_QKV, c->bxb, B, c->bv, nkv, nq + nkv, nq + 2 * nkv);
        } else {
            mm(c, &L->wq, c->bxb, B, c->bq, nq);
            mm(c, &L->wk, c->bxb, B, c->bk, nkv);
            mm(c, &L->wv, c->bxb, B, c->bv, nkv);
            lora(c, l, SB_LORA_Q, c->bxb, B, c->bq, nq, 0, nq);
            lora(c, l, SB_LORA_K, c->bxb, B, c->bk, nkv, 0, nkv);
            lora(c, l, SB_LORA_V, c->bxb, B, c->bv, nkv, 0, nkv);
        }
        for (int b = 0; b < B; b++) {
            int pos = pos0 + b;
            float *q = c->bq + (size_t)b * nq, *k = c->bk + (size_t)b * nkv;
            sb_rope_table(c->rope_cos, c->rope_sin, c->inv_freq, p->n_rot, pos, p->rope_attn_factor);
            sb_rope_apply(q, p->n_head, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
            sb_rope_apply(k, p->n_head_kv, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
            memcpy(kc + (size_t)pos * nkv, k, (size_t)nkv * sizeof(float));
            memcpy(vc + (size_t)pos * nkv, c->bv + (size_t)b * nkv, (size_t)nkv * sizeof(float));
        }
        att_task at = {c, B, pos0, kc, vc};
        sb_pool_run(c->pool, att_worker, &at);
        mm(c, &L->wo, c->batt, B, c->bxb2, D);
        lora(c, l, SB_LORA_O, c->batt, B, c->bxb2, D, 0, D);
        sb_add(c->bx, c->bxb2, B * D);
        norm_rows(c, c->bxb, c->bx, L->ffn_norm, B);
        if (p->fused_gate_up) {
            mm(c, &L->w_gate_up, c->bxb, B, c->bhb, 2 * F);
            lora(c, l, SB_LORA_GATE_UP, c->bxb, B, c->bhb, 2 * F, 0, 2 * F);
        } else {
            mm(c, &L->w_gate, c->bxb, B, c->bhb, 2 * F);
            mm(c, &L->w_up, c->bxb, B, c->bhb + F, 2 * F);
            lora(c, l, SB_LORA_GATE, c->bxb, B, c->bhb, 2 * F, 0, F);
            lora(c, l, SB_LORA_UP, c->bxb, B, c->bhb + F, 2 * F, 0, F);
        }
        rows_task sw = {.op = ROW_SWIGLU, .n = B, .x = c->bhb, .out = c->bhb, .width = F};
        sb_pool_run(c->pool, rows_worker, &sw);
        /* down_proj reads the first F of each 2F-wide row */
        for (int b = 0; b < B; b++) memmove(c->bhb + (size_t)b * F, c->bhb + (size_t)b * 2 * F, (size_t)F * sizeof(float));
        mm(c, &L->w_down, c->bhb, B, c->bxb2, D);
        lora(c, l, SB_LORA_DOWN, c->bhb, B, c->bxb2, D, 0, D);
        sb_add(c->bx, c->bxb2, B * D);
    }
    if (!all_logits && !last_logits) return;
    for (int b = 0; b < B; b++) sb_rmsnorm(c->bx + (size_t)b * D, c->bx + (size_t)b * D, m->output_norm, D, p->rms_eps);
    if (all_logits) {
        mm_as(c, &m->output, c->bx, B, all_logits, V, SB_F32); /* logits: float, see mv_logits */
        if (last_logits) memcpy(last_logits, all_logits + (size_t)(B - 1) * V, (size_t)V * sizeof(float));
    } else {
        mv_logits(c, &m->output, c->bx + (size_t)(B - 1) * D, last_logits, V);
    }
}

sb_status sb_decode(sb_ctx *c, const int32_t *tokens, int n, float *logits, float *all_logits,
                    sb_err *err) {
    const sb_model_config *p = &c->m->cfg;
    if (n < 0 || (n > 0 && !tokens))
        return sb_err_set(err, SB_ERR_INVALID, "sb_decode: %d tokens", n);
    if (n == 0) return SB_OK;
    if (n > c->n_ctx - c->n_past)
        return sb_err_set(err, SB_ERR_RANGE,
                          "context full: %d cached + %d new positions exceed the context size %d",
                          c->n_past, n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= p->n_vocab)
            return sb_err_set(err, SB_ERR_RANGE, "token %d (at %d) is out of the vocabulary 0..%d",
                              tokens[i], i, p->n_vocab - 1);

    /* LongRoPE: one factor set for the whole call, from its largest position
     * (transformers' longrope_frequency_update: max(position_ids) + 1 >
     * original_max_position_embeddings). */
    int use_long = p->longrope && c->n_past + n > p->n_ctx_orig;
    set_rope_freqs(c, use_long);
    if (p->longrope) {
        /* Cached keys from the other set are recomputed, as generate() does
         * (Phi3ForCausalLM.prepare_inputs_for_generation drops the cache). */
        int first = c->n_past;
        for (int t = 0; t < c->n_past; t++)
            if (c->pos_long[t] != use_long) {
                first = t;
                break;
            }
        for (int t = first; t < c->n_past; t++) {
            forward_token(c, c->tokens[t], t, NULL);
            c->pos_long[t] = (uint8_t)use_long;
        }
    }

    const int V = p->n_vocab;
    for (int i = 0; i < n; i++) {
        c->tokens[c->n_past + i] = tokens[i];
        c->pos_long[c->n_past + i] = (uint8_t)use_long;
    }
    if (n == 1) {
        forward_token(c, tokens[0], c->n_past, all_logits ? all_logits : logits);
        if (logits && all_logits) memcpy(logits, all_logits, (size_t)V * sizeof(float));
    } else {
        /* a prompt: in batches through the matrices */
        for (int i = 0; i < n; i += PREFILL_BATCH) {
            int B = n - i < PREFILL_BATCH ? n - i : PREFILL_BATCH;
            bool last = i + B == n;
            forward_batch(c, tokens + i, B, c->n_past + i, all_logits ? all_logits + (size_t)i * V : NULL,
                          last ? logits : NULL);
        }
    }
    c->n_past += n;
    return SB_OK;
}
