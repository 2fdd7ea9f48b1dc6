/*
 * kernels_impl.h - the fast LayerNorm, GELU, bias and rotary kernels, the
 * body that kernels_scalar.c, kernels_avx2.c and kernels_avx512.c compile
 * once each for their instruction set (see kernels.h for the contracts and
 * simd.h for why every path gives the same bits). The includer defines
 * ENG__KSET, the name of the kernel table it exports, and ENG__KSET_ISA.
 *
 * Element-wise work runs ENG__VW floats at a time (a register: 16 under
 * AVX-512, 8 under AVX2, 4 on the baseline), then one; sums keep 8
 * partial sums in a fixed order.
 */
/* Clang fuses a * b + c into one rounding by default where the target has
 * FMA; the paths must not (GCC does not under -std=c11). */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include <math.h>

#include "engine/kernels.h"
#include "engine/simd.h"

/*
 * The LayerNorm of x into y, given the 8 partial sums of x: the mean, the
 * variance of the centred values (two passes, so it does not cancel), then
 * (x - mean) * rstd * w + b.
 */
ENG__INLINE void ln_finish(const float *restrict x, float *restrict y, const float *restrict w,
                           const float *restrict b, int n, float eps, const eng__v8 *sum)
{
    float mean = eng__sum8(sum) / (float)n;
    eng__v8 part = {0};
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES) {
        eng__v8 d = eng__load8(x + i) - mean;
        part += d * d;
    }
    for (int t = 0; i < n; i++, t++) {
        float d = x[i] - mean;
        part[t] += d * d;
    }
    float rstd = 1.0f / sqrtf(eng__sum8(&part) / (float)n + eps);
    i = 0;
    for (; i + ENG__VW <= n; i += ENG__VW)
        eng__storev(y + i,
                    (eng__loadv(x + i) - mean) * rstd * eng__loadv(w + i) + eng__loadv(b + i));
    for (; i < n; i++)
        y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

static void layernorm(const float *restrict x, float *restrict y, const float *restrict w,
                      const float *restrict b, int n, float eps)
{
    eng__v8 part = {0};
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        part += eng__load8(x + i);
    for (int t = 0; i < n; i++, t++)
        part[t] += x[i];
    ln_finish(x, y, w, b, n, eps, &part);
}

/* h += bias, then y = LN(h): the first pass adds the bias and sums. */
static void bias_layernorm(float *restrict h, const float *restrict bias, float *restrict y,
                           const float *restrict w, const float *restrict b, int n, float eps)
{
    eng__v8 part = {0};
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES) {
        eng__v8 v = eng__load8(h + i) + eng__load8(bias + i);
        eng__store8(h + i, v);
        part += v;
    }
    for (int t = 0; i < n; i++, t++) {
        h[i] += bias[i];
        part[t] += h[i];
    }
    ln_finish(h, y, w, b, n, eps, &part);
}

static void gelu(float *x, int n)
{
    int i = 0;
    for (; i + ENG__VW <= n; i += ENG__VW) {
        eng__vf t = eng__loadv(x + i);
        eng__storev(x + i, 0.5f * t * (1.0f + eng__verf_v(t * 0.70710678118654752f)));
    }
    for (; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + eng__verf(x[i] * 0.70710678118654752f));
}

static void add_bias(float *restrict x, const float *restrict b, int n)
{
    int i = 0;
    for (; i + ENG__VW <= n; i += ENG__VW)
        eng__storev(x + i, eng__loadv(x + i) + eng__loadv(b + i));
    for (; i < n; i++)
        x[i] += b[i];
}

/*
 * Rotate-half on one half of a head: lo[j] pairs with hi[j] = lo[j + nf],
 * read from src and written to dst. Each chunk is loaded before it is
 * stored, so dst may be src (no restrict between them).
 */
ENG__INLINE void rotate(float *dst, const float *src, const float *restrict c,
                        const float *restrict s, int nf)
{
    int j = 0;
    for (; j + ENG__VW <= nf; j += ENG__VW) {
        eng__vf a = eng__loadv(src + j), b = eng__loadv(src + nf + j);
        eng__vf cj = eng__loadv(c + j), sj = eng__loadv(s + j);
        eng__storev(dst + j, a * cj - b * sj);
        eng__storev(dst + nf + j, b * cj + a * sj);
    }
    for (; j + 8 <= nf; j += 8) {
        eng__v8 a = eng__load8(src + j), b = eng__load8(src + nf + j);
        eng__v8 cj = eng__load8(c + j), sj = eng__load8(s + j);
        eng__store8(dst + j, a * cj - b * sj);
        eng__store8(dst + nf + j, b * cj + a * sj);
    }
    for (; j < nf; j++) {
        float a = src[j], b = src[nf + j];
        dst[j] = a * c[j] - b * s[j];
        dst[nf + j] = b * c[j] + a * s[j];
    }
}

static void rope_store(float *dst, const float *src, int head_dim, int y, int x,
                       const float *restrict cos_t, const float *restrict sin_t)
{
    int m = head_dim / 2, nf = m / 2;
    rotate(dst, src, cos_t + (size_t)y * nf, sin_t + (size_t)y * nf, nf);
    rotate(dst + m, src + m, cos_t + (size_t)x * nf, sin_t + (size_t)x * nf, nf);
}

static void attention(const eng__attn *a, int begin, int end);

const eng__kernel_set ENG__KSET = {
    .isa = ENG__KSET_ISA,
    .layernorm = layernorm,
    .bias_layernorm = bias_layernorm,
    .gelu = gelu,
    .add_bias = add_bias,
    .rope_store = rope_store,
    .attention = attention,
};

#include "engine/attention_impl.h"
