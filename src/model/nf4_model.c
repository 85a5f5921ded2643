/*
 * nf4_model.c - a decoder's linear weights in NF4 (QLoRA's frozen base):
 * bound from a bitsandbytes 4-bit safetensors checkpoint as they are, or
 * quantized at load from any other type (F32/F16/BF16 safetensors, GGUF).
 * As QLoRA does, only the attention and MLP projections are quantized; the
 * token embedding, the norms and lm_head keep their precision.
 *
 * The sb_nf4 states live in one array owned by the model (m->nf4), allocated
 * once with room for every linear weight, so the views' data pointers stay
 * valid. Once a weight is quantized, the pages of its mapped source are
 * handed back (MADV_PAGEOUT), so quantizing a 16-bit checkpoint at load does
 * not leave the whole file resident.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/nf4_st.h"
#include "model/model_impl.h"
#include "tensor/matvec.h"

enum { LINEAR_PER_LAYER = 9 };

static sb_nf4 *new_slot(sb_model *m, sb_err *err) {
    if (!m->nf4) {
        m->cap_nf4 = (int64_t)m->cfg.n_layer * LINEAR_PER_LAYER;
        m->nf4 = sb_calloc((size_t)m->cap_nf4, sizeof *m->nf4);
        if (!m->nf4) {
            sb_err_set(err, SB_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    if (m->n_nf4 >= m->cap_nf4) {
        sb_err_set(err, SB_ERR_RANGE, "more NF4 weights than linear layers");
        return NULL;
    }
    return &m->nf4[m->n_nf4++];
}

void sb_model_free_nf4(sb_model *m) {
    for (int64_t i = 0; i < m->n_nf4; i++) sb_nf4_free(&m->nf4[i]);
    free(m->nf4);
    m->nf4 = NULL;
    m->n_nf4 = m->cap_nf4 = 0;
}

sb_status sb_model_bind_nf4(sb_model *m, const char *name, int64_t ne0, int64_t ne1, sb_tensor *out, bool *found,
                            sb_err *err) {
    *found = m->source == SB_SRC_HF && m->st && sb_st_is_nf4(m->st, name);
    if (!*found) return SB_OK;
    if (ne1 == 0) return sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s: an NF4 vector", name);
    sb_nf4 *q = new_slot(m, err);
    if (!q) return err ? err->code : SB_ERR_NOMEM;
    int64_t shape[2];
    sb_status st = sb_st_nf4(m->st, name, q, shape, err);
    if (st != SB_OK) {
        m->n_nf4--;
        return st;
    }
    if (shape[0] != ne1 || shape[1] != ne0)
        return sb_err_set(err, SB_ERR_FORMAT, "tensor %s: NF4 shape [%lld, %lld], expected [%lld, %lld]", name,
                          (long long)shape[0], (long long)shape[1], (long long)ne1, (long long)ne0);
    sb_nf4_view(q, name, ne0, ne1, out);
    return SB_OK;
}

/* Drops the resident pages wholly inside [p, p + n) of a file mapping (a
 * clean page is re-read if touched again; anonymous memory is left alone). */
static void page_out(const void *p, size_t n) {
#ifdef MADV_PAGEOUT
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_PAGEOUT);
#else
    (void)p, (void)n;
#endif
}

static sb_status quantize_one(sb_model *m, sb_tensor *w, int blocksize, bool nested, sb_err *err) {
    if (!w->data || w->type == SB_NF4) return SB_OK;
    const int64_t n_in = w->ne[0], rows = w->ne[1];
    size_t count;
    if (!sb_mul_ok((size_t)n_in, (size_t)rows, &count)) return sb_err_set(err, SB_ERR_NOMEM, "size overflow");
    float *f = sb_malloc(count * sizeof(float)); /* transient: one matrix, freed below */
    if (!f) return sb_err_set(err, SB_ERR_NOMEM, "tensor %s: out of memory dequantizing", w->name);
    for (int64_t r = 0; r < rows; r++) sb_get_row(w, r, f + (size_t)r * (size_t)n_in);
    sb_nf4 *q = new_slot(m, err);
    sb_status st = q ? sb_nf4_quantize(f, (int64_t)count, blocksize, nested, q, err) : SB_ERR_RANGE;
    free(f);
    if (st != SB_OK) {
        if (q) m->n_nf4--;
        return sb_err_prefix(err, "tensor %s", w->name ? w->name : "?");
    }
    page_out(w->data, w->nbytes);
    sb_nf4_view(q, w->name, n_in, rows, w);
    return SB_OK;
}

sb_status sb_model_quantize_nf4(sb_model *m, int blocksize, bool double_quant, sb_err *err) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        sb_layer *L = &m->layers[l];
        sb_tensor *ws[LINEAR_PER_LAYER] = {&L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo,
                                           &L->w_gate_up, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < LINEAR_PER_LAYER; i++) {
            sb_status st = quantize_one(m, ws[i], blocksize, double_quant, err);
            if (st != SB_OK) return st;
        }
    }
    m->cfg.weight_type = SB_NF4;
    return SB_OK;
}
