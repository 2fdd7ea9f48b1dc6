/*
 * attention.c - local two-dimensional attention (MODEL.md 3.2): the fused
 * kernel and its reference.
 *
 * The fast kernel takes one query cell at a time and walks its window one
 * window row at a time. A row's keys are scored into a small stack buffer
 * (at most ROW_BLOCK keys; a global row longer than that is cut into pieces),
 * their exponentials are taken in one vectorised pass, and they enter an
 * online softmax: the running maximum m, the running sum l of exp(s - m) and
 * the accumulator of exp(s - m) * v, rescaled whenever m grows. Memory per
 * cell is the head's output row and the stack buffer, never the window.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/kernels.h"
#include "engine/vmath.h"

/* Keys scored at once: a window row has 2r + 1 <= ROW_BLOCK keys for any
 * radius up to 31; longer rows (global, larger radii) are cut. */
#define ROW_BLOCK 64

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

/* q . k over n floats (n a multiple of 4), ENG__LANES partial sums. */
ENG__INLINE float dot(const float *restrict q, const float *restrict k, int n)
{
    float part[ENG__LANES] = {0};
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            part[t] += q[i + t] * k[i + t];
    for (int t = 0; i < n; i++, t++)
        part[t] += q[i] * k[i];
    return lane_sum(part);
}

/* acc = acc * c over n floats. */
ENG__INLINE void scale(float *restrict acc, float c, int n)
{
    int i = 0;
    for (; i + ENG__LANES <= n; i += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            acc[i + t] *= c;
    for (; i < n; i++)
        acc[i] *= c;
}

/*
 * acc += sum_j p[j] * v[j * step] over dh floats. The block's sum is built
 * ENG__LANES columns at a time in a local array that GCC keeps in a
 * register across the keys, then added to acc once.
 */
ENG__INLINE void weighted_sum(float *restrict acc, const float *restrict p,
                              const float *restrict v, size_t step, int n, int dh)
{
    int i = 0;
    for (; i + ENG__LANES <= dh; i += ENG__LANES) {
        float a[ENG__LANES] = {0};
        for (int j = 0; j < n; j++)
            for (int t = 0; t < ENG__LANES; t++)
                a[t] += p[j] * v[(size_t)j * step + i + t];
        for (int t = 0; t < ENG__LANES; t++)
            acc[i + t] += a[t];
    }
    for (; i < dh; i++) {
        float a = 0.0f;
        for (int j = 0; j < n; j++)
            a += p[j] * v[(size_t)j * step + i];
        acc[i] += a;
    }
}

/* The online softmax state of one query cell. */
typedef struct online {
    float m, l;
    float *acc; /* [head_dim], the output row */
} online;

/*
 * Adds n keys (n <= ROW_BLOCK) to the state: key j at k + j * step, its
 * value at v + j * step.
 */
ENG__INLINE void add_keys(online *st, const float *restrict q, const float *k,
                            const float *v, size_t step, int n, int dh, float sm_scale)
{
    float s[ROW_BLOCK];
    float mb = -INFINITY;
    for (int j = 0; j < n; j++) {
        s[j] = dot(q, k + (size_t)j * step, dh) * sm_scale;
        mb = s[j] > mb ? s[j] : mb;
    }
    if (mb > st->m) {
        /* The first block finds m = -inf; exp clamps it to a weight of
         * ~1e-38 times l = 0 and an accumulator of zeros. */
        float c = eng__vexp_neg(st->m - mb);
        st->l *= c;
        scale(st->acc, c, dh);
        st->m = mb;
    }
    /* Pad to whole lanes so the exponential loop has no remainder. */
    int padded = (n + ENG__LANES - 1) / ENG__LANES * ENG__LANES;
    for (int j = n; j < padded; j++)
        s[j] = st->m;
    for (int j = 0; j < padded; j += ENG__LANES)
        for (int t = 0; t < ENG__LANES; t++)
            s[j + t] = eng__vexp_neg(s[j + t] - st->m);
    for (int j = 0; j < n; j++)
        st->l += s[j];
    weighted_sum(st->acc, s, v, step, n, dh);
}

/* First and last window offset i (in steps of d) that stay inside [0, size). */
ENG__INLINE void clip(int pos, int size, int r, int d, int *lo, int *hi)
{
    int below = pos / d, above = (size - 1 - pos) / d;
    *lo = below < r ? -below : -r;
    *hi = above < r ? above : r;
}

ENG__HOT
void eng__attention(const eng__attn *a, int begin, int end)
{
    const int dh = a->head_dim, w = a->width;
    const float sm_scale = 1.0f / sqrtf((float)dh);
    const int global = a->radius == ENG_WINDOW_GLOBAL;
    const int r = global ? 0 : a->radius, d = global ? 1 : a->dilation;

    for (int c = begin; c < end; c++) {
        int y = c / w, x = c % w;
        const float *q = a->q + (size_t)c * a->ld;
        online st = {.m = -INFINITY, .l = 0.0f, .acc = a->out + (size_t)c * a->ldo};
        memset(st.acc, 0, (size_t)dh * sizeof *st.acc);

        int i_lo, i_hi, j_lo, j_hi;
        if (global) {
            i_lo = -y, i_hi = a->height - 1 - y, j_lo = -x, j_hi = w - 1 - x;
        } else {
            clip(y, a->height, r, d, &i_lo, &i_hi);
            clip(x, w, r, d, &j_lo, &j_hi);
        }
        size_t step = (size_t)d * a->ld;
        for (int i = i_lo; i <= i_hi; i++) {
            size_t first = (size_t)(y + d * i) * w + (size_t)(x + d * j_lo);
            const float *k = a->k + first * a->ld, *v = a->v + first * a->ld;
            for (int left = j_hi - j_lo + 1; left > 0;) {
                int n = left < ROW_BLOCK ? left : ROW_BLOCK;
                add_keys(&st, q, k, v, step, n, dh, sm_scale);
                k += n * step;
                v += n * step;
                left -= n;
            }
        }
        scale(st.acc, 1.0f / st.l, dh);
    }
}

/* Whether (yy, xx) is in the window of (y, x), by the definition. */
static int in_window(const eng__attn *a, int y, int x, int yy, int xx)
{
    if (a->radius == ENG_WINDOW_GLOBAL)
        return 1;
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
            if (!in_window(a, y, x, n / w, n % w))
                continue;
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
