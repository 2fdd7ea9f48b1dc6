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
#include <string.h>

#include "engine/eng.h"

#ifndef ENG__WIDE
#define ENG__WIDE 0
#endif

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
    return eng__sum8(part);
}

/* The scores of the 8 keys at k + off[0..7], n a multiple of 8: lane r is
 * dot1(q, k + off[r], n) to the bit. */
ENG__INLINE eng__v8 dot8(const float *restrict q, const float *restrict k, const size_t *off,
                         int n)
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

/* Most floats of a head held in registers by weighted_sum. */
#define MAX_REG_DH 64

/*
 * acc = acc * c + sum_j p[j] * v[off[j]] over dh floats, the keys added in
 * order. For a constant dh the accumulator is an array of vectors that the
 * unrolled loops turn into registers.
 */
ENG__INLINE void weighted_sum(float *restrict acc, float c, const float *restrict p,
                              const float *restrict v, const size_t *off, int n, int dh)
{
    if (dh % ENG__VW == 0 && dh <= MAX_REG_DH) {
        eng__vf a[MAX_REG_DH / ENG__VW] = {{0}};
#pragma GCC unroll 8
        for (int i = 0; i < dh / ENG__VW; i++)
            a[i] = eng__loadv(acc + ENG__VW * i) * c;
        for (int j = 0; j < n; j++) {
            const float *vj = v + off[j];
#pragma GCC unroll 8
            for (int i = 0; i < dh / ENG__VW; i++)
                a[i] += p[j] * eng__loadv(vj + ENG__VW * i);
        }
#pragma GCC unroll 8
        for (int i = 0; i < dh / ENG__VW; i++)
            eng__storev(acc + ENG__VW * i, a[i]);
        return;
    }
    if (dh % 8 == 0 && dh <= MAX_REG_DH) {
        eng__v8 a[MAX_REG_DH / 8] = {{0}};
#pragma GCC unroll 8
        for (int i = 0; i < dh / 8; i++)
            a[i] = eng__load8(acc + 8 * i) * c;
        for (int j = 0; j < n; j++) {
            const float *vj = v + off[j];
#pragma GCC unroll 8
            for (int i = 0; i < dh / 8; i++)
                a[i] += p[j] * eng__load8(vj + 8 * i);
        }
#pragma GCC unroll 8
        for (int i = 0; i < dh / 8; i++)
            eng__store8(acc + 8 * i, a[i]);
        return;
    }
    int i = 0;
    for (; i + 8 <= dh; i += 8) {
        eng__v8 a = eng__load8(acc + i) * c;
        for (int j = 0; j < n; j++)
            a += p[j] * eng__load8(v + off[j] + i);
        eng__store8(acc + i, a);
    }
    for (; i < dh; i++) {
        float a = acc[i] * c;
        for (int j = 0; j < n; j++)
            a += p[j] * v[off[j] + i];
        acc[i] = a;
    }
}

/* The online softmax state of one query cell. */
typedef struct online {
    float m;    /* largest score so far */
    float l;    /* sum of exp(score - m) */
    float *acc; /* [head_dim] sum of exp(score - m) * v */
} online;

/*
 * Adds n keys (0 < n <= KEY_BLOCK) to the state: key j at k + off[j], its
 * value at v + off[j]. off has room for KEY_BLOCK entries; the last group
 * of 8 is padded with copies of the last key, whose scores are discarded.
 * The factor exp(m_old - m_new) that rescales the state rides in the lane
 * after the last score, so one vectorised pass takes every exponential.
 */
ENG__INLINE void add_keys(online *st, const float *restrict q, const float *k, const float *v,
                          size_t *off, int n, int dh, float sm_scale)
{
    float s[KEY_BLOCK + 16];
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
        for (int j = 8; j < j8; j += 8)
            mv = eng__max8(eng__load8(s + j), mv);
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
    float l = st->l * c + eng__sum8(lv);
    st->m = m;
    st->l = l;
    weighted_sum(st->acc, c, s, v, off, n, dh);
}

/* First and last window offset i (in steps of d) that stay inside [0, size). */
ENG__INLINE void clip(int pos, int size, int r, int d, int *lo, int *hi)
{
    int below = pos / d, above = (size - 1 - pos) / d;
    *lo = below < r ? -below : -r;
    *hi = above < r ? above : r;
}

/* The kernel for one head_dim: attention() calls it with dh a constant
 * for the common sizes, so that the loops over dh unroll completely. */
ENG__INLINE void attend(const eng__attn *a, int begin, int end, const int dh)
{
    const int w = a->width, global = a->radius == ENG_WINDOW_GLOBAL;
    const int d = global ? 1 : a->dilation;
    const float sm_scale = 1.0f / sqrtf((float)dh);
    const size_t step = (size_t)d * a->ld;

    for (int c = begin; c < end; c++) {
        int y = c / w, x = c % w, i_lo, i_hi, j_lo, j_hi;
        if (global) {
            i_lo = -y, i_hi = a->height - 1 - y, j_lo = -x, j_hi = w - 1 - x;
        } else {
            clip(y, a->height, a->radius, d, &i_lo, &i_hi);
            clip(x, w, a->radius, d, &j_lo, &j_hi);
        }
        const float *q = a->q + (size_t)c * a->ld;
        online st = {.m = -INFINITY, .l = 0.0f, .acc = a->out + (size_t)c * a->ldo};
        memset(st.acc, 0, (size_t)dh * sizeof *st.acc);
        size_t off[KEY_BLOCK];
        int n = 0;
        for (int i = i_lo; i <= i_hi; i++) {
            size_t first = ((size_t)(y + d * i) * w + (size_t)(x + d * j_lo)) * a->ld;
            for (int j = 0; j <= j_hi - j_lo; j++) {
                off[n++] = first + (size_t)j * step;
                if (n == KEY_BLOCK) {
                    add_keys(&st, q, a->k, a->v, off, n, dh, sm_scale);
                    n = 0;
                }
            }
        }
        if (n > 0) add_keys(&st, q, a->k, a->v, off, n, dh, sm_scale);
        float inv = 1.0f / st.l;
        for (int t = 0; t < dh; t++)
            st.acc[t] *= inv;
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
