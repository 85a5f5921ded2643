/*
 * safetensors.h - Hugging Face safetensors reader and writer, single files and
 * sharded checkpoints.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the byte buffer; offsets are relative to
 * the buffer's start. Shapes are row-major (last dimension contiguous); views
 * returned here use the ggml convention (ne[0] = last dimension).
 *
 * A sharded checkpoint is a folder with model.safetensors.index.json
 * ({"weight_map": {"tensor": "model-00001-of-00002.safetensors", ...}}); the
 * reader opens every shard and presents one tensor namespace.
 *
 * Never trusts the file: header length, JSON, dtypes, shapes and offsets are
 * validated (offsets in range, end - begin == product(shape) * dtype size,
 * no overflow) with errors naming the tensor and field.
 */
#ifndef SB_SAFETENSORS_H
#define SB_SAFETENSORS_H

#include "base/base.h"
#include "tensor/tensor.h"

typedef struct sb_safetensors sb_safetensors;

/* path: a .safetensors file, a model.safetensors.index.json, or a folder
 * holding model.safetensors or model.safetensors.index.json. */
sb_safetensors *sb_st_open(const char *path, sb_err *err);
/* One file's bytes held by the caller (must outlive the handle). */
sb_safetensors *sb_st_open_memory(const void *data, size_t size, sb_err *err);
void sb_st_free(sb_safetensors *st);

int64_t sb_st_n_tensors(const sb_safetensors *st);
/* Views; type is SB_F32/F16/BF16/F64/I8/I16/I32/I64 (U8/BOOL/... map to -1
 * with the raw bytes still given). false if i out of range. */
bool sb_st_tensor(const sb_safetensors *st, int64_t i, sb_tensor *out);
int64_t sb_st_find(const sb_safetensors *st, const char *name); /* -1 if absent */
/* __metadata__ lookup (first file of a sharded set); NULL if absent. */
const char *sb_st_metadata(const sb_safetensors *st, const char *key);

/* Writer: tensors are borrowed until write returns. Output is one file,
 * written atomically; dtype is SB_F32, SB_F16, SB_BF16 (or other plain types),
 * or SB_ST_U8 for raw bytes stored as "U8" (bitsandbytes' packed weights). */
#define SB_ST_U8 (-2)
typedef struct sb_st_writer sb_st_writer;
sb_st_writer *sb_st_writer_new(void);
void sb_st_writer_free(sb_st_writer *w);
sb_status sb_st_writer_add(sb_st_writer *w, const char *name, int type, int n_dims,
                           const int64_t *ne, const void *data, size_t nbytes);
sb_status sb_st_writer_set_metadata(sb_st_writer *w, const char *key, const char *value);
sb_status sb_st_writer_write(sb_st_writer *w, const char *path, sb_err *err);
sb_status sb_st_writer_to_memory(sb_st_writer *w, void **out, size_t *size, sb_err *err);

#endif
