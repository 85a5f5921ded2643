/*
 * attn.c - attn.h: S = Q K^T * scale over the keys any of the block's rows
 * sees, each row's softmax over its own causal (and sliding-window) range
 * with the rest of the row zero, then O = P V. With AVX-512 or AVX2 the
 * softmax takes e^x from a polynomial (attn_avx512.c, attn_avx2.c: relative
 * error 8e-8 against libm's expf, which sb_softmax uses otherwise).
 */
#include "tensor/attn.h"
#include "tensor/kernels.h"
#include "tensor/matvec.h"
#include "tensor/ops.h"

#include <cblas.h>
#include <string.h>

void sb_attn_causal(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv, int m, int pos0,
                    int window, float scale, int hd, float *out, int64_t ldo, float *scratch) {
    if (m <= 0) return;
    int lo = 0; /* the first key the first row sees; the last row sees up to pos0 + m - 1 */
    if (window > 0 && pos0 - window + 1 > 0) lo = pos0 - window + 1;
    const int nk = pos0 + m - lo;
    void (*smax)(float *, int) = sb_isa_supported(SB_ISA_AVX512) ? sb_attn_softmax_avx512
                                 : sb_isa_supported(SB_ISA_AVX2) ? sb_attn_softmax_avx2
                                                                  : sb_softmax;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, hd, scale, q, (int)ldq, k + (size_t)lo * (size_t)ldkv,
                (int)ldkv, 0.0f, scratch, nk);
    for (int i = 0; i < m; i++) {
        const int pos = pos0 + i;
        int t0 = 0;
        if (window > 0 && pos - window + 1 > 0) t0 = pos - window + 1;
        float *s = scratch + (size_t)i * (size_t)nk;
        memset(s, 0, (size_t)(t0 - lo) * sizeof(float));
        smax(s + (t0 - lo), pos - t0 + 1);
        memset(s + (pos - lo + 1), 0, (size_t)(nk - (pos - lo + 1)) * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, nk, 1.0f, scratch, nk, v + (size_t)lo * (size_t)ldkv,
                (int)ldkv, 0.0f, out, (int)ldo);
}

void sb_attn_decode_scalar(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale,
                           int hd, float *att, float *out) {
    for (int t = t0; t <= pos; t++) att[t - t0] = sb_vec_dot_f32(q, k + (size_t)t * (size_t)ldkv, hd) * scale;
    sb_softmax(att, pos - t0 + 1);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int t = t0; t <= pos; t++) {
        const float *vt = v + (size_t)t * (size_t)ldkv;
        const float a = att[t - t0];
        for (int i = 0; i < hd; i++) out[i] += a * vt[i];
    }
}

void sb_attn_decode(const float *q, const float *k, const float *v, int64_t ldkv, int t0, int pos, float scale, int hd,
                    float *att, float *out) {
    (sb_isa_supported(SB_ISA_AVX2) ? sb_attn_decode_avx2 : sb_attn_decode_scalar)(q, k, v, ldkv, t0, pos, scale, hd, att,
                                                                                   out);
}
