/*
 * gemm_simd.h - constants shared by the SIMD exp and erf of gemm_avx2.c and
 * gemm_avx512.c.
 *   exp: x = n ln2 + r (ln2 split in two for exactness), Cephes expf's
 *        degree-5 polynomial: e^r ~ 1 + r + r^2 P(r).
 *   erf: Abramowitz & Stegun 7.1.26, |x| >= 0, t = 1 / (1 + p|x|),
 *        erf ~ 1 - (a1 t + ... + a5 t^5) e^(-x^2), absolute error <= 1.5e-7.
 */
#ifndef SB_GEMM_SIMD_H
#define SB_GEMM_SIMD_H

#define SB_LOG2E 1.44269504088896341f
#define SB_LN2_HI 0.693359375f
#define SB_LN2_LO -2.12194440e-4f
#define SB_EXP_P0 1.9875691500e-4f
#define SB_EXP_P1 1.3981999507e-3f
#define SB_EXP_P2 8.3334519073e-3f
#define SB_EXP_P3 4.1665795894e-2f
#define SB_EXP_P4 1.6666665459e-1f
#define SB_EXP_P5 5.0000001201e-1f

#define SB_ERF_P 0.3275911f
#define SB_ERF_A1 0.254829592f
#define SB_ERF_A2 -0.284496736f
#define SB_ERF_A3 1.421413741f
#define SB_ERF_A4 -1.453152027f
#define SB_ERF_A5 1.061405429f

/* The two polynomials by Horner's rule, for any vector width: FMA(a, b, c)
 * = a * b + c, C(x) broadcasts a constant. */
#define SB_EXP_POLY(FMA, C, r)                                                                                  \
    FMA(FMA(FMA(FMA(FMA(C(SB_EXP_P0), r, C(SB_EXP_P1)), r, C(SB_EXP_P2)), r, C(SB_EXP_P3)), r, C(SB_EXP_P4)), r, \
        C(SB_EXP_P5))
#define SB_ERF_POLY(FMA, C, t) \
    FMA(FMA(FMA(FMA(C(SB_ERF_A5), t, C(SB_ERF_A4)), t, C(SB_ERF_A3)), t, C(SB_ERF_A2)), t, C(SB_ERF_A1))

#endif
