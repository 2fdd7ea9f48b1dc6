/*
 * simd.h - vector types and vector math for the per-ISA kernel bodies
 * (kernels_impl.h, attention_impl.h). Internal to the engine; included only
 * by kernels_scalar.c, kernels_avx2.c and kernels_avx512.c, after the
 * pragma that sets their instruction set, so every function here is
 * compiled for that set.
 *
 * The types are GCC's vector extension (also Clang's). An eng__v16 is one
 * zmm register under AVX-512, two ymm under AVX2 and four xmm on the
 * baseline; element-wise arithmetic gives the same bits in every case. Sums
 * are where the bits could differ: they always keep 8 partial sums, added in
 * the order of a plain loop over ENG__LANES lanes, and reduced by the tree
 * of eng__sum8 whatever the register width.
 *
 * eng__exp16 and eng__erf16 are eng__vexp_neg and eng__verf of vmath.h,
 * operation for operation, on 16 lanes: tests/engine/test_kernels.c holds
 * them equal bit for bit.
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
typedef int32_t eng__vi16 __attribute__((vector_size(64)));

ENG__INLINE eng__v8 eng__load8(const float *p)
{
    eng__v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ENG__INLINE void eng__store8(float *p, eng__v8 v)
{
    memcpy(p, &v, sizeof v);
}

ENG__INLINE eng__v16 eng__load16(const float *p)
{
    eng__v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ENG__INLINE void eng__store16(float *p, eng__v16 v)
{
    memcpy(p, &v, sizeof v);
}

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
ENG__INLINE float eng__sum8(eng__v8 p)
{
    eng__v4 a = __builtin_shufflevector(p, p, 0, 1, 2, 3) + __builtin_shufflevector(p, p, 4, 5, 6, 7);
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
    for (int k = 0; k < 4; k++) /* a[k] = [p[k]: t, t + 4 summed | p[k + 4]: the same] */
        a[k] = __builtin_shufflevector(p[k], p[k + 4], 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(p[k], p[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    /* b[k] = [vectors 2k, 2k+1 | 2k+4, 2k+5], two partial sums each */
    for (int k = 0; k < 2; k++)
        b[k] = __builtin_shufflevector(a[2 * k], a[2 * k + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(a[2 * k], a[2 * k + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return __builtin_shufflevector(b[0], b[1], 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(b[0], b[1], 1, 3, 9, 11, 5, 7, 13, 15);
}

/* c ? a : b lane by lane, c all ones or all zeros. */
ENG__INLINE eng__v16 eng__sel16(eng__vi16 c, eng__v16 a, eng__v16 b)
{
    return (eng__v16)(((eng__vi16)a & c) | ((eng__vi16)b & ~c));
}

ENG__INLINE eng__v16 eng__splat16(float x)
{
    return (eng__v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}

/* eng__vexp_neg (vmath.h) on 16 lanes. */
ENG__INLINE eng__v16 eng__exp16(eng__v16 x)
{
    eng__v16 xc = eng__sel16(x < -87.0f, eng__splat16(-87.0f), x);
    xc = eng__sel16(xc == xc, xc, eng__splat16(0.0f));
    eng__vi16 n = __builtin_convertvector(xc * 1.44269504088896341f - 0.5f, eng__vi16);
    eng__v16 fn = __builtin_convertvector(n, eng__v16);
    eng__v16 r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
    eng__v16 p = eng__splat16(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    eng__v16 two_n = (eng__v16)((n + 127) * (1 << 23));
    eng__v16 e = p * two_n;
    return eng__sel16(x == x, e, x);
}

/* eng__verf (vmath.h) on 16 lanes. */
ENG__INLINE eng__v16 eng__erf16(eng__v16 x)
{
    eng__v16 xc = eng__sel16(x > 3.9f, eng__splat16(3.9f), x);
    xc = eng__sel16(xc < -3.9f, eng__splat16(-3.9f), xc);
    eng__v16 z = xc * xc;
    eng__v16 p = eng__splat16(2.0502272946032463e-06f);
    p = p * z + 2.8742814902216196e-04f;
    p = p * z + 3.8363803178071976e-03f;
    p = p * z + 5.2965350449085236e-02f;
    p = p * z + 1.9193188846111298e-01f;
    p = p * z + 1.1283789873123169e+00f;
    eng__v16 q = eng__splat16(3.822754661086947e-05f);
    q = q * z + 1.181580126285553e-03f;
    q = q * z + 1.510823518037796e-02f;
    q = q * z + 1.147540956735611e-01f;
    q = q * z + 5.034269690513611e-01f;
    q = q * z + 1.0f;
    eng__v16 e = xc * (p / q);
    e = eng__sel16(e > 1.0f, eng__splat16(1.0f), e);
    e = eng__sel16(e < -1.0f, eng__splat16(-1.0f), e);
    return e;
}

#endif
