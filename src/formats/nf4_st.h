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

#endif
