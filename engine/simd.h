/*
 * simd.h - vector types and vector math for the per-ISA kernel bodies
 * (kernels_impl.h, attention_impl.h). Internal to the engine; included only
 * by kernels_scalar.c, kernels_avx2.c and kernels_avx512.c, after the
 * pragma that sets their instruction set, so every function here is
 * compiled for that set.
 *
 * The types are GCC's vector extension (also Clang's). eng__vf, the type of
 * element-wise work, has ENG__VW lanes, the includer's register width: 16
 * (zmm) for AVX-512, 8 (ymm) for AVX2, 4 (xmm) for the baseline. GCC splits
 * a vector wider than the machine's poorly, and a vector argument wider than
 * the machine's draws a note on its ABI, so only eng__v8 (8 partial sums)
 * is ever wider, and it is passed by pointer. Element-wise arithmetic gives the same bits at
 * any width. Sums are where the bits could differ: they always keep 8
 * partial sums (eng__v8), added in the order of a plain loop over
 * ENG__LANES lanes, and reduced by the tree of eng__sum8.
 *
 * eng__vexp and eng__verf_v are eng__vexp_neg and eng__verf of vmath.h,
 * operation for operation, on ENG__VW lanes: tests/engine/test_kernels_isa.c
 * holds them equal bit for bit.
 */
#ifndef HEPTAPOD_ENG_SIMD_H
#define HEPTAPOD_ENG_SIMD_H

#include <stdint.h>
#include <string.h>

#include "engine/vmath.h"

/* No vector crosses a call (every helper is always inlined), so GCC's note
 * that a 32- or 64-byte vector argument changes the ABI does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float eng__v4 __attribute__((vector_size(16)));
typedef float eng__v8 __attribute__((vector_size(32)));
typedef float eng__v16 __attribute__((vector_size(64)));

/* The includer's width: 16 for AVX-512, 8 for AVX2, 4 for the baseline. */
#ifndef ENG__VW
#define ENG__VW 4
#endif
#define ENG__WIDE (ENG__VW == 16)
typedef float eng__vf __attribute__((vector_size(4 * ENG__VW)));
typedef int32_t eng__vi __attribute__((vector_size(4 * ENG__VW)));

ENG__INLINE eng__v8 eng__load8(const float *p)
{
    eng__v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Stores are macros: a vector passed by value to a function, even an
 * inlined one, draws GCC's note on the 32-byte argument ABI. */
#define eng__store8(p, v)                                                                          \
    do {                                                                                           \
        eng__v8 store_ = (v);                                                                      \
        memcpy((p), &store_, sizeof store_);                                                       \
    } while (0)

ENG__INLINE eng__vf eng__loadv(const float *p)
{
    eng__vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define eng__storev(p, v)                                                                          \
    do {                                                                                           \
        eng__vf store_ = (v);                                                                      \
        memcpy((p), &store_, sizeof store_);                                                       \
    } while (0)

/* [a | b] */
ENG__INLINE eng__v16 eng__cat8(eng__v8 a, eng__v8 b)
{
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

ENG__INLINE eng__v8 eng__lo8(eng__v16 v)
{
    return __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
}

ENG__INLINE eng__v8 eng__hi8(eng__v16 v)
{
    return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* Sum of 8 lanes: (p0 + p4) ..., then (a0 + a2), (a1 + a3), then b0 + b1. */
ENG__INLINE float eng__sum8(const eng__v8 *v)
{
    eng__v8 p = *v;
    eng__v4 a =
        __builtin_shufflevector(p, p, 0, 1, 2, 3) + __builtin_shufflevector(p, p, 4, 5, 6, 7);
    eng__v4 b = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return b[0] + b[1];
}

/*
 * The sums of 8 vectors at once, each by the tree of eng__sum8 (floating
 * addition is commutative, so only the tree's shape matters): lane k of
 * the result is eng__sum8(p[k]). The shuffles are those of an 8x8
 * transpose and stay within 128-bit halves after the first step, which is
 * cheaper than 8 separate reductions.
 */
ENG__INLINE eng__v8 eng__sum8x8(const eng__v8 p[8])
{
    eng__v8 a[4], b[2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) /* a[k] = [p[k]: t, t + 4 summed | p[k + 4]: the same] */
        a[k] = __builtin_shufflevector(p[k], p[k + 4], 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(p[k], p[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        /* b[k] = [vectors 2k, 2k+1 | 2k+4, 2k+5], two partial sums each */
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++)
        b[k] = __builtin_shufflevector(a[2 * k], a[2 * k + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(a[2 * k], a[2 * k + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return __builtin_shufflevector(b[0], b[1], 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(b[0], b[1], 1, 3, 9, 11, 5, 7, 13, 15);
}

typedef int32_t eng__vi8 __attribute__((vector_size(32)));

/* a > b ? a : b lane by lane (b when either is NaN). */
ENG__INLINE eng__v8 eng__max8(const eng__v8 *a, const eng__v8 *b)
{
    eng__vi8 c = *a > *b;
    return (eng__v8)(((eng__vi8)*a & c) | ((eng__vi8)*b & ~c));
}

/* c ? a : b lane by lane, c all ones or all zeros. */
ENG__INLINE eng__vf eng__selv(eng__vi c, eng__vf a, eng__vf b)
{
    return (eng__vf)(((eng__vi)a & c) | ((eng__vi)b & ~c));
}

ENG__INLINE eng__vf eng__splatv(float x)
{
    return x - (eng__vf){0}; /* x - 0 is x, -0 included */
}

/* eng__vexp_neg (vmath.h) on ENG__VW lanes. */
ENG__INLINE eng__vf eng__vexp(eng__vf x)
{
    eng__vf xc = eng__selv(x < -87.0f, eng__splatv(-87.0f), x);
    xc = eng__selv(xc == xc, xc, eng__splatv(0.0f));
    eng__vi n = __builtin_convertvector(xc * 1.44269504088896341f - 0.5f, eng__vi);
    eng__vf fn = __builtin_convertvector(n, eng__vf);
    eng__vf r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
    eng__vf p = eng__splatv(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    eng__vf two_n = (eng__vf)((n + 127) * (1 << 23));
    eng__vf e = p * two_n;
    return eng__selv(x == x, e, x);
}

/* eng__verf (vmath.h) on ENG__VW lanes. */
ENG__INLINE eng__vf eng__verf_v(eng__vf x)
{
    eng__vf xc = eng__selv(x > 3.9f, eng__splatv(3.9f), x);
    xc = eng__selv(xc < -3.9f, eng__splatv(-3.9f), xc);
    eng__vf z = xc * xc;
    eng__vf p = eng__splatv(2.0502272946032463e-06f);
    p = p * z + 2.8742814902216196e-04f;
    p = p * z + 3.8363803178071976e-03f;
    p = p * z + 5.2965350449085236e-02f;
    p = p * z + 1.9193188846111298e-01f;
    p = p * z + 1.1283789873123169e+00f;
    eng__vf q = eng__splatv(3.822754661086947e-05f);
    q = q * z + 1.181580126285553e-03f;
    q = q * z + 1.510823518037796e-02f;
    q = q * z + 1.147540956735611e-01f;
    q = q * z + 5.034269690513611e-01f;
    q = q * z + 1.0f;
    eng__vf e = xc * (p / q);
    e = eng__selv(e > 1.0f, eng__splatv(1.0f), e);
    e = eng__selv(e < -1.0f, eng__splatv(-1.0f), e);
    return e;
}

#endif
