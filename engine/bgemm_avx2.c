/*
 * bgemm_avx2.c - the bf16 tile on AVX2 + FMA (bgemm.h), for CPUs without
 * AVX512_BF16. A bf16 value is the high half of a float32, so a packed
 * pair word becomes two float32 vectors by a shift (low half) and a mask
 * (high half); each product of two bf16 values is exact in float32 (unless
 * it falls below float32's normal range, 2^-126), so an FMA adds exactly
 * the product the scalar reference adds, in the same order: the sums are
 * bitwise those of the reference.
 *
 * The micro-kernel holds MR rows x one group of 16 columns (two ymm per
 * row) and runs over all pairs of k: the group's weights, 64 bytes a pair,
 * are at most a few tens of KB and stay in L1 while every block of rows
 * passes over them.
 */
#include <string.h>

#include "engine/bgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

enum { MR = 4 };

/* 8 float32 to bf16, rounded to nearest even, NaN kept quiet: the same
 * arithmetic as eng__bf16_round. Returns the 8 results in the low 16 bits
 * of each 32-bit lane. */
TARGET static __m256i round8(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i one = _mm256_set1_epi32(1);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

TARGET static void convert(const eng__bgemm *g, size_t lds)
{
    int k = g->k;
    for (int r = 0; r < g->rows; r++) {
        const float *a = g->a + (size_t)r * g->lda;
        uint16_t *s = (uint16_t *)(g->scratch + (size_t)r * lds);
        int i = 0;
        for (; i + 16 <= k; i += 16) {
            __m256i lo = round8(_mm256_loadu_ps(a + i)), hi = round8(_mm256_loadu_ps(a + i + 8));
            /* packus interleaves 128-bit halves: put them back in order. */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
            _mm256_storeu_si256((__m256i *)(void *)(s + i), p);
        }
        for (; i < k; i++)
            s[i] = eng__bf16_round(a[i]);
        if (k % 2) s[k] = 0;
    }
}

/* mr rows x one group over kp pairs; c is the first row's output of lane
 * 0, and only lanes [lo, hi) are added to it. */
TARGET static inline __attribute__((always_inline)) void
kernel(const int mr, const uint32_t *restrict a, size_t lds, const uint32_t *restrict w, int kp,
       float *restrict c, size_t ldc, int lo, int hi)
{
    const __m256i himask = _mm256_set1_epi32((int)0xffff0000u);
    __m256 acc[MR][2];
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(const void *)(w + (size_t)p * 16));
        __m256i w1 = _mm256_load_si256((const __m256i *)(const void *)(w + (size_t)p * 16 + 8));
        __m256 w0e = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
        __m256 w0o = _mm256_castsi256_ps(_mm256_and_si256(w0, himask));
        __m256 w1e = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
        __m256 w1o = _mm256_castsi256_ps(_mm256_and_si256(w1, himask));
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) {
            __m256i ab = _mm256_set1_epi32((int)a[r * lds + (size_t)p]);
            __m256 ae = _mm256_castsi256_ps(_mm256_slli_epi32(ab, 16));
            __m256 ao = _mm256_castsi256_ps(_mm256_and_si256(ab, himask));
            acc[r][0] = _mm256_fmadd_ps(ae, w0e, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ae, w1e, acc[r][1]);
            acc[r][0] = _mm256_fmadd_ps(ao, w0o, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ao, w1o, acc[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) {
        float *cc = c + r * ldc;
        if (lo == 0 && hi == 16) {
            _mm256_storeu_ps(cc, _mm256_add_ps(_mm256_loadu_ps(cc), acc[r][0]));
            _mm256_storeu_ps(cc + 8, _mm256_add_ps(_mm256_loadu_ps(cc + 8), acc[r][1]));
        } else {
            float t[16];
            _mm256_storeu_ps(t, acc[r][0]);
            _mm256_storeu_ps(t + 8, acc[r][1]);
            for (int j = lo; j < hi; j++)
                cc[j] += t[j];
        }
    }
}

TARGET void eng__bgemm_avx2(const eng__bgemm *g)
{
    size_t lds = eng__bgemm_lds(g->k);
    int kp = (g->k + 1) / 2, col1 = g->col0 + g->cols;
    size_t gstride = (size_t)kp * 16;
    convert(g, lds);
    for (int grp = g->col0 / 16; grp * 16 < col1; grp++) {
        int base = 16 * grp;
        int lo = g->col0 > base ? g->col0 - base : 0, hi = col1 < base + 16 ? col1 - base : 16;
        const uint32_t *w = g->w + (size_t)grp * gstride;
        float *c = g->c + (base - g->col0);
        for (int r = 0; r < g->rows; r += MR) {
            const uint32_t *a = g->scratch + (size_t)r * lds;
            float *cr = c + (size_t)r * g->ldc;
            switch (g->rows - r < MR ? g->rows - r : MR) {
            case 1:
                kernel(1, a, lds, w, kp, cr, g->ldc, lo, hi);
                break;
            case 2:
                kernel(2, a, lds, w, kp, cr, g->ldc, lo, hi);
                break;
            case 3:
                kernel(3, a, lds, w, kp, cr, g->ldc, lo, hi);
                break;
            default:
                kernel(4, a, lds, w, kp, cr, g->ldc, lo, hi);
                break;
            }
        }
    }
}

#endif
