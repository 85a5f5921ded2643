/*
 * nf4.c - NF4 quantization, double quantization and dequantization as
 * bitsandbytes 0.50 does them on CPU (nf4.h), and the scalar reference
 * kernels with their run-time choice among scalar / AVX2 / AVX-512.
 *
 * Where bitsandbytes' arithmetic comes from (each reproduced step by step):
 *  - quantize_4bit: its torch "default" kernel (backends/default/ops.py):
 *    scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1), a tail block
 *    divided by its (clamped) absmax instead, index = torch.bucketize over
 *    the 15 midpoints of the code book (a value on a midpoint goes down);
 *  - the mean of double quantization: torch's float32 cascade sum
 *    (aten/src/ATen/native/cpu/SumKernel.cpp) over 8-float vectors, then a
 *    float32 division;
 *  - the 8-bit blockwise quantizer of the absmax (csrc/cpu_ops.cpp
 *    quantize_cpu_impl): a 65536-entry table from [-1, 1] to the nearest
 *    dynamic-map index, indexed by (uint16)((v + 1) * 0.5 * 65535 + 0.5);
 *  - dequantization (csrc/cpu_ops.cpp): code * scale in float32.
 */
#include "tensor/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/kernels.h"
#include "tensor/matvec.h"

/* ------------------------------------------------------- 4-bit codes -- */

/* torch.bucketize(v, midpoints): the number of midpoints strictly below v,
 * by a branch-free search over 16 slots (the last one +inf). */
static float g_mid[16];
static int g_mid_ready;

static const float *midpoints(void) {
    if (!__atomic_load_n(&g_mid_ready, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 15; i++) g_mid[i] = (sb_nf4_code_f[i] + sb_nf4_code_f[i + 1]) / 2.0f;
        g_mid[15] = INFINITY; /* every thread writes the same values */
        __atomic_store_n(&g_mid_ready, 1, __ATOMIC_RELEASE);
    }
    return g_mid;
}

static inline int nf4_index(const float *mid, float v) {
    int q = 0;
    if (mid[q + 7] < v) q += 8;
    if (mid[q + 3] < v) q += 4;
    if (mid[q + 1] < v) q += 2;
    if (mid[q] < v) q += 1;
    return q;
}

static inline float clamp1(float v) { return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v; }

/* x[0..n) -> packed indices qs and absmax per block (bitsandbytes' default
 * quantize_4bit kernel). */
static void quantize_codes(const float *x, int64_t n, int bs, uint8_t *qs, float *absmax) {
    const float *mid = midpoints();
    const float tiny = 1e-38f; /* torch's clamp(min=1e-38) in float32 */
    const int64_t full = n - n % bs;
    memset(qs, 0, (size_t)((n + 1) / 2));
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        const int64_t len = n - b0 < bs ? n - b0 : bs;
        float am = 0.0f;
        for (int64_t i = 0; i < len; i++) am = fabsf(x[b0 + i]) > am ? fabsf(x[b0 + i]) : am;
        const bool tail = b0 >= full;
        const float den = am < tiny ? tiny : am;
        absmax[b0 / bs] = tail ? den : am; /* the tail's absmax is stored clamped */
        const float inv = 1.0f / den;
        for (int64_t i = 0; i < len; i++) {
            const float v = clamp1(tail ? x[b0 + i] / den : x[b0 + i] * inv);
            const int64_t e = b0 + i;
            qs[e >> 1] |= (uint8_t)(nf4_index(mid, v) << (e & 1 ? 0 : 4));
        }
    }
    if (n & 1) qs[n >> 1] |= (uint8_t)nf4_index(mid, 0.0f); /* torch pads the scaled values with 0 */
}

/* ------------------------------------------------ torch's float sum -- */

static int64_t ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    return 64 - __builtin_clzll((unsigned long long)(x - 1));
}

/* multi_row_sum of SumKernel.cpp: `size` rows of 4 columns, each element a
 * vector of `lanes` floats (element (i, k) at a + (4 i + k) * lanes), summed
 * in four levels of chunks of 2^level_power rows. */
static void multi_row_sum(const float *a, int64_t size, int lanes, float out[4][8]) {
    enum { LEVELS = 4 };
    const int64_t level_power = ceil_log2(size) / LEVELS > 4 ? ceil_log2(size) / LEVELS : 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    float acc[LEVELS][4][8] = {{{0}}};
    int64_t i = 0;
    while (i + level_step <= size) {
        for (int64_t j = 0; j < level_step; j++, i++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < lanes; l++) acc[0][k][l] += a[(4 * i + k) * lanes + l];
        for (int j = 1; j < LEVELS; j++) {
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < lanes; l++) {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0f;
                }
            if (i & (level_mask << (j * level_power))) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < lanes; l++) acc[0][k][l] += a[(4 * i + k) * lanes + l];
    for (int j = 1; j < LEVELS; j++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < lanes; l++) acc[0][k][l] += acc[j][k][l];
    memcpy(out, acc[0], sizeof acc[0]);
}

/* row_sum: n_vec vectors of `lanes` floats, 4 at a time, then the rest. */
static void row_sum(const float *a, int64_t n_vec, int lanes, float out[8]) {
    float part[4][8];
    const int64_t size_ilp = n_vec / 4;
    multi_row_sum(a, size_ilp, lanes, part);
    for (int64_t i = size_ilp * 4; i < n_vec; i++)
        for (int l = 0; l < lanes; l++) part[0][l] += a[i * lanes + l];
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < lanes; l++) part[0][l] += part[k][l];
    memcpy(out, part[0], sizeof part[0]);
}

float sb_nf4_torch_mean(const float *a, int64_t n) {
    enum { W = 8 };
    float s, v[8];
    if (n < W) { /* torch's scalar path */
        row_sum(a, n, 1, v);
        s = v[0];
    } else {
        const int64_t n_vec = n / W;
        row_sum(a, n_vec, W, v);
        s = 0.0f;
        for (int64_t k = n_vec * W; k < n; k++) s += a[k];
        for (int l = 0; l < W; l++) s += v[l];
    }
    return s / (float)n;
}

/* ------------------------------------------- 8-bit blockwise (nested) -- */

static uint8_t g_lut[65536];
static int g_lut_ready;

static const uint8_t *dynamic_lut(void) {
    if (!__atomic_load_n(&g_lut_ready, __ATOMIC_ACQUIRE)) {
        float mid[255];
        for (int i = 0; i < 255; i++) mid[i] = 0.5f * (sb_nf4_dynamic_map_f[i] + sb_nf4_dynamic_map_f[i + 1]);
        int idx = 0;
        for (int i = 0; i < 65536; i++) {
            const float val = -1.0f + (2.0f * (float)i) / 65535.0f;
            while (idx < 255 && mid[idx] < val) idx++;
            g_lut[i] = (uint8_t)idx; /* every thread writes the same values */
        }
        __atomic_store_n(&g_lut_ready, 1, __ATOMIC_RELEASE);
    }
    return g_lut;
}

static void quantize_dynamic(const float *a, int64_t n, int bs, uint8_t *out, float *absmax) {
    const uint8_t *lut = dynamic_lut();
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        const int64_t len = n - b0 < bs ? n - b0 : bs;
        float m = 0.0f;
        for (int64_t i = 0; i < len; i++) m = m < fabsf(a[b0 + i]) ? fabsf(a[b0 + i]) : m;
        absmax[b0 / bs] = m;
        if (m == 0.0f) {
            memset(out + b0, 0, (size_t)len);
            continue;
        }
        const float inv = 1.0f / m;
        for (int64_t i = 0; i < len; i++) {
            const float v = clamp1(a[b0 + i] * inv);
            out[b0 + i] = lut[(uint16_t)((v + 1.0f) * 0.5f * 65535.0f + 0.5f)];
        }
    }
}

/* ------------------------------------------------------------- API -- */

static bool blocksize_ok(int bs) { return bs >= 32 && bs <= 4096 && !(bs & (bs - 1)); }

/* offset: NAN to compute it (torch's mean); nested false: plain absmax. */
static sb_status quantize(const float *x, int64_t n, int bs, bool nested, float offset, sb_nf4 *out, sb_err *err) {
    memset(out, 0, sizeof *out);
    if (!blocksize_ok(bs)) return sb_err_set(err, SB_ERR_INVALID, "NF4 block size %d: not a power of two in 32..4096", bs);
    if (n <= 0 || n > ((int64_t)1 << 50)) return sb_err_set(err, SB_ERR_INVALID, "NF4: %lld elements", (long long)n);
    const int64_t nb = (n + bs - 1) / bs, nn = (nb + SB_NF4_NESTED_BLOCK - 1) / SB_NF4_NESTED_BLOCK;
    const size_t qbytes = (size_t)((n + 1) / 2);
    /* slab: absmax f32 (always, as scratch when nested) | nested_absmax | qabsmax | qs */
    const size_t off_nested = (size_t)nb * 4, off_qa = off_nested + (size_t)nn * 4, off_qs = off_qa + (size_t)nb;
    uint8_t *slab = sb_malloc(off_qs + qbytes);
    if (!slab) return sb_err_set(err, SB_ERR_NOMEM, "out of memory for %lld NF4 elements", (long long)n);
    float *absmax = (float *)(void *)slab;
    quantize_codes(x, n, bs, slab + off_qs, absmax);
    out->n = n;
    out->blocksize = bs;
    out->n_blocks = nb;
    out->qs = slab + off_qs;
    out->owned = slab;
    if (!nested) {
        out->absmax = absmax;
        return SB_OK;
    }
    if (isnan(offset)) offset = sb_nf4_torch_mean(absmax, nb);
    for (int64_t b = 0; b < nb; b++) absmax[b] -= offset;
    float *nested_absmax = (float *)(void *)(slab + off_nested);
    quantize_dynamic(absmax, nb, SB_NF4_NESTED_BLOCK, slab + off_qa, nested_absmax);
    out->nested = true;
    out->qabsmax = slab + off_qa;
    out->nested_absmax = nested_absmax;
    out->nested_blocksize = SB_NF4_NESTED_BLOCK;
    out->offset = offset;
    return SB_OK;
}

sb_status sb_nf4_quantize(const float *x, int64_t n, int blocksize, bool nested, sb_nf4 *out, sb_err *err) {
    return quantize(x, n, blocksize, nested, NAN, out, err);
}

sb_status sb_nf4_quantize_offset(const float *x, int64_t n, int blocksize, float offset, sb_nf4 *out,
                                 sb_err *err) {
    if (isnan(offset)) return sb_err_set(err, SB_ERR_INVALID, "NF4: offset is NaN");
    return quantize(x, n, blocksize, true, offset, out, err);
}

void sb_nf4_free(sb_nf4 *q) {
    if (!q) return;
    free(q->owned);
    memset(q, 0, sizeof *q);
}

void sb_nf4_dequantize(const sb_nf4 *q, int64_t e0, int64_t count, float *out) {
    const int bs = q->blocksize;
    int64_t e = e0;
    while (e < e0 + count) {
        const int64_t b = e / bs, end = (b + 1) * bs < e0 + count ? (b + 1) * bs : e0 + count;
        const float s = sb_nf4_scale(q, b);
        for (; e < end; e++) {
            const uint8_t byte = q->qs[e >> 1];
            out[e - e0] = sb_nf4_code_f[e & 1 ? byte & 15 : byte >> 4] * s;
        }
    }
}

sb_status sb_nf4_check(const sb_nf4 *q, sb_err *err) {
    if (!blocksize_ok(q->blocksize))
        return sb_err_set(err, SB_ERR_FORMAT, "NF4 block size %d: not a power of two in 32..4096", q->blocksize);
    if (q->n <= 0 || q->n_blocks != (q->n + q->blocksize - 1) / q->blocksize)
        return sb_err_set(err, SB_ERR_FORMAT, "NF4: %lld blocks for %lld elements of block size %d",
                          (long long)q->n_blocks, (long long)q->n, q->blocksize);
    if (!q->qs || (q->nested ? !q->qabsmax || !q->nested_absmax : !q->absmax))
        return sb_err_set(err, SB_ERR_FORMAT, "NF4: missing arrays");
    if (q->nested && (q->nested_blocksize <= 0 || !isfinite(q->offset)))
        return sb_err_set(err, SB_ERR_FORMAT, "NF4: nested block size %d, offset %g", q->nested_blocksize,
                          (double)q->offset);
    return SB_OK;
}

void sb_nf4_view(const sb_nf4 *q, const char *name, int64_t ne0, int64_t ne1, sb_tensor *out) {
    memset(out, 0, sizeof *out);
    out->name = name;
    out->type = SB_NF4;
    out->n_dims = 2;
    out->ne[0] = ne0;
    out->ne[1] = ne1;
    out->ne[2] = out->ne[3] = 1;
    out->data = q->qs;
    out->aux = q;
    out->nbytes = (size_t)((q->n + 1) / 2);
}

/* ---------------------------------------------------------- kernels -- */

static float nf4_dot_scalar(const uint8_t *qs, const float *scale, int64_t nb, int bs, const float *x) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++, qs += bs / 2, x += bs) {
        float s = 0.0f;
        for (int i = 0; i < bs / 2; i++)
            s += sb_nf4_code_f[qs[i] >> 4] * x[2 * i] + sb_nf4_code_f[qs[i] & 15] * x[2 * i + 1];
        sum += s * scale[b];
    }
    return sum;
}

static void nf4_deq_scalar(const uint8_t *qs, const float *scale, int64_t nb, int bs, float *out) {
    for (int64_t b = 0; b < nb; b++, qs += bs / 2, out += bs)
        for (int i = 0; i < bs / 2; i++) {
            out[2 * i] = sb_nf4_code_f[qs[i] >> 4] * scale[b];
            out[2 * i + 1] = sb_nf4_code_f[qs[i] & 15] * scale[b];
        }
}

static int g_level = -1;

static int level(void) {
    int v = __atomic_load_n(&g_level, __ATOMIC_ACQUIRE);
    if (v >= 0) return v;
    v = SB_ISA_SCALAR;
    if (sb_isa_supported(SB_ISA_AVX2)) { /* honours SABIO_KERNELS=scalar */
        const char *force = getenv("SABIO_KERNELS");
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    !(force && !strcmp(force, "avx2"))
                ? SB_ISA_AVX512
                : SB_ISA_AVX2;
    }
    __atomic_store_n(&g_level, v, __ATOMIC_RELEASE);
    return v;
}

const char *sb_nf4_isa(void) {
    static const char *const names[SB_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return names[level()];
}

sb_nf4_dot_fn sb_nf4_dot_at(int isa) {
    if (isa < 0 || isa > level()) return NULL;
    return isa == SB_ISA_AVX512 ? sb_nf4_dot_avx512 : isa == SB_ISA_AVX2 ? sb_nf4_dot_avx2 : nf4_dot_scalar;
}

sb_nf4_deq_fn sb_nf4_deq_at(int isa) {
    if (isa < 0 || isa > level()) return NULL;
    return isa == SB_ISA_AVX512 ? sb_nf4_deq_avx512 : isa == SB_ISA_AVX2 ? sb_nf4_deq_avx2 : nf4_deq_scalar;
}

enum { SCALES = 64 }; /* block scales computed at a time */

void sb_nf4_get_rows(const sb_tensor *w, int64_t r0, int64_t r1, float *out) {
    const sb_nf4 *q = sb_nf4_of(w);
    const int bs = q->blocksize;
    const int64_t e0 = sb_nf4_first(w) + r0 * w->ne[0];
    if (w->ne[0] % bs) { /* blocks straddle rows: the element-wise path */
        sb_nf4_dequantize(q, e0, (r1 - r0) * w->ne[0], out);
        return;
    }
    const sb_nf4_deq_fn deq = sb_nf4_deq_at(level());
    const int64_t b_begin = e0 / bs, b_end = b_begin + (r1 - r0) * (w->ne[0] / bs);
    float scale[SCALES];
    for (int64_t b = b_begin; b < b_end; b += SCALES) {
        const int64_t nb = b_end - b < SCALES ? b_end - b : SCALES;
        for (int64_t i = 0; i < nb; i++) scale[i] = sb_nf4_scale(q, b + i);
        deq(q->qs + (size_t)b * (size_t)(bs / 2), scale, nb, bs, out + (size_t)(b - b_begin) * (size_t)bs);
    }
}

void sb_nf4_matvec(const sb_tensor *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const sb_nf4 *q = sb_nf4_of(w);
    const int bs = q->blocksize;
    const int64_t bpr = w->ne[0] / bs, first = sb_nf4_first(w);
    if (w->ne[0] % bs) { /* blocks straddle rows: dequantize a chunk at a time */
        float buf[256];
        for (int64_t r = r0; r < r1; r++) {
            float sum = 0.0f;
            for (int64_t i = 0; i < w->ne[0]; i += 256) {
                const int64_t len = w->ne[0] - i < 256 ? w->ne[0] - i : 256;
                sb_nf4_dequantize(q, first + r * w->ne[0] + i, len, buf);
                sum += sb_vec_dot_f32(buf, x + i, len);
            }
            y[r] = sum;
        }
        return;
    }
    const sb_nf4_dot_fn dot = sb_nf4_dot_at(level());
    float scale[SCALES];
    for (int64_t r = r0; r < r1; r++) {
        float sum = 0.0f;
        for (int64_t j = 0; j < bpr; j += SCALES) {
            const int64_t nb = bpr - j < SCALES ? bpr - j : SCALES, b = first / bs + r * bpr + j;
            for (int64_t i = 0; i < nb; i++) scale[i] = sb_nf4_scale(q, b + i);
            sum += dot(q->qs + (size_t)b * (size_t)(bs / 2), scale, nb, bs, x + j * bs);
        }
        y[r] = sum;
    }
}
