/*
 * kernels.c - LayerNorm, GELU, bias adds, the embedding gather and the 2D
 * rotary embedding, each beside its plain reference (kernels.h).
 *
 * The fast loops run in chunks of ENG__LANES floats with partial sums in a
 * fixed order (vmath.h), so they vectorise at -O2 and give the same bits
 * whichever vector width the machine has.
 */
#include <math.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/vmath.h"

/* Sum of the ENG__LANES partial sums, halving as a vector reduction does;
 * written as loops over arrays, which GCC keeps in registers. */
ENG__INLINE float lane_sum(const float p[ENG__LANES])
{
    float a[ENG__LANES / 2], b[ENG__LANES / 4];
    for (int t = 0; t < ENG__LANES / 2; t++)
        a[t] = p[t] + p[t + ENG__LANES / 2];
    for (int t = 0; t < ENG__LANES / 4; t++)
        b[t] = a[t] + a[t + ENG__LANES / 4];
    return b[0] + b[1];
}

ENG__HOT
void eng__layernorm(const float *restrict x, float *restrict y, const float *restrict w,
                    const float *restrict b, int n, float eps)
{
    float part[ENG__LANES] = {0};
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            part[t] += x[i + t];
    for (int t = 0; i < n; i++, t++)
        part[t] += x[i];
    float mean = lane_sum(part) / (float)n;

    /* Two passes: the variance of the centred values does not cancel. */
    for (int t = 0; t < ENG__LANES; t++)
        part[t] = 0.0f;
    for (i = 0; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++) {
            float d = x[i + t] - mean;
            part[t] += d * d;
        }
    for (int t = 0; i < n; i++, t++) {
        float d = x[i] - mean;
        part[t] += d * d;
    }
    float rstd = 1.0f / sqrtf(lane_sum(part) / (float)n + eps);

    for (i = 0; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            y[i + t] = (x[i + t] - mean) * rstd * w[i + t] + b[i + t];
    for (; i < n; i++)
        y[i] = (x[i] - mean) * rstd * w[i] + b[i];
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

ENG__INLINE float gelu(float t)
{
    return 0.5f * t * (1.0f + eng__verf(t * 0.70710678118654752f));
}

ENG__HOT
void eng__gelu(float *x, int n)
{
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            x[i + t] = gelu(x[i + t]);
    for (; i < n; i++)
        x[i] = gelu(x[i]);
}

void eng__gelu_ref(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

ENG__HOT
void eng__add_bias(float *restrict x, const float *restrict b, int n)
{
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            x[i + t] += b[i + t];
    for (; i < n; i++)
        x[i] += b[i];
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

/* Rotate-half on one half of a head: lo[j] pairs with hi[j] = lo[j + nf]. */
ENG__INLINE void rotate(float *restrict lo, float *restrict hi, const float *restrict c,
                        const float *restrict s, int nf)
{
    int j = 0;
    for (; j + ENG__LANES <= nf; j += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++) {
            float a = lo[j + t], b = hi[j + t];
            lo[j + t] = a * c[j + t] - b * s[j + t];
            hi[j + t] = b * c[j + t] + a * s[j + t];
        }
    for (; j < nf; j++) {
        float a = lo[j], b = hi[j];
        lo[j] = a * c[j] - b * s[j];
        hi[j] = b * c[j] + a * s[j];
    }
}

void eng__rope(float *restrict t, int head_dim, int y, int x, const float *restrict cos_t,
               const float *restrict sin_t)
{
    int m = head_dim / 2, nf = m / 2;
    rotate(t, t + nf, cos_t + (size_t)y * nf, sin_t + (size_t)y * nf, nf);
    rotate(t + m, t + m + nf, cos_t + (size_t)x * nf, sin_t + (size_t)x * nf, nf);
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
