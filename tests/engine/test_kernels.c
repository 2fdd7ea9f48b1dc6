/*
 * test_kernels.c - the forward pass's kernels (engine/kernels_impl.h,
 * engine/attention_impl.h), on every instruction-set path this CPU runs,
 * held against their plain references (engine/kernels.c, attention.c) on
 * random data, plus properties the references cannot check: the rotary
 * score depends only on offsets, r = 0 attends to the cell itself, and the
 * fast erf and exp against libm. test_kernels_isa.c holds the paths equal
 * bit for bit.
 *
 * Tolerances: erf 4e-7 absolute, exp 2e-7 relative (both of the fitted
 * approximations); GELU 5e-7 (1 + |t|); LayerNorm 2e-6 (outputs ~1);
 * rope 1e-6 |t|; attention 2e-6 (values ~1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"
#include "engine/kernels.h"

#include "tests/engine/test_rand.h"

/* The kernel sets this CPU runs: scalar always, then AVX2 and AVX-512. */
static int kernel_sets(const eng__kernel_set *out[3])
{
    int n = 0;
    for (int l = ENG__ISA_SCALAR; l <= ENG__ISA_AVX512; l++)
        if (eng__kernels_at((eng__isa_level)l)) out[n++] = eng__kernels_at((eng__isa_level)l);
    return n;
}

static void test_erf_against_libm(void **state)
{
    (void)state;
    double worst = 0.0;
    for (int i = -600000; i <= 600000; i++) {
        float x = (float)i * 1e-5f;
        double e = fabs((double)eng__erf(x) - (double)erff(x));
        worst = e > worst ? e : worst;
    }
    print_message("erf: max |fast - erff| on [-6, 6] = %.3g\n", worst);
    assert_true(worst < 4e-7);
    assert_true(eng__erf(0.0f) == 0.0f);
    assert_true(eng__erf(INFINITY) == 1.0f);
    assert_true(eng__erf(-INFINITY) == -1.0f);
    assert_true(eng__erf(50.0f) == 1.0f);
    assert_true(isnan(eng__erf(NAN)));
    /* Odd, so GELU is exactly antisymmetric around its linear part. */
    for (int i = 0; i < 1000; i++) {
        float x = gauss() * 2.0f;
        assert_true(eng__erf(-x) == -eng__erf(x));
    }
}

static void test_exp_against_libm(void **state)
{
    (void)state;
    double worst = 0.0;
    for (int i = 0; i <= 870000; i++) {
        float x = (float)i * -1e-4f;
        double ref = exp((double)x);
        double e = fabs((double)eng__exp_neg(x) - ref) / ref;
        worst = e > worst ? e : worst;
    }
    print_message("exp: max relative error on [-87, 0] = %.3g\n", worst);
    assert_true(worst < 2e-7);
    assert_true(eng__exp_neg(0.0f) == 1.0f);
    assert_true(eng__exp_neg(-INFINITY) < 2e-38f && eng__exp_neg(-INFINITY) >= 0.0f);
    assert_true(eng__exp_neg(-1000.0f) < 2e-38f);
    assert_true(isnan(eng__exp_neg(NAN)));
}

static void test_gelu_against_reference(void **state)
{
    (void)state;
    int n = 20011; /* not a multiple of the lane count */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    float *t = malloc(n * sizeof *t);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        t[i] = i < 12000 ? -12.0f + 24.0f * (float)i / 12000.0f : gauss() * 3.0f;
    memcpy(y, t, n * sizeof *x);
    eng__gelu_ref(y, n);
    const eng__kernel_set *ks[3];
    for (int k = 0, nk = kernel_sets(ks); k < nk; k++) {
        memcpy(x, t, n * sizeof *x);
        ks[k]->gelu(x, n);
        /* Tolerance: 0.5 |t| times the erf error (4e-7 fast, 1e-7 erff) plus
         * 1.5e-7 |GELU| of rounding. Where erf is near -1, GELU is a small
         * difference and only the absolute part means anything. */
        double worst = 0.0;
        for (int i = 0; i < n; i++) {
            double tol = 2.5e-7 * fabs((double)t[i]) + 1.5e-7 * fabs((double)y[i]) + 1e-12;
            double e = fabs((double)x[i] - (double)y[i]) / tol;
            worst = e > worst ? e : worst;
        }
        print_message("gelu %s: max |fast - ref| / tolerance = %.3g\n", ks[k]->isa, worst);
        assert_true(worst <= 1.0);
    }
    free(x);
    free(y);
    free(t);
}

static void test_add_bias(void **state)
{
    (void)state;
    int n = 37;
    float *x = random_floats(n, 1.0f), *b = random_floats(n, 1.0f);
    float want[37], got[37];
    for (int i = 0; i < n; i++)
        want[i] = x[i] + b[i];
    const eng__kernel_set *ks[3];
    for (int k = 0, nk = kernel_sets(ks); k < nk; k++) {
        memcpy(got, x, sizeof got);
        ks[k]->add_bias(got, b, n);
        assert_memory_equal(got, want, sizeof want);
    }
    eng__add_bias(x, b, n);
    assert_memory_equal(x, want, sizeof want);
    free(x);
    free(b);
}

static void test_layernorm_against_reference(void **state)
{
    (void)state;
    int sizes[] = {1, 3, 8, 13, 32, 256, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *x = random_floats(n, 3.0f), *w = random_floats(n, 0.1f);
        float *b = random_floats(n, 0.1f);
        float *y = malloc(n * sizeof *y), *yr = malloc(n * sizeof *yr);
        assert_non_null(y);
        assert_non_null(yr);
        for (int i = 0; i < n; i++) {
            x[i] += 5.0f; /* an offset the mean must remove */
            w[i] += 1.0f;
        }
        eng__layernorm_ref(x, yr, w, b, n, 1e-5f);
        const eng__kernel_set *ks[3];
        for (int k = 0, nk = kernel_sets(ks); k < nk; k++) {
            ks[k]->layernorm(x, y, w, b, n, 1e-5f);
            for (int i = 0; i < n; i++)
                assert_true(fabsf(y[i] - yr[i]) <= 2e-6f);
        }
        if (n > 1) {
            /* With w = 1, b = 0 the output has mean 0 and variance ~1. */
            for (int i = 0; i < n; i++)
                w[i] = 1.0f, b[i] = 0.0f;
            eng__layernorm(x, y, w, b, n, 1e-5f);
            double m = 0.0, v = 0.0;
            for (int i = 0; i < n; i++)
                m += y[i];
            m /= n;
            for (int i = 0; i < n; i++)
                v += (y[i] - m) * (y[i] - m);
            v /= n;
            assert_true(fabs(m) < 1e-5);
            assert_true(fabs(v - 1.0) < 1e-3);
        }
        free(x);
        free(w);
        free(b);
        free(y);
        free(yr);
    }
}

static void test_embed_gathers_rows(void **state)
{
    (void)state;
    int v = 5, d = 6;
    float *emb = random_floats((size_t)v * d, 1.0f), h[4 * 6];
    int32_t tok[4] = {4, 0, 4, 2};
    eng__embed(h, emb, tok, 4, d);
    for (int c = 0; c < 4; c++)
        assert_memory_equal(h + c * d, emb + tok[c] * d, d * sizeof *h);
    free(emb);
}

static void test_rope_against_reference(void **state)
{
    (void)state;
    int dims[] = {4, 8, 12, 16, 32, 64};
    float bases[] = {10000.0f, 100.0f};
    int positions = 64;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
        for (size_t bi = 0; bi < 2; bi++) {
            int dh = dims[di];
            size_t nf = (size_t)dh / 4;
            float *ct = malloc(positions * nf * sizeof *ct),
                  *st = malloc(positions * nf * sizeof *st);
            assert_non_null(ct);
            assert_non_null(st);
            eng__rope_tables(ct, st, positions, dh, bases[bi]);
            for (int trial = 0; trial < 50; trial++) {
                int y = (int)(rnd() * positions), x = (int)(rnd() * positions);
                float *t = random_floats(dh, 1.0f), *r = malloc(dh * sizeof *r);
                float *o = malloc(dh * sizeof *o);
                assert_non_null(r);
                assert_non_null(o);
                memcpy(r, t, dh * sizeof *t);
                eng__rope_ref(r, dh, y, x, bases[bi]);
                const eng__kernel_set *ks[3];
                for (int k = 0, nk = kernel_sets(ks); k < nk; k++) {
                    ks[k]->rope_store(o, t, dh, y, x, ct, st);
                    for (int i = 0; i < dh; i++)
                        assert_true(fabsf(o[i] - r[i]) <= 1e-6f * (1.0f + fabsf(r[i])));
                }
                eng__rope(t, dh, y, x, ct, st); /* in place: the same bits */
                assert_memory_equal(t, o, dh * sizeof *t);
                free(t);
                free(r);
                free(o);
            }
            free(ct);
            free(st);
        }
}

/* rope2d(q, p1) . rope2d(k, p2) depends only on p1 - p2 (MODEL.md 3.1). */
static void test_rope_score_depends_on_offset_only(void **state)
{
    (void)state;
    int dh = 16;
    float *q = random_floats(dh, 1.0f), *k = random_floats(dh, 1.0f);
    float a[16], b[16];
    double first = 0.0;
    for (int shift = 0; shift < 10; shift++) {
        memcpy(a, q, sizeof a);
        memcpy(b, k, sizeof b);
        eng__rope_ref(a, dh, 3 + shift, 7 + 2 * shift, 10000.0f);
        eng__rope_ref(b, dh, 1 + shift, 2 + 2 * shift, 10000.0f);
        double s = 0.0;
        for (int i = 0; i < dh; i++)
            s += (double)a[i] * b[i];
        if (shift == 0) first = s;
        assert_true(fabs(s - first) < 1e-5);
    }
    /* ... and does change with the offset. */
    memcpy(a, q, sizeof a);
    memcpy(b, k, sizeof b);
    eng__rope_ref(a, dh, 4, 7, 10000.0f);
    eng__rope_ref(b, dh, 1, 2, 10000.0f);
    double s = 0.0;
    for (int i = 0; i < dh; i++)
        s += (double)a[i] * b[i];
    assert_true(fabs(s - first) > 1e-3);
    free(q);
    free(k);
}

/* Runs fast attention of set ks and the reference on one random grid,
 * compares all cells. */
static double attention_case(const eng__kernel_set *ks, int h, int w, int dh, int radius,
                             int dilation, size_t ld)
{
    size_t cells = (size_t)h * w;
    float *q = random_floats(cells * ld, 1.0f), *k = random_floats(cells * ld, 1.0f);
    float *v = random_floats(cells * ld, 1.0f);
    size_t ldo = (size_t)dh + 3;
    float *out = malloc(cells * ldo * sizeof *out), *ref = malloc(cells * ldo * sizeof *ref);
    float *scores = malloc(cells * sizeof *scores);
    assert_non_null(out);
    assert_non_null(ref);
    assert_non_null(scores);
    for (size_t i = 0; i < cells * ldo; i++)
        out[i] = ref[i] = 777.0f; /* the gaps between rows must stay untouched */
    eng__attn a = {.q = q,
                   .k = k,
                   .v = v,
                   .ld = ld,
                   .out = out,
                   .ldo = ldo,
                   .height = h,
                   .width = w,
                   .head_dim = dh,
                   .radius = radius,
                   .dilation = dilation};
    /* Two ranges, to check that a range start is honoured. */
    int split = (int)(cells / 3);
    ks->attention(&a, 0, split);
    ks->attention(&a, split, (int)cells);
    a.out = ref;
    eng__attention_ref(&a, 0, (int)cells, scores);
    double worst = 0.0;
    for (size_t c = 0; c < cells; c++)
        for (size_t t = 0; t < ldo; t++) {
            double e = fabs((double)out[c * ldo + t] - (double)ref[c * ldo + t]);
            if (t >= (size_t)dh) assert_true(out[c * ldo + t] == 777.0f);
            worst = e > worst ? e : worst;
        }
    free(q);
    free(k);
    free(v);
    free(out);
    free(ref);
    free(scores);
    return worst;
}

static void test_attention_against_reference(void **state)
{
    (void)state;
    struct {
        int h, w, dh, r, d, ld_extra;
    } cases[] = {
        {1, 1, 8, 3, 1, 0},                   /* 1x1 */
        {1, 9, 16, 2, 1, 0},                  /* 1xN */
        {9, 1, 16, 2, 1, 5},                  /* Nx1, strided rows */
        {5, 7, 8, 0, 1, 0},                   /* r = 0 */
        {7, 9, 32, 3, 1, 0},                  /* clipped borders */
        {6, 5, 12, 20, 1, 0},                 /* r larger than the grid */
        {9, 11, 16, 2, 2, 0},                 /* dilation 2 */
        {10, 7, 4, 1, 3, 4},                  /* dilation 3, dh 4 */
        {4, 6, 16, ENG_WINDOW_GLOBAL, 1, 0},  /* global */
        {5, 5, 8, ENG_WINDOW_GLOBAL, 3, 8},   /* global ignores dilation */
        {2, 150, 8, ENG_WINDOW_GLOBAL, 1, 0}, /* global rows longer than a block */
        {3, 140, 8, 40, 1, 0},                /* window rows longer than a block */
        {8, 8, 16, ENG_WINDOW_GLOBAL, 1, 0},  /* exactly one full block of keys */
        {5, 13, 16, ENG_WINDOW_GLOBAL, 1, 0}, /* a full block and one key more */
        {16, 16, 32, 3, 1, 64},               /* the benchmark's shape, in a qkv-like layout */
        {6, 9, 64, 2, 1, 0},                  /* the other head dims with their own copy */
        {5, 4, 20, 1, 1, 0},                  /* 8k + 4, no copy of its own */
        {4, 7, 72, 2, 2, 0},                  /* wider than the register accumulator */
        {3, 3, 128, 1, 1, 0},
    };
    const eng__kernel_set *ks[3];
    for (int k = 0, nk = kernel_sets(ks); k < nk; k++) {
        double all = 0.0;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            double worst = attention_case(ks[k], cases[i].h, cases[i].w, cases[i].dh, cases[i].r,
                                          cases[i].d, (size_t)(cases[i].dh + cases[i].ld_extra));
            if (worst > 2e-6)
                fail_msg("%s case %zu (%dx%d dh %d r %d d %d): max diff %.3g", ks[k]->isa, i,
                         cases[i].h, cases[i].w, cases[i].dh, cases[i].r, cases[i].d, worst);
            all = worst > all ? worst : all;
        }
        print_message("attention %s: max |fast - ref| over all cases = %.3g\n", ks[k]->isa, all);
    }
}

/* With r = 0 a cell sees only itself: the output is its own v. */
static void test_attention_radius_zero_is_identity(void **state)
{
    (void)state;
    int h = 4, w = 5, dh = 8;
    size_t cells = (size_t)h * w;
    float *q = random_floats(cells * dh, 1.0f), *k = random_floats(cells * dh, 1.0f);
    float *v = random_floats(cells * dh, 1.0f), *out = malloc(cells * dh * sizeof *out);
    assert_non_null(out);
    eng__attn a = {.q = q,
                   .k = k,
                   .v = v,
                   .ld = dh,
                   .out = out,
                   .ldo = dh,
                   .height = h,
                   .width = w,
                   .head_dim = dh,
                   .radius = 0,
                   .dilation = 1};
    eng__attention(&a, 0, (int)cells);
    for (size_t i = 0; i < cells * dh; i++)
        assert_true(fabsf(out[i] - v[i]) <= 1e-6f * (1.0f + fabsf(v[i])));
    free(q);
    free(k);
    free(v);
    free(out);
}

/* Equal scores give the plain mean of the window's values; a corner with
 * r = 1 has four neighbours, an edge six, an inner cell nine. */
static void test_attention_uniform_scores_average_the_window(void **state)
{
    (void)state;
    int h = 3, w = 4, dh = 4;
    size_t cells = (size_t)h * w;
    float q[12 * 4] = {0}, k[12 * 4] = {0}, v[12 * 4], out[12 * 4];
    for (size_t c = 0; c < cells; c++)
        for (int t = 0; t < dh; t++)
            v[c * dh + t] = (float)c;
    eng__attn a = {.q = q,
                   .k = k,
                   .v = v,
                   .ld = dh,
                   .out = out,
                   .ldo = dh,
                   .height = h,
                   .width = w,
                   .head_dim = dh,
                   .radius = 1,
                   .dilation = 1};
    eng__attention(&a, 0, (int)cells);
    /* corner (0,0): cells 0, 1, 4, 5 */
    assert_true(fabsf(out[0] - 2.5f) < 1e-6f);
    /* edge (0,1): cells 0, 1, 2, 4, 5, 6 */
    assert_true(fabsf(out[1 * dh] - 3.0f) < 1e-6f);
    /* inner (1,1): cells 0, 1, 2, 4, 5, 6, 8, 9, 10 */
    assert_true(fabsf(out[5 * dh] - 5.0f) < 1e-6f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erf_against_libm),
        cmocka_unit_test(test_exp_against_libm),
        cmocka_unit_test(test_gelu_against_reference),
        cmocka_unit_test(test_add_bias),
        cmocka_unit_test(test_layernorm_against_reference),
        cmocka_unit_test(test_embed_gathers_rows),
        cmocka_unit_test(test_rope_against_reference),
        cmocka_unit_test(test_rope_score_depends_on_offset_only),
        cmocka_unit_test(test_attention_against_reference),
        cmocka_unit_test(test_attention_radius_zero_is_identity),
        cmocka_unit_test(test_attention_uniform_scores_average_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
