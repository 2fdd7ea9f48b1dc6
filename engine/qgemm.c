/*
 * qgemm.c - int8 Linear layers (qgemm.h): weight packing at load, the
 * quantization rules every kernel shares, the scalar reference kernel and
 * the choice of kernel.
 *
 * The arithmetic, which the AVX2 and AVX-512 kernels reproduce exactly:
 *   weights, per output column c:  ws[c] = max_k |w[c][k]| / 127,
 *                                  qw = rne(w / ws[c]) in [-127, 127]
 *   activations, per row r:        as[r] = max_k |a[r][k]| / 127,
 *                                  qa = rne(a * (127 / max_k |a[r][k]|))
 *   acc = sum_k qa * qw             exact, int32
 *   c[r][c] = c[r][c] + (float)acc * (as[r] * ws[c])
 * The two products and the sum are separate f32 operations (no FMA), in
 * this order, so that every kernel rounds the same way.
 */
#include <math.h>
#include <string.h>

#include "engine/isa.h"
#include "engine/qgemm.h"

#define ROUND64(n) (((n) + (size_t)63) & ~(size_t)63)

size_t eng__qmat_bytes(int out, int k)
{
    size_t panels = (size_t)(out + 15) / 16, kpad = (size_t)(k + 3) / 4 * 4;
    return ROUND64(panels * 16 * kpad) + 2 * ROUND64(panels * 16 * sizeof(float));
}

int eng__q8_quantize(float a, float inv)
{
    float x = a * inv;
    /* Only reachable through the rounding of inv: |a| <= max|a|. */
    if (x > 127.0f) x = 127.0f;
    if (x < -127.0f) x = -127.0f;
    return (int)lrintf(x);
}

float eng__q8_row_params(uint32_t amax_bits, float *scale)
{
    float amax;
    memcpy(&amax, &amax_bits, sizeof amax);
    if (amax_bits >= 0x7f800000u) { /* inf or NaN */
        *scale = NAN;
        return 0.0f;
    }
    if (amax < ENG__Q8_TINY) {
        *scale = 0.0f;
        return 0.0f;
    }
    *scale = amax / 127.0f;
    return 127.0f / amax;
}

int eng__qmat_pack(eng__qmat *q, const float *w, int out, int k, void *mem, int *bad_row)
{
    int panels = (out + 15) / 16, kgroups = (k + 3) / 4;
    size_t n = (size_t)panels * 16;
    int8_t *qw = mem;
    float *scale = (float *)(void *)((unsigned char *)mem + ROUND64(n * (size_t)kgroups * 4));
    int32_t *corr = (int32_t *)(void *)((unsigned char *)scale + ROUND64(n * sizeof(float)));
    memset(mem, 0, eng__qmat_bytes(out, k));
    for (int c = 0; c < out; c++) {
        const float *row = w + (size_t)c * k;
        float amax = 0.0f;
        for (int i = 0; i < k; i++) {
            if (!isfinite(row[i])) {
                *bad_row = c;
                return -1;
            }
            float v = fabsf(row[i]);
            if (v > amax) amax = v;
        }
        /* A row of (near) zeros quantizes to zeros; any scale would do. */
        float s = amax < ENG__Q8_TINY ? 1.0f : amax / 127.0f;
        int8_t *dst = qw + (size_t)(c / 16) * kgroups * 64 + (c % 16) * 4;
        int32_t sum = 0;
        for (int i = 0; i < k; i++) {
            float x = amax < ENG__Q8_TINY ? 0.0f : row[i] / s;
            x = x > 127.0f ? 127.0f : x < -127.0f ? -127.0f : x;
            int v = (int)lrintf(x);
            dst[(size_t)(i / 4) * 64 + i % 4] = (int8_t)v;
            sum += v;
        }
        scale[c] = s;
        corr[c] = 128 * sum;
    }
    *q = (eng__qmat){.out = out,
                     .k = k,
                     .kgroups = kgroups,
                     .panels = panels,
                     .w = qw,
                     .scale = scale,
                     .corr = corr};
    return 0;
}

size_t eng__qscratch_bytes(int rows, int k)
{
    /* The row scales, then the rows at up to 2 bytes an entry (AVX2's int16). */
    size_t kpad = (size_t)(k + 3) / 4 * 4;
    return ROUND64((size_t)rows * sizeof(float)) + (size_t)rows * ROUND64(2 * kpad);
}

/* --- the scalar reference --------------------------------------------------- */

/* Row r of the tile as int8, k padded with zeros; its scale in scales[r]. */
static void quantize_rows(const eng__qtile *t, int8_t *qa, size_t stride, float *scales)
{
    int k = t->q->k;
    for (int r = 0; r < t->rows; r++) {
        const float *a = t->a + (size_t)r * t->lda;
        int8_t *dst = qa + (size_t)r * stride;
        uint32_t amax = 0;
        for (int i = 0; i < k; i++) {
            uint32_t b;
            memcpy(&b, &a[i], sizeof b);
            b &= 0x7fffffffu;
            if (b > amax) amax = b;
        }
        float inv = eng__q8_row_params(amax, &scales[r]);
        memset(dst, 0, stride);
        if (inv != 0.0f)
            for (int i = 0; i < k; i++)
                dst[i] = (int8_t)eng__q8_quantize(a[i], inv);
    }
}

void eng__qgemm_scalar(const eng__qtile *t)
{
    const eng__qmat *q = t->q;
    size_t kpad = (size_t)q->kgroups * 4;
    size_t stride = ROUND64(kpad);
    float *scales = t->scratch;
    int8_t *qa = (int8_t *)t->scratch + ROUND64((size_t)t->rows * sizeof(float));
    if (!t->quantized) quantize_rows(t, qa, stride, scales);
    for (int r = 0; r < t->rows; r++) {
        const int8_t *x = qa + (size_t)r * stride;
        float *out = t->c + (size_t)r * t->ldc;
        for (int j = 0; j < t->cols; j++) {
            int col = t->col0 + j;
            const int8_t *w = q->w + (size_t)(col / 16) * q->kgroups * 64 + (col % 16) * 4;
            int32_t acc = 0;
            for (int g = 0; g < q->kgroups; g++)
                for (int i = 0; i < 4; i++)
                    acc += (int32_t)x[4 * g + i] * w[(size_t)g * 64 + i];
            float s = scales[r] * q->scale[col];
            float p = (float)acc * s;
            out[j] = out[j] + p;
        }
    }
}

void eng__qgemm(const eng__qtile *t)
{
    switch (eng__isa()) {
    case ENG__ISA_AVX512:
        eng__qgemm_avx512(t);
        break;
    case ENG__ISA_AVX2:
        eng__qgemm_avx2(t);
        break;
    default:
        eng__qgemm_scalar(t);
        break;
    }
}
