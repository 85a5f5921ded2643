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
 * handed back (MADV_DONTNEED), so quantizing a 16-bit checkpoint at load does
 * not leave the whole file resident.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
    sb_tensor packed; /* the file's own copy of the name outlives this call's buffer */
    sb_st_tensor(m->st, sb_st_find(m->st, name), &packed);
    sb_nf4_view(q, packed.name, ne0, ne1, out);
    return SB_OK;
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
    sb_model_page_out(w->data, w->nbytes);
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

/* ------------------------------------------------------------ save -- */

/* The model's NF4 view of source tensor `name`, or NULL. */
static const sb_tensor *nf4_view_named(const sb_model *m, const char *name) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const sb_layer *L = &m->layers[l];
        const sb_tensor *ws[LINEAR_PER_LAYER] = {&L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo,
                                                 &L->w_gate_up, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < LINEAR_PER_LAYER; i++)
            if (ws[i]->type == SB_NF4 && ws[i]->name && !strcmp(ws[i]->name, name)) return ws[i];
    }
    return NULL;
}

static const char *torch_dtype(int type) {
    return type == SB_F32 ? "float32" : type == SB_F16 ? "float16" : type == SB_BF16 ? "bfloat16" : NULL;
}

/* transformers' quantization_config for a 4-bit bitsandbytes model. */
static json_t *quantization_config(bool nested) {
    return json_pack("{s:b, s:b, s:s, s:s, s:s, s:b, s:b, s:b, s:n, s:f, s:b, s:b, s:s}", "_load_in_4bit", 1,
                     "_load_in_8bit", 0, "bnb_4bit_compute_dtype", "float32", "bnb_4bit_quant_storage", "uint8",
                     "bnb_4bit_quant_type", "nf4", "bnb_4bit_use_double_quant", nested,
                     "llm_int8_enable_fp32_cpu_offload", 0, "llm_int8_has_fp16_weight", 0, "llm_int8_skip_modules",
                     "llm_int8_threshold", 6.0, "load_in_4bit", 1, "load_in_8bit", 0, "quant_method", "bitsandbytes");
}

static sb_status copy_file(const char *from, const char *to, sb_err *err) {
    char *data = NULL;
    size_t len = 0;
    sb_status st = sb_read_file(from, 0, &data, &len, err);
    if (st == SB_OK) st = sb_write_file_atomic(to, data, len, err);
    free(data);
    return st;
}

sb_status sb_model_save_nf4(const sb_model *m, const char *dir, sb_err *err) {
    if (m->source != SB_SRC_HF)
        return sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: NF4 checkpoints are written from Hugging Face folders "
                          "(this model is a GGUF; use --nf4 at load instead)", m->path);
    const char *slash = strrchr(m->path, '/');
    char *src_dir = sb_is_dir(m->path) ? sb_strdup(m->path)
                    : slash ? sb_strndup(m->path, (size_t)(slash - m->path)) : sb_strdup(".");
    sb_st_writer *w = sb_st_writer_new();
    const int64_t nt = sb_st_n_tensors(m->st);
    char **states = sb_calloc((size_t)nt + 1, sizeof *states);
    json_t *cfg = NULL;
    char *path = NULL, *text = NULL;
    sb_status st = SB_OK;
    if (!src_dir || !w || !states) {
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        st = sb_err_set(err, SB_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
        goto done;
    }
    int n_nf4 = 0;
    bool nested = true;
    for (int64_t i = 0; i < nt && st == SB_OK; i++) {
        sb_tensor t;
        if (!sb_st_tensor(m->st, i, &t) || !t.name) continue;
        if (sb_st_is_nf4(m->st, t.name)) {
            st = sb_err_set(err, SB_ERR_UNSUPPORTED, "%s is already a bitsandbytes 4-bit checkpoint", m->path);
            break;
        }
        const sb_tensor *q = nf4_view_named(m, t.name);
        if (q && torch_dtype(t.type)) {
            nested = sb_nf4_of(q)->nested;
            st = sb_st_writer_add_nf4(w, t.name, sb_nf4_of(q), q->ne[1], q->ne[0], torch_dtype(t.type), &states[i],
                                      err);
            n_nf4++;
        } else if (torch_dtype(t.type)) {
            st = sb_st_writer_add(w, t.name, t.type, t.n_dims, t.ne, t.data, t.nbytes);
            if (st != SB_OK) sb_err_set(err, st, "tensor %s: cannot add to the safetensors writer", t.name);
        } else {
            st = sb_err_set(err, SB_ERR_UNSUPPORTED, "tensor %s: type %s cannot be written", t.name,
                            sb_dtype_name(t.type));
        }
    }
    if (st == SB_OK && n_nf4 == 0)
        st = sb_err_set(err, SB_ERR_INVALID, "%s: no NF4 weights to write (quantize first)", m->path);
    if (st == SB_OK) st = sb_st_writer_set_metadata(w, "format", "pt");
    if (st == SB_OK && !(path = sb_path_join(dir, "model.safetensors"))) st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (st == SB_OK) st = sb_st_writer_write(w, path, err);
    /* config.json with transformers' quantization_config, tokenizer files copied */
    free(path);
    path = sb_path_join(src_dir, "config.json");
    json_error_t je;
    if (st == SB_OK && (!path || !(cfg = json_load_file(path, 0, &je))))
        st = sb_err_set(err, SB_ERR_FORMAT, "%s: %s", path ? path : "config.json", je.text);
    if (st == SB_OK && json_object_set_new(cfg, "quantization_config", quantization_config(nested)))
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    if (st == SB_OK && !(text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS)))
        st = sb_err_set(err, SB_ERR_NOMEM, "out of memory");
    free(path);
    path = st == SB_OK ? sb_path_join(dir, "config.json") : NULL;
    if (st == SB_OK) st = path ? sb_write_file_atomic(path, text, strlen(text), err) : SB_ERR_NOMEM;
    static const char *const tok_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                            "tokenizer.model"};
    for (size_t i = 0; st == SB_OK && i < sizeof tok_files / sizeof *tok_files; i++) {
        char *from = sb_path_join(src_dir, tok_files[i]), *to = sb_path_join(dir, tok_files[i]);
        if (from && to && sb_file_exists(from)) st = copy_file(from, to, err);
        free(from);
        free(to);
    }
done:
    for (int64_t i = 0; states && i < nt; i++) free(states[i]);
    free(states);
    sb_st_writer_free(w);
    json_decref(cfg);
    free(text);
    free(path);
    free(src_dir);
    return st;
}
