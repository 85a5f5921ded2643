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

#include "model/model_impl.h"
#include "tensor/matvec.h"
#include "tensor/ops.h"

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
    uint8_t *pos_long;  /* (T) 1 if that position's keys used LongRoPE's long factors */
    float *slab;
};

/* ------------------------------------------------------------ context -- */

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
    return c;
}

void sb_ctx_free(sb_ctx *c) {
    if (!c) return;
    free(c->slab);
    free(c->tokens);
    free(c->pos_long);
    free(c);
}

int sb_ctx_n_past(const sb_ctx *c) { return c->n_past; }
int sb_ctx_n_ctx(const sb_ctx *c) { return c->n_ctx; }

void sb_ctx_truncate(sb_ctx *c, int n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < c->n_past) c->n_past = n_keep;
}

/* --------------------------------------------------------------- RoPE -- */

/* inv_freq[i] = 1 / (factor[i] * theta^(2i/n_rot)), evaluated in f32 in the
 * order transformers does (_compute_default_rope_parameters /
 * _compute_longrope_parameters); factor = 1 without LongRoPE. */
static void set_rope_freqs(sb_ctx *c, int use_long) {
    if (c->rope_long == use_long) return;
    const sb_model *m = c->m;
    const sb_model_config *p = &m->cfg;
    const float *factor = !p->longrope ? NULL : use_long ? m->rope_long : m->rope_short;
    for (int i = 0; i < p->n_rot / 2; i++) {
        float expo = (float)(2 * i) / (float)p->n_rot;
        float base_pow = (float)pow((double)p->rope_theta, (double)expo);
        float denom = factor ? factor[i] * base_pow : base_pow;
        c->inv_freq[i] = 1.0f / denom;
    }
    c->rope_long = use_long;
}

/* ------------------------------------------------------------ forward -- */

/* Runs one token at position pos (keys/values of 0..pos-1 are cached),
 * stores its keys/values, and writes its logits if logits != NULL. */
static void forward_token(sb_ctx *c, int32_t token, int pos, float *logits) {
    const sb_model *m = c->m;
    const sb_model_config *p = &m->cfg;
    const int D = p->n_embd, Hd = p->head_dim, F = p->n_ff;
    const int nq = p->n_head * Hd, nkv = p->n_head_kv * Hd;
    const int n_rep = p->n_head / p->n_head_kv; /* repeat_kv: query head h reads kv head h / n_rep */
    const float scale = (float)(1.0 / sqrt((double)Hd)); /* head_dim ** -0.5 */
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
            sb_matvec(&L->wqkv, c->xb, q, 0, nq + 2 * nkv);
        } else {
            sb_matvec(&L->wq, c->xb, q, 0, nq);
            sb_matvec(&L->wk, c->xb, k, 0, nkv);
            sb_matvec(&L->wv, c->xb, v, 0, nkv);
        }
        /* q, k = apply_rotary_pos_emb(q, k, cos, sin) */
        sb_rope_apply(q, p->n_head, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
        sb_rope_apply(k, p->n_head_kv, Hd, p->n_rot, c->rope_cos, c->rope_sin, p->rope_neox);
        /* k, v = past_key_values.update(k, v) */
        memcpy(kc + (size_t)pos * nkv, k, (size_t)nkv * sizeof(float));
        memcpy(vc + (size_t)pos * nkv, v, (size_t)nkv * sizeof(float));

        /* attn = softmax(q k^T * scale + mask) v; the sliding-window mask
         * keeps keys t with pos - W < t <= pos (masking_utils.sliding_window_overlay) */
        int t0 = 0;
        if (p->sliding_window > 0 && pos - p->sliding_window + 1 > 0) t0 = pos - p->sliding_window + 1;
        int n_att = pos - t0 + 1;
        for (int h = 0; h < p->n_head; h++) {
            const float *qh = q + (size_t)h * Hd;
            const size_t koff = (size_t)(h / n_rep) * Hd;
            for (int t = t0; t <= pos; t++) {
                const float *kt = kc + (size_t)t * nkv + koff;
                float s = 0.0f;
                for (int i = 0; i < Hd; i++) s += qh[i] * kt[i];
                c->att[t - t0] = s * scale;
            }
            sb_softmax(c->att, n_att);
            float *oh = c->att_out + (size_t)h * Hd;
            memset(oh, 0, (size_t)Hd * sizeof(float));
            for (int t = t0; t <= pos; t++) {
                const float *vt = vc + (size_t)t * nkv + koff;
                float a = c->att[t - t0];
                for (int i = 0; i < Hd; i++) oh[i] += a * vt[i];
            }
        }
        /* x = x + o_proj(attn) */
        sb_matvec(&L->wo, c->att_out, c->xb2, 0, D);
        sb_add(x, c->xb2, D);

        /* h = post_attention_layernorm(x) */
        sb_rmsnorm(c->xb, x, L->ffn_norm, D, p->rms_eps);
        /* gate, up = gate_up_proj(h).chunk(2)  |  gate_proj(h), up_proj(h) */
        if (p->fused_gate_up) {
            sb_matvec(&L->w_gate_up, c->xb, c->hb, 0, 2 * F);
        } else {
            sb_matvec(&L->w_gate, c->xb, c->hb, 0, F);
            sb_matvec(&L->w_up, c->xb, c->hb + F, 0, F);
        }
        /* x = x + down_proj(silu(gate) * up) */
        sb_swiglu(c->hb, c->hb, c->hb + F, F);
        sb_matvec(&L->w_down, c->hb, c->xb2, 0, D);
        sb_add(x, c->xb2, D);
    }
    if (!logits) return;
    /* logits = lm_head(norm(x)) */
    sb_rmsnorm(x, x, m->output_norm, D, p->rms_eps);
    sb_matvec(&m->output, x, logits, 0, p->n_vocab);
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
        int pos = c->n_past + i;
        bool last = i == n - 1;
        float *out = all_logits ? all_logits + (size_t)i * V : last ? logits : NULL;
        c->tokens[pos] = tokens[i];
        c->pos_long[pos] = (uint8_t)use_long;
        forward_token(c, tokens[i], pos, out);
        if (last && logits && all_logits) memcpy(logits, out, (size_t)V * sizeof(float));
    }
    c->n_past += n;
    return SB_OK;
}
