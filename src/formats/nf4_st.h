/*
 * nf4_st.h - bitsandbytes 4-bit (NF4) weights in safetensors files, as
 * transformers saves a model loaded in 4-bit (layout in nf4_st.c).
 */
#ifndef SB_NF4_ST_H
#define SB_NF4_ST_H

#include "formats/safetensors.h"
#include "tensor/nf4.h"

/* true if weight `name` is stored as bitsandbytes NF4 (it has a
 * name.quant_state.bitsandbytes__nf4 entry). */
bool sb_st_is_nf4(const sb_safetensors *st, const char *name);
/* Reads weight `name`'s NF4 state into q (packed bytes borrowed from st,
 * scales copied; free with sb_nf4_free) and its [out, in] shape. Every size is
 * checked; SB_ERR_NOT_FOUND if the weight is not NF4. */
sb_status sb_st_nf4(const sb_safetensors *st, const char *name, sb_nf4 *q, int64_t shape[2], sb_err *err);

/* Adds weight `name` (rows x cols, the PyTorch shape) in bitsandbytes' layout
 * to w: the packed bytes, absmax (+ nested arrays), code books and the
 * quant_state JSON (dtype: the original weight's, "float32" / "bfloat16" /
 * "float16"). q's arrays are borrowed until the write; *state_json too, which
 * the caller frees after it. */
sb_status sb_st_writer_add_nf4(sb_st_writer *w, const char *name, const sb_nf4 *q, int64_t rows, int64_t cols,
                               const char *dtype, char **state_json, sb_err *err);

#endif
