/*
 * test_sample.c - the sampling kernels of engine/sample.c: the fast sampler
 * against its plain reference, the filters' definitions, the distribution of
 * the draws, the re-masking schedule and the re-mask order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sample.h"

#define V 257
#define MASK 256

static void *scratch; /* ENG__SAMPLE_SCRATCH(V) bytes, allocated by main */

/* A small deterministic generator for test data (not the engine's). */
static uint64_t rng_state = 0x1234567;
static double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

static void random_logits(float *z, int v, int quantise)
{
    for (int i = 0; i < v; i++) {
        double x = rnd() * 8.0 - 4.0;
        /* Quantised logits tie often, which exercises every tie rule. */
        z[i] = quantise ? (float)floor(x * 2.0) / 2.0f : (float)x;
    }
}

static eng_sampling sampling(float temperature, int top_k, float top_p)
{
    return (eng_sampling){.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = 0};
}

static void test_uniform_range_and_independence(void **state)
{
    (void)state;
    double sum = 0.0;
    int n = 100000;
    for (int c = 0; c < n; c++) {
        double u = eng__uniform(42, 3, (uint32_t)c);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
    }
    assert_true(fabs(sum / n - 0.5) < 0.005);
    /* Each of seed, iteration and cell changes the draw. */
    double u = eng__uniform(7, 1, 5);
    assert_true(u != eng__uniform(8, 1, 5));
    assert_true(u != eng__uniform(7, 2, 5));
    assert_true(u != eng__uniform(7, 1, 6));
    assert_true(u == eng__uniform(7, 1, 5));
}

static void test_argmax_ties_go_to_lower_id(void **state)
{
    (void)state;
    float z[V];
    for (int i = 0; i < V; i++)
        z[i] = 0.0f;
    z[200] = 2.0f;
    z[17] = 2.0f;
    z[90] = 2.0f;
    assert_int_equal(eng__argmax(z, V, MASK), 17);
    eng_sampling s = sampling(0.0f, 0, 1.0f);
    assert_int_equal(eng__sample(z, V, MASK, &s, 0.99, scratch), 17);
    assert_int_equal(eng__sample_ref(z, V, MASK, &s, 0.99, scratch), 17);
    /* A mask at id 0 is skipped even when every logit ties. */
    for (int i = 0; i < V; i++)
        z[i] = 1.0f;
    assert_int_equal(eng__argmax(z, V, 0), 1);
}

static void test_mask_never_sampled(void **state)
{
    (void)state;
    float z[V];
    /* The mask at the end (scalar tail of the vector loops), inside and first. */
    int masks[] = {MASK, 100, 0};
    for (size_t mi = 0; mi < sizeof masks / sizeof masks[0]; mi++) {
        int mask = masks[mi];
        random_logits(z, V, 0);
        z[mask] = 1000.0f;
        assert_int_not_equal(eng__argmax(z, V, mask), mask);
        eng_sampling settings[] = {sampling(1.0f, 0, 1.0f),  sampling(50.0f, 0, 1.0f),
                                   sampling(1.0f, 3, 1.0f),  sampling(2.0f, 0, 0.5f),
                                   sampling(1e30f, 0, 1.0f), sampling(1.0f, 60, 0.9f)};
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++)
            for (int c = 0; c < 2000; c++) {
                double u = eng__uniform(1, 1, (uint32_t)c);
                assert_int_not_equal(eng__sample(z, V, mask, &settings[k], u, scratch), mask);
                assert_int_not_equal(eng__sample_ref(z, V, mask, &settings[k], u, scratch), mask);
            }
        /* u just below 1 must not walk past the last real token onto the mask. */
        eng_sampling hot = sampling(1e30f, 0, 1.0f);
        assert_int_equal(eng__sample(z, V, mask, &hot, 0x1.fffffffffffffp-1, scratch),
                         mask == V - 1 ? V - 2 : V - 1);
        /* The confidence ignores the mask's logit entirely. */
        float p = eng__confidence(z, V, mask, eng__argmax(z, V, mask));
        z[mask] = -1000.0f;
        assert_true(p == eng__confidence(z, V, mask, eng__argmax(z, V, mask)));
    }
}

static void test_confidence_is_softmax(void **state)
{
    (void)state;
    float z[V];
    random_logits(z, V, 0);
    double sum = 0.0, total = 0.0;
    for (int i = 0; i < V; i++)
        if (i != MASK) sum += exp((double)z[i]);
    for (int i = 0; i < V; i++) {
        if (i == MASK) continue;
        float p = eng__confidence(z, V, MASK, i);
        double want = exp((double)z[i]) / sum;
        assert_true(fabs(p - want) <= 1e-6 * want + 1e-9);
        total += p;
    }
    assert_true(fabs(total - 1.0) < 1e-5);
}

static void test_top_k_1_and_tiny_top_p_are_greedy(void **state)
{
    (void)state;
    float z[V];
    for (int trial = 0; trial < 300; trial++) {
        random_logits(z, V, trial % 2);
        int greedy = eng__argmax(z, V, MASK);
        float temps[] = {0.05f, 1.0f, 7.0f};
        for (int k = 0; k < 3; k++) {
            eng_sampling top1 = sampling(temps[k], 1, 1.0f);
            eng_sampling tiny_p = sampling(temps[k], 0, 1e-7f);
            double u = rnd();
            assert_int_equal(eng__sample(z, V, MASK, &top1, u, scratch), greedy);
            assert_int_equal(eng__sample(z, V, MASK, &tiny_p, u, scratch), greedy);
            assert_int_equal(eng__sample_ref(z, V, MASK, &top1, u, scratch), greedy);
            assert_int_equal(eng__sample_ref(z, V, MASK, &tiny_p, u, scratch), greedy);
        }
    }
}

static void test_fast_sampler_matches_reference(void **state)
{
    (void)state;
    float z[V];
    int top_ks[] = {0, 1, 2, 5, 32, 33, 100, V - 1, V + 10};
    float top_ps[] = {0.05f, 0.5f, 0.9f, 0.999f, 0x1.fffffep-1f, 1.0f};
    float temps[] = {0.1f, 0.7f, 1.0f, 3.0f};
    int differing = 0;
    for (int trial = 0; trial < 60; trial++) {
        random_logits(z, V, trial % 3 == 0);
        for (size_t a = 0; a < sizeof top_ks / sizeof top_ks[0]; a++)
            for (size_t b = 0; b < sizeof top_ps / sizeof top_ps[0]; b++)
                for (size_t c = 0; c < sizeof temps / sizeof temps[0]; c++) {
                    eng_sampling s = sampling(temps[c], top_ks[a], top_ps[b]);
                    double u = rnd();
                    int fast = eng__sample(z, V, MASK, &s, u, scratch);
                    int ref = eng__sample_ref(z, V, MASK, &s, u, scratch);
                    assert_int_equal(fast, ref);
                    differing += fast != eng__argmax(z, V, MASK);
                }
    }
    assert_true(differing > 1000); /* the comparison is not just greedy vs greedy */
}

static void test_filter_keeping_all_equals_no_filter(void **state)
{
    (void)state;
    float z[V];
    random_logits(z, V, 1);
    eng_sampling none = sampling(1.3f, 0, 1.0f), all = sampling(1.3f, V - 1, 1.0f);
    for (int c = 0; c < 3000; c++) {
        double u = eng__uniform(9, 2, (uint32_t)c);
        assert_int_equal(eng__sample(z, V, MASK, &none, u, scratch),
                         eng__sample(z, V, MASK, &all, u, scratch));
    }
}

/* Draws n tokens with counter-based u and returns their frequencies. */
static void histogram(const float *z, int v, int mask, const eng_sampling *s, int n, double *freq)
{
    int count[16] = {0};
    assert_true(v <= 16);
    for (int c = 0; c < n; c++) {
        int tok = eng__sample(z, v, mask, s, eng__uniform(s->seed, 1, (uint32_t)c), scratch);
        assert_true(tok >= 0 && tok < v && tok != mask);
        count[tok]++;
    }
    for (int i = 0; i < v; i++)
        freq[i] = (double)count[i] / n;
}

/* Asserts freq matches p to within 5 standard errors of n draws. */
static void assert_matches(const double *freq, const double *p, int v, int n)
{
    for (int i = 0; i < v; i++) {
        double tol = 5.0 * sqrt(p[i] * (1.0 - p[i]) / n) + 1e-12;
        if (fabs(freq[i] - p[i]) > tol)
            fail_msg("token %d: frequency %.5f, probability %.5f", i, freq[i], p[i]);
    }
}

static void softmax_ref(const float *z, int v, int mask, double temperature, double *p)
{
    double sum = 0.0;
    for (int i = 0; i < v; i++)
        sum += p[i] = i == mask ? 0.0 : exp(z[i] / temperature);
    for (int i = 0; i < v; i++)
        p[i] /= sum;
}

static void test_histogram_matches_softmax_with_temperature(void **state)
{
    (void)state;
    const int v = 8, mask = 5, n = 200000;
    float z[8] = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 4.0f, 1.5f, -2.0f};
    double freq[8], p[8];
    float temps[] = {1.0f, 0.5f, 2.5f};
    for (int k = 0; k < 3; k++) {
        eng_sampling s = sampling(temps[k], 0, 1.0f);
        s.seed = (uint64_t)k + 11;
        histogram(z, v, mask, &s, n, freq);
        softmax_ref(z, v, mask, temps[k], p);
        assert_matches(freq, p, v, n);
    }
    /* Temperature really changes the distribution: token 3 at T=0.5 vs T=2.5. */
    double cold[8], hot[8];
    softmax_ref(z, v, mask, 0.5, cold);
    softmax_ref(z, v, mask, 2.5, hot);
    assert_true(cold[3] - hot[3] > 0.2);
}

static void test_histogram_top_k_and_top_p(void **state)
{
    (void)state;
    const int v = 6, mask = 0, n = 200000;
    /* Probabilities (mask excluded) 0.4, 0.3, 0.2, 0.05, 0.05 for ids 1..5. */
    float z[6] = {9.0f, logf(0.4f), logf(0.3f), logf(0.2f), logf(0.05f), logf(0.05f)};
    double freq[6];

    eng_sampling s = sampling(1.0f, 2, 1.0f);
    histogram(z, v, mask, &s, n, freq);
    double top2[6] = {0, 0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
    assert_matches(freq, top2, v, n);

    /* top_p 0.8: 0.4 + 0.3 = 0.7 falls short, adding 0.2 reaches 0.9. */
    s = sampling(1.0f, 0, 0.8f);
    histogram(z, v, mask, &s, n, freq);
    double top3[6] = {0, 0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0, 0};
    assert_matches(freq, top3, v, n);

    /* top_p is measured within the top_k kept: of {0.4, 0.3}, 0.4/0.7 < 0.6. */
    s = sampling(1.0f, 2, 0.6f);
    histogram(z, v, mask, &s, n, freq);
    assert_matches(freq, top2, v, n);
    s = sampling(1.0f, 2, 0.5f);
    histogram(z, v, mask, &s, n, freq);
    double top1[6] = {0, 1, 0, 0, 0, 0};
    assert_matches(freq, top1, v, n);

    /* Equal probabilities at the top_k boundary: the lower id is kept. */
    s = sampling(1.0f, 4, 1.0f);
    histogram(z, v, mask, &s, n, freq);
    double top4[6] = {0, 0.4 / 0.95, 0.3 / 0.95, 0.2 / 0.95, 0.05 / 0.95, 0};
    assert_matches(freq, top4, v, n);
}

static void test_keep_masked_schedule(void **state)
{
    (void)state;
    /* floor(N cos(pi/2 t/K)) worked out by hand for t = 0..K. */
    static const struct {
        int n, k;
        int keep[11];
    } cases[] = {
        {10, 4, {10, 9, 7, 3, 0}},
        {2, 3, {2, 1, 1, 0}}, /* 2 cos(pi/3) is 1.0000000000000002 in double */
        {1, 1, {1, 0}},
        {7, 2, {7, 4, 0}},
        {100, 10, {100, 98, 95, 89, 80, 70, 58, 45, 30, 15, 0}},
        {64, 8, {64, 62, 59, 53, 45, 35, 24, 12, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t <= cases[i].k; t++)
            assert_int_equal(eng__keep_masked(cases[i].n, t, cases[i].k), cases[i].keep[t]);
    /* Properties over a range: within [0, N], non-increasing, 0 at t = K. */
    for (int k = 1; k <= 40; k++)
        for (int n = 0; n <= 300; n += 7) {
            int prev = n;
            for (int t = 1; t <= k; t++) {
                int keep = eng__keep_masked(n, t, k);
                assert_true(keep >= 0 && keep <= prev);
                prev = keep;
            }
            assert_int_equal(prev, 0);
        }
}

static void test_sort_worst_first_remask_ties(void **state)
{
    (void)state;
    /* Cells 1, 2 and 4 tie at 0.2; re-masking two cells takes the higher
     * indices among the tie (4, then 2), so cell 1 is committed. */
    float conf[5] = {0.5f, 0.2f, 0.2f, 0.9f, 0.2f};
    int32_t order[5] = {0, 1, 2, 3, 4};
    eng__sort_worst_first(conf, order, 5);
    int32_t want[5] = {4, 2, 1, 0, 3};
    assert_memory_equal(order, want, sizeof want);
}

static void test_sort_worst_first_against_pairwise_count(void **state)
{
    (void)state;
    enum { N = 300 };
    float key[N];
    int32_t idx[N] = {0};
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < N; i++)
            key[i] = (float)(int)(rnd() * (trial % 2 ? 5 : 1000));
        /* A subset in scrambled order, as the uncommitted cells would be. */
        int m = 0;
        for (int i = N - 1; i >= 0; i--)
            if (rnd() < 0.7) idx[m++] = i;
        int32_t in[N];
        memcpy(in, idx, sizeof *idx * (size_t)m);
        eng__sort_worst_first(key, idx, m);
        /* The position of each element is the number of elements it beats. */
        for (int a = 0; a < m; a++) {
            int pos = 0;
            for (int b = 0; b < m; b++)
                pos += key[in[a]] > key[in[b]] || (key[in[a]] == key[in[b]] && in[a] < in[b]);
            assert_int_equal(idx[pos], in[a]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_range_and_independence),
        cmocka_unit_test(test_argmax_ties_go_to_lower_id),
        cmocka_unit_test(test_mask_never_sampled),
        cmocka_unit_test(test_confidence_is_softmax),
        cmocka_unit_test(test_top_k_1_and_tiny_top_p_are_greedy),
        cmocka_unit_test(test_fast_sampler_matches_reference),
        cmocka_unit_test(test_filter_keeping_all_equals_no_filter),
        cmocka_unit_test(test_histogram_matches_softmax_with_temperature),
        cmocka_unit_test(test_histogram_top_k_and_top_p),
        cmocka_unit_test(test_keep_masked_schedule),
        cmocka_unit_test(test_sort_worst_first_remask_ties),
        cmocka_unit_test(test_sort_worst_first_against_pairwise_count),
    };
    scratch = malloc(ENG__SAMPLE_SCRATCH(V));
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(scratch);
    return failed;
}
