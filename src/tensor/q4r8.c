/*
 * q4r8.c - the repacked Q4_0 layout of q4r8.h: packing, rows back out, and
 * the scalar kernel that defines the arithmetic (sb_qdot_q4_0_scalar's).
 */
#include "tensor/q4r8.h"

#include "tensor/kernels.h"

#include <string.h>

#define QB 18 /* bytes of one Q4_0 block: f16 d, 16 bytes of nibbles */

bool sb_q4r8_fits(int64_t ne0, int64_t rows) {
    return rows > 0 && rows % 8 == 0 && ne0 > 0 && ne0 % 32 == 0 && ne0 <= SB_Q4R8_MAX_IN;
}

/* byte j (0..15) of block k's qs in lane r, within the group's records */
static inline size_t qs_at(int64_t nb, int64_t k, int r, int j) {
    return sb_q4r8_qs_off(nb, k) + (size_t)(j / 4) * 32 + (size_t)r * 4 + (size_t)(j % 4);
}
static inline size_t d_at(int64_t nb, int64_t k, int r) { return sb_q4r8_d_off(k) + (size_t)r * 2; }

void sb_q4r8_pack(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1) {
    (sb_isa_supported(SB_ISA_AVX2) ? sb_q4r8_pack_avx2 : sb_q4r8_pack_scalar)(src, dst, ne0, r0, r1);
}

void sb_q4r8_pack_scalar(const void *src, void *dst, int64_t ne0, int64_t r0, int64_t r1) {
    const int64_t nb = ne0 / 32;
    const size_t rb = (size_t)nb * QB;
    for (int64_t g = r0 / 8; g < r1 / 8; g++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)g * 8 * rb;
        uint8_t *out = (uint8_t *)dst + (size_t)g * 8 * rb;
        for (int r = 0; r < 8; r++)
            for (int64_t k = 0; k < nb; k++) {
                const uint8_t *b = in + (size_t)r * rb + (size_t)k * QB;
                memcpy(out + d_at(nb, k, r), b, 2);
                for (int j = 0; j < 16; j++) out[qs_at(nb, k, r, j)] = b[2 + j];
            }
    }
}

void sb_q4r8_row_bytes(const void *data, int64_t ne0, int64_t r, void *out) {
    const int64_t nb = ne0 / 32;
    const uint8_t *grp = (const uint8_t *)data + (size_t)(r / 8) * 8 * (size_t)nb * QB;
    const int lane = (int)(r % 8);
    uint8_t *o = out;
    for (int64_t k = 0; k < nb; k++, o += QB) {
        memcpy(o, grp + d_at(nb, k, lane), 2);
        for (int j = 0; j < 16; j++) o[2 + j] = grp[qs_at(nb, k, lane, j)];
    }
}

void sb_q4r8_get_row(const void *data, int64_t ne0, int64_t r, float *out) {
    const int64_t nb = ne0 / 32;
    const uint8_t *grp = (const uint8_t *)data + (size_t)(r / 8) * 8 * (size_t)nb * QB;
    const int lane = (int)(r % 8);
    for (int64_t k = 0; k < nb; k++, out += 32) {
        uint16_t h;
        memcpy(&h, grp + d_at(nb, k, lane), 2);
        const float d = sb_f16_to_f32(h);
        for (int j = 0; j < 16; j++) {
            const uint8_t q = grp[qs_at(nb, k, lane, j)];
            out[j] = (float)((q & 0xf) - 8) * d;
            out[j + 16] = (float)((q >> 4) - 8) * d;
        }
    }
}

void sb_q4r8_scalar(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                    int64_t r0, int64_t r1) {
    const int64_t nb = ne0 / 32;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)(r / 8) * 8 * (size_t)nb * QB;
        const int lane = (int)(r % 8);
        for (int b = 0; b < n; b++) {
            const sb_q8a *x = (const sb_q8a *)(const void *)((const uint8_t *)xq + (size_t)b * xq_stride);
            float sum = 0;
            for (int64_t k = 0; k < nb; k++) {
                int s = 0;
                for (int j = 0; j < 16; j++) {
                    const uint8_t q = grp[qs_at(nb, k, lane, j)];
                    s += ((q & 0xf) - 8) * x[k].qs[j] + ((q >> 4) - 8) * x[k].qs[j + 16];
                }
                uint16_t h;
                memcpy(&h, grp + d_at(nb, k, lane), 2);
                sum += sb_f16_to_f32(h) * x[k].d * (float)s;
            }
            y[(size_t)b * (size_t)ldy + (size_t)r] = sum;
        }
    }
}

sb_q4r8_fn sb_q4r8_at(int level) {
    if (level == SB_ISA_SCALAR) return sb_q4r8_scalar;
    if (level == SB_ISA_AVX2) return sb_q4r8_avx2;
    return NULL; /* no AVX-512 kernel: the callers fall back to AVX2 */
}

void sb_q4r8_matmul(const void *w, int64_t ne0, const void *xq, size_t xq_stride, int n, float *y, int64_t ldy,
                    int64_t r0, int64_t r1, int level) {
    sb_q4r8_fn f = sb_q4r8_at(level);
    if (!f) f = sb_q4r8_scalar;
    for (int b = 0; b < n; b += 4)
        f(w, ne0, (const uint8_t *)xq + (size_t)b * xq_stride, xq_stride, n - b < 4 ? n - b : 4,
          y + (size_t)b * (size_t)ldy, ldy, r0, r1);
}
