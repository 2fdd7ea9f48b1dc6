/*
 * attention_impl.h - the fused local attention kernel (MODEL.md 3.2), part
 * of the per-instruction-set body (kernels_impl.h includes it).
 *
 * A query cell's clipped, dilated window is walked in row-major order, in
 * blocks of at most KEY_BLOCK keys (a whole r = 3 window is one block; a
 * global layer's window is many). A block's keys are scored eight at a
 * time into a small stack buffer, their exponentials are taken ENG__VW at
 * a time, and they enter an online softmax: the running maximum m, the
 * running sum l of exp(s - m) and the accumulator of exp(s - m) * v (the
 * output row itself), rescaled when m grows. Nothing the size of a window
 * is stored beyond one block.
 *
 * Bits: a score is the dot product by 8 partial sums reduced as eng__sum8
 * does; the weighted sum adds the keys in order, element by element. Under
 * AVX-512 (ENG__WIDE) a zmm register holds two keys' partial sums or 16
 * elements of the accumulator, which changes the width, never the order.
 *
 * With head-major q, k, v (forward.c), the keys of a window row with
 * dilation 1 are consecutive rows of memory.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "engine/eng.h"

/* Keys scored at once (their offsets and scores live on the stack); a
 * multiple of 8, so a block's last group of 8 keys fits. */
#define KEY_BLOCK 64

/* q . k over n floats, one key: 8 partial sums (scalar for a tail of n
 * not a multiple of 8), then eng__sum8. */
ENG__INLINE float dot1(const float *restrict q, const float *restrict k, int n)
{
    eng__v8 part = {0};
    int i = 0;
#pragma GCC unroll 8
    for (; i + 8 <= n; i += 8)
        part += eng__load8(q + i) * eng__load8(k + i);
    for (int t = 0; i < n; i++, t++)
        part[t] += q[i] * k[i];
    return eng__sum8(&part);
}

/* The scores of the 8 keys at k + off[0..7], n a multiple of 8: lane r is
 * dot1(q, k + off[r], n) to the bit. */
ENG__INLINE eng__v8 dot8(const float *restrict q, const float *restrict k, const size_t *off, int n)
{
    eng__v8 p[8];
#if ENG__WIDE
    /* Keys r and r + 4 share a register: eng__sum8x8 pairs them first. */
    eng__v16 acc[4] = {{0}};
#pragma GCC unroll 8
    for (int i = 0; i < n; i += 8) {
        eng__v8 qi = eng__load8(q + i);
        eng__v16 qq = eng__cat8(qi, qi);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            acc[r] += qq * eng__cat8(eng__load8(k + off[r] + i), eng__load8(k + off[r + 4] + i));
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        p[r] = eng__lo8(acc[r]);
        p[r + 4] = eng__hi8(acc[r]);
    }
#else
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        p[r] = (eng__v8){0};
#pragma GCC unroll 8
    for (int i = 0; i < n; i += 8) {
        eng__v8 qi = eng__load8(q + i);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            p[r] += qi * eng__load8(k + off[r] + i);
    }
#endif
    return eng__sum8x8(p);
}

/* Most floats of accumulators held in registers by weighted_sum: 8
 * vectors, so that two cells' accumulators and their operands fit in the
 * 16 ymm (or 32 zmm) registers. */
#define MAX_REG_FLOATS (8 * ENG__VW)

/*
 * For each of nq query cells (1 or 2), acc[q] = acc[q] * c[q] +
 * sum_j p[q][j] * v[off[j] + q * shift] over dh floats, the keys added in
 * order. Two cells share the loop over keys: each accumulator element is
 * one chain of dependent additions, and two independent sets of chains
 * keep the adder busy where one would wait on its own latency. For a
 * constant dh the accumulators are arrays of vectors that the unrolled
 * loops turn into registers.
 */
ENG__INLINE void weighted_sum(int nq, float *const acc[2], const float c[2], const float *p[2],
                              const float *restrict v, ptrdiff_t shift, const size_t *off, int n,
                              int dh)
{
    if (dh % ENG__VW == 0 && nq * dh <= MAX_REG_FLOATS) {
        eng__vf a[2][MAX_REG_FLOATS / ENG__VW] = {{{0}}};
#pragma GCC unroll 2
        for (int q = 0; q < nq; q++)
#pragma GCC unroll 8
            for (int i = 0; i < dh / ENG__VW; i++)
                a[q][i] = eng__loadv(acc[q] + ENG__VW * i) * c[q];
        for (int j = 0; j < n; j++) {
#pragma GCC unroll 2
            for (int q = 0; q < nq; q++) {
                const float *vj = v + off[j] + q * shift;
#pragma GCC unroll 8
                for (int i = 0; i < dh / ENG__VW; i++)
                    a[q][i] += p[q][j] * eng__loadv(vj + ENG__VW * i);
            }
        }
#pragma GCC unroll 2
        for (int q = 0; q < nq; q++)
#pragma GCC unroll 8
            for (int i = 0; i < dh / ENG__VW; i++)
                eng__storev(acc[q] + ENG__VW * i, a[q][i]);
        return;
    }
    for (int q = 0; q < nq; q++) {
        const float *vq = v + q * shift;
        int i = 0;
        for (; i + 8 <= dh; i += 8) {
            eng__v8 a8 = eng__load8(acc[q] + i) * c[q];
            for (int j = 0; j < n; j++)
                a8 += p[q][j] * eng__load8(vq + off[j] + i);
            eng__store8(acc[q] + i, a8);
        }
        for (; i < dh; i++) {
            float a1 = acc[q][i] * c[q];
            for (int j = 0; j < n; j++)
                a1 += p[q][j] * vq[off[j] + i];
            acc[q][i] = a1;
        }
    }
}

/* The online softmax state of one query cell. */
typedef struct online {
    float m;    /* largest score so far */
    float l;    /* sum of exp(score - m) */
    float *acc; /* [head_dim] sum of exp(score - m) * v */
} online;

/*
 * Scores n keys (0 < n <= KEY_BLOCK) for the query q: key j at k + off[j].
 * off has room for KEY_BLOCK entries; the last group of 8 is padded with
 * copies of the last key, whose scores are discarded. Then updates st with
 * them: s[j] becomes the weight exp(score - m_new), and the factor
 * exp(m_old - m_new) that rescales the state, which rides in the lane after
 * the last score so one vectorised pass takes every exponential, is
 * returned.
 */
ENG__INLINE float softmax_block(online *st, float *s, const float *restrict q, const float *k,
                                size_t *off, int n, int dh, float sm_scale)
{
    if (dh % 8 == 0) {
        for (int j = n; j % 8 != 0; j++)
            off[j] = off[n - 1];
        for (int j = 0; j < n; j += 8)
            eng__store8(s + j, dot8(q, k, off + j, dh) * sm_scale);
    } else {
        for (int j = 0; j < n; j++)
            s[j] = dot1(q, k + off[j], dh) * sm_scale;
    }
    /* The maximum, 8 lanes at a time: exact in any order, and a NaN score
     * never wins, as in a plain loop. */
    float m = st->m;
    int j8 = n / 8 * 8;
    if (j8 > 0) {
        eng__v8 mv = eng__load8(s);
        for (int j = 8; j < j8; j += 8) {
            eng__v8 sj = eng__load8(s + j);
            mv = eng__max8(&sj, &mv);
        }
        for (int t = 0; t < 8; t++)
            m = mv[t] > m ? mv[t] : m;
    }
    for (int j = j8; j < n; j++)
        m = s[j] > m ? s[j] : m;
    /* The first block has m_old = -inf: its factor is exp(-inf), clamped to
     * ~1e-38, times l = 0 and an accumulator of zeros. */
    s[n] = st->m;
    int padded = (n + ENG__VW) / ENG__VW * ENG__VW;
    for (int j = n + 1; j < padded; j++)
        s[j] = m;
    for (int j = 0; j < padded; j += ENG__VW)
        eng__storev(s + j, eng__vexp(eng__loadv(s + j) - m));
    /* l = l * c + the weights, summed in 8 partial sums (a plain running
     * sum would be one long chain of dependent additions). */
    float c = s[n];
    for (int j = n; j % 8 != 0; j++)
        s[j] = 0.0f;
    eng__v8 lv = {0};
    for (int j = 0; j < n; j += 8)
        lv += eng__load8(s + j);
    st->l = st->l * c + eng__sum8(&lv);
    st->m = m;
    return c;
}

/*
 * Adds a block of n keys to the states of nq cells (1 or 2). Cell 0's key
 * j is at k + off[j] (its value at v + off[j]); cell 1, the next cell of
 * the row with a window of the same shape, has its keys `shift` floats
 * further.
 */
ENG__INLINE void add_keys(int nq, online st[2], const float *const q[2], const float *k,
                          const float *v, ptrdiff_t shift, size_t *off, int n, int dh,
                          float sm_scale)
{
    float s[2][KEY_BLOCK + 16];
    float c[2];
    float *acc[2] = {st[0].acc, st[nq - 1].acc};
    const float *p[2] = {s[0], s[1]};
#pragma GCC unroll 2
    for (int i = 0; i < nq; i++)
        c[i] = softmax_block(&st[i], s[i], q[i], k + i * shift, off, n, dh, sm_scale);
    weighted_sum(nq, acc, c, p, v, shift, off, n, dh);
}

/* First and last window offset i (in steps of d) that stay inside [0, size). */
ENG__INLINE void clip(int pos, int size, int r, int d, int *lo, int *hi)
{
    int below = pos / d, above = (size - 1 - pos) / d;
    *lo = below < r ? -below : -r;
    *hi = above < r ? above : r;
}

/* The window of cell (y, x) in offsets of d: rows i_lo..i_hi, columns
 * j_lo..j_hi. */
ENG__INLINE void window(const eng__attn *a, int global, int d, int y, int x, int *i_lo, int *i_hi,
                        int *j_lo, int *j_hi)
{
    if (global) {
        *i_lo = -y, *i_hi = a->height - 1 - y, *j_lo = -x, *j_hi = a->width - 1 - x;
    } else {
        clip(y, a->height, a->radius, d, i_lo, i_hi);
        clip(x, a->width, a->radius, d, j_lo, j_hi);
    }
}

/* Divides each of the nq accumulators by its softmax sum. */
ENG__INLINE void finish(int nq, online st[2], int dh)
{
    for (int q = 0; q < nq; q++) {
        float inv = 1.0f / st[q].l;
        int t = 0;
        for (; t + ENG__VW <= dh; t += ENG__VW)
            eng__storev(st[q].acc + t, eng__loadv(st[q].acc + t) * inv);
        for (; t < dh; t++)
            st[q].acc[t] *= inv;
    }
}

/*
 * The kernel for one head_dim: attention() calls it with dh a constant for
 * the common sizes, so that the loops over dh unroll completely. Cells go
 * two at a time when the next cell of the row has a window of the same
 * shape (most cells): its keys are those of the first cell shifted by a
 * fixed number of floats, so one list of offsets serves both. Each cell's
 * arithmetic is the same as alone, so the bits do not depend on pairing.
 * Only AVX-512 pairs: its 32 registers hold both cells' accumulators,
 * where AVX2's 16 spill (measured slower).
 */
ENG__INLINE void attend(const eng__attn *a, int begin, int end, const int dh)
{
    const int w = a->width, global = a->radius == ENG_WINDOW_GLOBAL;
    const int d = global ? 1 : a->dilation;
    const float sm_scale = 1.0f / sqrtf((float)dh);
    const size_t step = (size_t)d * a->ld;

    for (int c = begin; c < end;) {
        int y = c / w, x = c % w, i_lo, i_hi, j_lo, j_hi;
        window(a, global, d, y, x, &i_lo, &i_hi, &j_lo, &j_hi);
        int nq = 1;
        ptrdiff_t shift = 0;
        if (ENG__WIDE && c + 1 < end && x + 1 < w && 2 * dh <= MAX_REG_FLOATS) {
            int i2_lo, i2_hi, j2_lo, j2_hi;
            window(a, global, d, y, x + 1, &i2_lo, &i2_hi, &j2_lo, &j2_hi);
            if (j2_hi - j2_lo == j_hi - j_lo) {
                nq = 2;
                shift = (ptrdiff_t)(1 + d * j2_lo - d * j_lo) * (ptrdiff_t)a->ld;
            }
        }
        online st[2];
        const float *q[2];
        for (int i = 0; i < 2; i++) {
            int ci = i < nq ? c + i : c;
            q[i] = a->q + (size_t)ci * a->ld;
            st[i] = (online){.m = -INFINITY, .l = 0.0f, .acc = a->out + (size_t)ci * a->ldo};
            if (i < nq) memset(st[i].acc, 0, (size_t)dh * sizeof *st[i].acc);
        }
        size_t off[KEY_BLOCK];
        int n = 0;
        for (int i = i_lo; i <= i_hi; i++) {
            size_t first = ((size_t)(y + d * i) * w + (size_t)(x + d * j_lo)) * a->ld;
            for (int j = 0; j <= j_hi - j_lo; j++) {
                off[n++] = first + (size_t)j * step;
                if (n == KEY_BLOCK) {
                    if (nq == 2)
                        add_keys(2, st, q, a->k, a->v, shift, off, n, dh, sm_scale);
                    else
                        add_keys(1, st, q, a->k, a->v, 0, off, n, dh, sm_scale);
                    n = 0;
                }
            }
        }
        if (n > 0) {
            if (nq == 2)
                add_keys(2, st, q, a->k, a->v, shift, off, n, dh, sm_scale);
            else
                add_keys(1, st, q, a->k, a->v, 0, off, n, dh, sm_scale);
        }
        finish(nq, st, dh);
        c += nq;
    }
}

static void attention(const eng__attn *a, int begin, int end)
{
    /* The common head dims get their own copy with dh a constant. */
    switch (a->head_dim) {
    case 16:
        attend(a, begin, end, 16);
        break;
    case 32:
        attend(a, begin, end, 32);
        break;
    case 64:
        attend(a, begin, end, 64);
        break;
    default:
        attend(a, begin, end, a->head_dim);
        break;
    }
}
