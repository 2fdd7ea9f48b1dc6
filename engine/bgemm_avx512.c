/*
 * bgemm_avx512.c - the bf16 tile on AVX512_BF16 (bgemm.h): vdpbf16ps
 * multiplies 16 lanes by one pair of k and adds both products into float32
 * sums, so a register holds 16 output columns.
 *
 * The micro-kernel keeps MR rows x NV groups of 16 columns of sums in
 * registers (6 x 4 = 24 of the 32 zmm). For each pair of k it loads NV
 * vectors of weights, broadcasts each row's pair and issues MR x NV
 * vdpbf16ps: 24 independent chains, enough to cover the instruction's
 * latency at two per cycle. The tile is walked as a GEMM would be: for
 * each block of ENG__BGEMM_KC pairs, for each panel of NV groups (32 KB of
 * weights, which stay in L1), every block of MR rows; the rows were rounded
 * to bf16 once, at the start of the tile, into the thread's scratch.
 *
 * Compiled for every x86-64 build with target attributes: only called
 * when eng__isa() says the CPU has AVX-512 with BF16.
 */
#include "engine/bgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

enum { MR = 6, NV = 4 };

/* Rows of a rounded to nearest even into the scratch (vcvtneps2bf16, which
 * keeps NaN a NaN and flushes float32 subnormals to zero). */
TARGET static void convert(const eng__bgemm *g, size_t lds)
{
    int k = g->k;
    for (int r = 0; r < g->rows; r++) {
        const float *a = g->a + (size_t)r * g->lda;
        uint16_t *s = (uint16_t *)(g->scratch + (size_t)r * lds);
        int i = 0;
        for (; i + 16 <= k; i += 16) {
            __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(a + i));
            _mm256_storeu_si256((__m256i *)(void *)(s + i), (__m256i)b);
        }
        if (i < k) {
            __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
            __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + i));
            _mm256_mask_storeu_epi16(s + i, m, (__m256i)b);
        }
        if (k % 2) s[k] = 0;
    }
}

/*
 * mr rows x nv groups over np pairs: a is the first row's first pair (rows
 * lds words apart), w the first group's first pair (groups gstride words
 * apart), c the first row's output of lane 0 of the first group; only the
 * lanes of mask[v] are added to c. Inlined with constant mr and nv, so the
 * sums live in registers.
 */
TARGET static inline __attribute__((always_inline)) void
kernel(const int mr, const int nv, const uint32_t *restrict a, size_t lds,
       const uint32_t *restrict w, size_t gstride, int np, float *restrict c, size_t ldc,
       const __mmask16 *mask)
{
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        __m512bh wv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            wv[v] = (__m512bh)_mm512_load_si512((const void *)(w + v * gstride + (size_t)p * 16));
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * lds + (size_t)p]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], wv[v], av);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            float *cc = c + r * ldc + (size_t)v * 16;
            __m512 old = _mm512_maskz_loadu_ps(mask[v], cc);
            _mm512_mask_storeu_ps(cc, mask[v], _mm512_add_ps(old, acc[r][v]));
        }
}

/* clang-format off */
#define K1(m, n)                                                                                   \
    case (m) * 8 + (n):                                                                            \
        kernel(m, n, a, lds, w, gstride, np, c, ldc, mask);                                        \
        break;
#define KR(m) K1(m, 1) K1(m, 2) K1(m, 3) K1(m, 4)

TARGET static void dispatch(int mr, int nv, const uint32_t *a, size_t lds, const uint32_t *w,
                            size_t gstride, int np, float *c, size_t ldc, const __mmask16 *mask)
{
    switch (mr * 8 + nv) {
        KR(1) KR(2) KR(3) KR(4) KR(5) KR(6)
    default:
        break;
    }
}
/* clang-format on */

TARGET void eng__bgemm_avx512(const eng__bgemm *g)
{
    size_t lds = eng__bgemm_lds(g->k);
    int kp = (g->k + 1) / 2, col1 = g->col0 + g->cols;
    int g0 = g->col0 / 16, g1 = (col1 + 15) / 16;
    size_t gstride = (size_t)kp * 16;
    convert(g, lds);
    for (int p0 = 0; p0 < kp; p0 += ENG__BGEMM_KC) {
        int np = kp - p0 < ENG__BGEMM_KC ? kp - p0 : ENG__BGEMM_KC;
        for (int gp = g0; gp < g1; gp += NV) {
            int nv = g1 - gp < NV ? g1 - gp : NV;
            __mmask16 mask[NV];
            for (int v = 0; v < nv; v++) {
                int base = 16 * (gp + v);
                int lo = g->col0 > base ? g->col0 - base : 0;
                int hi = col1 < base + 16 ? col1 - base : 16;
                mask[v] = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
            }
            const uint32_t *w = g->w + (size_t)gp * gstride + (size_t)p0 * 16;
            /* Lane 0 of the panel's first group: at most 15 columns before
             * the tile, still inside the row (bgemm.h). */
            float *c = g->c + (16 * gp - g->col0);
            for (int r = 0; r < g->rows; r += MR) {
                int mr = g->rows - r < MR ? g->rows - r : MR;
                dispatch(mr, nv, g->scratch + (size_t)r * lds + p0, lds, w, gstride, np,
                         c + (size_t)r * g->ldc, g->ldc, mask);
            }
        }
    }
}

#endif
