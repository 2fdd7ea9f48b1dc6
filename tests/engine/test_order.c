/*
 * test_order.c - the commit orders and re-opening of MODEL.md section 5:
 * the margin kernel, what each order commits, what re-opening gives back,
 * that every order keeps the determinism promises (alone vs batched, 1 vs 2
 * threads) and eng_gen_init's refusals of bad settings. Greedy parity with
 * the reference for each order is test_generate.c's fixtures.
 *
 * Model: tests/fixtures/byte_gen.safetensors (HEPTAPOD_FIXTURES overrides the
 * folder).
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
#include "engine/sample.h"

static eng_model *byte_model(void)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/byte_gen.safetensors", dir && *dir ? dir : "tests/fixtures");
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

static eng_workspace *workspace(const eng_model *m, int max_cells, int threads)
{
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, max_cells, threads, err, sizeof err);
    if (!ws) fail_msg("%s", err);
    return ws;
}

/* Starts g on an h x w grid whose every `every`-th cell is given. */
static void start(eng_gen *g, const eng_model *m, int h, int w, int k, int every,
                  const eng_sampling *s)
{
    const eng_hparams *hp = eng_model_hparams(m);
    int32_t *given = malloc(sizeof *given * (size_t)(h * w));
    for (int c = 0; c < h * w; c++) {
        int id = 'a' + (c * 7) % 26;
        given[c] = every && c % every == 0 && id != hp->mask_token ? id : ENG_OPEN;
    }
    char err[256];
    if (eng_gen_init(g, m, h, w, given, k, s, err, sizeof err) != ENG_OK) fail_msg("%s", err);
    free(given);
}

/* --- names and the margin kernel ----------------------------------------------- */

static void test_order_names_round_trip(void **state)
{
    (void)state;
    for (int o = ENG_ORDER_CONFIDENCE; o <= ENG_ORDER_RASTER; o++)
        assert_int_equal(eng_order_parse(eng_order_name(o)), o);
    assert_string_equal(eng_order_name(ENG_ORDER_MARGIN), "margin");
    assert_null(eng_order_name(3));
    assert_null(eng_order_name(-1));
    assert_int_equal(eng_order_parse("Margin"), -1);
    assert_int_equal(eng_order_parse(""), -1);
    assert_int_equal(eng_order_parse(NULL), -1);
}

static void test_margin_is_top1_minus_top2(void **state)
{
    (void)state;
    /* Ids 0..3, mask 4 with the largest logit: it must not count. */
    float z[5] = {1.0f, 3.0f, 2.0f, 0.5f, 9.0f};
    double e[4] = {exp(1.0), exp(3.0), exp(2.0), exp(0.5)};
    double sum = e[0] + e[1] + e[2] + e[3];
    double want = (e[1] - e[2]) / sum;
    assert_true(fabs(eng__margin(z, 5, 4) - want) < 1e-6);
    /* Equal top logits: exactly 0, whatever the rest. */
    float tie[4] = {2.0f, -1.0f, 2.0f, 0.0f};
    assert_true(eng__margin(tie, 4, 3) == 0.0f);
    /* One candidate besides the mask: all its probability. */
    float one[2] = {0.3f, 7.0f};
    assert_true(eng__margin(one, 2, 1) == 1.0f);
    /* NaN logits sort below every real margin. */
    float bad[3] = {1.0f, NAN, 0.0f};
    assert_true(eng__margin(bad, 3, 2) == -1.0f);
    /* Linear schedule of the raster order. */
    assert_int_equal(eng__keep_masked_linear(10, 1, 10), 9);
    assert_int_equal(eng__keep_masked_linear(10, 3, 4), 2);
    assert_int_equal(eng__keep_masked_linear(10, 4, 4), 0);
    assert_int_equal(eng__keep_masked_linear(1 << 24, 99999, 100000), 167);
}

/* --- what each order commits ----------------------------------------------------- */

/* With as many iterations as open cells, raster commits exactly one cell a
 * step: the first open cell in row-major order. */
static void test_raster_commits_the_first_open_cell_each_step(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    eng_sampling s = {.temperature = 0.7f,
                      .top_p = 1.0f,
                      .seed = 9,
                      .order = ENG_ORDER_RASTER,
                      .remask_noise = 3.0f}; /* noise has no key to perturb in raster */
    eng_gen g;
    start(&g, m, 3, 8, 1, 4, &s);
    int n_open = g.n_open;
    eng_gen_close(&g);
    start(&g, m, 3, 8, n_open, 4, &s);
    eng_workspace *ws = workspace(m, 24, 1);
    eng_gen *one = &g;
    for (int t = 1; t <= n_open; t++) {
        assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
        assert_int_equal(g.n_masked, n_open - t);
        int seen = 0;
        for (int c = 0; c < 24; c++) {
            if (g.cell[c] == ENG_CELL_GIVEN) continue;
            /* the first t open cells are committed, the others open */
            assert_int_equal(g.cell[c], seen < t ? ENG_CELL_COMMITTED : ENG_CELL_OPEN);
            seen++;
        }
    }
    assert_true(eng_gen_done(&g));
    eng_gen_close(&g);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* Margin and confidence commit the same number of cells each iteration
 * but, on this model, not always the same cells. */
static void test_margin_commits_other_cells_than_confidence(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    eng_sampling s = {.top_p = 1.0f};
    eng_gen conf, marg;
    start(&conf, m, 8, 16, 8, 5, &s);
    s.order = ENG_ORDER_MARGIN;
    start(&marg, m, 8, 16, 8, 5, &s);
    eng_workspace *ws = workspace(m, 256, 2);
    eng_gen *both[2] = {&conf, &marg};
    int differ = 0;
    while (!eng_gen_done(&conf)) {
        assert_int_equal(eng_step(ws, both, 2), ENG_OK);
        assert_int_equal(conf.n_masked, marg.n_masked);
        for (int c = 0; c < 128; c++)
            differ += conf.cell[c] != marg.cell[c];
    }
    print_message("%d cell-iterations differ in status\n", differ);
    assert_true(differ > 0);
    eng_gen_close(&conf);
    eng_gen_close(&marg);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* Re-opening: after each iteration but the last, floor(remask * C) of the C
 * committed cells are open again, those of lowest P_c; the last iteration
 * leaves nothing masked. */
static void test_remask_reopens_the_least_probable(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    const eng_hparams *hp = eng_model_hparams(m);
    eng_sampling s = {.top_p = 1.0f, .remask = 0.5f};
    eng_gen g;
    enum { H = 6, W = 10, K = 6, CELLS = H * W };
    int reopened = 0, checked = 0;
    uint8_t was[CELLS];
    start(&g, m, H, W, K, 7, &s);
    eng_workspace *ws = workspace(m, CELLS, 2);
    eng_gen *one = &g;
    for (int t = 1; t <= K; t++) {
        memcpy(was, g.cell, sizeof was);
        assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
        int keep = eng__keep_masked(g.n_open, t, K), committed = 0, masked = 0;
        float worst_kept = 2.0f;
        for (int c = 0; c < CELLS; c++) {
            committed += g.cell[c] == ENG_CELL_COMMITTED;
            masked += g.tokens[c] == hp->mask_token;
            if (g.cell[c] == ENG_CELL_COMMITTED && g.conf[c] < worst_kept) worst_kept = g.conf[c];
        }
        assert_int_equal(masked, g.n_masked);
        if (t == K) {
            assert_int_equal(g.n_reopened, 0);
            assert_int_equal(g.n_masked, 0);
            break;
        }
        /* C, before re-opening, is the committed cells now plus the re-opened. */
        assert_int_equal(g.n_reopened, (int)floor(0.5 * (committed + g.n_reopened)));
        assert_int_equal(g.n_masked, keep + g.n_reopened);
        reopened += g.n_reopened;
        /* A cell committed before this step and open now was re-opened: its
         * P_c in this pass is no higher than that of any cell kept. */
        for (int c = 0; c < CELLS; c++)
            if (was[c] == ENG_CELL_COMMITTED && g.cell[c] == ENG_CELL_OPEN) {
                assert_int_equal(g.tokens[c], hp->mask_token);
                assert_true(g.conf[c] <= worst_kept);
                checked++;
            }
    }
    print_message("%d cells re-opened over %d iterations, %d checked against the kept\n", reopened,
                  K, checked);
    assert_true(reopened > 0 && checked > 0);
    assert_true(eng_gen_done(&g));
    eng_gen_close(&g);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* --- determinism ------------------------------------------------------------------ */

/* Runs a sampled 6x9 request under `s` to the end, alone or beside states of
 * other sizes, orders and progress, and returns its grid after every
 * iteration. */
static int32_t *run(const eng_model *m, const eng_sampling *s, int threads, int crowded)
{
    enum { H = 6, W = 9, K = 7 };
    int32_t *trace = malloc(sizeof *trace * (size_t)(H * W * K));
    eng_sampling o1 = {.temperature = 1.2f,
                       .top_p = 1.0f,
                       .seed = 1,
                       .order = ENG_ORDER_MARGIN,
                       .remask = 0.3f,
                       .remask_noise = 2.0f};
    eng_sampling o2 = {.top_p = 1.0f, .order = ENG_ORDER_RASTER, .remask = 0.2f};
    eng_sampling o3 = {.temperature = 0.8f, .top_k = 5, .top_p = 0.9f, .seed = 4};
    eng_workspace *ws = workspace(m, 1024, threads);
    eng_gen g[4];
    eng_gen *batch[4];
    int n = 0;
    if (crowded) {
        start(&g[1], m, 3, 3, 12, 0, &o1);
        start(&g[2], m, 10, 4, 4, 3, &o2);
        eng_gen *ahead[2] = {&g[1], &g[2]};
        for (int t = 0; t < 2; t++)
            assert_int_equal(eng_step(ws, ahead, 2), ENG_OK);
        batch[n++] = &g[1];
    }
    start(&g[0], m, H, W, K, 5, s);
    batch[n++] = &g[0];
    if (crowded) {
        batch[n++] = &g[2];
        start(&g[3], m, 1, 7, 9, 0, &o3);
        batch[n++] = &g[3];
    }
    for (int t = 0; t < K; t++) {
        assert_int_equal(eng_step(ws, batch, n), ENG_OK);
        memcpy(trace + (size_t)t * H * W, g[0].tokens, sizeof *trace * (size_t)(H * W));
    }
    for (int i = 0; i < (crowded ? 4 : 1); i++)
        eng_gen_close(&g[i]);
    eng_workspace_free(ws);
    return trace;
}

static void test_every_order_ignores_batch_and_threads(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    size_t bytes = sizeof(int32_t) * 6 * 9 * 7;
    int32_t *plain = NULL;
    for (int o = ENG_ORDER_CONFIDENCE; o <= ENG_ORDER_RASTER; o++)
        for (int r = 0; r < 2; r++)
            for (int noisy = 0; noisy < 2; noisy++) {
                eng_sampling s = {.temperature = 0.9f,
                                  .top_k = 40,
                                  .top_p = 0.92f,
                                  .seed = 0xC0FFEE,
                                  .order = (eng_order)o,
                                  .remask = r ? 0.25f : 0.0f,
                                  .remask_noise = noisy ? 1.5f : 0.0f};
                int32_t *alone1 = run(m, &s, 1, 0);
                int32_t *alone2 = run(m, &s, 2, 0);
                int32_t *crowd1 = run(m, &s, 1, 1);
                int32_t *crowd2 = run(m, &s, 2, 1);
                assert_memory_equal(alone1, alone2, bytes);
                assert_memory_equal(alone1, crowd1, bytes);
                assert_memory_equal(alone1, crowd2, bytes);
                /* Each setting does something: none reproduces the plain run. */
                if (!plain)
                    plain = alone1;
                else {
                    if (!(o == ENG_ORDER_RASTER && noisy)) /* raster has no key */
                        assert_memory_not_equal(plain, alone1, bytes);
                    free(alone1);
                }
                free(alone2);
                free(crowd1);
                free(crowd2);
            }
    free(plain);
    eng_model_free(m);
}

/* --- refusals ---------------------------------------------------------------------- */

static void expect_refusal(const eng_model *m, eng_sampling s, const char *needle)
{
    eng_gen g;
    char err[256] = "";
    assert_int_equal(eng_gen_init(&g, m, 2, 2, NULL, 3, &s, err, sizeof err), ENG_ERANGE);
    if (!strstr(err, needle)) fail_msg("'%s' does not contain '%s'", err, needle);
}

static void test_init_refuses_bad_order_and_remask(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    eng_sampling s = {.top_p = 1.0f};
    s.order = (eng_order)3;
    expect_refusal(m, s, "order 3 is not one of confidence");
    s.order = (eng_order)-1;
    expect_refusal(m, s, "order -1");
    s.order = ENG_ORDER_MARGIN;
    s.remask = -0.1f;
    expect_refusal(m, s, "remask -0.1 is outside [0, 1)");
    s.remask = 1.0f;
    expect_refusal(m, s, "remask 1 is outside [0, 1)");
    s.remask = NAN;
    expect_refusal(m, s, "remask nan");
    s.remask = INFINITY;
    expect_refusal(m, s, "remask inf");
    s.remask = 0.999f;
    eng_gen g;
    char err[256];
    assert_int_equal(eng_gen_init(&g, m, 2, 2, NULL, 3, &s, err, sizeof err), ENG_OK);
    eng_gen_close(&g);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_names_round_trip),
        cmocka_unit_test(test_margin_is_top1_minus_top2),
        cmocka_unit_test(test_raster_commits_the_first_open_cell_each_step),
        cmocka_unit_test(test_margin_commits_other_cells_than_confidence),
        cmocka_unit_test(test_remask_reopens_the_least_probable),
        cmocka_unit_test(test_every_order_ignores_batch_and_threads),
        cmocka_unit_test(test_init_refuses_bad_order_and_remask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
