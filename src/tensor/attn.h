/*
 * attn.h - causal attention of a block of query rows over a KV cache, one
 * head, as two matrix products (OpenBLAS sgemm) around a masked softmax:
 * the prompt path's attention (the decode path dots one query at a time).
 */
#ifndef SB_ATTN_H
#define SB_ATTN_H

#include <stdint.h>

/* Query rows i < m (row i at q + i * ldq, hd floats) at positions pos0 + i
 * attend to cached positions t with max(0, pos - window + 1) <= t <= pos
 * (window <= 0: no window); key / value of position t at k + t * ldkv,
 * v + t * ldkv. out row i (at out + i * ldo) = sum_t softmax_t(q_i . k_t *
 * scale) v_t. scratch: m * (pos0 + m) floats. Every row is computed alike
 * whatever m is, up to the summation order inside sgemm. */
void sb_attn_causal(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv, int m, int pos0,
                    int window, float scale, int hd, float *out, int64_t ldo, float *scratch);

/* One query (hd floats at q) at position pos attends to cached positions
 * t0..pos (key / value of t at k + t * ldkv, v + t * ldkv): out (hd floats)
 * = sum_t softmax_t(q . k_t * scale) v_t; att: pos - t0 + 1 floats of
 * scratch. The decode path's attention, one head; with AVX2 where the CPU
 * has it (the same products, other summation order), the loops of
 * sb_attn_decode_scalar otherwise. */
void sb_attn_decode(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale, int hd,
                    float *att, float *out);
void sb_attn_decode_scalar(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale,
                           int hd, float *att, float *out);
void sb_attn_decode_avx2(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale,
                         int hd, float *att, float *out);

/* internal: attn.c's softmax with AVX-512 (attn_avx512.c) and with AVX2
 * (attn_avx2.c): the same polynomial e^x, 16 or 8 lanes */
void sb_attn_softmax_avx512(float *x, int n);
void sb_attn_softmax_avx2(float *x, int n);

#endif
