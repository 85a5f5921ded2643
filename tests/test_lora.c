/*
 * test_lora.c - LoRA training against PyTorch + PEFT (tools/gen_lora_ref.py):
 * logits, loss and every LoRA gradient of one batch on tiny random Phi-3
 * (fused projections, sliding window, LongRoPE, GQA + partial rotary) and
 * Llama models, then the losses of 10 AdamW steps with clipping and a
 * cosine schedule with warm-up; gradient checkpointing gives the same
 * gradients; target lists that match nothing are refused. The BF16 frozen
 * products (sb_train_ws_set_bf16) against the F32 path and PEFT, within
 * the tolerances of bf16 rounding stated in check_bf16.
 */
#include <jansson.h>
#include <sys/stat.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "model/model_impl.h"
#include "test.h"
#include "model/lora.h"
#include "train/adapter.h"
#include "train/train.h"

static const sb_tensor *find(const sb_safetensors *st, const char *name, sb_tensor *t) {
    int64_t i = sb_st_find(st, name);
    if (i < 0 || !sb_st_tensor(st, i, t)) return NULL;
    return t;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *ref_max) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d || e != e) d = e != e ? INFINITY : e;
        if (fabs(b[i]) > r) r = fabs(b[i]);
    }
    if (ref_max) *ref_max = r;
    return d;
}

typedef struct refcase {
    sb_safetensors *st;
    json_t *cfg;
    sb_model *m;
    sb_lora *lora;
    int n_seq, T;
    int32_t *tokens, *targets;
    int *seq_len;
    int n_tgt;
} refcase;

static void load_params(refcase *c, const char *prefix, float *dst_params) {
    const sb_model_config *mc = sb_model_get_config(c->m);
    for (int l = 0; l < mc->n_layer; l++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            sb_lora_mat *lm = &c->lora->mats[(size_t)l * SB_LORA_N_MOD + mod];
            if (!lm->A) continue;
            for (int isB = 0; isB < 2; isB++) {
                char key[200], name[220];
                sb_lora_peft_key(key, sizeof key, l, mod, isB);
                snprintf(name, sizeof name, "%s%s", prefix, key);
                sb_tensor t;
                size_t n = (size_t)c->lora->cfg.r * (size_t)(isB ? lm->n_out : lm->n_in);
                bool ok = find(c->st, name, &t) && t.type == SB_F32 && t.nbytes == n * 4;
                CHECK(ok, "%s: missing or wrong size", name);
                if (!ok) continue;
                float *dst = (isB ? lm->B : lm->A);
                if (dst_params) dst = dst_params + (dst - c->lora->params);
                memcpy(dst, t.data, n * 4);
            }
        }
}

static bool open_case(refcase *c, const char *name) {
    memset(c, 0, sizeof *c);
    char path[256];
    snprintf(path, sizeof path, "tests/data/lora_ref/%s.safetensors", name);
    sb_err err = {0};
    c->st = sb_st_open(path, &err);
    CHECK(c->st != NULL, "%s: %s", path, err.msg);
    if (!c->st) return false;
    json_error_t je;
    c->cfg = json_loads(sb_st_metadata(c->st, "config"), 0, &je);
    CHECK(c->cfg != NULL, "%s: config metadata", path);
    if (!c->cfg) return false;
    snprintf(path, sizeof path, "tests/data/%s", json_string_value(json_object_get(c->cfg, "model")));
    c->m = sb_model_open(path, &err);
    CHECK(c->m != NULL, "%s: %s", path, err.msg);
    if (!c->m) return false;
    sb_lora_config lc = sb_lora_config_default();
    lc.r = (int)json_integer_value(json_object_get(c->cfg, "r"));
    lc.alpha = (float)json_number_value(json_object_get(c->cfg, "alpha"));
    lc.rslora = json_is_true(json_object_get(c->cfg, "rslora"));
    lc.dropout = 0;
    json_t *tg = json_object_get(c->cfg, "targets");
    lc.n_targets = (int)json_array_size(tg);
    for (int i = 0; i < lc.n_targets; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", json_string_value(json_array_get(tg, i)));
    c->lora = sb_lora_new(sb_model_get_config(c->m), &lc, true, &err);
    CHECK(c->lora != NULL, "%s: %s", name, err.msg);
    if (!c->lora) return false;
    load_params(c, "init.", NULL);
    sb_tensor ids, labels;
    if (!find(c->st, "input_ids", &ids) || !find(c->st, "labels", &labels)) {
        CHECK(0, "%s: inputs missing", name);
        return false;
    }
    c->n_seq = (int)ids.ne[1], c->T = (int)ids.ne[0];
    const int N = c->n_seq * c->T;
    c->tokens = malloc((size_t)N * 4), c->targets = malloc((size_t)N * 4), c->seq_len = malloc((size_t)c->n_seq * sizeof(int));
    const int32_t *id = ids.data, *lb = labels.data;
    for (int s = 0; s < c->n_seq; s++) {
        c->seq_len[s] = c->T;
        for (int t = 0; t < c->T; t++) {
            int i = s * c->T + t;
            c->tokens[i] = id[i];
            /* transformers: logits[:, :-1] predict labels[:, 1:], -100 ignored */
            c->targets[i] = t + 1 < c->T && lb[i + 1] >= 0 ? lb[i + 1] : -1;
            if (c->targets[i] >= 0) c->n_tgt++;
        }
    }
    return true;
}

static void close_case(refcase *c) {
    sb_lora_free(c->lora);
    sb_model_free(c->m);
    json_decref(c->cfg);
    sb_st_free(c->st);
    free(c->tokens), free(c->targets), free(c->seq_len);
}

static void check_grads(refcase *c, const char *name, const float *grads) {
    const sb_model_config *mc = sb_model_get_config(c->m);
    double worst = 0;
    for (int l = 0; l < mc->n_layer; l++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            sb_lora_mat *lm = &c->lora->mats[(size_t)l * SB_LORA_N_MOD + mod];
            if (!lm->A) continue;
            for (int isB = 0; isB < 2; isB++) {
                char key[200], rn[220];
                sb_lora_peft_key(key, sizeof key, l, mod, isB);
                snprintf(rn, sizeof rn, "grad.%s", key);
                sb_tensor t;
                if (!find(c->st, rn, &t)) {
                    CHECK(0, "%s: %s missing", name, rn);
                    continue;
                }
                const float *g = grads + ((isB ? lm->dB : lm->dA) - c->lora->grads);
                double ref_max, d = max_abs_diff(g, t.data, t.nbytes / 4, &ref_max);
                double rel = d / (ref_max > 0 ? ref_max : 1);
                if (rel > worst) worst = rel;
                CHECK(rel <= 1e-3 && ref_max > 0, "%s %s: max |dg| %.3g, relative %.3g (ref max %.3g)", name, key, d,
                      rel, ref_max);
            }
        }
    fprintf(stderr, "%s: worst gradient relative error %.2e\n", name, worst);
}

/* The BF16 path (weights and activations of the frozen products rounded to
 * bf16, 8 significant bits) on the same batch, against the F32 path's logits,
 * loss and gradients (logits_f32, loss_f32, grads_f32) and PEFT's gradients.
 * Tolerances (about twice the largest error measured on these tiny models,
 * whose short rows average little rounding away): logits within 6e-2 of the
 * largest |logit|, loss within 2e-3 relative, each LoRA gradient within 8e-2
 * of its largest |element| (vs F32 and vs PEFT), and the whole gradient's
 * cosine with the F32 one >= 0.999. */
static void check_bf16(refcase *c, const char *name, const sb_batch *b, const float *logits_f32, double loss_f32,
                       const float *grads_f32) {
    sb_err err = {0};
    const sb_model_config *mc = sb_model_get_config(c->m);
    const int N = c->n_seq * c->T, V = mc->n_vocab;
    sb_train_ws *ws = sb_train_ws_new(c->m, c->lora, N, c->T, false, &err);
    CHECK(ws && sb_train_ws_set_bf16(ws, true, &err) == SB_OK, "%s bf16: %s", name, err.msg);
    if (!ws) return;
    float *logits = malloc((size_t)N * V * sizeof(float));
    memset(c->lora->grads, 0, c->lora->n_params * sizeof(float));
    double loss_sum = 0;
    int nt = 0;
    CHECK(sb_train_step(ws, b, true, 1.0f / (float)c->n_tgt, 0, &loss_sum, &nt, logits, &err) == SB_OK, "%s", err.msg);
    double lmax, dl = max_abs_diff(logits, logits_f32, (size_t)N * V, &lmax);
    double loss = loss_sum / nt, rl = fabs(loss - loss_f32) / fabs(loss_f32);
    CHECK(dl <= 6e-2 * lmax, "%s bf16: logits differ from F32 by %.3g (max |logit| %.3g)", name, dl, lmax);
    CHECK(rl <= 2e-3, "%s bf16: loss %.6f vs F32 %.6f", name, loss, loss_f32);
    double worst = 0, worst_peft = 0;
    for (int l = 0; l < mc->n_layer; l++)
        for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
            sb_lora_mat *lm = &c->lora->mats[(size_t)l * SB_LORA_N_MOD + mod];
            if (!lm->A) continue;
            for (int isB = 0; isB < 2; isB++) {
                char key[200], rn[220];
                sb_lora_peft_key(key, sizeof key, l, mod, isB);
                const size_t off = (size_t)((isB ? lm->dB : lm->dA) - c->lora->grads);
                const size_t n = (size_t)c->lora->cfg.r * (size_t)(isB ? lm->n_out : lm->n_in);
                double ref, d = max_abs_diff(c->lora->grads + off, grads_f32 + off, n, &ref);
                double rel = d / (ref > 0 ? ref : 1);
                if (rel > worst) worst = rel;
                CHECK(rel <= 8e-2, "%s bf16 %s: gradient off the F32 one by %.3g relative", name, key, rel);
                snprintf(rn, sizeof rn, "grad.%s", key);
                sb_tensor t;
                if (!find(c->st, rn, &t)) continue;
                d = max_abs_diff(c->lora->grads + off, t.data, n, &ref);
                rel = d / (ref > 0 ? ref : 1);
                if (rel > worst_peft) worst_peft = rel;
                CHECK(rel <= 8e-2, "%s bf16 %s: gradient off PEFT's by %.3g relative", name, key, rel);
            }
        }
    double dot = 0, n1 = 0, n2 = 0;
    for (size_t i = 0; i < c->lora->n_params; i++) {
        dot += (double)c->lora->grads[i] * grads_f32[i];
        n1 += (double)c->lora->grads[i] * c->lora->grads[i], n2 += (double)grads_f32[i] * grads_f32[i];
    }
    const double cosine = dot / sqrt(n1 * n2);
    CHECK(cosine >= 0.999, "%s bf16: gradient cosine with F32 %.6f", name, cosine);
    fprintf(stderr, "%s bf16: logits max diff %.2e (max |logit| %.2f), loss relative %.2e, gradients relative %.2e (F32), "
            "%.2e (PEFT), cosine %.6f\n", name, dl, lmax, rl, worst, worst_peft, cosine);
    free(logits);
    sb_train_ws_free(ws);
}

static void run_case(const char *name) {
    refcase c;
    if (!open_case(&c, name)) {
        close_case(&c);
        return;
    }
    sb_err err = {0};
    const sb_model_config *mc = sb_model_get_config(c.m);
    const int N = c.n_seq * c.T, V = mc->n_vocab;
    sb_batch b = {c.tokens, c.targets, c.seq_len, c.n_seq};
    float *logits = malloc((size_t)N * V * sizeof(float));
    float *grads0 = malloc(c.lora->n_params * sizeof(float));
    double loss_f32 = 0;
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        sb_train_ws *ws = sb_train_ws_new(c.m, c.lora, N, c.T, ckpt, &err);
        CHECK(ws != NULL, "%s: %s", name, err.msg);
        if (!ws) break;
        memset(c.lora->grads, 0, c.lora->n_params * sizeof(float));
        double loss_sum = 0;
        int nt = 0;
        sb_status st = sb_train_step(ws, &b, true, 1.0f / (float)c.n_tgt, 0, &loss_sum, &nt, logits, &err);
        CHECK(st == SB_OK, "%s: %s", name, err.msg);
        sb_train_ws_free(ws);
        if (ckpt == 1) {
            CHECK(!memcmp(grads0, c.lora->grads, c.lora->n_params * sizeof(float)),
                  "%s: gradient checkpointing changes the gradients", name);
            check_bf16(&c, name, &b, logits, loss_f32, grads0);
            break;
        }
        memcpy(grads0, c.lora->grads, c.lora->n_params * sizeof(float));
        sb_tensor t;
        if (find(c.st, "logits", &t)) {
            double d = max_abs_diff(logits, t.data, (size_t)N * V, NULL);
            CHECK(d <= 1e-4, "%s: logits differ by %.3g", name, d);
            fprintf(stderr, "%s: logits max diff %.2e\n", name, d);
        }
        find(c.st, "loss", &t);
        double loss = loss_sum / nt, ref = ((const float *)t.data)[0];
        loss_f32 = loss;
        CHECK(nt == c.n_tgt && fabs(loss - ref) <= 1e-5, "%s: loss %.7f vs %.7f", name, loss, ref);
        check_grads(&c, name, c.lora->grads);
    }

    /* 10 steps of AdamW with clip_grad_norm_ and the cosine schedule */
    sb_train_ws *ws = sb_train_ws_new(c.m, c.lora, N, c.T, false, &err);
    sb_adamw opt;
    sb_adamw_init(&opt, c.lora->n_params, (float)json_number_value(json_object_get(c.cfg, "lr")), &err);
    opt.beta1 = (float)json_number_value(json_object_get(c.cfg, "beta1"));
    opt.beta2 = (float)json_number_value(json_object_get(c.cfg, "beta2"));
    opt.eps = (float)json_number_value(json_object_get(c.cfg, "eps"));
    opt.weight_decay = (float)json_number_value(json_object_get(c.cfg, "weight_decay"));
    const float clip = (float)json_number_value(json_object_get(c.cfg, "max_grad_norm"));
    const int steps = (int)json_integer_value(json_object_get(c.cfg, "steps"));
    const int warmup = (int)json_integer_value(json_object_get(c.cfg, "warmup"));
    sb_tensor tl, tr;
    find(c.st, "losses", &tl);
    find(c.st, "lrs", &tr);
    double worst = 0;
    for (int s = 0; s < steps && ws; s++) {
        memset(c.lora->grads, 0, c.lora->n_params * sizeof(float));
        double loss_sum = 0;
        int nt = 0;
        sb_train_step(ws, &b, true, 1.0f / (float)c.n_tgt, (uint64_t)s, &loss_sum, &nt, NULL, &err);
        double loss = loss_sum / nt, ref = ((const float *)tl.data)[s];
        if (fabs(loss - ref) > worst) worst = fabs(loss - ref);
        CHECK(fabs(loss - ref) <= 1e-4, "%s step %d: loss %.7f vs %.7f", name, s, loss, ref);
        float lr = opt.lr * sb_lr_factor(SB_SCHED_COSINE, s, warmup, steps);
        CHECK(fabsf(lr - ((const float *)tr.data)[s]) <= 1e-9f, "%s step %d: lr %g vs %g", name, s, (double)lr,
              (double)((const float *)tr.data)[s]);
        sb_clip_grad_norm(c.lora->grads, c.lora->n_params, clip);
        sb_adamw_step(&opt, c.lora->params, c.lora->grads, lr);
    }
    fprintf(stderr, "%s: 10-step losses max diff %.2e\n", name, worst);
    sb_tensor tf;
    if (ws && find(c.st, "logits_final", &tf)) {
        sb_train_step(ws, &b, false, 0, 0, NULL, NULL, logits, &err);
        double d = max_abs_diff(logits, tf.data, (size_t)N * V, NULL);
        CHECK(d <= 1e-3, "%s: logits after 10 steps differ by %.3g", name, d);
        /* the trained adapter and our logits for tools/check_lora_peft.py (PEFT loads ours) */
        char dir[256], path[300];
        snprintf(dir, sizeof dir, "build/lora_out_%s", name);
        CHECK(sb_lora_save_peft(c.lora, c.m, dir, &err) == SB_OK, "%s", err.msg);
        snprintf(path, sizeof path, "%s/sabio_logits.bin", dir);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(logits, sizeof(float), (size_t)N * V, f);
            fclose(f);
        }
        snprintf(path, sizeof path, "%s/sabio_ids.bin", dir);
        f = fopen(path, "wb");
        if (f) {
            int32_t shape[2] = {c.n_seq, c.T};
            fwrite(shape, 4, 2, f);
            fwrite(c.tokens, 4, (size_t)N, f);
            fclose(f);
        }
    }
    sb_adamw_free(&opt);
    sb_train_ws_free(ws);
    free(logits);
    free(grads0);
    close_case(&c);
}

static void test_targets(void) {
    sb_err err = {0};
    sb_model *m = sb_model_open("tests/data/tiny_phi3_4k", &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    sb_lora_config lc = sb_lora_config_default();
    /* the Phi-3 trap: a llama target list */
    CHECK(sb_lora_config_set_targets(&lc, "q_proj,k_proj,v_proj,o_proj", &err) == SB_OK, "%s", err.msg);
    sb_lora *l = sb_lora_new(sb_model_get_config(m), &lc, false, &err);
    CHECK(l == NULL && strstr(err.msg, "'q_proj' matches no module") && strstr(err.msg, "qkv_proj"), "%s", err.msg);
    sb_lora_free(l);
    sb_lora_config_set_targets(&lc, "all-linear", &err);
    l = sb_lora_new(sb_model_get_config(m), &lc, false, &err);
    CHECK(l != NULL, "%s", err.msg);
    if (l) {
        int n = 0;
        for (int i = 0; i < SB_LORA_N_MOD; i++) n += l->mats[i].A != NULL;
        CHECK(n == 4, "phi3 all-linear adapts %d modules per layer, want 4", n);
        /* PEFT's init: A uniform in +-1/sqrt(n_in), B zero */
        sb_lora_init(l, 7);
        const sb_lora_mat *q = &l->mats[SB_LORA_QKV];
        float mx = 0, bmax = 0;
        for (int i = 0; i < lc.r * q->n_in; i++) mx = fabsf(q->A[i]) > mx ? fabsf(q->A[i]) : mx;
        for (int i = 0; i < lc.r * q->n_out; i++) bmax = fabsf(q->B[i]) > bmax ? fabsf(q->B[i]) : bmax;
        float bound = 1.0f / sqrtf((float)q->n_in);
        CHECK(mx <= bound && mx > 0.9f * bound && bmax == 0, "init: max |A| %g (bound %g), max |B| %g", (double)mx,
              (double)bound, (double)bmax);
        CHECK(fabsf(l->scale - 2.0f) < 1e-7f, "scale %g, want alpha/r = 2", (double)l->scale);
    }
    sb_lora_free(l);
    lc.rslora = true;
    l = sb_lora_new(sb_model_get_config(m), &lc, false, &err);
    CHECK(l && fabsf(l->scale - 16.0f / sqrtf(8.0f)) < 1e-6f, "rsLoRA scale");
    sb_lora_free(l);
    sb_model_free(m);
}

/* Logits of every row of the case's sequences through sb_decode (the
 * inference path) with adapter l on model m, exact float activations. */
static void decode_logits(sb_model *m, const sb_lora *l, const refcase *c, float *out) {
    sb_err err = {0};
    const int V = sb_model_get_config(m)->n_vocab;
    sb_ctx *ctx = sb_ctx_new(m, c->T, &err);
    CHECK(ctx != NULL, "%s", err.msg);
    if (!ctx) return;
    sb_ctx_set_exact(ctx, true);
    const sb_lora *ls[1] = {l};
    CHECK(sb_ctx_set_adapters(ctx, ls, l ? 1 : 0, &err) == SB_OK, "%s", err.msg);
    for (int s = 0; s < c->n_seq; s++) {
        sb_ctx_truncate(ctx, 0);
        /* in two calls: the prompt batch path, then one token at a time */
        int split = c->T - 2;
        CHECK(sb_decode(ctx, c->tokens + s * c->T, split, NULL, out + (size_t)s * c->T * V, &err) == SB_OK, "%s", err.msg);
        for (int t = split; t < c->T; t++)
            CHECK(sb_decode(ctx, c->tokens + s * c->T + t, 1, NULL, out + ((size_t)s * c->T + t) * V, &err) == SB_OK,
                  "%s", err.msg);
    }
    sb_ctx_free(ctx);
}

static bool same_params(const sb_lora *a, const sb_lora *b) {
    return a && b && a->n_params == b->n_params && !memcmp(a->params, b->params, a->n_params * sizeof(float)) &&
           a->scale == b->scale;
}

/* A PEFT-saved adapter in sabio: logits of the inference path equal PEFT's;
 * PEFT and GGUF files round-trip; a llama GGUF model (permuted Q/K) takes
 * the same adapter; merging gives the same logits. Writes the adapter after
 * training to build/lora_out/<case>/ for tools/check_lora_peft.py. */
static void test_adapter_files(const char *name) {
    refcase c;
    if (!open_case(&c, name)) {
        close_case(&c);
        return;
    }
    sb_err err = {0};
    const int V = sb_model_get_config(c.m)->n_vocab, N = c.n_seq * c.T;
    char path[256];
    snprintf(path, sizeof path, "tests/data/lora_ref/%s_adapter", name);
    sb_lora *peft = sb_lora_load(c.m, path, &err);
    CHECK(peft != NULL, "%s: %s", path, err.msg);
    float *logits = calloc((size_t)N * V, sizeof(float));
    sb_tensor t;
    find(c.st, "logits", &t);
    if (peft) {
        CHECK(same_params(peft, c.lora), "%s: PEFT adapter differs from init.* tensors", name);
        decode_logits(c.m, peft, &c, logits);
        double d = max_abs_diff(logits, t.data, (size_t)N * V, NULL);
        CHECK(d <= 1e-4, "%s: PEFT adapter at inference: logits differ by %.3g", name, d);
        fprintf(stderr, "%s: PEFT adapter, inference logits max diff %.2e\n", name, d);
    }
    /* round trips */
    snprintf(path, sizeof path, "build/test_lora_%s", name);
    CHECK(sb_lora_save_peft(c.lora, c.m, path, &err) == SB_OK, "%s", err.msg);
    sb_lora *back = sb_lora_load(c.m, path, &err);
    CHECK(same_params(back, c.lora), "%s: PEFT round trip: %s", name, back ? "parameters differ" : err.msg);
    sb_lora_free(back);
    snprintf(path, sizeof path, "build/test_lora_%s.gguf", name);
    CHECK(sb_lora_save_gguf(c.lora, c.m, path, &err) == SB_OK, "%s", err.msg);
    back = sb_lora_load(c.m, path, &err);
    CHECK(back && !memcmp(back->params, c.lora->params, c.lora->n_params * 4) && fabsf(back->scale - c.lora->scale) < 1e-6f,
          "%s: GGUF round trip: %s", name, back ? "parameters differ" : err.msg);
    sb_lora_free(back);
    /* merged into the base */
    snprintf(path, sizeof path, "build/test_lora_%s_merged.gguf", name);
    const sb_lora *ls[1] = {c.lora};
    CHECK(sb_lora_merge_save_gguf(c.m, ls, 1, path, SB_F32, &err) == SB_OK, "%s", err.msg);
    sb_model *merged = sb_model_open(path, &err);
    CHECK(merged != NULL, "%s: %s", path, err.msg);
    if (merged) {
        decode_logits(merged, NULL, &c, logits);
        double d = max_abs_diff(logits, t.data, (size_t)N * V, NULL);
        CHECK(d <= 1e-4, "%s: merged model: logits differ by %.3g", name, d);
        fprintf(stderr, "%s: merged F32 GGUF logits max diff %.2e\n", name, d);
        sb_model_free(merged);
        /* merged as a Hugging Face folder */
        snprintf(path, sizeof path, "build/test_lora_%s_merged_hf", name);
        CHECK(sb_lora_merge_save_hf(c.m, ls, 1, path, &err) == SB_OK, "%s", err.msg);
        merged = sb_model_open(path, &err);
        CHECK(merged != NULL, "%s: %s", path, err.msg);
        if (merged) {
            decode_logits(merged, NULL, &c, logits);
            double dh = max_abs_diff(logits, t.data, (size_t)N * V, NULL);
            CHECK(dh <= 1e-4, "%s: merged safetensors: logits differ by %.3g", name, dh);
            fprintf(stderr, "%s: merged safetensors logits max diff %.2e\n", name, dh);
            sb_model_free(merged);
        }
        /* the same PEFT adapter on the GGUF form of the base (llama: permuted Q/K rows) */
        snprintf(path, sizeof path, "build/test_lora_%s_base.gguf", name);
        CHECK(sb_model_save_gguf(c.m, path, SB_F32, &err) == SB_OK, "%s", err.msg);
        sb_model *gm = sb_model_open(path, &err);
        snprintf(path, sizeof path, "tests/data/lora_ref/%s_adapter", name);
        sb_lora *pg = gm ? sb_lora_load(gm, path, &err) : NULL;
        CHECK(pg != NULL, "%s on GGUF base: %s", name, err.msg);
        if (pg) {
            decode_logits(gm, pg, &c, logits);
            double d2 = max_abs_diff(logits, t.data, (size_t)N * V, NULL);
            CHECK(d2 <= 1e-4, "%s: PEFT adapter on the GGUF base: logits differ by %.3g", name, d2);
            fprintf(stderr, "%s: PEFT adapter on GGUF base (%s rope) logits max diff %.2e\n", name,
                    sb_model_get_config(gm)->rope_neox ? "neox" : "interleaved", d2);
            /* and back out in PEFT order from the GGUF base equals the original file's */
            snprintf(path, sizeof path, "build/test_lora_%s_fromgguf", name);
            sb_lora_save_peft(pg, gm, path, &err);
            sb_lora *again = sb_lora_load(c.m, path, &err);
            CHECK(same_params(again, peft), "%s: PEFT -> GGUF-base order -> PEFT changes the adapter", name);
            sb_lora_free(again);
        }
        sb_lora_free(pg);
        sb_model_free(gm);
    }
    sb_lora_free(peft);
    free(logits);
    close_case(&c);
}

/* With dropout the masks are ours (no PyTorch RNG to match): the gradient
 * of the masked loss is checked against central differences of the same
 * loss (same dropout seed) at the largest-gradient entries of A and B. */
static void test_dropout_grad(void) {
    refcase c;
    if (!open_case(&c, "phi3_4k")) {
        close_case(&c);
        return;
    }
    sb_err err = {0};
    c.lora->cfg.dropout = 0.2f;
    const int N = c.n_seq * c.T;
    sb_batch b = {c.tokens, c.targets, c.seq_len, c.n_seq};
    sb_train_ws *ws = sb_train_ws_new(c.m, c.lora, N, c.T, true, &err);
    CHECK(ws != NULL, "%s", err.msg);
    if (!ws) {
        close_case(&c);
        return;
    }
    memset(c.lora->grads, 0, c.lora->n_params * sizeof(float));
    double base = 0;
    sb_train_step(ws, &b, true, 1.0f / (float)c.n_tgt, 99, &base, NULL, NULL, &err);
    float *g = malloc(c.lora->n_params * sizeof(float));
    memcpy(g, c.lora->grads, c.lora->n_params * sizeof(float));
    const sb_lora_mat *q = &c.lora->mats[SB_LORA_QKV];
    size_t picks[2] = {0, 0};
    float best[2] = {0, 0};
    for (size_t i = 0; i < (size_t)c.lora->cfg.r * q->n_in; i++)
        if (fabsf(q->dA[i]) > best[0]) best[0] = fabsf(q->dA[i]), picks[0] = (size_t)(q->A - c.lora->params) + i;
    for (size_t i = 0; i < (size_t)c.lora->cfg.r * q->n_out; i++)
        if (fabsf(q->dB[i]) > best[1]) best[1] = fabsf(q->dB[i]), picks[1] = (size_t)(q->B - c.lora->params) + i;
    for (int k = 0; k < 2; k++) {
        float *p = &c.lora->params[picks[k]], keep = *p, h = 1e-2f;
        double lp = 0, lm = 0;
        *p = keep + h;
        sb_train_step(ws, &b, true, 0, 99, &lp, NULL, NULL, &err);
        *p = keep - h;
        sb_train_step(ws, &b, true, 0, 99, &lm, NULL, NULL, &err);
        *p = keep;
        double fd = (lp - lm) / (2.0 * h) / c.n_tgt, an = g[picks[k]];
        CHECK(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-5, "dropout gradient of %s: analytic %.6g, numeric %.6g",
              k ? "B" : "A", an, fd);
        fprintf(stderr, "dropout 0.2: d loss / d %s analytic %.6g numeric %.6g\n", k ? "B" : "A", an, fd);
    }
    /* the masks do something: the loss differs from the no-dropout loss */
    double nodrop = 0;
    sb_train_step(ws, &b, false, 0, 99, &nodrop, NULL, NULL, &err);
    CHECK(fabs(nodrop - base) > 1e-4, "dropout changes nothing (%.6f vs %.6f)", base, nodrop);
    free(g);
    sb_train_ws_free(ws);
    close_case(&c);
}

/* Frozen bases in F16, BF16 and Q8_0 (dequantized tile by tile): the
 * training forward equals the inference path on the same model, and the
 * gradients stay within the weights' rounding of PEFT's F32 ones. */
static void test_base_types(const char *name) {
    refcase c;
    if (!open_case(&c, name)) {
        close_case(&c);
        return;
    }
    sb_err err = {0};
    const int types[3] = {SB_F16, SB_BF16, SB_Q8_0};
    const int N = c.n_seq * c.T, V = sb_model_get_config(c.m)->n_vocab;
    float *lt = malloc((size_t)N * V * 4), *ld = malloc((size_t)N * V * 4);
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, "build/test_lora_%s_%s.gguf", name, sb_dtype_name(types[k]));
        CHECK(sb_model_save_gguf(c.m, path, types[k], &err) == SB_OK, "%s", err.msg);
        sb_model *qm = sb_model_open(path, &err);
        CHECK(qm != NULL, "%s: %s", path, err.msg);
        if (!qm) continue;
        /* the initial adapter through PEFT's file: llama's Q/K rows are permuted in GGUF */
        snprintf(path, sizeof path, "tests/data/lora_ref/%s_adapter", name);
        sb_lora *ql0 = sb_lora_load(qm, path, &err);
        sb_lora *ql = ql0 ? sb_lora_new(sb_model_get_config(qm), &ql0->cfg, true, &err) : NULL;
        CHECK(ql != NULL, "%s", err.msg);
        if (!ql) {
            sb_lora_free(ql0);
            sb_model_free(qm);
            continue;
        }
        memcpy(ql->params, ql0->params, ql->n_params * 4);
        sb_lora_free(ql0);
        const bool perm = !sb_model_get_config(qm)->rope_neox;
        sb_train_ws *ws = sb_train_ws_new(qm, ql, N, c.T, false, &err);
        sb_batch b = {c.tokens, c.targets, c.seq_len, c.n_seq};
        CHECK(ws && sb_train_step(ws, &b, true, 1.0f / (float)c.n_tgt, 0, NULL, NULL, lt, &err) == SB_OK, "%s", err.msg);
        decode_logits(qm, ql, &c, ld);
        double d = max_abs_diff(lt, ld, (size_t)N * V, NULL);
        CHECK(d <= 1e-4, "%s %s base: training logits differ from inference by %.3g", name, sb_dtype_name(types[k]), d);
        double worst = 0;
        for (int l = 0; l < sb_model_get_config(qm)->n_layer; l++)
            for (int mod = 0; mod < SB_LORA_N_MOD; mod++) {
                const sb_lora_mat *lm = &ql->mats[(size_t)l * SB_LORA_N_MOD + mod];
                if (!lm->A) continue;
                for (int isB = 0; isB < 2; isB++) {
                    char key[200], rn[220];
                    sb_lora_peft_key(key, sizeof key, l, mod, isB);
                    snprintf(rn, sizeof rn, "grad.%s", key);
                    sb_tensor t;
                    if (!find(c.st, rn, &t)) continue;
                    const float *g = isB ? lm->dB : lm->dA;
                    float *gp = NULL;
                    if (perm && isB && (mod == SB_LORA_Q || mod == SB_LORA_K)) { /* back to Hugging Face's row order */
                        const int r = ql->cfg.r, hd = sb_model_get_config(qm)->head_dim;
                        gp = malloc(t.nbytes);
                        for (int64_t row = 0; row < lm->n_out; row++)
                            memcpy(gp + sb_rope_perm_src_row(row, hd) * r, g + row * r, (size_t)r * 4);
                        g = gp;
                    }
                    double rm, e = max_abs_diff(g, t.data, t.nbytes / 4, &rm);
                    free(gp);
                    if (e / rm > worst) worst = e / rm;
                }
            }
        /* a sanity bound: the base's own rounding moves the gradients (Q8_0 by ~9%); a wrong tile or
         * transpose would move them by O(1) */
        const double tol = types[k] == SB_F16 ? 1e-2 : types[k] == SB_BF16 ? 5e-2 : 0.2;
        CHECK(worst <= tol, "%s %s base: gradients %.3g from PEFT's F32 ones (tolerance %.0e)", name,
              sb_dtype_name(types[k]), worst, tol);
        fprintf(stderr, "%s %s base: train/inference logits %.2e, gradient rel. diff to F32 %.2e\n", name,
                sb_dtype_name(types[k]), d, worst);
        sb_train_ws_free(ws);
        sb_lora_free(ql);
        sb_model_free(qm);
    }
    free(lt), free(ld);
    close_case(&c);
}

/* Hostile adapter files: each refused with a message naming the problem. */
static void test_bad_adapters(void) {
    sb_err err = {0};
    sb_model *m = sb_model_open("tests/data/tiny_phi3_4k", &err);
    if (!m) return;
    const char *dir = "build/test_lora_bad";
    mkdir(dir, 0755);
    char cfg[256], st[256];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", dir);
    float a[4 * 64] = {0}, bq[192 * 4] = {0};
    struct {
        const char *config, *key, *want;
        int64_t ne0, ne1;
    } cases[] = {
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16}", "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight",
         "shape", 64, 4},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16}", "base_model.model.model.layers.9.self_attn.qkv_proj.lora_A.weight",
         "not a LoRA weight", 64, 4},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16}", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
         "matches no module", 64, 4},
        {"{\"peft_type\": \"IA3\"}", "x", "not LORA", 64, 4},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, \"use_dora\": true}", "x", "DoRA", 64, 4},
        {"{\"peft_type\": \"LORA\", \"r\": 4", "x", "adapter_config.json", 64, 4},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        sb_write_file_atomic(cfg, cases[k].config, strlen(cases[k].config), &err);
        sb_st_writer *w = sb_st_writer_new();
        int64_t ne[2] = {cases[k].ne0, cases[k].ne1};
        sb_st_writer_add(w, cases[k].key, SB_F32, 2, ne, a, sizeof a);
        sb_st_writer_write(w, st, &err);
        sb_st_writer_free(w);
        sb_err e2 = {0};
        sb_lora *l = sb_lora_load(m, dir, &e2);
        CHECK(l == NULL && strstr(e2.msg, cases[k].want), "bad adapter %zu: want '%s', got '%s'", k, cases[k].want,
              l ? "(loaded)" : e2.msg);
        sb_lora_free(l);
    }
    /* a GGUF LoRA for another architecture */
    sb_gguf_writer *g = sb_gguf_writer_new();
    sb_gguf_writer_set_str(g, "general.architecture", "llama");
    sb_gguf_writer_set_str(g, "general.type", "adapter");
    sb_gguf_writer_set_str(g, "adapter.type", "lora");
    int64_t nea[2] = {64, 4}, neb[2] = {4, 192};
    sb_gguf_writer_add_tensor(g, "blk.0.attn_qkv.weight.lora_a", SB_F32, 2, nea, a, sizeof a);
    sb_gguf_writer_add_tensor(g, "blk.0.attn_qkv.weight.lora_b", SB_F32, 2, neb, bq, sizeof bq);
    sb_gguf_writer_write(g, "build/test_lora_bad.gguf", &err);
    sb_gguf_writer_free(g);
    sb_lora *l = sb_lora_load(m, "build/test_lora_bad.gguf", &err);
    CHECK(l == NULL && strstr(err.msg, "architecture llama"), "GGUF LoRA of another arch: %s", l ? "(loaded)" : err.msg);
    sb_lora_free(l);
    sb_model_free(m);
}

int main(void) {
    test_targets();
    test_bad_adapters();
    test_base_types("phi3_4k");
    test_base_types("llama");
    test_dropout_grad();
    run_case("phi3_4k");
    run_case("phi3_128k");
    run_case("phi3_gqa");
    run_case("llama");
    run_case("qlora_phi3"); /* NF4 base: bitsandbytes 4-bit checkpoint (tools/gen_qlora_ref.py) */
    test_adapter_files("phi3_4k");
    test_adapter_files("phi3_128k");
    test_adapter_files("phi3_gqa");
    test_adapter_files("llama");
    return TEST_END();
}
