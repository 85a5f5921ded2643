/*
 * ops.h - the elementwise and row-wise operations of a transformer forward
 * pass, on f32 vectors: RMSNorm, rotary position embedding (both pairings),
 * softmax, SwiGLU. Matrix-vector products live in matvec.h.
 *
 * Dimension letters: D = model width (n_embd), Hd = head_dim, R = rotary
 * dims (n_rot <= Hd), F = feed-forward width (n_ff).
 *
 * All functions are pure (no allocation, cannot fail); in/out may alias
 * where the comment says so.
 */
#ifndef SB_OPS_H
#define SB_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]   (n elements; out may be x).
 * transformers' RMSNorm: variance in f32, then weight * normalized. The sum
 * of squares is accumulated in double so the result does not depend on the
 * summation order within f32 rounding. */
void sb_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* The factor r = 1 / sqrt(mean(x^2) + eps) sb_rmsnorm multiplies by. */
float sb_rmsnorm_rstd(const float *x, int n, float eps);
/* Backward of sb_rmsnorm (w frozen): dx += d(out)/dx^T dy, given the row's
 * rstd from sb_rmsnorm_rstd. dx must not alias dy or x. */
void sb_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, float rstd, int n);

/* inv_freq[i] = 1 / (factor[i] * theta^(2i/n_rot)) for i < n_rot/2, in f32 in
 * the order transformers evaluates it (_compute_default_rope_parameters /
 * _compute_longrope_parameters); factor NULL means 1. */
void sb_rope_inv_freq(float *inv_freq, int n_rot, float theta, const float *factor);

/* Rotary tables for one position: for pair i in [0, n_rot/2),
 * angle = pos * inv_freq[i], cos_out[i] = cos(angle) * mscale, sin likewise.
 * Computed in double then rounded, so cos/sin of large angles are accurate. */
void sb_rope_table(float *cos_out, float *sin_out, const float *inv_freq, int n_rot, int pos,
                   float mscale);

/* Rotates the first n_rot dims of each of n_heads vectors of head_dim floats
 * (x is [n_heads][head_dim]); dims n_rot..head_dim pass through.
 *  neox (transformers' rotate_half, GGUF phi3): pairs (i, i + n_rot/2)
 *  !neox (llama.cpp's llama: Q/K rows permuted by the converter): pairs (2i, 2i+1)
 * x1' = x1*cos - x2*sin, x2' = x2*cos + x1*sin with cos/sin from sb_rope_table. */
void sb_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cos_t,
                   const float *sin_t, bool neox);

/* In-place softmax of x[0..n): max subtracted, exp, normalised; f32. */
void sb_softmax(float *x, int n);

/* out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may be gate or up. */
void sb_swiglu(float *out, const float *gate, const float *up, int n);
/* internal: the AVX2 loop sb_swiglu runs where the CPU has it (ops_avx2.c) */
void sb_swiglu_avx2(float *out, const float *gate, const float *up, int n);

/* Backward of sb_swiglu: dgate = dh * up * silu'(gate), dup = dh * silu(gate). */
void sb_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int n);

/* y[i] += x[i] */
void sb_add(float *y, const float *x, int n);

/* index of the largest element (first on ties); -1 if n <= 0 */
int64_t sb_argmax(const float *x, int64_t n);

#endif
