/*
 * sample.c - per-cell kernels of one refinement iteration (MODEL.md section 5).
 *
 * The filtered sampler ranks tokens by logit (ties: lower id first), which is
 * the probability order without the rounding that can make two distinct
 * probabilities equal; top_k = 1 is therefore exactly greedy. The draw itself
 * always walks the kept tokens in id order, so a filter that keeps everything
 * draws exactly what no filter draws.
 *
 * The reference sorts every candidate; the fast sampler ranks only what the
 * filters need: the top_k by insertion (a heap beyond a small k), and for
 * top_p alone a heap of the candidates heavy enough to matter, popped until
 * the mass is reached. Both sum the same weights in the same order, so they
 * agree exactly (tests/engine/test_sample.c holds one against the other).
 */
#include "engine/sample.h"

#include <math.h>

#include "engine/vmath.h"

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

double eng__gumbel(uint64_t seed, uint32_t t, uint32_t cell)
{
    /* A distinct constant folded into the seed's hash opens a second stream;
     * the half-step offset keeps u' strictly inside (0, 1). */
    uint64_t s = mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ 0xd1b54a32d192ed03ull);
    uint64_t x = mix64(s ^ ((uint64_t)t << 32 | cell));
    double u = ((double)(x >> 11) + 0.5) * 0x1.0p-53;
    return -log(-log(u));
}

ENG__HOT int eng__argmax(const float *z, int v, int mask)
{
    /* The largest value in vectorisable lanes, then its first id. */
    float lane[ENG__LANES];
    for (int j = 0; j < ENG__LANES; j++)
        lane[j] = -INFINITY;
    int i = 0;
    for (; i + ENG__LANES <= v; i += ENG__LANES)
        for (int j = 0; j < ENG__LANES; j++) {
            float x = eng__vsel(i + j == mask, -INFINITY, z[i + j]);
            lane[j] = eng__vsel(x > lane[j], x, lane[j]);
        }
    float m = -INFINITY;
    for (int j = 0; j < ENG__LANES; j++)
        m = lane[j] > m ? lane[j] : m;
    for (; i < v; i++)
        if (i != mask && z[i] > m) m = z[i];
    for (i = 0; i < v; i++)
        if (i != mask && z[i] == m) return i;
    return mask == 0 ? 1 : 0; /* every logit NaN: any valid id */
}

/* w[i] = exp((z[i] - m) / temperature), 0 for the mask; returns the sum of
 * w in ENG__LANES float partial sums added in a fixed order. Dividing the
 * difference (not multiplying by 1/T) keeps tiny temperatures finite: the
 * best token weighs 1. Differences above 0 (only the mask's) are clamped
 * before the exponential, whose input must be <= 0. */
ENG__HOT static double weights(const float *restrict z, int v, int mask, float m, float temperature,
                               float *restrict w)
{
    float part[ENG__LANES] = {0};
    int i = 0;
    for (; i + ENG__LANES <= v; i += ENG__LANES)
        for (int j = 0; j < ENG__LANES; j++) {
            float d = (z[i + j] - m) / temperature;
            float e = eng__vexp_neg(eng__vsel(d > 0.0f, 0.0f, d));
            w[i + j] = eng__vsel(i + j == mask, 0.0f, e);
            part[j] += w[i + j];
        }
    double sum = 0.0;
    for (int j = 0; j < ENG__LANES; j++)
        sum += part[j];
    for (; i < v; i++) {
        float d = (z[i] - m) / temperature;
        w[i] = i == mask ? 0.0f : eng__vexp_neg(d > 0.0f ? 0.0f : d);
        sum += w[i];
    }
    return sum;
}

/* Sum over the ids but the mask of exp(z - m), m the largest logit, in
 * ENG__LANES float partial sums added in a fixed order: the softmax's
 * denominator shared by eng__confidence and eng__margin. */
ENG__HOT static double mass(const float *z, int v, int mask, float m)
{
    float part[ENG__LANES] = {0};
    int i = 0;
    for (; i + ENG__LANES <= v; i += ENG__LANES)
        for (int j = 0; j < ENG__LANES; j++) {
            float d = z[i + j] - m;
            float e = eng__vexp_neg(eng__vsel(d > 0.0f, 0.0f, d));
            part[j] += eng__vsel(i + j == mask, 0.0f, e);
        }
    double sum = 0.0;
    for (int j = 0; j < ENG__LANES; j++)
        sum += part[j];
    for (; i < v; i++)
        if (i != mask) sum += eng__vexp_neg(z[i] - m);
    return sum;
}

ENG__HOT float eng__confidence(const float *z, int v, int mask, int s)
{
    float m = z[eng__argmax(z, v, mask)];
    float p = (float)(eng__vexp_neg(z[s] - m) / mass(z, v, mask, m));
    return p == p ? p : -1.0f;
}

float eng__margin(const float *z, int v, int mask)
{
    int a = eng__argmax(z, v, mask);
    float m = z[a], second = -INFINITY;
    int any = 0; /* NaN compares false everywhere: track it apart */
    for (int i = 0; i < v; i++) {
        if (i == mask || i == a) continue;
        if (z[i] != z[i]) any = 1;
        if (z[i] > second) second = z[i];
    }
    if (m != m || any) return -1.0f;
    double e2 = second == -INFINITY ? 0.0 : (double)eng__vexp_neg(second - m);
    float p = (float)((1.0 - e2) / mass(z, v, mask, m));
    return p == p ? p : -1.0f;
}

/* key[a] ranks before key[b]: larger key, or equal key and lower index. */
static inline int before(const float *key, int32_t a, int32_t b)
{
    if (key[a] != key[b]) return key[a] > key[b];
    return a < b;
}

/* Restores the heap below i: every parent ranks before its children. */
static void sift(const float *key, int32_t *h, int i, int n)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && before(key, h[c + 1], h[c])) c++;
        if (!before(key, h[c], h[i])) return;
        int32_t tmp = h[i];
        h[i] = h[c];
        h[c] = tmp;
        i = c;
    }
}

static void heapify(const float *key, int32_t *h, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift(key, h, i, n);
}

/* Takes the best-ranked of the heap h[0..n) to h[n - 1] and returns it;
 * h[0..n-1) stays a heap. */
static int32_t pop(const float *key, int32_t *h, int n)
{
    int32_t top = h[0];
    h[0] = h[n - 1];
    h[n - 1] = top;
    sift(key, h, 0, n - 1);
    return top;
}

void eng__sort_worst_first(const float *key, int32_t *idx, int m)
{
    heapify(key, idx, m);
    for (int n = m; n > 1; n--)
        pop(key, idx, n);
}

int eng__keep_masked(int n_open, int t, int k)
{
    if (n_open <= 0 || t >= k) return 0;
    /* Same operation order as the reference: ((pi / 2) * t) / K. */
    double keep = floor((double)n_open * cos(M_PI / 2.0 * (double)t / (double)k));
    if (keep <= 0.0) return 0;
    return keep >= n_open ? n_open : (int)keep;
}

int eng__keep_masked_linear(int n_open, int t, int k)
{
    if (n_open <= 0 || t >= k) return 0;
    if (t <= 0) return n_open;
    return (int)((int64_t)n_open * (int64_t)(k - t) / (int64_t)k);
}

/* Sum of w over the ids ranking no later than `last`, in id order. */
static double mass_upto(const float *z, const float *w, int v, int last)
{
    double sum = 0.0;
    for (int i = 0; i < v; i++)
        if (i == last || before(z, i, last)) sum += w[i];
    return sum;
}

/* Zeroes the weight of every id ranking after `last`. */
static void cut_after(const float *z, float *w, int v, int last)
{
    for (int i = 0; i < v; i++)
        if (i != last && !before(z, i, last)) w[i] = 0.0f;
}

/* Inverse CDF over the positive weights in id order. If rounding leaves
 * u * total at or past the last cumulative sum, the last positive weight's
 * id; if no weight is positive (NaN logits), the argmax. */
static int draw(const float *w, const float *z, int v, int mask, double u)
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
            if (target < cum) return i;
        }
    }
    return last >= 0 ? last : eng__argmax(z, v, mask);
}

/* Candidate tokens: every id but the mask (every id if mask < 0). */
static int candidates(int v, int mask)
{
    return mask >= 0 && mask < v ? v - 1 : v;
}

/* Tokens kept by top_k: all n candidates when 0. */
static int kept_by_top_k(int n, int top_k)
{
    return top_k <= 0 || top_k >= n ? n : top_k;
}

/* The id at which the running sum of w over ord[0..k), best first, reaches
 * goal; the k-th if rounding keeps it short. */
static int prefix_end(const float *w, const int32_t *ord, int k, double goal)
{
    double cum = 0.0;
    for (int j = 0; j < k - 1; j++) {
        cum += w[ord[j]];
        if (cum >= goal) return ord[j];
    }
    return ord[k - 1];
}

/* Insertion into the k best costs O(V k) at worst (logits rising with the
 * id); beyond this k a heap's O(V + k log V) is the safer bound. */
#define INSERTION_MAX_K 32

/* The k best candidates, best first, into ord[0..k). Ids arrive in
 * increasing order, so an id only passes those it beats. */
static void insert_top_k(const float *z, int v, int mask, int k, int32_t *ord)
{
    int n = 0;
    for (int i = 0; i < v; i++) {
        if (i == mask || (n == k && !before(z, i, ord[k - 1]))) continue;
        int j = n < k ? n++ : k - 1;
        for (; j > 0 && before(z, i, ord[j - 1]); j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
}

/* Heapifies the n ids in ord and pops them best first until their weights
 * reach goal or `limit` are popped; returns the id it stopped at, or -1 if
 * the heap ran out first. The j-th popped (0-based) is left at ord[n-1-j]. */
static int heap_prefix(const float *z, const float *w, int32_t *ord, int n, int limit, double goal)
{
    heapify(z, ord, n);
    double cum = 0.0;
    for (int j = 0; j < n; j++) {
        int32_t id = pop(z, ord, n - j);
        cum += w[id];
        if (cum >= goal || j == limit - 1) return id;
    }
    return -1;
}

/* Last kept id under top_p alone (k = every candidate). Tokens lighter than
 * (1 - top_p) * total / n cannot be needed: all of them together weigh less
 * than the mass top_p leaves out. So only the candidates at or above the
 * lowest logit of the heavier ones are ranked (a set closed under the
 * ranking, so it is ranked exactly as in the full order), a handful for a
 * peaked distribution. If rounding defeats the bound, all are ranked. */
static int top_p_only(const float *z, const float *w, int v, int mask, float top_p, double total,
                      int32_t *ord)
{
    double goal = (double)top_p * total;
    float floor_w = (float)((1.0 - (double)top_p) * total / candidates(v, mask) * 0.999);
    float floor_z = INFINITY;
    for (int i = 0; i < v; i++)
        if (i != mask && w[i] >= floor_w && z[i] < floor_z) floor_z = z[i];
    int c = 0;
    for (int i = 0; i < v; i++)
        if (i != mask && z[i] >= floor_z) ord[c++] = i;
    int last = heap_prefix(z, w, ord, c, c + 1, goal);
    if (last >= 0) return last;
    c = 0;
    for (int i = 0; i < v; i++)
        if (i != mask) ord[c++] = i;
    return heap_prefix(z, w, ord, c, c, goal);
}

int eng__sample(const float *z, int v, int mask, const eng_sampling *s, double u, void *scratch)
{
    int best = eng__argmax(z, v, mask);
    if (s->temperature == 0.0f) return best;
    float *w = scratch;
    int32_t *ord = (int32_t *)((char *)scratch + (size_t)v * sizeof *w);
    double all = weights(z, v, mask, z[best], s->temperature, w);
    int n = candidates(v, mask), k = kept_by_top_k(n, s->top_k);
    if (k == n && s->top_p >= 1.0f) return draw(w, z, v, mask, u);
    int last;
    if (k == n) {
        last = top_p_only(z, w, v, mask, s->top_p, all, ord);
    } else {
        int32_t *top = ord; /* the k best, best first */
        if (k <= INSERTION_MAX_K) {
            insert_top_k(z, v, mask, k, ord);
        } else {
            for (int i = 0, c = 0; i < v; i++)
                if (i != mask) ord[c++] = i;
            heap_prefix(z, w, ord, n, k, INFINITY);
            top = ord + n - k; /* popped best last: reverse */
            for (int a = 0, b = k - 1; a < b; a++, b--) {
                int32_t tmp = top[a];
                top[a] = top[b];
                top[b] = tmp;
            }
        }
        last = top[k - 1];
        if (s->top_p < 1.0f)
            last = prefix_end(w, top, k, (double)s->top_p * mass_upto(z, w, v, last));
    }
    cut_after(z, w, v, last);
    return draw(w, z, v, mask, u);
}

int eng__sample_ref(const float *z, int v, int mask, const eng_sampling *s, double u, void *scratch)
{
    int best = eng__argmax(z, v, mask);
    if (s->temperature == 0.0f) return best;
    float *w = scratch;
    int32_t *ord = (int32_t *)((char *)scratch + (size_t)v * sizeof *w);
    double all = weights(z, v, mask, z[best], s->temperature, w);

    /* Stable insertion sort of every candidate by logit, descending. */
    int n = 0;
    for (int i = 0; i < v; i++) {
        if (i == mask) continue;
        int j = n++;
        for (; j > 0 && z[ord[j - 1]] < z[i]; j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
    int k = kept_by_top_k(n, s->top_k);
    int last = ord[k - 1];
    if (s->top_p < 1.0f)
        last = prefix_end(w, ord, k, (double)s->top_p * (k < n ? mass_upto(z, w, v, last) : all));
    cut_after(z, w, v, last);
    return draw(w, z, v, mask, u);
}
