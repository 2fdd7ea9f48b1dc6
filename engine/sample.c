/*
 * sample.c - per-cell kernels of one refinement iteration (MODEL.md section 5).
 *
 * The filtered sampler ranks tokens by logit (ties: lower id first), which is
 * the probability order without the rounding that can make two distinct
 * probabilities equal; top_k = 1 is therefore exactly greedy. The draw itself
 * always walks the kept tokens in id order, so a filter that keeps everything
 * draws exactly what no filter draws.
 */
#include "engine/sample.h"

#include <math.h>

/* splitmix64's finaliser: a bijection of 64 bits with full avalanche. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double eng__uniform(uint64_t seed, uint32_t t, uint32_t cell)
{
    /* The inner hash spreads nearby seeds apart; for one seed, distinct
     * (t, cell) pairs are distinct inputs to the outer bijection. */
    uint64_t x = mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ ((uint64_t)t << 32 | cell));
    return (double)(x >> 11) * 0x1.0p-53;
}

int eng__argmax(const float *z, int v, int mask)
{
    int best = mask == 0 ? 1 : 0;
    for (int i = best + 1; i < v; i++)
        if (i != mask && z[i] > z[best])
            best = i;
    return best;
}

float eng__confidence(const float *z, int v, int mask, int s)
{
    float m = z[eng__argmax(z, v, mask)];
    double sum = 0.0;
    for (int i = 0; i < v; i++)
        if (i != mask)
            sum += expf(z[i] - m);
    float p = (float)(expf(z[s] - m) / sum);
    return p == p ? p : -1.0f;
}

/* z[a] ranks before z[b]: larger logit, or equal logit and lower id. */
static inline int before(const float *key, int32_t a, int32_t b)
{
    return key[a] > key[b] || (key[a] == key[b] && a < b);
}

/* Restores the heap below i; the root is the element that ranks last. */
static void sift(const float *key, int32_t *h, int i, int n)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && before(key, h[c], h[c + 1]))
            c++;
        if (!before(key, h[i], h[c]))
            return;
        int32_t tmp = h[i];
        h[i] = h[c];
        h[c] = tmp;
        i = c;
    }
}

void eng__rank_desc(const float *key, int32_t *idx, int m)
{
    for (int i = m / 2 - 1; i >= 0; i--)
        sift(key, idx, i, m);
    for (int n = m - 1; n > 0; n--) {
        int32_t tmp = idx[0];
        idx[0] = idx[n];
        idx[n] = tmp;
        sift(key, idx, 0, n);
    }
}

int eng__keep_masked(int n_open, int t, int k)
{
    if (n_open <= 0 || t >= k)
        return 0;
    /* Same operation order as the reference: ((pi / 2) * t) / K. */
    double keep = floor((double)n_open * cos(M_PI / 2.0 * (double)t / (double)k));
    if (keep <= 0.0)
        return 0;
    return keep >= n_open ? n_open : (int)keep;
}

/* w[i] = exp((z[i] - max) / T), 0 for the mask. Dividing the difference (not
 * multiplying by 1/T) keeps tiny temperatures finite: the best token weighs 1. */
static void weights(const float *restrict z, int v, int mask, float temperature,
                    float *restrict w)
{
    float m = z[eng__argmax(z, v, mask)];
    for (int i = 0; i < v; i++)
        w[i] = i == mask ? 0.0f : expf((z[i] - m) / temperature);
}

/* Number of leading entries of ord[0..k) whose weight reaches top_p of theirs. */
static int top_p_prefix(const float *w, const int32_t *ord, int k, float top_p)
{
    if (top_p >= 1.0f)
        return k;
    double total = 0.0;
    for (int j = 0; j < k; j++)
        total += w[ord[j]];
    double goal = (double)top_p * total, cum = 0.0;
    for (int j = 0; j < k; j++) {
        cum += w[ord[j]];
        if (cum >= goal)
            return j + 1;
    }
    return k;
}

/* Inverse CDF over the positive weights in id order. If rounding leaves
 * u * total at or past the last cumulative sum, the last positive weight's id;
 * -1 only when no weight is positive (NaN logits). */
static int draw(const float *w, int v, double u)
{
    double total = 0.0;
    for (int i = 0; i < v; i++)
        total += w[i];
    double target = u * total, cum = 0.0;
    int last = -1;
    for (int i = 0; i < v; i++) {
        if (w[i] > 0.0f) {
            cum += w[i];
            last = i;
            if (target < cum)
                return i;
        }
    }
    return last;
}

static int draw_or_argmax(const float *w, const float *z, int v, int mask, double u)
{
    int t = draw(w, v, u);
    return t >= 0 ? t : eng__argmax(z, v, mask);
}

/* Tokens kept by top_k: all candidates (every id but the mask) when 0. */
static int kept_by_top_k(int v, int top_k)
{
    return top_k <= 0 || top_k >= v - 1 ? v - 1 : top_k;
}

/* Above this k a full heapsort beats insertion into the k best. */
#define INSERTION_MAX_K 32

int eng__sample(const float *z, int v, int mask, const eng_sampling *s, double u,
                void *scratch)
{
    if (s->temperature == 0.0f)
        return eng__argmax(z, v, mask);
    float *w = scratch;
    int32_t *ord = (int32_t *)(w + v);
    weights(z, v, mask, s->temperature, w);

    int k = kept_by_top_k(v, s->top_k);
    if (k == v - 1 && s->top_p >= 1.0f)
        return draw_or_argmax(w, z, v, mask, u);

    if (k <= INSERTION_MAX_K) {
        /* Ids arrive in increasing order, so an id only passes those it beats. */
        int n = 0;
        for (int i = 0; i < v; i++) {
            if (i == mask || (n == k && !before(z, i, ord[k - 1])))
                continue;
            int j = n < k ? n++ : k - 1;
            for (; j > 0 && before(z, i, ord[j - 1]); j--)
                ord[j] = ord[j - 1];
            ord[j] = i;
        }
    } else {
        int n = 0;
        for (int i = 0; i < v; i++)
            if (i != mask)
                ord[n++] = i;
        eng__rank_desc(z, ord, n);
    }
    int last = ord[top_p_prefix(w, ord, k, s->top_p) - 1];
    /* The ranking is a strict total order: kept means ranking no later than last. */
    for (int i = 0; i < v; i++)
        if (i != last && !before(z, i, last))
            w[i] = 0.0f;
    return draw_or_argmax(w, z, v, mask, u);
}

int eng__sample_ref(const float *z, int v, int mask, const eng_sampling *s, double u,
                    void *scratch)
{
    if (s->temperature == 0.0f)
        return eng__argmax(z, v, mask);
    float *w = scratch;
    int32_t *ord = (int32_t *)(w + v);
    weights(z, v, mask, s->temperature, w);

    /* Stable insertion sort of every candidate by logit, descending. */
    int n = 0;
    for (int i = 0; i < v; i++) {
        if (i == mask)
            continue;
        int j = n++;
        for (; j > 0 && z[ord[j - 1]] < z[i]; j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
    int keep = top_p_prefix(w, ord, kept_by_top_k(v, s->top_k), s->top_p);
    for (int j = keep; j < n; j++)
        w[ord[j]] = 0.0f;
    return draw_or_argmax(w, z, v, mask, u);
}
