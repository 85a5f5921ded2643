/*
 * repack.c - a loaded model's weights rearranged in memory for this CPU's
 * decode kernels (sb_model_repack, model.h).
 *
 * Today one case: on a CPU whose best kernels are AVX2, Q4_0 matrices of the
 * attention and MLP (and an untied Q4_0 lm_head) become SB_Q4_0_R8, eight
 * rows interleaved (tensor/q4r8.h), whose kernel does the same integer and
 * float operations as the scalar Q4_0 one with about 60% of the row
 * kernels' instructions. AVX-512 machines keep Q4_0: their kernels (and the
 * VNNI prompt panels, which have no R8 form) were measured on Q4_0.
 *
 * The repacked bytes live in one slab owned by the model (m->r8_slab), the
 * same size as the file's Q4_0 bytes; once a matrix is repacked the pages of
 * its mapped source are handed back (sb_model_page_out), so the process
 * holds one copy. Views made later by the forward pass (q | k | v of a fused
 * qkv_proj) start at multiples of 8 rows, which the layout keeps as rows.
 */
#include "model/model_impl.h"
#include "tensor/kernels.h"
#include "tensor/q4r8.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* split: the row offsets views of this matrix start at must be multiples of 8 */
static bool wants(const sb_tensor *w, bool split_ok) {
    return w->data && w->type == SB_Q4_0 && split_ok && sb_q4r8_fits(w->ne[0], w->ne[1]);
}

/* every matrix repack() may touch, with whether its views stay whole groups */
static int targets(sb_model *m, sb_tensor **out, int cap) {
    const sb_model_config *c = &m->cfg;
    const bool qkv_ok = (c->n_head * c->head_dim) % 8 == 0 && (c->n_head_kv * c->head_dim) % 8 == 0;
    int n = 0;
    for (int l = 0; l < c->n_layer; l++) {
        sb_layer *L = &m->layers[l];
        sb_tensor *const ws[] = {&L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate_up, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (n < cap && wants(ws[i], ws[i] != &L->wqkv || qkv_ok)) out[n++] = ws[i];
    }
    if (!c->tied_embeddings && n < cap && wants(&m->output, true)) out[n++] = &m->output;
    return n;
}

bool sb_model_repack_applies(void) { return !strcmp(sb_kernels_isa(), "avx2"); }

sb_status sb_model_repack(sb_model *m, int *n_repacked, sb_err *err) {
    if (n_repacked) *n_repacked = 0;
    if (m->r8_slab || !sb_model_repack_applies()) return SB_OK;
    const int cap = m->cfg.n_layer * 9 + 1;
    sb_tensor **ws = sb_calloc((size_t)cap, sizeof *ws);
    if (!ws) return sb_err_set(err, SB_ERR_NOMEM, "repack: out of memory");
    const int n = targets(m, ws, cap);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (ws[i]->nbytes + 63) & ~(size_t)63;
    if (n == 0) {
        free(ws);
        return SB_OK;
    }
    const size_t huge = (size_t)2 << 20;
    total = (total + huge - 1) / huge * huge;
    uint8_t *slab = aligned_alloc(huge, total);
    if (!slab) {
        free(ws);
        return sb_err_set(err, SB_ERR_NOMEM, "repack: out of memory for %zu bytes", total);
    }
    madvise(slab, total, MADV_HUGEPAGE); /* fewer faults at load, fewer TLB misses in decode */
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        sb_tensor *w = ws[i];
        sb_q4r8_pack(w->data, slab + off, w->ne[0], 0, w->ne[1]);
        sb_model_page_out(w->data, w->nbytes);
        w->data = slab + off, w->type = SB_Q4_0_R8;
        off += (w->nbytes + 63) & ~(size_t)63;
    }
    m->r8_slab = slab;
    free(ws);
    if (n_repacked) *n_repacked = n;
    sb_log(SB_LOG_INFO, "repacked %d Q4_0 matrices (%.1f MB) for the AVX2 kernels", n, (double)total / 1e6);
    return SB_OK;
}
