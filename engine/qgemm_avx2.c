/*
 * qgemm_avx2.c - the int8 tile kernel with AVX2 (qgemm.h).
 *
 * AVX2 has no exact byte dot product for our ranges: vpmaddubsw saturates
 * its pair sums to int16, which u8 activations (up to 255) times s8 weights
 * overflow. So activations are stored as int16 and the weights are
 * sign-extended to int16 in registers (vpmovsxbw), and vpmaddwd adds pairs
 * of products into int32 lanes: 2 * 127 * 127 fits easily, and every sum
 * is exact. A 16-byte slice of a packed panel is 4 columns x 4 k; against
 * the row's 4 activations broadcast, vpmaddwd leaves two partial sums per
 * column, which the epilogue adds (vphaddd) and reorders. The integers are
 * the scalar reference's, and the f32 epilogue repeats its formula.
 *
 * Register blocking: 2 rows x one panel of 16 columns, 8 ymm accumulators,
 * 2 broadcasts and one weight register (16 ymm registers in all).
 *
 * Compiled for any x86-64 through target attributes (AVX2 only, not FMA:
 * the epilogue's multiply and add must stay two roundings).
 */
#include <string.h>

#include "engine/qgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2")))
#define INL static inline __attribute__((always_inline)) TGT
#define ROUND64(n) (((n) + (size_t)63) & ~(size_t)63)

/* Largest unsigned 32-bit lane. */
INL uint32_t hmax_epu32(__m256i v)
{
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(m);
}

/* Rows of the tile as int16, padded with zeros to the stride. */
TGT static void quantize_rows(const eng__qtile *t, int16_t *qa, size_t stride, float *scales)
{
    int k = t->q->k, k8 = k / 8 * 8;
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int r = 0; r < t->rows; r++) {
        const float *a = t->a + (size_t)r * t->lda;
        int16_t *dst = qa + (size_t)r * stride;
        __m256i mx = _mm256_setzero_si256();
        int i = 0;
        for (; i < k8; i += 8) {
            __m256i v = _mm256_loadu_si256((const void *)(a + i));
            mx = _mm256_max_epu32(mx, _mm256_and_si256(v, absmask));
        }
        uint32_t amax = hmax_epu32(mx);
        for (; i < k; i++) {
            uint32_t b;
            memcpy(&b, &a[i], sizeof b);
            b &= 0x7fffffffu;
            amax = b > amax ? b : amax;
        }
        float inv = eng__q8_row_params(amax, &scales[r]);
        memset(dst, 0, stride * sizeof *dst);
        if (inv == 0.0f) continue;
        __m256 vinv = _mm256_set1_ps(inv);
        for (i = 0; i < k8; i += 8) {
            __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + i), vinv));
            q = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
            /* int32 -> int16 (in range): packs works within 128-bit lanes. */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q, q), 0x08);
            _mm_storeu_si128((void *)(dst + i), _mm256_castsi256_si128(p));
        }
        for (; i < k; i++)
            dst[i] = (int16_t)eng__q8_quantize(a[i], inv);
    }
}

/* Lane masks (all ones where the column is the tile's) for 8 columns from col. */
INL __m256i col_mask(int col, int c0, int c1)
{
    __m256i idx =
        _mm256_add_epi32(_mm256_set1_epi32(col), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i ge = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(c0 - 1));
    __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32(c1), idx);
    return _mm256_and_si256(ge, lt);
}

/* o[lanes of m] += (float)v * (rscale * wscale), in the reference's order. */
INL void dequant8(float *o, __m256i m, __m256i v, float rscale, __m256 wscale)
{
    __m256 f = _mm256_cvtepi32_ps(v);
    __m256 s = _mm256_mul_ps(_mm256_set1_ps(rscale), wscale);
    __m256 p = _mm256_mul_ps(f, s);
    __m256 sum = _mm256_add_ps(_mm256_maskload_ps(o, m), p);
    _mm256_maskstore_ps(o, m, sum);
}

/* The 8 sums of two quarters' accumulators, in column order: hadd gives
 * [c0 c1 c4 c5 | c2 c3 c6 c7], the qword permute puts them in order. */
INL __m256i sums8(__m256i q0, __m256i q1)
{
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(q0, q1), 0xd8);
}

/* Named accumulators (an array of vectors ends up on the stack). */
#define ZERO4(r) __m256i a##r##0 = z, a##r##1 = z, a##r##2 = z, a##r##3 = z
#define BCAST(r) (memcpy(&v, x + (r)*stride + 4 * (size_t)g, sizeof v), _mm256_set1_epi64x(v))
#define MADD(r, j) a##r##j = _mm256_add_epi32(a##r##j, _mm256_madd_epi16(wv, b##r))
#define WQ(j) _mm256_cvtepi8_epi16(_mm_load_si128((const void *)(w + (size_t)g * 64 + 16 * (j))))

/* R (1 or 2) rows from r0 by panel p: 8 accumulators, 2 broadcasts, one
 * weight quarter at a time. */
INL void block(const eng__qtile *t, const int16_t *qa, size_t stride, const float *scales, int r0,
               int p, const int R)
{
    const eng__qmat *q = t->q;
    const int8_t *w = q->w + (size_t)p * q->kgroups * 64;
    const int16_t *x = qa + (size_t)r0 * stride;
    const __m256i z = _mm256_setzero_si256();
    ZERO4(0);
    ZERO4(1);
    for (int g = 0; g < q->kgroups; g++) {
        int64_t v;
        __m256i b0 = BCAST(0), b1 = R > 1 ? BCAST(1) : z, wv;
        wv = WQ(0);
        MADD(0, 0);
        if (R > 1) MADD(1, 0);
        wv = WQ(1);
        MADD(0, 1);
        if (R > 1) MADD(1, 1);
        wv = WQ(2);
        MADD(0, 2);
        if (R > 1) MADD(1, 2);
        wv = WQ(3);
        MADD(0, 3);
        if (R > 1) MADD(1, 3);
    }
    int col = 16 * p, c1 = t->col0 + t->cols;
    float *o = t->c - t->col0 + (size_t)r0 * t->ldc + col; /* c - col0 is column 0 (qgemm.h) */
    __m256i m0 = col_mask(col, t->col0, c1), m1 = col_mask(col + 8, t->col0, c1);
    __m256 ws0 = _mm256_load_ps(q->scale + col), ws1 = _mm256_load_ps(q->scale + col + 8);
    dequant8(o, m0, sums8(a00, a01), scales[r0], ws0);
    dequant8(o + 8, m1, sums8(a02, a03), scales[r0], ws1);
    if (R > 1) {
        o += t->ldc;
        dequant8(o, m0, sums8(a10, a11), scales[r0 + 1], ws0);
        dequant8(o + 8, m1, sums8(a12, a13), scales[r0 + 1], ws1);
    }
}

TGT static void block_1(const eng__qtile *t, const int16_t *qa, size_t s, const float *sc, int r0,
                        int p)
{
    block(t, qa, s, sc, r0, p, 1);
}
TGT static void block_2(const eng__qtile *t, const int16_t *qa, size_t s, const float *sc, int r0,
                        int p)
{
    block(t, qa, s, sc, r0, p, 2);
}

void eng__qgemm_avx2(const eng__qtile *t)
{
    /* stride in int16 entries; whole cache lines per row. */
    size_t stride = ROUND64((size_t)t->q->kgroups * 4 * sizeof(int16_t)) / sizeof(int16_t);
    float *scales = t->scratch;
    int16_t *qa =
        (int16_t *)(void *)((unsigned char *)t->scratch + ROUND64((size_t)t->rows * sizeof(float)));
    if (!t->quantized) quantize_rows(t, qa, stride, scales);
    int p_end = (t->col0 + t->cols + 15) / 16;
    for (int p = t->col0 / 16; p < p_end; p++) {
        int r = 0;
        for (; r + 2 <= t->rows; r += 2)
            block_2(t, qa, stride, scales, r, p);
        if (r < t->rows) block_1(t, qa, stride, scales, r, p);
    }
}

#else /* not x86-64: eng__isa() never asks for this kernel */

void eng__qgemm_avx2(const eng__qtile *t)
{
    eng__qgemm_scalar(t);
}

#endif
