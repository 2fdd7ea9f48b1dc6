/*
 * test_seed.c - the nonlinear-transformer-0.0.3 architecture (engine/seed.c,
 * engine/seed_gen.c, MODEL.md section 7):
 *   - parity with the seed package's own logits (tests/fixtures/
 *     seed_forward_*.json, made by tools/make_seed_fixtures.py), every grid of
 *     a file in one eng_forward call, within MODEL.md 3.3's tolerance;
 *   - a grid's logits are bitwise the same alone or batched, on 1 or 2 threads;
 *   - greedy generation reproduces the package's Autoregressive2DWrapper
 *     (seed_generate_*.json) step by step, by temperature 0 and by top_k 1;
 *   - seeded sampling ignores the batch and the thread count; given cells are
 *     kept and skipped; the checkpoint's top_k is the default; the sampler
 *     without a mask token;
 *   - refusals: non-square grids, bf16/int8, and broken seed checkpoints, each
 *     with a message naming the file and the fault.
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

#include "engine/sample.h"
#include "tests/engine/ckpt_harness.h"

static const char *fixtures_dir(void)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    return dir && *dir ? dir : "tests/fixtures";
}

static eng_model *load_fixture_model(const char *file)
{
    char p[512], e[512];
    snprintf(p, sizeof p, "%s/%s", fixtures_dir(), file);
    eng_model *m = eng_model_load(p, e, sizeof e);
    if (!m) fail_msg("%s", e);
    return m;
}

static eng_workspace *workspace(const eng_model *m, int max_cells, int threads)
{
    char e[256];
    eng_workspace *ws = eng_workspace_create(m, max_cells, threads, e, sizeof e);
    if (!ws) fail_msg("workspace: %s", e);
    return ws;
}

static json_t *load_json(const char *p)
{
    json_error_t jerr;
    json_t *root = json_load_file(p, 0, &jerr);
    if (!root) fail_msg("%s:%d: %s", p, jerr.line, jerr.text);
    return root;
}

/* Reads an [h][w] array of ids into out (h * w ids). */
static void read_grid(const json_t *rows, int h, int w, int32_t *out)
{
    assert_int_equal(json_array_size(rows), h);
    for (int y = 0; y < h; y++) {
        const json_t *row = json_array_get(rows, y);
        assert_int_equal(json_array_size(row), w);
        for (int x = 0; x < w; x++)
            out[y * w + x] = (int32_t)json_integer_value(json_array_get(row, x));
    }
}

/* --- forward parity ----------------------------------------------------------- */

#define MAX_GRIDS 8

static void test_forward_matches_the_package(void **state)
{
    (void)state;
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/seed_forward_*.json", fixtures_dir());
    glob_t gl;
    if (glob(pattern, 0, NULL, &gl) != 0) fail_msg("no fixtures match %s", pattern);
    for (size_t f = 0; f < gl.gl_pathc; f++) {
        json_t *root = load_json(gl.gl_pathv[f]);
        eng_model *m = load_fixture_model(json_string_value(json_object_get(root, "model")));
        assert_int_equal(m->arch, ENG__ARCH_SEED);
        int v = eng_model_hparams(m)->vocab_size;
        json_t *grids = json_object_get(root, "grids"), *want = json_object_get(root, "logits");
        int n = (int)json_array_size(grids), cells = 0;
        assert_true(n >= 1 && n <= MAX_GRIDS);
        eng_grid g[MAX_GRIDS];
        int32_t *tok[MAX_GRIDS];
        for (int i = 0; i < n; i++) {
            json_t *rows = json_array_get(grids, i);
            int h = (int)json_array_size(rows);
            tok[i] = malloc((size_t)h * h * sizeof *tok[i]);
            read_grid(rows, h, h, tok[i]);
            g[i] = (eng_grid){.height = h, .width = h, .tokens = tok[i]};
            cells += h * h;
        }
        double tol = json_number_value(json_object_get(root, "tolerance")), worst = 0.0;
        assert_true(tol > 0.0);
        eng_workspace *ws2 = workspace(m, cells, 2), *ws1 = workspace(m, cells, 1);
        const float *z2, *z1;
        assert_int_equal(eng_forward(ws2, g, n, &z2), ENG_OK);
        const float *z = z2;
        for (int i = 0; i < n; i++)
            for (int y = 0; y < g[i].height; y++)
                for (int x = 0; x < g[i].width; x++, z += v) {
                    json_t *cell = json_array_get(json_array_get(json_array_get(want, i), y), x);
                    assert_int_equal(json_array_size(cell), v);
                    for (int k = 0; k < v; k++) {
                        double e = fabs((double)z[k] - json_number_value(json_array_get(cell, k)));
                        worst = e > worst ? e : worst;
                    }
                }
        print_message("%s: %d grids, %d cells, max |diff| %.3g (tolerance %.3g)\n", gl.gl_pathv[f],
                      n, cells, worst, tol);
        if (!(worst <= tol)) fail_msg("%s: max |diff| %.3g > %.3g", gl.gl_pathv[f], worst, tol);
        assert_int_equal(eng_forward(ws1, g, n, &z1), ENG_OK);
        assert_memory_equal(z1, z2, (size_t)cells * v * sizeof *z1);
        eng_workspace_free(ws1);
        eng_workspace_free(ws2);
        for (int i = 0; i < n; i++)
            free(tok[i]);
        eng_model_free(m);
        json_decref(root);
    }
    globfree(&gl);
}

/* A 7x7 grid's logits alone on 1 thread, then after other grids on 2. */
static void test_batch_and_threads_do_not_change_a_grid(void **state)
{
    (void)state;
    eng_model *m = load_fixture_model("seed_small.safetensors");
    int v = m->hp.vocab_size;
    int32_t a[49], b[16 * 16], c[4];
    for (int i = 0; i < 49; i++)
        a[i] = (i * 7 + 3) % v;
    for (int i = 0; i < 256; i++)
        b[i] = (i * 5 + 1) % v;
    for (int i = 0; i < 4; i++)
        c[i] = i;
    eng_grid alone = {7, 7, a};
    eng_grid batch[3] = {{16, 16, b}, {2, 2, c}, {7, 7, a}};
    eng_workspace *ws1 = workspace(m, 49, 1), *ws2 = workspace(m, 256 + 4 + 49, 2);
    const float *z1, *z2;
    assert_int_equal(eng_forward(ws1, &alone, 1, &z1), ENG_OK);
    float *first = malloc(49 * (size_t)v * sizeof *first);
    memcpy(first, z1, 49 * (size_t)v * sizeof *first);
    assert_int_equal(eng_forward(ws2, batch, 3, &z2), ENG_OK);
    assert_memory_equal(first, z2 + (size_t)(256 + 4) * v, 49 * (size_t)v * sizeof *first);
    free(first);
    eng_workspace_free(ws1);
    eng_workspace_free(ws2);
    eng_model_free(m);
}

/* --- generation ------------------------------------------------------------- */

static const eng_sampling greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 1};

static void start(eng_gen *g, const eng_model *m, int n, const int32_t *given,
                  const eng_sampling *s)
{
    char e[256];
    if (eng_gen_init(g, m, n, n, given, 8, s, e, sizeof e) != ENG_OK) fail_msg("%s", e);
}

/* Runs g to the end alone; checks each step against want (steps x cells) if given. */
static void run_checked(eng_workspace *ws, eng_gen *g, const int32_t *want)
{
    int cells = g->height * g->width;
    for (int t = 0; !eng_gen_done(g); t++) {
        assert_int_equal(eng_step(ws, &g, 1), ENG_OK);
        assert_int_equal(g->iter, t + 1);
        assert_int_equal(g->n_masked, g->n_open - (t + 1));
        if (want && memcmp(g->tokens, want + (size_t)t * cells, cells * sizeof *want) != 0)
            fail_msg("step %d differs from the package's grid", t + 1);
    }
}

static void test_greedy_generation_matches_the_package(void **state)
{
    (void)state;
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/seed_generate_*.json", fixtures_dir());
    glob_t gl;
    if (glob(pattern, 0, NULL, &gl) != 0) fail_msg("no fixtures match %s", pattern);
    for (size_t f = 0; f < gl.gl_pathc; f++) {
        json_t *root = load_json(gl.gl_pathv[f]);
        eng_model *m = load_fixture_model(json_string_value(json_object_get(root, "model")));
        int n = (int)json_integer_value(json_object_get(root, "height")), cells = n * n;
        assert_int_equal(json_integer_value(json_object_get(root, "mask_token")), m->hp.mask_token);
        json_t *steps = json_object_get(root, "grids");
        assert_int_equal(json_array_size(steps), cells);
        int32_t *want = malloc((size_t)cells * cells * sizeof *want);
        for (int t = 0; t < cells; t++)
            read_grid(json_array_get(steps, t), n, n, want + (size_t)t * cells);
        eng_workspace *ws = workspace(m, cells, 2);
        /* Temperature 0, and the package's own greedy route: top_k 1 at T = 1. */
        eng_sampling top1 = {.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 9};
        const eng_sampling *settings[] = {&greedy, &top1};
        for (int i = 0; i < 2; i++) {
            eng_gen g;
            start(&g, m, n, NULL, settings[i]);
            assert_int_equal(g.iterations, cells); /* one step per open cell, not 8 */
            run_checked(ws, &g, want);
            eng_gen_close(&g);
        }
        print_message("%s: %d steps match\n", gl.gl_pathv[f], cells);
        free(want);
        eng_workspace_free(ws);
        eng_model_free(m);
        json_decref(root);
    }
    globfree(&gl);
}

/* Sampling over every token (top_k = V): a state's grids depend only on its
 * seed, not on the states beside it or the thread count. */
static void test_seeded_sampling_ignores_batch_and_threads(void **state)
{
    (void)state;
    eng_model *m = load_fixture_model("seed_gen.safetensors");
    eng_sampling s = {.temperature = 1.5f, .top_k = m->hp.vocab_size, .top_p = 1.0f, .seed = 42};
    eng_sampling other = s;
    other.seed = 43;
    eng_gen a, b, c, d;
    start(&a, m, 5, NULL, &s);
    eng_workspace *ws1 = workspace(m, 25, 1), *ws2 = workspace(m, 25 + 36 + 9, 2);
    run_checked(ws1, &a, NULL);
    start(&b, m, 6, NULL, &other);
    start(&c, m, 5, NULL, &s);
    start(&d, m, 3, NULL, &other);
    eng_gen *batch[] = {&b, &c, &d};
    while (!eng_gen_done(&c))
        assert_int_equal(eng_step(ws2, batch, 3), ENG_OK);
    assert_memory_equal(a.tokens, c.tokens, 25 * sizeof *a.tokens);
    /* Another seed gives another grid. */
    eng_gen e;
    start(&e, m, 5, NULL, &other);
    run_checked(ws1, &e, NULL);
    assert_memory_not_equal(a.tokens, e.tokens, 25 * sizeof *a.tokens);
    eng_gen *all[] = {&a, &b, &c, &d, &e};
    for (int i = 0; i < 5; i++)
        eng_gen_close(all[i]);
    eng_workspace_free(ws1);
    eng_workspace_free(ws2);
    eng_model_free(m);
}

/* Given cells are kept, open ones are filled in raster order one per step,
 * and the checkpoint's top_k (1 here) is used when the request sets none. */
static void test_given_cells_and_default_top_k(void **state)
{
    (void)state;
    eng_model *m = load_fixture_model("seed_gen.safetensors");
    assert_int_equal(m->seed_top_k, 1); /* int((1 - 0.9) * 16) */
    int32_t given[16];
    for (int i = 0; i < 16; i++)
        given[i] = i % 5 == 0 ? (int32_t)(i % m->hp.vocab_size) : ENG_OPEN;
    given[1] = m->hp.mask_token; /* an ordinary token for this arch */
    eng_sampling s = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 5};
    eng_gen g, h;
    start(&g, m, 4, given, &s);
    assert_int_equal(g.sampling.top_k, 1);
    assert_int_equal(g.n_open, 16 - 5);
    assert_int_equal(g.iterations, 16 - 5);
    eng_workspace *ws = workspace(m, 16, 1);
    int prev = -1;
    while (!eng_gen_done(&g)) {
        assert_int_equal(eng_step(ws, (eng_gen *[]){&g}, 1), ENG_OK);
        int filled = -1; /* the last committed cell must follow the previous one */
        for (int c = 0; c < 16; c++)
            if (g.cell[c] == ENG_CELL_COMMITTED) filled = c;
        assert_true(filled > prev);
        for (int c = filled + 1; c < 16; c++)
            if (given[c] == ENG_OPEN) assert_int_equal(g.tokens[c], m->hp.mask_token);
        prev = filled;
    }
    for (int c = 0; c < 16; c++)
        if (given[c] != ENG_OPEN) assert_int_equal(g.tokens[c], given[c]);
    /* top_k 1 is greedy: the same grid at temperature 0. */
    start(&h, m, 4, given, &greedy);
    run_checked(ws, &h, NULL);
    assert_memory_equal(g.tokens, h.tokens, 16 * sizeof *g.tokens);
    eng_gen_close(&g);
    eng_gen_close(&h);
    /* Nothing open: one step that changes nothing. */
    int32_t full[4] = {1, 2, 3, 4};
    start(&g, m, 2, full, &greedy);
    assert_int_equal(g.iterations, 1);
    assert_int_equal(eng_step(ws, (eng_gen *[]){&g}, 1), ENG_OK);
    assert_true(eng_gen_done(&g));
    assert_memory_equal(g.tokens, full, sizeof full);
    eng_gen_close(&g);
    eng_workspace_free(ws);
    eng_model_free(m);
}

/* The sampler with no mask (-1), as seed generation calls it: every id is a
 * candidate, top_k counts all of them, and both samplers agree. */
static void test_sampler_without_mask(void **state)
{
    (void)state;
    const float z[4] = {3.0f, 2.0f, 1.0f, 0.0f};
    float scratch[2 * 4];
    eng_sampling s = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 1};
    const double us[] = {0.0, 0.5, 0.9, 0.999999};
    int seen_last = 0;
    for (int k = 0; k <= 4; k++) {
        s.top_k = k;
        for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
            int a = eng__sample(z, 4, -1, &s, us[i], scratch);
            int b = eng__sample_ref(z, 4, -1, &s, us[i], scratch);
            assert_int_equal(a, b);
            assert_true(a >= 0 && a < (k ? k : 4)); /* top_k 3 keeps ids 0..2, 0 keeps all */
            seen_last |= a == 3;
        }
    }
    assert_true(seen_last); /* the lowest id's token is drawn when all are kept */
    assert_int_equal(eng__argmax(z, 4, -1), 0);
    s.temperature = 0.0f;
    assert_int_equal(eng__sample(z, 4, -1, &s, 0.5, scratch), 0);
}

/* --- refusals --------------------------------------------------------------- */

static void test_non_square_and_precision_refused(void **state)
{
    (void)state;
    eng_model *m = load_fixture_model("seed_small.safetensors");
    eng_workspace *ws = workspace(m, 64, 1);
    int32_t t[12] = {0};
    eng_grid g = {3, 4, t};
    const float *z;
    assert_int_equal(eng_forward(ws, &g, 1, &z), ENG_EINVAL);
    eng_gen gen;
    char e[256];
    assert_int_equal(eng_gen_init(&gen, m, 3, 4, NULL, 4, &greedy, e, sizeof e), ENG_ERANGE);
    assert_non_null(strstr(e, "square"));
    assert_int_equal(eng_gen_init(&gen, m, 17, 17, NULL, 4, &greedy, e, sizeof e), ENG_ERANGE);
    eng_workspace_free(ws);
    eng_model_free(m);

    char p[512];
    snprintf(p, sizeof p, "%s/seed_small.safetensors", fixtures_dir());
    for (int prec = ENG_PRECISION_BF16; prec <= ENG_PRECISION_INT8; prec++) {
        eng_load_opts o = ENG_LOAD_OPTS_INIT;
        o.precision = prec;
        e[0] = 0;
        assert_null(eng_model_load_opts(p, &o, e, sizeof e));
        assert_non_null(strstr(e, p));
        assert_non_null(strstr(e, "f32 only"));
    }
}

/* A valid seed checkpoint: V = 7, D = 8, L blocks. */
static void seed_init(wspec *s, int L)
{
    static char depth[8];
    memset(s, 0, sizeof *s);
    snprintf(depth, sizeof depth, "%d", L);
    const char *meta[][2] = {
        {"format", "heptapod"}, {"arch", ENG__ARCH_SEED_NAME}, {"vocab_size", "7"}, {"dim", "8"},
        {"depth", depth},       {"max_height", "8"},           {"max_width", "8"}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        w_set(s, meta[i][0], meta[i][1]);
    w_add(s, "F32", "embedding.weight", 2, 7, 8);
    for (int l = 0; l < L; l++) {
        char n[64];
#define S_LAYER(suffix, nd, a, b)                                                                  \
    (snprintf(n, sizeof n, "blocks.%d.%s", l, suffix), w_add(s, "F32", n, nd, a, b))
        S_LAYER("norm.gamma", 1, 8, 0);
        S_LAYER("norm.beta", 1, 8, 0);
        S_LAYER("mlp.0.weight", 2, 32, 8);
        S_LAYER("mlp.0.bias", 1, 32, 0);
        S_LAYER("mlp.2.weight", 2, 8, 32);
        S_LAYER("mlp.2.bias", 1, 8, 0);
#undef S_LAYER
    }
    w_add(s, "F32", "rotary_emb.inv_freq", 1, 4, 0);
    w_add(s, "F32", "to_logits.weight", 2, 7, 8);
    w_add(s, "F32", "to_logits.bias", 1, 7, 0);
}

static void test_seed_checkpoint_defaults(void **state)
{
    (void)state;
    wspec s;
    seed_init(&s, 2);
    eng_model *m = load_ok(&s);
    const eng_hparams *hp = eng_model_hparams(m);
    assert_int_equal(m->arch, ENG__ARCH_SEED);
    assert_int_equal(hp->heads, 1);
    assert_int_equal(hp->head_dim, 8);
    assert_int_equal(hp->mlp_hidden, 32);
    assert_int_equal(hp->window[0], 1);
    assert_int_equal(hp->window[1], 1);
    assert_int_equal(m->seed_window, 3);
    assert_int_equal(hp->mask_token, 0);
    assert_int_equal(m->seed_top_k, 0);
    assert_true(hp->norm_eps == 1e-5f);
    eng_model_free(m);
    w_set(&s, "window", "2,0");
    w_set(&s, "model_window", "1");
    w_set(&s, "top_k", "3");
    m = load_ok(&s);
    assert_int_equal(m->hp.window[0], 2);
    assert_int_equal(m->hp.window[1], 0);
    assert_int_equal(m->seed_window, 1);
    assert_int_equal(m->seed_top_k, 3);
    eng_model_free(m);
}

static void test_broken_seed_checkpoints_refused(void **state)
{
    (void)state;
    wspec s;
    seed_init(&s, 2);
    w_remove(&s, "blocks.1.norm.beta");
    EXPECT_REFUSED(&s, "missing tensor blocks.1.norm.beta");
    seed_init(&s, 2);
    w_find(&s, "rotary_emb.inv_freq")->shape[0] = 8;
    EXPECT_REFUSED(&s, "rotary_emb.inv_freq", "wrong shape [8], expected [4]");
    seed_init(&s, 2);
    w_find(&s, "blocks.0.mlp.0.weight")->shape[0] = 24;
    EXPECT_REFUSED(&s, "blocks.0.mlp.0.weight", "expected [32, 8]");
    seed_init(&s, 2);
    w_add(&s, "F32", "head.weight", 2, 7, 8); /* a heptapod-v1 name */
    EXPECT_REFUSED(&s, "unexpected tensor head.weight");
    seed_init(&s, 1);
    w_set(&s, "depth", "2");
    EXPECT_REFUSED(&s, "missing tensor blocks.1.norm.gamma");
    seed_init(&s, 2);
    w_set(&s, "dim", "7");
    EXPECT_REFUSED(&s, "dim = 7 is odd");
    seed_init(&s, 2);
    w_set(&s, "model_window", "-1");
    EXPECT_REFUSED(&s, "model_window");
    seed_init(&s, 2);
    w_set(&s, "window", "1,2,3");
    EXPECT_REFUSED(&s, "window", "3 entries");
    seed_init(&s, 2);
    w_set(&s, "top_k", "8");
    EXPECT_REFUSED(&s, "top_k = 8 is out of range [0, 7]");
    seed_init(&s, 2);
    w_set(&s, "mask_token", "7");
    EXPECT_REFUSED(&s, "mask_token");
    seed_init(&s, 2);
    w_set(&s, "max_width", NULL);
    EXPECT_REFUSED(&s, "missing metadata max_width");
    seed_init(&s, 2);
    w_set(&s, "arch", "nonlinear-transformer-0.0.4");
    EXPECT_REFUSED(&s, "metadata arch", "expected \"heptapod-v1\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_the_package),
        cmocka_unit_test(test_batch_and_threads_do_not_change_a_grid),
        cmocka_unit_test(test_greedy_generation_matches_the_package),
        cmocka_unit_test(test_seeded_sampling_ignores_batch_and_threads),
        cmocka_unit_test(test_given_cells_and_default_top_k),
        cmocka_unit_test(test_sampler_without_mask),
        cmocka_unit_test(test_non_square_and_precision_refused),
        cmocka_unit_test(test_seed_checkpoint_defaults),
        cmocka_unit_test(test_broken_seed_checkpoints_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
