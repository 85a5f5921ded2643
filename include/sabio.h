/*
 * sabio.h - public API of libsabio.
 *
 * libsabio makes a small language model of the Phi-3 family an expert in one
 * organisation's domain: local inference (GGUF and Hugging Face safetensors),
 * retrieval-augmented answers and LoRA fine-tuning. Every front end (the
 * `sabio` command, the HTTP server, tests, benchmarks) is a thin caller of it.
 *
 * Conventions: functions that can fail return sb_status (or NULL) and leave a
 * message naming the problem in the handle or in a caller-supplied sb_err.
 * The library never exits and never writes to stdout.
 */
#ifndef SABIO_H
#define SABIO_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sb_status {
    SB_OK = 0,
    SB_ERR_IO,          /* a file or stream could not be read or written */
    SB_ERR_FORMAT,      /* input is malformed, truncated or hostile */
    SB_ERR_NOMEM,       /* allocation failed or a size overflowed */
    SB_ERR_INVALID,     /* a bad argument or configuration */
    SB_ERR_UNSUPPORTED, /* well-formed but not something we implement */
    SB_ERR_RANGE,       /* an index, length or count is out of range */
    SB_ERR_NOT_FOUND,   /* a named item (key, tensor, token, file) is absent */
} sb_status;

const char *sb_status_name(sb_status s);

#ifdef __cplusplus
}
#endif
#endif
