/*
 * test_generate.c - generation by iterative refinement through the public API:
 * greedy parity with the PyTorch reference's fixtures after every iteration,
 * determinism of seeded sampling across batches and thread counts, the
 * schedule's invariants and eng_gen_init's refusals.
 *
 * Fixtures: tests/fixtures/generate_*.json (HEPTAPOD_FIXTURES overrides the
 * folder), each {"model", "height", "width", "given", "iterations", "grids"}
 * and, when not the defaults, "order" and "remask".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"

static const char *fixtures_dir(void)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    return dir && *dir ? dir : "tests/fixtures";
}

/* Paths of every generate_*.json fixture; the test fails if there is none. */
static glob_t fixture_files(void)
{
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/generate_*.json", fixtures_dir());
    glob_t gl;
    int rc = glob(pattern, 0, NULL, &gl);
    if (rc != 0) fail_msg("no fixtures match %s", pattern);
    return gl;
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    return root;
}

static eng_model *load_model(const char *file)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", fixtures_dir(), file);
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

/* The byte-tokenizer model that the first generation fixture names. */
static eng_model *byte_model(void)
{
    glob_t gl = fixture_files();
    eng_model *m = NULL;
    for (size_t i = 0; i < gl.gl_pathc && !m; i++) {
        json_t *root = load_json(gl.gl_pathv[i]);
        eng_model *cand = load_model(json_string_value(json_object_get(root, "model")));
        if (eng_model_hparams(cand)->tokenizer == ENG_TOKENIZER_BYTE)
            m = cand;
        else
            eng_model_free(cand);
        json_decref(root);
    }
    globfree(&gl);
    if (!m) fail_msg("no generation fixture uses a tokenizer=byte model");
    return m;
}

static eng_workspace *workspace(const eng_model *m, int max_cells, int threads)
{
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, max_cells, threads, err, sizeof err);
    if (!ws) fail_msg("%s", err);
    return ws;
}

/* Reads a [h][w] JSON array of ids into out (h*w), checking its shape. */
static void read_grid(const json_t *rows, int h, int w, int32_t *out)
{
    assert_true(json_is_array(rows));
    assert_int_equal(json_array_size(rows), h);
    for (int y = 0; y < h; y++) {
        const json_t *row = json_array_get(rows, y);
        assert_int_equal(json_array_size(row), w);
        for (int x = 0; x < w; x++)
            out[y * w + x] = (int32_t)json_integer_value(json_array_get(row, x));
    }
}

static void print_grid_diff(const int32_t *got, const int32_t *want, int h, int w)
{
    for (int c = 0; c < h * w; c++)
        if (got[c] != want[c])
            print_message("  (%d,%d): got %d, want %d\n", c / w, c % w, got[c], want[c]);
}

static void test_greedy_matches_reference_fixtures(void **state)
{
    (void)state;
    glob_t gl = fixture_files();
    int compared = 0;
    for (size_t f = 0; f < gl.gl_pathc; f++) {
        json_t *root = load_json(gl.gl_pathv[f]);
        eng_model *m = load_model(json_string_value(json_object_get(root, "model")));
        int h = (int)json_integer_value(json_object_get(root, "height"));
        int w = (int)json_integer_value(json_object_get(root, "width"));
        int k = (int)json_integer_value(json_object_get(root, "iterations"));
        const json_t *grids = json_object_get(root, "grids");
        assert_int_equal(json_array_size(grids), k);
        int32_t *given = malloc(sizeof *given * (size_t)(h * w));
        int32_t *want = malloc(sizeof *want * (size_t)(h * w));
        read_grid(json_object_get(root, "given"), h, w, given);

        char err[256];
        eng_sampling greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
        /* Fixtures of other orders and of re-opening name them. */
        const json_t *order = json_object_get(root, "order");
        if (order) {
            greedy.order = eng_order_parse(json_string_value(order));
            assert_true((int)greedy.order >= 0);
        }
        greedy.remask = (float)json_number_value(json_object_get(root, "remask"));
        eng_gen g;
        assert_int_equal(eng_gen_init(&g, m, h, w, given, k, &greedy, err, sizeof err), ENG_OK);
        eng_workspace *ws = workspace(m, h * w, 2);
        eng_gen *one = &g;
        for (int t = 0; t < k; t++) {
            assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
            read_grid(json_array_get(grids, t), h, w, want);
            if (memcmp(g.tokens, want, sizeof *want * (size_t)(h * w)) != 0) {
                print_message("%s: grid after iteration %d differs\n", gl.gl_pathv[f], t + 1);
                print_grid_diff(g.tokens, want, h, w);
                fail();
            }
            compared++;
        }
        assert_true(eng_gen_done(&g));
        eng_workspace_free(ws);
        eng_gen_close(&g);
        free(given);
        free(want);
        eng_model_free(m);
        json_decref(root);
    }
    print_message("%zu fixtures, %d grids equal to the reference's\n", gl.gl_pathc, compared);
    globfree(&gl);
}

/* --- determinism ------------------------------------------------------------ */

typedef struct request {
    int h, w, k;
    eng_sampling s;
    int given_every; /* every n-th cell is given (0: none) */
} request;

static void start(eng_gen *g, const eng_model *m, const request *r)
{
    const eng_hparams *hp = eng_model_hparams(m);
    int32_t *given = malloc(sizeof *given * (size_t)(r->h * r->w));
    for (int c = 0; c < r->h * r->w; c++) {
        int id = (c * 37 + 11) % hp->vocab_size;
        given[c] =
            r->given_every && c % r->given_every == 0 && id != hp->mask_token ? id : ENG_OPEN;
    }
    char err[256];
    if (eng_gen_init(g, m, r->h, r->w, given, r->k, &r->s, err, sizeof err) != ENG_OK)
        fail_msg("%s", err);
    free(given);
}

static const request subject = {
    .h = 6,
    .w = 9,
    .k = 7,
    .given_every = 5,
    .s = {.temperature = 0.9f, .top_k = 40, .top_p = 0.92f, .seed = 0xC0FFEE}};

/* Runs `subject` with the given remask_noise to the end, alone or among
 * other states that join at different iterations, and returns its grid after
 * every iteration. */
static int32_t *run_subject(const eng_model *m, int threads, int crowded, float noise)
{
    const eng_hparams *hp = eng_model_hparams(m);
    int cells = subject.h * subject.w;
    int32_t *trace = malloc(sizeof *trace * (size_t)(cells * subject.k));
    request others[] = {
        {.h = 3,
         .w = 3,
         .k = 12,
         .s = {.temperature = 1.5f, .top_p = 1.0f, .seed = 1, .remask_noise = 2.0f}},
        {.h = hp->max_height < 10 ? hp->max_height : 10,
         .w = 4,
         .k = 3,
         .s = {.temperature = 0.0f, .top_p = 1.0f}},
        {.h = 2, .w = 2, .k = 5, .given_every = 1, .s = {.temperature = 1.0f, .top_p = 1.0f}},
        {.h = 1, .w = 1, .k = 9, .s = {.temperature = 0.5f, .top_k = 2, .top_p = 0.5f, .seed = 5}},
    };
    eng_workspace *ws = workspace(m, 1024, threads);
    eng_gen g[5];
    eng_gen *batch[5];
    int n = 0;
    if (crowded) { /* two others are ahead by two iterations */
        start(&g[1], m, &others[0]);
        start(&g[2], m, &others[1]);
        eng_gen *ahead[2] = {&g[1], &g[2]};
        for (int t = 0; t < 2; t++)
            assert_int_equal(eng_step(ws, ahead, 2), ENG_OK);
        batch[n++] = &g[1];
    }
    request me = subject;
    me.s.remask_noise = noise;
    start(&g[0], m, &me);
    batch[n++] = &g[0];
    if (crowded) {
        batch[n++] = &g[2];
        start(&g[3], m, &others[2]);
        start(&g[4], m, &others[3]);
        batch[n++] = &g[3];
        batch[n++] = &g[4];
    }
    for (int t = 0; t < subject.k; t++) {
        assert_int_equal(eng_step(ws, batch, n), ENG_OK);
        memcpy(trace + (size_t)t * cells, g[0].tokens, sizeof *trace * (size_t)cells);
    }
    for (int i = 0; i < (crowded ? 5 : 1); i++)
        eng_gen_close(&g[i]);
    eng_workspace_free(ws);
    return trace;
}

static void test_seeded_sampling_ignores_batch_and_threads(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    size_t bytes = sizeof(int32_t) * (size_t)(subject.h * subject.w * subject.k);
    const float noises[] = {0.0f, 1.5f}; /* plain and noisy re-masking */
    for (size_t i = 0; i < sizeof noises / sizeof noises[0]; i++) {
        int32_t *alone1 = run_subject(m, 1, 0, noises[i]);
        int32_t *alone2 = run_subject(m, 2, 0, noises[i]);
        int32_t *crowd1 = run_subject(m, 1, 1, noises[i]);
        int32_t *crowd2 = run_subject(m, 2, 1, noises[i]);
        assert_memory_equal(alone1, alone2, bytes);
        assert_memory_equal(alone1, crowd1, bytes);
        assert_memory_equal(alone1, crowd2, bytes);
        free(alone1);
        free(alone2);
        free(crowd1);
        free(crowd2);
    }
    eng_model_free(m);
}

static void test_seed_changes_the_sample(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    request r = subject;
    r.s.temperature = 3.0f; /* flat enough that two seeds cannot agree by chance */
    r.s.top_k = 0;
    r.s.top_p = 1.0f;
    eng_gen a, b;
    start(&a, m, &r);
    r.s.seed++;
    start(&b, m, &r);
    eng_workspace *ws = workspace(m, 2 * r.h * r.w, 1);
    eng_gen *both[2] = {&a, &b};
    while (!eng_gen_done(&a))
        assert_int_equal(eng_step(ws, both, 2), ENG_OK);
    assert_memory_not_equal(a.tokens, b.tokens, sizeof(int32_t) * (size_t)(r.h * r.w));
    eng_gen_close(&a);
    eng_gen_close(&b);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* With greedy sampling the draws after the first iteration are the same with
 * and without noise, so only the re-mask order can differ: the same number of
 * cells is committed, but not the same cells. */
static void test_remask_noise_changes_committed_cells(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    request r = {.h = 8, .w = 16, .k = 8, .s = {.temperature = 0.0f, .top_p = 1.0f, .seed = 3}};
    eng_gen plain, noisy;
    start(&plain, m, &r);
    r.s.remask_noise = 5.0f;
    start(&noisy, m, &r);
    eng_workspace *ws = workspace(m, 2 * r.h * r.w, 1);
    eng_gen *both[2] = {&plain, &noisy};
    assert_int_equal(eng_step(ws, both, 2), ENG_OK);
    int cells = r.h * r.w, committed = 0, differ = 0;
    for (int c = 0; c < cells; c++) {
        committed += plain.cell[c] == ENG_CELL_COMMITTED;
        differ += plain.cell[c] != noisy.cell[c];
        /* A cell committed by both holds the same greedy token. */
        if (plain.cell[c] == ENG_CELL_COMMITTED && noisy.cell[c] == ENG_CELL_COMMITTED)
            assert_int_equal(plain.tokens[c], noisy.tokens[c]);
    }
    assert_int_equal(plain.n_masked, noisy.n_masked);
    assert_true(committed > 0 && committed < cells);
    print_message("%d of %d committed; %d cells differ in status\n", committed, cells, differ);
    assert_true(differ > 0);
    eng_gen_close(&plain);
    eng_gen_close(&noisy);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* --- the schedule, step by step ---------------------------------------------- */

static void test_iterations_follow_the_schedule(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    const eng_hparams *hp = eng_model_hparams(m);
    request r = subject;
    r.k = 5;
    eng_gen g;
    start(&g, m, &r);
    int cells = r.h * r.w;
    int32_t *before = malloc(sizeof *before * (size_t)cells);
    uint8_t *was = malloc((size_t)cells);
    int given = 0;
    for (int c = 0; c < cells; c++)
        given += g.cell[c] == ENG_CELL_GIVEN;
    assert_int_equal(g.n_open, cells - given);
    assert_int_equal(g.n_masked, g.n_open);
    eng_workspace *ws = workspace(m, cells, 2);
    eng_gen *one = &g;
    for (int t = 1; t <= r.k; t++) {
        memcpy(before, g.tokens, sizeof *before * (size_t)cells);
        memcpy(was, g.cell, (size_t)cells);
        assert_false(eng_gen_done(&g));
        assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
        assert_int_equal(g.iter, t);
        /* n_keep_masked = floor(N_open cos(pi/2 t/K)), worked out for N_open
         * = 43 and K = 5: 40, 34, 25, 13, 0. */
        static const int keep[] = {40, 34, 25, 13, 0};
        assert_int_equal(g.n_open, 43);
        assert_int_equal(g.n_masked, keep[t - 1]);
        int masked = 0;
        for (int c = 0; c < cells; c++) {
            masked += g.tokens[c] == hp->mask_token;
            if (was[c] != ENG_CELL_OPEN) /* given and committed cells stay */
                assert_true(g.tokens[c] == before[c] && g.cell[c] == was[c]);
            else if (g.cell[c] == ENG_CELL_OPEN)
                assert_int_equal(g.tokens[c], hp->mask_token);
            else
                assert_true(g.tokens[c] >= 0 && g.tokens[c] < hp->vocab_size &&
                            g.tokens[c] != hp->mask_token);
        }
        assert_int_equal(masked, g.n_masked);
    }
    assert_true(eng_gen_done(&g));
    /* A finished state is skipped and stays as it is. */
    memcpy(before, g.tokens, sizeof *before * (size_t)cells);
    assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
    assert_int_equal(g.iter, r.k);
    assert_memory_equal(before, g.tokens, sizeof *before * (size_t)cells);
    free(before);
    free(was);
    eng_workspace_free(ws);
    eng_gen_close(&g);
    eng_model_free(m);
}

static void test_state_without_open_cells_counts_iterations(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    request r = {.h = 2, .w = 3, .k = 3, .given_every = 1, .s = {.top_p = 1.0f}};
    eng_gen g;
    start(&g, m, &r);
    assert_int_equal(g.n_open, 0);
    int32_t first[6];
    memcpy(first, g.tokens, sizeof first);
    /* A workspace of one cell: the full state must not take part in the pass. */
    eng_workspace *ws = workspace(m, 1, 1);
    eng_gen *one = &g;
    for (int t = 1; t <= 3; t++) {
        assert_int_equal(eng_step(ws, &one, 1), ENG_OK);
        assert_int_equal(g.iter, t);
    }
    assert_true(eng_gen_done(&g));
    assert_memory_equal(first, g.tokens, sizeof first);
    eng_workspace_free(ws);
    eng_gen_close(&g);
    eng_model_free(m);
}

static void test_capacity_refused_before_any_change(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    request small = {.h = 2, .w = 2, .k = 2, .s = {.top_p = 1.0f}};
    request big = {.h = 3, .w = 3, .k = 2, .s = {.top_p = 1.0f}};
    eng_gen a, b;
    start(&a, m, &small);
    start(&b, m, &big);
    eng_workspace *ws = workspace(m, 12, 1);
    eng_gen *both[2] = {&a, &b};
    assert_int_equal(eng_step(ws, both, 2), ENG_ECAPACITY);
    assert_int_equal(a.iter, 0);
    assert_int_equal(b.iter, 0);
    assert_int_equal(a.n_masked, 4);
    assert_int_equal(eng_step(ws, both + 1, 1), ENG_OK);
    assert_int_equal(b.iter, 1);
    eng_gen_close(&a);
    eng_gen_close(&b);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* --- eng_gen_init's refusals -------------------------------------------------- */

static void expect_refusal(const eng_model *m, int h, int w, const int32_t *given, int k,
                           eng_sampling s, const char *message)
{
    char err[256] = "";
    eng_gen g;
    int rc = eng_gen_init(&g, m, h, w, given, k, &s, err, sizeof err);
    assert_int_equal(rc, ENG_ERANGE);
    if (!strstr(err, message)) fail_msg("message \"%s\" lacks \"%s\"", err, message);
    eng_gen_close(&g); /* holds nothing: must be harmless */
}

static void test_init_refusals_name_the_value(void **state)
{
    (void)state;
    eng_model *m = byte_model();
    const eng_hparams *hp = eng_model_hparams(m);
    eng_sampling ok = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 1};
    char want[128];

    snprintf(want, sizeof want, "height 0 is outside 1..%d", hp->max_height);
    expect_refusal(m, 0, 4, NULL, 3, ok, want);
    snprintf(want, sizeof want, "width %d is outside 1..%d", hp->max_width + 1, hp->max_width);
    expect_refusal(m, 2, hp->max_width + 1, NULL, 3, ok, want);
    expect_refusal(m, 2, 2, NULL, 0, ok, "iterations 0 is below 1");

    eng_sampling bad = ok;
    bad.temperature = -0.5f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "temperature -0.5");
    bad.temperature = 1.0f / 0.0f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "temperature inf");
    bad = ok;
    bad.top_k = -1;
    expect_refusal(m, 2, 2, NULL, 3, bad, "top_k -1 is negative");
    bad = ok;
    bad.top_p = 1.5f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "top_p 1.5 is outside (0, 1]");
    bad.top_p = 0.0f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "top_p 0 is outside (0, 1]");
    bad = ok;
    bad.remask_noise = -1.0f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "remask_noise -1 is outside 0..100");
    bad.remask_noise = NAN;
    expect_refusal(m, 2, 2, NULL, 3, bad, "remask_noise nan");
    bad.remask_noise = 100.5f;
    expect_refusal(m, 2, 2, NULL, 3, bad, "remask_noise 100.5");

    int32_t given[3 * 6];
    for (int c = 0; c < 18; c++)
        given[c] = ENG_OPEN;
    given[2 * 6 + 5] = hp->vocab_size + 43;
    snprintf(want, sizeof want, "given token %d at (2,5) is outside the vocabulary (%d)",
             hp->vocab_size + 43, hp->vocab_size);
    expect_refusal(m, 3, 6, given, 3, ok, want);
    given[2 * 6 + 5] = -2;
    expect_refusal(m, 3, 6, given, 3, ok, "given token -2 at (2,5)");
    given[2 * 6 + 5] = ENG_OPEN;
    given[1 * 6 + 0] = hp->mask_token;
    snprintf(want, sizeof want, "the mask token %d cannot be given", hp->mask_token);
    expect_refusal(m, 3, 6, given, 3, ok, want);

    /* The same arguments within range are accepted. */
    given[1 * 6 + 0] = 65;
    eng_gen g;
    assert_int_equal(eng_gen_init(&g, m, 3, 6, given, 3, &ok, NULL, 0), ENG_OK);
    assert_int_equal(g.n_open, 17);
    assert_int_equal(g.tokens[6], 65);
    assert_int_equal(g.tokens[0], hp->mask_token);
    eng_gen_close(&g);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference_fixtures),
        cmocka_unit_test(test_seeded_sampling_ignores_batch_and_threads),
        cmocka_unit_test(test_seed_changes_the_sample),
        cmocka_unit_test(test_remask_noise_changes_committed_cells),
        cmocka_unit_test(test_iterations_follow_the_schedule),
        cmocka_unit_test(test_state_without_open_cells_counts_iterations),
        cmocka_unit_test(test_capacity_refused_before_any_change),
        cmocka_unit_test(test_init_refusals_name_the_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
