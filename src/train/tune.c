/*
 * tune.c - the LoRA training loop, checkpoints and run outputs (tune.h).
 */
#include "train/tune.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/adapter.h"
#include "train/dist.h"
#include "train/frozen.h"

sb_tune_opts sb_tune_opts_default(void) {
    return (sb_tune_opts){.lora = sb_lora_config_default(),
                          .lr = 2e-4f,
                          .weight_decay = 0.0f,
                          .beta1 = 0.9f,
                          .beta2 = 0.999f,
                          .eps = 1e-8f,
                          .max_grad_norm = 1.0f,
                          .epochs = 1,
                          .batch = 4,
                          .grad_accum = 1,
                          .schedule = SB_SCHED_COSINE,
                          .max_len = 512,
                          .threads = 2};
}

/* ------------------------------------------------------------ batching -- */

/* The example order: epoch e's permutation of 0..n-1 (Fisher-Yates on the
 * counter stream of (seed, e)). */
typedef struct order {
    int n, epoch;
    int *perm;
    uint64_t seed;
} order;

static void order_epoch(order *o, int epoch) {
    if (o->epoch == epoch) return;
    for (int i = 0; i < o->n; i++) o->perm[i] = i;
    const uint64_t s = sb_rng_at(o->seed, 0xE90C0000ull + (uint64_t)epoch);
    for (int i = o->n - 1; i > 0; i--) {
        int j = (int)(sb_rng_at(s, (uint64_t)i) % (uint64_t)(i + 1));
        int t = o->perm[i];
        o->perm[i] = o->perm[j], o->perm[j] = t;
    }
    o->epoch = epoch;
}

/* Example number g of the run (g-th drawn, over epochs). */
static int order_example(order *o, int64_t g) {
    order_epoch(o, (int)(g / o->n));
    return o->perm[g % o->n];
}

typedef struct mbatch {
    int32_t *tokens, *targets;
    int *seq_len;
    sb_batch b;
    int n_target;
    int rows;
} mbatch;

/* Packs examples ex[0..k) of d into mb (each cut to max_len). */
static void pack(mbatch *mb, const sb_dataset *d, const int *ex, int k, int max_len) {
    int at = 0, nt = 0;
    for (int i = 0; i < k; i++) {
        int n = sb_dataset_len(d, ex[i]);
        if (n > max_len) n = max_len;
        const int64_t o = d->offset[ex[i]];
        memcpy(mb->tokens + at, d->tokens + o, (size_t)n * sizeof(int32_t));
        memcpy(mb->targets + at, d->targets + o, (size_t)n * sizeof(int32_t));
        mb->targets[at + n - 1] = -1; /* nothing to predict past the cut */
        for (int t = 0; t < n; t++) nt += mb->targets[at + t] >= 0;
        mb->seq_len[i] = n;
        at += n;
    }
    mb->b = (sb_batch){mb->tokens, mb->targets, mb->seq_len, k};
    mb->n_target = nt;
    mb->rows = at;
}

static bool mbatch_alloc(mbatch *mb, int batch, int max_len) {
    mb->tokens = sb_calloc((size_t)batch * max_len, sizeof(int32_t));
    mb->targets = sb_calloc((size_t)batch * max_len, sizeof(int32_t));
    mb->seq_len = sb_calloc((size_t)batch, sizeof(int));
    return mb->tokens && mb->targets && mb->seq_len;
}

static void mbatch_free(mbatch *mb) {
    free(mb->tokens), free(mb->targets), free(mb->seq_len);
}

/* Mean loss over d's targets; with several ranks each takes a share of the
 * examples and the sums are added up across ranks. */
static sb_status eval_ws(sb_train_ws *ws, const sb_dataset *d, int batch, int max_len, const sb_dist *dist,
                         double *loss, sb_err *err) {
    mbatch mb = {0};
    int *ex = sb_calloc((size_t)batch, sizeof(int));
    if (!ex || !mbatch_alloc(&mb, batch, max_len)) {
        free(ex), mbatch_free(&mb);
        return sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    }
    const sb_dist one = {0, 1, false};
    if (!dist) dist = &one;
    int64_t i0, i1;
    sb_dist_share(dist, d->n, &i0, &i1);
    double acc[2] = {0, 0}; /* loss sum, target count */
    sb_status st = SB_OK;
    for (int64_t i = i0; i < i1 && st == SB_OK; i += batch) {
        int k = i1 - i < batch ? (int)(i1 - i) : batch;
        for (int j = 0; j < k; j++) ex[j] = (int)i + j;
        pack(&mb, d, ex, k, max_len);
        double ls = 0;
        int nt = 0;
        st = sb_train_step(ws, &mb.b, false, 0, 0, &ls, &nt, NULL, err);
        acc[0] += ls, acc[1] += nt;
    }
    if (st == SB_OK) st = sb_dist_sum_f64(dist, acc, 2, err);
    *loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    free(ex);
    mbatch_free(&mb);
    return st;
}

sb_status sb_eval_loss(const sb_model *m, sb_lora *l, const sb_dataset *d, int batch, int max_len, double *loss,
                       sb_err *err) {
    sb_train_ws *ws = sb_train_ws_new(m, l, batch * max_len, max_len, true, err);
    if (!ws) return err ? err->code : SB_ERR_NOMEM;
    sb_status st = eval_ws(ws, d, batch, max_len, NULL, loss, err);
    sb_train_ws_free(ws);
    return st;
}

/* --------------------------------------------------------- checkpoints -- */

#define CKPT_MAGIC "SBLORACK"
#define CKPT_VERSION 1u

/* Everything a resumed run must share with the one that wrote the file. */
static void fingerprint(char *out, size_t n, const sb_lora *l, const sb_tune_opts *o, const sb_dataset *d,
                        int64_t total) {
    char targets[256] = "";
    for (int i = 0; i < o->lora.n_targets; i++)
        snprintf(targets + strlen(targets), sizeof targets - strlen(targets), "%s%s", i ? "," : "", o->lora.targets[i]);
    snprintf(out, n,
             "r=%d alpha=%g dropout=%g rslora=%d targets=%s params=%zu lr=%g wd=%g betas=%g,%g eps=%g clip=%g "
             "steps=%lld batch=%d accum=%d warmup=%lld schedule=%d max_len=%d seed=%llu examples=%d tokens=%lld",
             o->lora.r, (double)o->lora.alpha, (double)o->lora.dropout, o->lora.rslora, targets, l->n_params,
             (double)o->lr, (double)o->weight_decay, (double)o->beta1, (double)o->beta2, (double)o->eps,
             (double)o->max_grad_norm, (long long)total, o->batch, o->grad_accum, (long long)o->warmup, o->schedule,
             o->max_len, (unsigned long long)o->seed, d->n, (long long)d->offset[d->n]);
    if (o->bf16) snprintf(out + strlen(out), n - strlen(out), " bf16=1");
}

static sb_status save_ckpt(const char *path, const char *fp, const sb_lora *l, const sb_adamw *opt, int64_t step,
                           const sb_step_log *log, double val0, sb_err *err) {
    sb_afile f;
    sb_status st = sb_afile_open(&f, path, err);
    if (st != SB_OK) return st;
    uint32_t ver = CKPT_VERSION, fl = (uint32_t)strlen(fp);
    uint64_t hdr[4] = {(uint64_t)step, (uint64_t)opt->t, (uint64_t)l->n_params, 0};
    memcpy(&hdr[3], &val0, sizeof val0);
    bool ok = sb_afile_write(&f, CKPT_MAGIC, 8) && sb_afile_write(&f, &ver, 4) && sb_afile_write(&f, &fl, 4) &&
              sb_afile_write(&f, fp, fl) && sb_afile_write(&f, hdr, sizeof hdr) &&
              sb_afile_write(&f, l->params, l->n_params * sizeof(float)) &&
              sb_afile_write(&f, opt->m, l->n_params * sizeof(float)) &&
              sb_afile_write(&f, opt->v, l->n_params * sizeof(float)) &&
              sb_afile_write(&f, log, (size_t)step * sizeof *log);
    if (!ok) {
        sb_afile_abort(&f);
        return sb_err_set(err, SB_ERR_IO, "%s: write failed", path);
    }
    return sb_afile_commit(&f, err);
}

static sb_status load_ckpt(const char *path, const char *fp, sb_lora *l, sb_adamw *opt, int64_t *step,
                           sb_step_log *log, int64_t max_steps, double *val0, sb_err *err) {
    char *buf = NULL;
    size_t len = 0;
    sb_status st = sb_read_file(path, 0, &buf, &len, err);
    if (st != SB_OK) return st;
    const size_t np = l->n_params * sizeof(float);
    uint32_t ver, fl;
    uint64_t hdr[4];
    if (len < 16 || memcmp(buf, CKPT_MAGIC, 8)) {
        st = sb_err_set(err, SB_ERR_FORMAT, "%s: not a sabio LoRA checkpoint", path);
        goto done;
    }
    memcpy(&ver, buf + 8, 4), memcpy(&fl, buf + 12, 4);
    if (ver != CKPT_VERSION || fl > len - 16 || len - 16 - fl < sizeof hdr) {
        st = sb_err_set(err, SB_ERR_FORMAT, "%s: version %u or header length %u is wrong", path, ver, fl);
        goto done;
    }
    if (fl != strlen(fp) || memcmp(buf + 16, fp, fl)) {
        st = sb_err_set(err, SB_ERR_INVALID, "%s: made with other options or data: checkpoint '%.*s', this run '%s'",
                        path, (int)(fl < 400 ? fl : 400), buf + 16, fp);
        goto done;
    }
    memcpy(hdr, buf + 16 + fl, sizeof hdr);
    const size_t off = 16 + fl + sizeof hdr;
    if (hdr[2] != l->n_params || hdr[0] > (uint64_t)max_steps ||
        len - off != 3 * np + (size_t)hdr[0] * sizeof(sb_step_log)) {
        st = sb_err_set(err, SB_ERR_FORMAT, "%s: sizes do not match (%zu bytes)", path, len);
        goto done;
    }
    *step = (int64_t)hdr[0];
    opt->t = (int64_t)hdr[1];
    memcpy(val0, &hdr[3], sizeof *val0);
    memcpy(l->params, buf + off, np);
    memcpy(opt->m, buf + off + np, np);
    memcpy(opt->v, buf + off + 2 * np, np);
    memcpy(log, buf + off + 3 * np, (size_t)*step * sizeof *log);
done:
    free(buf);
    return st;
}

/* ------------------------------------------------------------- outputs -- */

static sb_status write_log_json(const char *path, const sb_step_log *log, int64_t n, const char *fp, double val0,
                                sb_err *err) {
    sb_buf b = {0};
    sb_buf_printf(&b, "{\"run\": \"%s\",\n", fp);
    if (!isnan(val0)) sb_buf_printf(&b, " \"val_loss_initial\": %.6f,\n", val0);
    sb_buf_puts(&b, " \"steps\": [\n");
    for (int64_t i = 0; i < n; i++) {
        const sb_step_log *s = &log[i];
        sb_buf_printf(&b, "  {\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %lld, "
                          "\"seconds\": %.4f",
                      (long long)s->step, (double)s->loss, (double)s->lr, (double)s->grad_norm, (long long)s->tokens,
                      s->seconds);
        if (!isnan(s->val_loss)) sb_buf_printf(&b, ", \"val_loss\": %.6f", (double)s->val_loss);
        sb_buf_printf(&b, "}%s\n", i + 1 < n ? "," : "");
    }
    bool ok = sb_buf_puts(&b, " ]}\n");
    sb_status st = ok ? sb_write_file_atomic(path, b.data, b.len, err) : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    sb_buf_free(&b);
    return st;
}

sb_status sb_write_loss_svg(const char *path, const sb_step_log *log, int64_t n, sb_err *err) {
    const double W = 640, H = 400, L = 60, R = 20, T = 20, B = 40;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v[2] = {log[i].loss, log[i].val_loss};
        for (int k = 0; k < 2; k++)
            if (!isnan(v[k])) lo = fmin(lo, v[k]), hi = fmax(hi, v[k]);
    }
    if (!(hi > lo)) hi = lo + 1, lo = lo - 1;
    if (!isfinite(lo)) lo = 0, hi = 1;
    sb_buf b = {0};
    sb_buf_printf(&b,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
                  "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n"
                  "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n",
                  W, H, L, H - B, W - R, H - B, L, T, L, H - B);
#define X(i) (L + (W - L - R) * ((double)(i) / (double)(n > 1 ? n - 1 : 1)))
#define Y(v) (T + (H - T - B) * (1 - ((v) - lo) / (hi - lo)))
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4;
        sb_buf_printf(&b, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3f</text>\n", L - 4, Y(v) + 4, v);
    }
    sb_buf_printf(&b, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">step (1..%lld)</text>\n", (L + W - R) / 2, H - 8,
                  (long long)n);
    sb_buf_puts(&b, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int64_t i = 0; i < n; i++) sb_buf_printf(&b, "%.1f,%.1f ", X(i), Y((double)log[i].loss));
    sb_buf_puts(&b, "\"/>\n<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
    for (int64_t i = 0; i < n; i++)
        if (!isnan(log[i].val_loss)) sb_buf_printf(&b, "%.1f,%.1f ", X(i), Y((double)log[i].val_loss));
    sb_buf_printf(&b, "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"#1f77b4\">train loss</text>\n"
                      "<text x=\"%g\" y=\"%g\" fill=\"#d62728\">validation loss</text>\n</svg>\n",
                  W - R - 200, T + 12, W - R - 100, T + 12);
#undef X
#undef Y
    sb_status st = b.data ? sb_write_file_atomic(path, b.data, b.len, err) : sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    sb_buf_free(&b);
    return st;
}

/* ---------------------------------------------------------------- loop -- */

static sb_status mkdir_out(const char *dir, sb_err *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sb_err_set(err, SB_ERR_IO, "%s: cannot create the output folder: %s", dir, strerror(errno));
    return SB_OK;
}

sb_status sb_tune(const sb_model *m, const sb_dataset *train, const sb_dataset *val, const sb_tune_opts *o,
                  sb_tune_progress_fn progress, void *user, sb_err *err) {
    if (o->batch < 1 || o->grad_accum < 1 || o->max_len < 2 || !(o->lr > 0) || o->threads < 1 || !o->out_dir)
        return sb_err_set(err, SB_ERR_RANGE, "tune: batch %d, grad_accum %d, max_len %d, lr %g, threads %d out of range",
                          o->batch, o->grad_accum, o->max_len, (double)o->lr, o->threads);
    const sb_dist one = {0, 1, false}, *dist = o->dist ? o->dist : &one;
    const int per_step = o->batch * o->grad_accum;
    const int64_t total = o->steps > 0 ? o->steps : ((int64_t)o->epochs * train->n + per_step - 1) / per_step;
    if (total < 1) return sb_err_set(err, SB_ERR_RANGE, "tune: no steps to run");
    const int64_t eval_every = o->eval_every > 0 ? o->eval_every : (total + 9) / 10;
    const int64_t save_every = o->save_every > 0 ? o->save_every : eval_every;
    sb_status st = mkdir_out(o->out_dir, err);
    if (st != SB_OK) return st;
    sb_frozen_set_threads(o->threads);

    sb_lora *l = sb_lora_new(sb_model_get_config(m), &o->lora, true, err);
    if (!l) return err->code;
    sb_lora_init(l, o->seed);
    sb_adamw opt = {0};
    sb_train_ws *ws = NULL;
    sb_step_log *log = sb_calloc((size_t)total, sizeof *log);
    order ord = {.n = train->n, .epoch = -1, .seed = o->seed, .perm = sb_calloc((size_t)train->n, sizeof(int))};
    int *ex = sb_calloc((size_t)o->batch, sizeof(int));
    mbatch mb = {0};
    char *ckpt = sb_path_join(o->out_dir, "checkpoint.bin"), fp[1024];
    char *p_log = sb_path_join(o->out_dir, "log.json"), *p_svg = sb_path_join(o->out_dir, "loss.svg");
    char *p_gguf = sb_path_join(o->out_dir, "adapter.gguf");
    if (!log || !ord.perm || !ex || !ckpt || !p_log || !p_svg || !p_gguf || !mbatch_alloc(&mb, o->batch, o->max_len)) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = sb_adamw_init(&opt, l->n_params, o->lr, err)) != SB_OK) goto done;
    opt.beta1 = o->beta1, opt.beta2 = o->beta2, opt.eps = o->eps, opt.weight_decay = o->weight_decay;
    ws = sb_train_ws_new(m, l, o->batch * o->max_len, o->max_len, o->grad_checkpoint, err);
    if (!ws || sb_train_ws_set_bf16(ws, o->bf16, err) != SB_OK) {
        st = err->code;
        goto done;
    }
    fingerprint(fp, sizeof fp, l, o, train, total);
    int64_t step = 0;
    double val0 = NAN;
    if (o->resume) {
        if (!sb_file_exists(ckpt)) {
            st = sb_err_set(err, SB_ERR_IO, "--resume: %s does not exist", ckpt);
            goto done;
        }
        if ((st = load_ckpt(ckpt, fp, l, &opt, &step, log, total, &val0, err)) != SB_OK) goto done;
        sb_log(SB_LOG_INFO, "resuming at step %lld of %lld from %s", (long long)step, (long long)total, ckpt);
    } else if (val) {
        /* the validation loss of the base model (B = 0: the adapter adds nothing yet) */
        if ((st = eval_ws(ws, val, o->batch, o->max_len, dist, &val0, err)) != SB_OK) goto done;
        sb_step_log s0 = {0, NAN, (float)val0, 0, 0, 0, 0};
        if (progress && dist->rank == 0) progress(&s0, total, NAN, user);
    }
    double t_run = 0;
    int64_t steps_timed = 0;
    for (; step < total; step++) {
        const double t0 = sb_time_sec();
        /* the step's examples, and its target count for the mean */
        const int64_t g0 = step * per_step;
        int n_tgt = 0;
        for (int j = 0; j < per_step; j++) {
            int e = order_example(&ord, g0 + j);
            int n = sb_dataset_len(train, e);
            if (n > o->max_len) n = o->max_len;
            for (int t = 0; t < n - 1; t++) n_tgt += train->targets[train->offset[e] + t] >= 0;
        }
        memset(l->grads, 0, l->n_params * sizeof(float));
        /* This rank's share of the step's examples, in micro-batches of up to
         * `batch`; one rank takes them all (grad_accum micro-batches). */
        int64_t s0, s1;
        sb_dist_share(dist, per_step, &s0, &s1);
        double acc[2] = {0, 0}; /* loss sum, rows */
        for (int64_t s = s0; s < s1; s += o->batch) {
            const int k = s1 - s < o->batch ? (int)(s1 - s) : o->batch;
            for (int j = 0; j < k; j++) ex[j] = order_example(&ord, g0 + s + j);
            pack(&mb, train, ex, k, o->max_len);
            double ls = 0;
            const uint64_t drop_seed = sb_rng_at(o->seed ^ 0xD50Full, (uint64_t)(g0 + s));
            st = sb_train_step(ws, &mb.b, true, n_tgt ? 1.0f / (float)n_tgt : 0.0f, drop_seed, &ls, NULL, NULL, err);
            if (st != SB_OK) goto done;
            acc[0] += ls;
            acc[1] += mb.rows;
        }
        if ((st = sb_dist_sum_f32(dist, l->grads, l->n_params, err)) != SB_OK ||
            (st = sb_dist_sum_f64(dist, acc, 2, err)) != SB_OK)
            goto done;
        const double loss_sum = acc[0];
        const int64_t rows = (int64_t)acc[1];
        const float norm = sb_clip_grad_norm(l->grads, l->n_params, o->max_grad_norm);
        const float lr = o->lr * sb_lr_factor(o->schedule, step, o->warmup, total);
        sb_adamw_step(&opt, l->params, l->grads, lr);
        const double dt = sb_time_sec() - t0;
        sb_step_log *s = &log[step];
        *s = (sb_step_log){step + 1, n_tgt ? (float)(loss_sum / n_tgt) : NAN, NAN, lr, norm, rows, dt};
        t_run += dt, steps_timed++;
        const bool last = step + 1 == total;
        if (val && ((step + 1) % eval_every == 0 || last)) {
            double vl;
            if ((st = eval_ws(ws, val, o->batch, o->max_len, dist, &vl, err)) != SB_OK) goto done;
            s->val_loss = (float)vl;
        }
        if (progress && dist->rank == 0) progress(s, total, t_run / (double)steps_timed * (double)(total - step - 1), user);
        if (dist->rank == 0 && ((step + 1) % save_every == 0 || last))
            if ((st = save_ckpt(ckpt, fp, l, &opt, step + 1, log, val0, err)) != SB_OK) goto done;
    }
    if (dist->rank != 0) goto done; /* rank 0 writes the outputs */
    if ((st = sb_lora_save_peft(l, m, o->out_dir, err)) != SB_OK) goto done;
    if ((st = sb_lora_save_gguf(l, m, p_gguf, err)) != SB_OK) goto done;
    if ((st = write_log_json(p_log, log, total, fp, val0, err)) != SB_OK) goto done;
    st = sb_write_loss_svg(p_svg, log, total, err);
done:
    mbatch_free(&mb);
    free(ex), free(ord.perm), free(log);
    free(ckpt), free(p_log), free(p_svg), free(p_gguf);
    sb_train_ws_free(ws);
    sb_adamw_free(&opt);
    sb_lora_free(l);
    return st;
}
