/*
 * attention.c - local two-dimensional attention (MODEL.md 3.2): the fused
 * kernel and its reference.
 *
 * The fast kernel walks a query cell's clipped, dilated window in row-major
 * order, in blocks of at most KEY_BLOCK keys (a whole r = 3 window is one
 * block; a global layer's window is many). A block's keys are scored into a
 * small stack buffer, their exponentials are taken in one vectorised pass,
 * and they enter an online softmax: the running maximum m, the running sum l
 * of exp(s - m) and the accumulator of exp(s - m) * v (the output row
 * itself), rescaled when m grows. Nothing the size of a window is stored
 * beyond one block, and the per-block work (maximum, exponentials, loading
 * and storing the accumulator) is shared by up to KEY_BLOCK keys.
 *
 * With head-major q, k, v (forward.c), the keys of a window row with
 * dilation 1 are consecutive rows of memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/kernels.h"
#include "engine/vmath.h"

/* Keys scored at once (their offsets and scores live on the stack). */
#define KEY_BLOCK 64

/*
 * The dot products and the weighted sum use GCC's vector extension (also in
 * Clang) for one reason: a vector variable stays in a register across a
 * loop, where GCC at -O2 keeps a plain float[8] accumulator in memory and
 * every key then waits on a store-to-load round trip. The arithmetic is the
 * same lane by lane as plain loops over ENG__LANES; on the baseline clone a
 * v8 is two SSE registers.
 */
/* The helpers below are always inlined, so no v8 ever crosses a call and
 * GCC's note that a 32-byte vector argument changes the ABI does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

ENG__INLINE v8 load8(const float *p)
{
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ENG__INLINE void store8(float *p, const v8 *v)
{
    memcpy(p, v, sizeof *v);
}

/* Sum of the 8 lanes, halving as (p0 + p4) ... then (a0 + a2) ..., then b0 + b1. */
ENG__INLINE float lane_sum(const v8 *v)
{
    v8 p = *v;
    v4 a = __builtin_shufflevector(p, p, 0, 1, 2, 3) + __builtin_shufflevector(p, p, 4, 5, 6, 7);
    v4 b = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return b[0] + b[1];
}

/* Most vectors a head holds in registers (dh <= 8 * MAX_VECS). */
#define MAX_VECS 8

/*
 * q . k over n floats (n a multiple of 4): 8 partial sums, then lane_sum.
 * The loops carry `#pragma GCC unroll`: with n a constant they unroll
 * completely, which -O2 alone does not do.
 */
ENG__INLINE float dot(const float *restrict q, const float *restrict k, int n)
{
    v8 part = {0};
    int i = 0;
#pragma GCC unroll 8
    for (; i + 8 <= n; i += 8)
        part += load8(q + i) * load8(k + i);
    for (int t = 0; i < n; i++, t++)
        part[t] += q[i] * k[i];
    return lane_sum(&part);
}

/*
 * acc = acc * c + sum_j p[j] * v[off[j]] over dh floats, the keys added
 * in order. For a constant dh <= 8 * MAX_VECS the accumulator is an array
 * of vectors that the unrolled loops turn into registers.
 */
ENG__INLINE void weighted_sum(float *restrict acc, float c, const float *restrict p,
                              const float *restrict v, const size_t *off, int n, int dh)
{
    if (dh % 8 == 0 && dh <= 8 * MAX_VECS) {
        v8 a[MAX_VECS] = {{0}};
#pragma GCC unroll 8
        for (int i = 0; i < dh / 8; i++)
            a[i] = load8(acc + 8 * i) * c;
        for (int j = 0; j < n; j++) {
            const float *vj = v + off[j];
#pragma GCC unroll 8
            for (int i = 0; i < dh / 8; i++)
                a[i] += p[j] * load8(vj + 8 * i);
        }
#pragma GCC unroll 8
        for (int i = 0; i < dh / 8; i++)
            store8(acc + 8 * i, &a[i]);
        return;
    }
    int i = 0;
    for (; i + 8 <= dh; i += 8) {
        v8 a = load8(acc + i) * c;
        for (int j = 0; j < n; j++)
            a += p[j] * load8(v + off[j] + i);
        store8(acc + i, &a);
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
 * Adds n keys (n <= KEY_BLOCK) to the state: key j at k + off[j], its
 * value at v + off[j]. The factor exp(m_old - m_new) that rescales the
 * state rides in the lane after the last score, so one vectorised pass
 * takes every exponential.
 */
ENG__INLINE void add_keys(online *st, const float *restrict q, const float *k, const float *v,
                          const size_t *off, int n, int dh, float sm_scale)
{
    float s[KEY_BLOCK + ENG__LANES];
    float m = st->m;
    for (int j = 0; j < n; j++) {
        s[j] = dot(q, k + off[j], dh) * sm_scale;
        m = s[j] > m ? s[j] : m;
    }
    /* The first block has m_old = -inf: its factor is exp(-inf), clamped to
     * ~1e-38, times l = 0 and an accumulator of zeros. */
    s[n] = st->m;
    int padded = (n + ENG__LANES) / ENG__LANES * ENG__LANES;
    for (int j = n + 1; j < padded; j++)
        s[j] = m;
    for (int j = 0; j < padded; j += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            s[j + t] = eng__vexp_neg(s[j + t] - m);
    float c = s[n], l = st->l * c;
    for (int j = 0; j < n; j++)
        l += s[j];
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

/* The kernel for one head_dim: eng__attention calls it with dh a constant
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

ENG__HOT
void eng__attention(const eng__attn *a, int begin, int end)
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

/* Whether (yy, xx) is in the window of (y, x), by the definition. */
static int in_window(const eng__attn *a, int y, int x, int yy, int xx)
{
    if (a->radius == ENG_WINDOW_GLOBAL) return 1;
    int dy = yy - y, dx = xx - x, d = a->dilation;
    return dy % d == 0 && dx % d == 0 && abs(dy / d) <= a->radius && abs(dx / d) <= a->radius;
}

void eng__attention_ref(const eng__attn *a, int begin, int end, float *scores)
{
    const int dh = a->head_dim, h = a->height, w = a->width;

    for (int c = begin; c < end; c++) {
        int y = c / w, x = c % w;
        const float *q = a->q + (size_t)c * a->ld;
        float *out = a->out + (size_t)c * a->ldo;

        float mx = -INFINITY;
        for (int n = 0; n < h * w; n++) {
            if (!in_window(a, y, x, n / w, n % w)) continue;
            const float *k = a->k + (size_t)n * a->ld;
            float s = 0.0f;
            for (int t = 0; t < dh; t++)
                s += q[t] * k[t];
            scores[n] = s / sqrtf((float)dh);
            mx = scores[n] > mx ? scores[n] : mx;
        }
        float sum = 0.0f;
        for (int n = 0; n < h * w; n++)
            if (in_window(a, y, x, n / w, n % w)) {
                scores[n] = expf(scores[n] - mx);
                sum += scores[n];
            }
        for (int t = 0; t < dh; t++)
            out[t] = 0.0f;
        for (int n = 0; n < h * w; n++)
            if (in_window(a, y, x, n / w, n % w)) {
                const float *v = a->v + (size_t)n * a->ld;
                for (int t = 0; t < dh; t++)
                    out[t] += scores[n] / sum * v[t];
            }
    }
}
