/*
 * spm_model.c - reading a SentencePiece tokenizer.model (a serialized
 * sentencepiece.ModelProto, protocol buffers wire format) into a tokenizer,
 * for Hugging Face folders that ship one (Llama-2, Phi-3).
 *
 * Fields used (sentencepiece_model.proto):
 *   ModelProto      1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
 *   SentencePiece   1: string piece, 2: float score, 3: Type (1 normal, 2 unknown,
 *                   3 control, 4 user defined, 5 unused, 6 byte)
 *   TrainerSpec     3: model_type (1 unigram, 2 bpe), 35: byte_fallback,
 *                   40: unk_id, 41: bos_id, 42: eos_id
 *   NormalizerSpec  3: add_dummy_prefix (default true)
 * Every length is checked against the bytes that remain; unknown fields are
 * skipped by wire type.
 */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct pb {
    const uint8_t *p, *end;
    sb_err *err;
    const char *path;
} pb;

static bool pb_fail(pb *b, const char *what) {
    sb_err_set(b->err, SB_ERR_FORMAT, "%s: malformed tokenizer.model: %s at byte %zu", b->path, what,
               (size_t)(b->end - b->p));
    return false;
}

static bool pb_varint(pb *b, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return pb_fail(b, "truncated varint");
        uint8_t c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return true;
    }
    return pb_fail(b, "varint longer than 10 bytes");
}

/* Reads a field key; false at the end of the message. */
static bool pb_key(pb *b, uint32_t *field, uint32_t *wire, bool *ok) {
    *ok = true;
    if (b->p >= b->end) return false;
    uint64_t k;
    if (!pb_varint(b, &k)) return *ok = false;
    *field = (uint32_t)(k >> 3);
    *wire = (uint32_t)(k & 7);
    return true;
}

/* A length-delimited field's bytes as a sub-reader. */
static bool pb_bytes(pb *b, pb *sub) {
    uint64_t n;
    if (!pb_varint(b, &n)) return false;
    if (n > (uint64_t)(b->end - b->p)) return pb_fail(b, "length past the end");
    *sub = (pb){b->p, b->p + n, b->err, b->path};
    b->p += n;
    return true;
}

static bool pb_skip(pb *b, uint32_t wire) {
    uint64_t v;
    pb sub;
    switch (wire) {
    case 0: return pb_varint(b, &v);
    case 1: if (b->end - b->p < 8) return pb_fail(b, "truncated fixed64"); b->p += 8; return true;
    case 2: return pb_bytes(b, &sub);
    case 5: if (b->end - b->p < 4) return pb_fail(b, "truncated fixed32"); b->p += 4; return true;
    default: return pb_fail(b, "unsupported wire type");
    }
}

typedef struct piece {
    const char *s;
    size_t n;
    float score;
    int type;
} piece;

sb_tokenizer *sb_tokenizer_from_spm_model(const char *path, sb_err *err) {
    char *data = NULL;
    size_t len = 0;
    if (sb_read_file(path, 64u << 20, &data, &len, err) != SB_OK) return NULL;
    sb_tokenizer *t = sb_tokenizer_from_spm_memory(data, len, path, err);
    free(data);
    return t;
}

sb_tokenizer *sb_tokenizer_from_spm_memory(const void *data, size_t len, const char *path, sb_err *err) {
    pb b = {(const uint8_t *)data, (const uint8_t *)data + len, err, path};
    piece *pieces = NULL;
    size_t n = 0, cap = 0;
    uint64_t model_type = 1, unk = 0, bos = 1, eos = 2;
    bool add_dummy_prefix = true, byte_fallback = false, ok = true;
    uint32_t field, wire;
    sb_tokenizer *t = NULL;
    while (pb_key(&b, &field, &wire, &ok)) {
        pb sub;
        if (field == 1 && wire == 2) {
            if (!pb_bytes(&b, &sub)) goto fail;
            piece pc = {"", 0, 0, SB_TOK_NORMAL};
            uint32_t f, w;
            bool sok;
            while (pb_key(&sub, &f, &w, &sok)) {
                pb s2;
                uint64_t v;
                if (f == 1 && w == 2) {
                    if (!pb_bytes(&sub, &s2)) goto fail;
                    pc.s = (const char *)s2.p;
                    pc.n = (size_t)(s2.end - s2.p);
                } else if (f == 2 && w == 5) {
                    if (sub.end - sub.p < 4) {
                        pb_fail(&sub, "truncated score");
                        goto fail;
                    }
                    memcpy(&pc.score, sub.p, 4);
                    sub.p += 4;
                } else if (f == 3 && w == 0) {
                    if (!pb_varint(&sub, &v)) goto fail;
                    pc.type = v >= 1 && v <= 6 ? (int)v : SB_TOK_NORMAL;
                } else if (!pb_skip(&sub, w)) {
                    goto fail;
                }
            }
            if (!sok) goto fail;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                piece *np = sb_realloc_array(pieces, cap, sizeof *np);
                if (!np) {
                    sb_err_set(err, SB_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                pieces = np;
            }
            pieces[n++] = pc;
        } else if ((field == 2 || field == 3) && wire == 2) {
            if (!pb_bytes(&b, &sub)) goto fail;
            uint32_t f, w;
            bool sok;
            while (pb_key(&sub, &f, &w, &sok)) {
                uint64_t v;
                if (w != 0) {
                    if (!pb_skip(&sub, w)) goto fail;
                    continue;
                }
                if (!pb_varint(&sub, &v)) goto fail;
                if (field == 2 && f == 3) model_type = v;
                if (field == 2 && f == 35) byte_fallback = v != 0;
                if (field == 2 && f == 40) unk = v;
                if (field == 2 && f == 41) bos = v;
                if (field == 2 && f == 42) eos = v;
                if (field == 3 && f == 3) add_dummy_prefix = v != 0;
            }
            if (!sok) goto fail;
        } else if (!pb_skip(&b, wire)) {
            goto fail;
        }
    }
    if (!ok) goto fail;
    if (n == 0 || n > (1u << 24)) {
        sb_err_set(err, SB_ERR_FORMAT, "%s: tokenizer.model holds %zu pieces", path, n);
        goto fail;
    }
    if (model_type != 2) {
        sb_err_set(err, SB_ERR_UNSUPPORTED, "%s: SentencePiece model type %llu is not supported (BPE only)", path,
                   (unsigned long long)model_type);
        goto fail;
    }
    (void)byte_fallback; /* byte pieces are used whenever the vocabulary has them */
    t = sb_calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->n_vocab = (int32_t)n;
    t->text = sb_calloc(n, sizeof *t->text);
    t->len = sb_calloc(n, sizeof *t->len);
    t->score = sb_calloc(n, sizeof *t->score);
    t->type = sb_calloc(n, sizeof *t->type);
    if (!t->text || !t->len || !t->score || !t->type) goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (!(t->text[i] = sb_strndup(pieces[i].s, pieces[i].n))) goto nomem;
        t->len[i] = pieces[i].n;
        t->score[i] = pieces[i].score;
        t->type[i] = pieces[i].type;
    }
    t->algo = SB_TOK_SPM;
    t->add_space_prefix = add_dummy_prefix;
    t->add_bos = true;
    t->unk = unk < n ? (int32_t)unk : -1;
    t->bos = bos < n ? (int32_t)bos : -1;
    t->eos = eos < n ? (int32_t)eos : -1;
    t->eot = -1;
    if (sb_tokenizer_finish(t, err) != SB_OK) goto fail;
    free(pieces);
    return t;
nomem:
    sb_err_set(err, SB_ERR_NOMEM, "out of memory");
fail:
    sb_tokenizer_free(t);
    free(pieces);
    return NULL;
}
