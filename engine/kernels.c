/*
 * kernels.c - the plain references of the per-cell kernels, the embedding
 * gather and the rope tables, and the choice of the fast kernels' set
 * (kernels.h): the set of eng__isa(), read once, then every eng__ kernel
 * is one indirect call into it.
 */
#include <math.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/vmath.h"

extern const eng__kernel_set eng__kernels_scalar;
#if ENG__X86_KERNELS
extern const eng__kernel_set eng__kernels_avx2, eng__kernels_avx512;
#endif

/* What each set's code needs of the CPU (eng__isa() asks more of its
 * AVX-512 level, for the int8 and bf16 kernels). */
const eng__kernel_set *eng__kernels_at(eng__isa_level level)
{
    switch (level) {
    case ENG__ISA_SCALAR:
        return &eng__kernels_scalar;
#if ENG__X86_KERNELS
    case ENG__ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") ? &eng__kernels_avx2 : NULL;
    case ENG__ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                   ? &eng__kernels_avx512
                   : NULL;
#endif
    default:
        return NULL;
    }
}

const eng__kernel_set *eng__kernels(void)
{
    /* Every thread that races here computes the same pointer. */
    static const eng__kernel_set *chosen;
    const eng__kernel_set *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!k) {
        k = eng__kernels_at(eng__isa());
        if (!k) k = &eng__kernels_scalar;
        __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    }
    return k;
}

void eng__layernorm(const float *restrict x, float *restrict y, const float *restrict w,
                    const float *restrict b, int n, float eps)
{
    eng__kernels()->layernorm(x, y, w, b, n, eps);
}

void eng__bias_layernorm(float *restrict h, const float *restrict bias, float *restrict y,
                         const float *restrict w, const float *restrict b, int n, float eps)
{
    eng__kernels()->bias_layernorm(h, bias, y, w, b, n, eps);
}

void eng__gelu(float *x, int n)
{
    eng__kernels()->gelu(x, n);
}

void eng__add_bias(float *restrict x, const float *restrict b, int n)
{
    eng__kernels()->add_bias(x, b, n);
}

void eng__rope_store(float *dst, const float *src, int head_dim, int y, int x,
                     const float *restrict cos_t, const float *restrict sin_t)
{
    eng__kernels()->rope_store(dst, src, head_dim, y, x, cos_t, sin_t);
}

void eng__rope(float *restrict t, int head_dim, int y, int x, const float *restrict cos_t,
               const float *restrict sin_t)
{
    eng__kernels()->rope_store(t, t, head_dim, y, x, cos_t, sin_t);
}

void eng__attention(const eng__attn *a, int begin, int end)
{
    eng__kernels()->attention(a, begin, end);
}

void eng__layernorm_ref(const float *x, float *y, const float *w, const float *b, int n, float eps)
{
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    double rstd = 1.0 / sqrt(var + eps);
    for (int i = 0; i < n; i++)
        y[i] = (float)((x[i] - mean) * rstd * w[i] + b[i]);
}

float eng__erf(float x)
{
    return eng__verf(x);
}

float eng__exp_neg(float x)
{
    return eng__vexp_neg(x);
}

void eng__gelu_ref(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void eng__embed(float *restrict h, const float *restrict tok_emb, const int32_t *tokens, int n,
                int dim)
{
    for (int c = 0; c < n; c++)
        memcpy(h + (size_t)c * dim, tok_emb + (size_t)tokens[c] * dim, (size_t)dim * sizeof *h);
}

void eng__rope_tables(float *cos_t, float *sin_t, int positions, int head_dim, float base)
{
    int m = head_dim / 2, nf = m / 2;
    for (int p = 0; p < positions; p++)
        for (int j = 0; j < nf; j++) {
            double w = pow((double)base, -2.0 * j / m);
            cos_t[(size_t)p * nf + j] = (float)cos(p * w);
            sin_t[(size_t)p * nf + j] = (float)sin(p * w);
        }
}

void eng__rope_ref(float *t, int head_dim, int y, int x, float base)
{
    int m = head_dim / 2;
    for (int half = 0; half < 2; half++) {
        int off = half ? m : 0, p = half ? x : y;
        for (int j = 0; j < m / 2; j++) {
            double w = pow((double)base, -2.0 * j / m);
            double c = cos(p * w), s = sin(p * w);
            float a = t[off + j], b = t[off + j + m / 2];
            t[off + j] = (float)(a * c - b * s);
            t[off + j + m / 2] = (float)(b * c + a * s);
        }
    }
}
