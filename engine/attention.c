/*
 * attention.c - the reference of local two-dimensional attention (MODEL.md
 * 3.2). The fast kernel is attention_impl.h, compiled once per instruction
 * set; eng__attention (kernels.c) runs the set of eng__isa().
 */
#include <math.h>
#include <stdlib.h>

#include "engine/eng.h"
#include "engine/kernels.h"

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
