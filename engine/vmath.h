/*
 * vmath.h - branch-free float math for the engine's hot loops, and the
 * conventions that let the compiler vectorise those loops.
 *
 * libm's expf and erff are calls, so a loop over them stays scalar, and erff
 * alone would cost more than a third of the forward pass. These inline
 * versions are straight-line code: GCC vectorises a loop over them.
 *
 * Loops over n floats are written as chunks of ENG__LANES with a constant
 * inner trip count: at -O2 GCC only vectorises loops whose vector code needs
 * no scalar remainder, and a constant 8-lane body qualifies. Sums keep
 * ENG__LANES partial sums in a fixed order, so the result does not depend on
 * the vector width the compiler picks (-ffp-contract stays off under
 * -std=c11, so no multiply-add is fused either).
 */
#ifndef HEPTAPOD_ENG_VMATH_H
#define HEPTAPOD_ENG_VMATH_H

#include <stdint.h>

#define ENG__LANES 8

/* Helpers of the hot kernels are inlined into each target clone. */
#define ENG__INLINE static inline __attribute__((always_inline))

/*
 * c ? a : b without a branch. A plain ?: whose result feeds more arithmetic
 * is specialised by GCC's partial redundancy elimination into control flow,
 * and a loop with control flow is not vectorised at -O2; a bit blend is.
 */
ENG__INLINE float eng__vsel(int c, float a, float b)
{
    union {
        float f;
        int32_t i;
    } ua = {.f = a}, ub = {.f = b}, r;
    int32_t mask = -(int32_t)(c != 0);
    r.i = (ua.i & mask) | (ub.i & ~mask);
    return r.f;
}

/*
 * ENG__HOT compiles a hot loop twice on x86-64, for AVX2 and for the
 * baseline, and picks one at load time (ifunc); sample.c uses it. The
 * forward pass's kernels do not: they exist once per instruction set
 * (kernels_scalar.c, kernels_avx2.c, kernels_avx512.c) and follow
 * eng__isa(), which an ifunc could not, since it reads the environment.
 * FMA is deliberately not in the list: results stay bitwise the same on
 * both clones. Under ThreadSanitizer there is one copy: its instrumented
 * ifunc resolver would run before the sanitizer's runtime and crash at load.
 */
#ifndef ENG__HOT /* -DENG__HOT= builds the baseline only */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute) &&                        \
    !defined(__SANITIZE_THREAD__)
#if __has_attribute(target_clones)
#define ENG__HOT __attribute__((target_clones("avx2", "default")))
#endif
#endif
#endif
#ifndef ENG__HOT
#define ENG__HOT
#endif

/*
 * exp(x) for x <= 0. x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2;
 * e^r by its Taylor series to r^7 (truncation error < 6e-9 relative);
 * 2^n built in the exponent bits. ln2 is split so that n * ln2_hi is exact.
 * Inputs below -87 are clamped (the result is then ~1.6e-38, a weight that
 * no longer matters next to the softmax maximum, which weighs 1). NaN in,
 * NaN out.
 */
ENG__INLINE float eng__vexp_neg(float x)
{
    float xc = eng__vsel(x < -87.0f, -87.0f, x);
    xc = eng__vsel(xc == xc, xc, 0.0f); /* keep the integer conversion defined for NaN */
    /* For v <= 0, truncating v - 0.5 rounds v to nearest. */
    int32_t n = (int32_t)(xc * 1.44269504088896341f - 0.5f);
    float fn = (float)n;
    float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_n = {.i = (n + 127) * (1 << 23)};
    float e = p * two_n.f;
    return eng__vsel(x == x, e, x);
}

/*
 * erf(x) = x * P(x^2) / Q(x^2) on |x| <= 3.9, clamped to [-1, 1]; beyond 3.9
 * erf rounds to +-1 in float. P and Q (degree 5 each) come from a weighted
 * least-squares rational fit of erf(x)/x on [0, 3.9] in double precision;
 * evaluated in float the error stays below 4e-7 (6 ulp at worst, near 1).
 */
ENG__INLINE float eng__verf(float x)
{
    float xc = eng__vsel(x > 3.9f, 3.9f, x);
    xc = eng__vsel(xc < -3.9f, -3.9f, xc);
    float z = xc * xc;
    float p = 2.0502272946032463e-06f;
    p = p * z + 2.8742814902216196e-04f;
    p = p * z + 3.8363803178071976e-03f;
    p = p * z + 5.2965350449085236e-02f;
    p = p * z + 1.9193188846111298e-01f;
    p = p * z + 1.1283789873123169e+00f;
    float q = 3.822754661086947e-05f;
    q = q * z + 1.181580126285553e-03f;
    q = q * z + 1.510823518037796e-02f;
    q = q * z + 1.147540956735611e-01f;
    q = q * z + 5.034269690513611e-01f;
    q = q * z + 1.0f;
    float e = xc * (p / q);
    e = eng__vsel(e > 1.0f, 1.0f, e);
    e = eng__vsel(e < -1.0f, -1.0f, e);
    return e;
}

#endif
