/*
 * lora.c - LoRA adapter parameters (lora.h): which modules a target list
 * selects, the parameter slab, PEFT's initialisation and key names.
 */
#include "model/lora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const MOD_NAME[SB_LORA_N_MOD] = {
    "q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "gate_proj", "up_proj", "gate_up_proj", "down_proj",
};
static const char *const MOD_GGUF[SB_LORA_N_MOD] = {
    "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_up", "ffn_down",
};

const char *sb_lora_mod_name(int mod) { return mod >= 0 && mod < SB_LORA_N_MOD ? MOD_NAME[mod] : "?"; }
const char *sb_lora_mod_gguf_name(int mod) { return mod >= 0 && mod < SB_LORA_N_MOD ? MOD_GGUF[mod] : "?"; }

sb_lora_config sb_lora_config_default(void) {
    sb_lora_config c = {.r = 8, .alpha = 16, .dropout = 0.05f, .rslora = false, .n_targets = 1};
    strcpy(c.targets[0], "all-linear");
    return c;
}

sb_status sb_lora_config_set_targets(sb_lora_config *c, const char *list, sb_err *err) {
    c->n_targets = 0;
    const char *s = list;
    while (*s) {
        size_t n = strcspn(s, ", ");
        if (n > 0) {
            if (c->n_targets == SB_LORA_MAX_TARGETS)
                return sb_err_set(err, SB_ERR_INVALID, "LoRA targets: more than %d names", SB_LORA_MAX_TARGETS);
            if (n >= sizeof c->targets[0])
                return sb_err_set(err, SB_ERR_INVALID, "LoRA target '%.*s' is too long", (int)n, s);
            memcpy(c->targets[c->n_targets], s, n);
            c->targets[c->n_targets][n] = 0;
            if (!strcmp(c->targets[c->n_targets], "all")) strcpy(c->targets[c->n_targets], "all-linear");
            c->n_targets++;
        }
        s += n;
        while (*s == ',' || *s == ' ') s++;
    }
    if (c->n_targets == 0) return sb_err_set(err, SB_ERR_INVALID, "LoRA targets: the list '%s' is empty", list);
    return SB_OK;
}

unsigned sb_lora_model_modules(const sb_model_config *c) {
    unsigned m = 1u << SB_LORA_O | 1u << SB_LORA_DOWN;
    m |= c->fused_qkv ? 1u << SB_LORA_QKV : (1u << SB_LORA_Q | 1u << SB_LORA_K | 1u << SB_LORA_V);
    m |= c->fused_gate_up ? 1u << SB_LORA_GATE_UP : (1u << SB_LORA_GATE | 1u << SB_LORA_UP);
    return m;
}

void sb_lora_mod_dims(const sb_model_config *c, int mod, int *n_in, int *n_out) {
    const int D = c->n_embd, nq = c->n_head * c->head_dim, nkv = c->n_head_kv * c->head_dim, F = c->n_ff;
    switch (mod) {
    case SB_LORA_Q: *n_in = D, *n_out = nq; break;
    case SB_LORA_K:
    case SB_LORA_V: *n_in = D, *n_out = nkv; break;
    case SB_LORA_QKV: *n_in = D, *n_out = nq + 2 * nkv; break;
    case SB_LORA_O: *n_in = nq, *n_out = D; break;
    case SB_LORA_GATE:
    case SB_LORA_UP: *n_in = D, *n_out = F; break;
    case SB_LORA_GATE_UP: *n_in = D, *n_out = 2 * F; break;
    default: *n_in = F, *n_out = D; break; /* down_proj */
    }
}

static void list_modules(char *out, size_t n, unsigned have) {
    out[0] = 0;
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (have & 1u << i) {
            size_t len = strlen(out);
            snprintf(out + len, n - len, "%s%s", len ? ", " : "", MOD_NAME[i]);
        }
}

sb_lora *sb_lora_new(const sb_model_config *mc, const sb_lora_config *cfg, bool grads, sb_err *err) {
    if (cfg->r < 1 || cfg->r > 4096) {
        sb_err_set(err, SB_ERR_INVALID, "LoRA rank r = %d is not in 1..4096", cfg->r);
        return NULL;
    }
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) {
        sb_err_set(err, SB_ERR_INVALID, "LoRA dropout %g is not in [0, 1)", (double)cfg->dropout);
        return NULL;
    }
    const unsigned have = sb_lora_model_modules(mc);
    unsigned sel = 0;
    for (int t = 0; t < cfg->n_targets; t++) {
        const char *name = cfg->targets[t];
        unsigned hit = 0;
        if (!strcmp(name, "all-linear")) hit = have;
        for (int i = 0; i < SB_LORA_N_MOD; i++)
            if (!strcmp(name, MOD_NAME[i])) hit = (1u << i) & have;
        if (!hit) {
            char mods[256];
            list_modules(mods, sizeof mods, have);
            sb_err_set(err, SB_ERR_INVALID, "LoRA target '%s' matches no module of this %s model (its linear layers: %s)",
                       name, mc->arch, mods);
            return NULL;
        }
        sel |= hit;
    }
    sb_lora *l = sb_calloc(1, sizeof *l);
    if (!l) goto nomem;
    l->cfg = *cfg;
    snprintf(l->arch, sizeof l->arch, "%s", mc->arch);
    l->n_layer = mc->n_layer;
    l->scale = cfg->rslora ? cfg->alpha / sqrtf((float)cfg->r) : cfg->alpha / (float)cfg->r;
    l->user_scale = 1.0f;
    l->mats = sb_calloc((size_t)mc->n_layer * SB_LORA_N_MOD, sizeof *l->mats);
    if (!l->mats) goto nomem;
    size_t total = 0;
    for (int i = 0; i < SB_LORA_N_MOD; i++)
        if (sel & 1u << i) {
            int n_in, n_out;
            sb_lora_mod_dims(mc, i, &n_in, &n_out);
            total += (size_t)cfg->r * (size_t)(n_in + n_out);
        }
    total *= (size_t)mc->n_layer;
    l->n_params = total;
    l->params = sb_calloc(total, sizeof(float));
    if (!l->params) goto nomem;
    if (grads && !(l->grads = sb_calloc(total, sizeof(float)))) goto nomem;
    size_t off = 0;
    for (int layer = 0; layer < mc->n_layer; layer++)
        for (int i = 0; i < SB_LORA_N_MOD; i++) {
            if (!(sel & 1u << i)) continue;
            sb_lora_mat *m = &l->mats[(size_t)layer * SB_LORA_N_MOD + i];
            sb_lora_mod_dims(mc, i, &m->n_in, &m->n_out);
            m->A = l->params + off;
            if (l->grads) m->dA = l->grads + off;
            off += (size_t)cfg->r * (size_t)m->n_in;
            m->B = l->params + off;
            if (l->grads) m->dB = l->grads + off;
            off += (size_t)cfg->r * (size_t)m->n_out;
        }
    return l;
nomem:
    sb_lora_free(l);
    sb_err_set(err, SB_ERR_NOMEM, "out of memory for the LoRA parameters");
    return NULL;
}

void sb_lora_free(sb_lora *l) {
    if (!l) return;
    free(l->mats);
    free(l->params);
    free(l->grads);
    free(l);
}

uint64_t sb_rng_at(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sb_lora_init(sb_lora *l, uint64_t seed) {
    /* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3),
     * bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in) */
    uint64_t k = 0;
    for (int layer = 0; layer < l->n_layer; layer++)
        for (int i = 0; i < SB_LORA_N_MOD; i++) {
            sb_lora_mat *m = &l->mats[(size_t)layer * SB_LORA_N_MOD + i];
            if (!m->A) continue;
            const float bound = 1.0f / sqrtf((float)m->n_in);
            for (size_t j = 0; j < (size_t)l->cfg.r * (size_t)m->n_in; j++)
                m->A[j] = (2.0f * sb_rng_unit(sb_rng_at(seed, k++)) - 1.0f) * bound;
            memset(m->B, 0, (size_t)l->cfg.r * (size_t)m->n_out * sizeof(float));
        }
}

void sb_lora_peft_key(char *out, size_t n, int layer, int mod, bool is_B) {
    const char *block = mod <= SB_LORA_O ? "self_attn" : "mlp";
    snprintf(out, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, block, MOD_NAME[mod],
             is_B ? 'B' : 'A');
}

void sb_lora_apply(const sb_lora *l, int layer, int mod, const float *x, int n, float *y, int64_t ldy, int o0, int o1) {
    const sb_lora_mat *m = &l->mats[(size_t)layer * SB_LORA_N_MOD + mod];
    if (!m->A || o1 <= o0) return;
    if (n == 1) ldy = o1 - o0; /* one row: no stride */
    const int r = l->cfg.r;
    float u[4096]; /* (rows, r) x A^T for a chunk of rows */
    const int chunk = r < 4096 ? 4096 / r : 1;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int rows = n - i0 < chunk ? n - i0 : chunk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r, m->n_in, 1.0f, x + (size_t)i0 * m->n_in, m->n_in,
                    m->A, m->n_in, 0.0f, u, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, o1 - o0, r, l->scale * l->user_scale, u, r,
                    m->B + (size_t)o0 * r, r, 1.0f, y + (size_t)i0 * ldy, (int)ldy);
    }
}
