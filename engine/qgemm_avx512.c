/*
 * qgemm_avx512.c - the int8 tile kernel with AVX-512 VNNI (qgemm.h).
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes and adds each group of
 * four products into an int32 lane. Activations are stored as u = qa + 128
 * (1..255), so a lane accumulates sum u * qw = sum qa * qw + 128 sum qw; the
 * weight's column sums (eng__qmat.corr) take the offset back out. Every
 * step is exact (|sums| < 2^31 for k <= ENG__Q8_MAX_K), so the integers are
 * the scalar reference's, and the f32 epilogue repeats its formula lane by
 * lane.
 *
 * Register blocking: 6 rows x 4 panels of 16 columns, 24 zmm accumulators;
 * per group of 4 k, 4 weight vectors (one 64-byte load per panel, each
 * panel streamed linearly) and one 4-byte broadcast per row. The rows left
 * over go one at a time; a group of fewer than 4 panels repeats its last
 * one and leaves the copies unstored. The panel groups are the outer loop,
 * so their weights stay in cache while all the tile's rows pass under them.
 *
 * Compiled for any x86-64 through target attributes; only called when
 * eng__isa() reports AVX-512.
 */
#include <string.h>

#include "engine/qgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL static inline __attribute__((always_inline)) TGT
#define ROUND64(n) (((n) + (size_t)63) & ~(size_t)63)
#define MR 6 /* rows per block */
#define NP 4 /* panels per block */

/* 16 activations quantized, as int32 q + 128. */
INL __m512i quantize16(__m512 x, __m512 vinv)
{
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(x, vinv));
    q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
    return _mm512_add_epi32(q, _mm512_set1_epi32(128));
}

/*
 * Rows of the tile as u8 = q + 128, padded with 128 (zero) to the stride.
 * 64 at a time, narrowed with two packs and one permute: the one-instruction
 * narrowing store (vpmovdb to memory) is slow on some cores. The last
 * k % 64 go through the scalar rule, which gives the same values.
 */
TGT static void quantize_rows(const eng__qtile *t, uint8_t *qa, size_t stride, float *scales)
{
    int k = t->q->k, k16 = k / 16 * 16, k64 = k / 64 * 64;
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    /* packs then packus leave, per 128-bit lane j, 4 bytes of each input's lane j. */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int r = 0; r < t->rows; r++) {
        const float *a = t->a + (size_t)r * t->lda;
        uint8_t *dst = qa + (size_t)r * stride;
        __m512i mx = _mm512_setzero_si512();
        int i = 0;
        for (; i < k16; i += 16)
            mx = _mm512_max_epu32(mx, _mm512_and_si512(_mm512_loadu_si512(a + i), absmask));
        if (i < k) {
            __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
            mx =
                _mm512_max_epu32(mx, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, a + i), absmask));
        }
        float inv = eng__q8_row_params(_mm512_reduce_max_epu32(mx), &scales[r]);
        if (inv == 0.0f) {
            memset(dst, 128, stride);
            continue;
        }
        __m512 vinv = _mm512_set1_ps(inv);
        for (i = 0; i < k64; i += 64) {
            __m512i q0 = quantize16(_mm512_loadu_ps(a + i), vinv);
            __m512i q1 = quantize16(_mm512_loadu_ps(a + i + 16), vinv);
            __m512i q2 = quantize16(_mm512_loadu_ps(a + i + 32), vinv);
            __m512i q3 = quantize16(_mm512_loadu_ps(a + i + 48), vinv);
            __m512i b = _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
            _mm512_storeu_si512(dst + i, _mm512_permutexvar_epi32(order, b));
        }
        for (; i < k; i++)
            dst[i] = (uint8_t)(eng__q8_quantize(a[i], inv) + 128);
        memset(dst + k, 128, stride - (size_t)k);
    }
}

/* The lanes of panel p that fall in the tile's columns [c0, c1). */
static __mmask16 panel_mask(int p, int c0, int c1)
{
    int lo = c0 - 16 * p, hi = c1 - 16 * p;
    lo = lo < 0 ? 0 : lo > 16 ? 16 : lo;
    hi = hi < 0 ? 0 : hi > 16 ? 16 : hi;
    uint32_t m = ((1u << hi) - 1) & ~((1u << lo) - 1);
    return (__mmask16)m;
}

/* Where a block works: its rows' quantized activations and their scales,
 * its 4 panels (a panel past the tile's last repeats the last one and is
 * not stored: mask 0), and where row r0 column 0 of the output is. */
typedef struct blk {
    const eng__qtile *t;
    const uint8_t *x; /* row r0's quantized activations */
    size_t stride;
    const int8_t *w[NP];
    __mmask16 m[NP];
    int col[NP];     /* first column of each panel */
    const float *rs; /* row r0's scale */
    float *out;      /* row r0, column 0 */
} blk;

/* out[lanes m] += (float)(acc - corr) * (rs * ws), in the reference's order. */
INL void finish(const blk *b, int r, int j, __m512i acc)
{
    if (!b->m[j]) return;
    const eng__qmat *q = b->t->q;
    float *o = b->out + (size_t)r * b->t->ldc + b->col[j];
    __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_load_si512(q->corr + b->col[j])));
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(b->rs[r]), _mm512_load_ps(q->scale + b->col[j]));
    __m512 p = _mm512_mul_ps(f, s);
    __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(b->m[j], o), p);
    _mm512_mask_storeu_ps(o, b->m[j], sum);
}

/* Named accumulators (an array of vectors ends up on the stack). */
#define ZERO4(r) __m512i a##r##0 = z, a##r##1 = z, a##r##2 = z, a##r##3 = z
#define BCAST(r) (memcpy(&v, x + (r)*stride + 4 * (size_t)g, sizeof v), _mm512_set1_epi32(v))
#define DP4(r)                                                                                     \
    bc = BCAST(r);                                                                                 \
    a##r##0 = _mm512_dpbusd_epi32(a##r##0, bc, w0);                                                \
    a##r##1 = _mm512_dpbusd_epi32(a##r##1, bc, w1);                                                \
    a##r##2 = _mm512_dpbusd_epi32(a##r##2, bc, w2);                                                \
    a##r##3 = _mm512_dpbusd_epi32(a##r##3, bc, w3)
#define LOADW(g)                                                                                   \
    __m512i w0 = _mm512_load_si512((const void *)(b->w[0] + (size_t)(g)*64));                      \
    __m512i w1 = _mm512_load_si512((const void *)(b->w[1] + (size_t)(g)*64));                      \
    __m512i w2 = _mm512_load_si512((const void *)(b->w[2] + (size_t)(g)*64));                      \
    __m512i w3 = _mm512_load_si512((const void *)(b->w[3] + (size_t)(g)*64))
#define FINISH4(r)                                                                                 \
    finish(b, r, 0, a##r##0), finish(b, r, 1, a##r##1), finish(b, r, 2, a##r##2),                  \
        finish(b, r, 3, a##r##3)

/* 6 rows x 4 panels: 24 accumulators, 4 weight vectors, 1 broadcast. */
TGT static void block6(const blk *b)
{
    const uint8_t *x = b->x;
    size_t stride = b->stride;
    int kg = b->t->q->kgroups;
    const __m512i z = _mm512_setzero_si512();
    ZERO4(0);
    ZERO4(1);
    ZERO4(2);
    ZERO4(3);
    ZERO4(4);
    ZERO4(5);
    for (int g = 0; g < kg; g++) {
        int32_t v;
        __m512i bc;
        LOADW(g);
        DP4(0);
        DP4(1);
        DP4(2);
        DP4(3);
        DP4(4);
        DP4(5);
    }
    FINISH4(0);
    FINISH4(1);
    FINISH4(2);
    FINISH4(3);
    FINISH4(4);
    FINISH4(5);
}

/* One row x 4 panels, for the rows left over. */
TGT static void block1(const blk *b)
{
    const uint8_t *x = b->x;
    size_t stride = b->stride;
    int kg = b->t->q->kgroups;
    const __m512i z = _mm512_setzero_si512();
    ZERO4(0);
    for (int g = 0; g < kg; g++) {
        int32_t v;
        __m512i bc;
        LOADW(g);
        DP4(0);
    }
    (void)stride;
    FINISH4(0);
}

void eng__qgemm_avx512(const eng__qtile *t)
{
    const eng__qmat *q = t->q;
    size_t stride = ROUND64((size_t)q->kgroups * 4);
    float *scales = t->scratch;
    uint8_t *qa = (uint8_t *)t->scratch + ROUND64((size_t)t->rows * sizeof(float));
    if (!t->quantized) quantize_rows(t, qa, stride, scales);
    int c1 = t->col0 + t->cols, p_end = (c1 + 15) / 16;
    blk b = {.t = t, .stride = stride};
    for (int p = t->col0 / 16; p < p_end; p += NP) {
        for (int j = 0; j < NP; j++) {
            int pj = p + j < p_end ? p + j : p_end - 1;
            b.w[j] = q->w + (size_t)pj * q->kgroups * 64;
            b.m[j] = p + j < p_end ? panel_mask(pj, t->col0, c1) : 0;
            b.col[j] = 16 * pj;
        }
        for (int r = 0; r < t->rows;) {
            int n = r + MR <= t->rows ? MR : 1;
            b.x = qa + (size_t)r * stride;
            b.rs = scales + r;
            b.out = t->c - t->col0 + (size_t)r * t->ldc; /* column 0 (qgemm.h) */
            if (n == MR)
                block6(&b);
            else
                block1(&b);
            r += n;
        }
    }
}

#else /* not x86-64: eng__isa() never asks for this kernel */

void eng__qgemm_avx512(const eng__qtile *t)
{
    eng__qgemm_scalar(t);
}

#endif
