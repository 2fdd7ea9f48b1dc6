/*
 * test_forward.c - the batched forward pass (engine/forward.c):
 *   - parity with the PyTorch reference's fixtures, every grid of a file in
 *     one eng_forward call;
 *   - parity with a plain reference forward written here from MODEL.md on
 *     hand-built random models (head dims 4 and 12, dilation, global, r = 0);
 *   - a grid's logits are bitwise the same alone or batched with others, on
 *     1 or 2 threads;
 *   - the refusals (capacity, sizes, tokens) and the workspace's accessors.
 *
 * Fixtures: tests/fixtures/forward_*.json (HEPTAPOD_FIXTURES overrides the
 * folder), each {"model", "grids": [[[ids]]...], "logits": [[H][W][V]...],
 * "tolerance"}.
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

#include "engine/internal.h"
#include "engine/kernels.h"

static const char *fixtures_dir(void)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    return dir && *dir ? dir : "tests/fixtures";
}

static eng_model *load_model(const char *file)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", fixtures_dir(), file);
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

static eng_workspace *workspace(const eng_model *m, int max_cells, int threads)
{
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, max_cells, threads, err, sizeof err);
    if (!ws) fail_msg("workspace: %s", err);
    return ws;
}

/* --- fixtures ------------------------------------------------------------- */

typedef struct fixture {
    eng_grid grids[16];
    int32_t *tokens[16];
    int n, cells;
    json_t *root;
} fixture;

static void fixture_load(fixture *f, const char *path)
{
    json_error_t jerr;
    memset(f, 0, sizeof *f);
    f->root = json_load_file(path, 0, &jerr);
    if (!f->root) fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    json_t *grids = json_object_get(f->root, "grids");
    assert_true(json_is_array(grids));
    f->n = (int)json_array_size(grids);
    assert_true(f->n >= 1 && f->n <= 16);
    for (int g = 0; g < f->n; g++) {
        json_t *rows = json_array_get(grids, g);
        int h = (int)json_array_size(rows), w = (int)json_array_size(json_array_get(rows, 0));
        f->tokens[g] = malloc((size_t)h * w * sizeof(int32_t));
        assert_non_null(f->tokens[g]);
        for (int y = 0; y < h; y++) {
            json_t *row = json_array_get(rows, y);
            assert_int_equal(json_array_size(row), w);
            for (int x = 0; x < w; x++)
                f->tokens[g][y * w + x] = (int32_t)json_integer_value(json_array_get(row, x));
        }
        f->grids[g] = (eng_grid){.height = h, .width = w, .tokens = f->tokens[g]};
        f->cells += h * w;
    }
}

static void fixture_free(fixture *f)
{
    for (int g = 0; g < f->n; g++)
        free(f->tokens[g]);
    json_decref(f->root);
}

/* Max |logits - expected| over the whole batch. */
static double fixture_diff(const fixture *f, const float *logits, int v)
{
    json_t *want = json_object_get(f->root, "logits");
    double worst = 0.0;
    const float *z = logits;
    for (int g = 0; g < f->n; g++) {
        json_t *grid = json_array_get(want, g);
        for (int y = 0; y < f->grids[g].height; y++)
            for (int x = 0; x < f->grids[g].width; x++) {
                json_t *cell = json_array_get(json_array_get(grid, y), x);
                assert_int_equal(json_array_size(cell), v);
                for (int i = 0; i < v; i++) {
                    double e = fabs((double)z[i] - json_number_value(json_array_get(cell, i)));
                    worst = e > worst ? e : worst;
                }
                z += v;
            }
    }
    return worst;
}

static void test_fixture_parity(void **state)
{
    (void)state;
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/forward_*.json", fixtures_dir());
    glob_t gl;
    if (glob(pattern, 0, NULL, &gl) != 0) fail_msg("no fixtures match %s", pattern);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        fixture f;
        fixture_load(&f, gl.gl_pathv[i]);
        eng_model *m = load_model(json_string_value(json_object_get(f.root, "model")));
        int v = eng_model_hparams(m)->vocab_size;
        double tol = json_number_value(json_object_get(f.root, "tolerance"));
        assert_true(tol > 0.0);

        eng_workspace *ws2 = workspace(m, f.cells, 2), *ws1 = workspace(m, f.cells, 1);
        const float *z2, *z1;
        assert_int_equal(eng_forward(ws2, f.grids, f.n, &z2), ENG_OK);
        double worst = fixture_diff(&f, z2, v);
        print_message("%s: %d grids, %d cells, max |diff| %.3g (tolerance %.3g)\n", gl.gl_pathv[i],
                      f.n, f.cells, worst, tol);
        if (!(worst <= tol)) fail_msg("%s: max |diff| %.3g > %.3g", gl.gl_pathv[i], worst, tol);
        /* One thread gives the same bits. */
        assert_int_equal(eng_forward(ws1, f.grids, f.n, &z1), ENG_OK);
        assert_memory_equal(z1, z2, (size_t)f.cells * v * sizeof *z1);

        eng_workspace_free(ws1);
        eng_workspace_free(ws2);
        eng_model_free(m);
        fixture_free(&f);
    }
    globfree(&gl);
}

/* --- hand-built models and a plain reference forward ---------------------- */

#define TEST_RAND_SEED 0x2545f4914f6cdd1dull
#include "tests/engine/test_rand.h"
#include "tests/engine/test_logits.h"

typedef struct spec {
    int v, d, l, heads, f, max_h, max_w;
    const int *window, *dilation;
    float rope_base, eps;
} spec;

/* Every tensor of a model built by hand; weights N(0, 0.02), norms ~1. */
typedef struct built {
    eng_model m;
    float *mem;
    size_t used, cap;
} built;

static float *take(built *b, size_t n, float mean, float sd)
{
    assert_true(b->used + n <= b->cap);
    float *p = b->mem + b->used;
    b->used += n;
    for (size_t i = 0; i < n; i++)
        p[i] = mean + sd * gauss();
    return p;
}

static built *build_model(const spec *s)
{
    built *b = calloc(1, sizeof *b);
    assert_non_null(b);
    size_t d = s->d, f = s->f, v = s->v;
    size_t per_layer = 4 * d + 3 * d * d + 3 * d + d * d + d + f * d + f + d * f + d;
    b->cap = 2 * v * d + v + 2 * d + per_layer * s->l;
    b->mem = malloc(b->cap * sizeof *b->mem);
    b->m.window = malloc(s->l * sizeof(int));
    b->m.dilation = malloc(s->l * sizeof(int));
    b->m.layers = calloc(s->l, sizeof *b->m.layers);
    assert_non_null(b->mem);
    assert_non_null(b->m.window);
    assert_non_null(b->m.dilation);
    assert_non_null(b->m.layers);
    memcpy(b->m.window, s->window, s->l * sizeof(int));
    memcpy(b->m.dilation, s->dilation, s->l * sizeof(int));
    b->m.hp = (eng_hparams){.vocab_size = s->v,
                            .dim = s->d,
                            .depth = s->l,
                            .heads = s->heads,
                            .head_dim = s->d / s->heads,
                            .mlp_hidden = s->f,
                            .max_height = s->max_h,
                            .max_width = s->max_w,
                            .mask_token = 0,
                            .tokenizer = ENG_TOKENIZER_NONE,
                            .rope_base = s->rope_base,
                            .norm_eps = s->eps,
                            .window = b->m.window,
                            .dilation = b->m.dilation};
    const float sd = 0.02f;
    b->m.tok_emb = take(b, v * d, 0.0f, 1.0f); /* embeddings of unit scale */
    for (int l = 0; l < s->l; l++) {
        eng_layer *ly = &b->m.layers[l];
        ly->norm1_w = take(b, d, 1.0f, 0.1f);
        ly->norm1_b = take(b, d, 0.0f, 0.1f);
        ly->qkv_w = take(b, 3 * d * d, 0.0f, sd * 10); /* scores big enough to matter */
        ly->qkv_b = take(b, 3 * d, 0.0f, sd);
        ly->proj_w = take(b, d * d, 0.0f, sd);
        ly->proj_b = take(b, d, 0.0f, sd);
        ly->norm2_w = take(b, d, 1.0f, 0.1f);
        ly->norm2_b = take(b, d, 0.0f, 0.1f);
        ly->fc1_w = take(b, f * d, 0.0f, sd * 5);
        ly->fc1_b = take(b, f, 0.0f, sd);
        ly->fc2_w = take(b, d * f, 0.0f, sd);
        ly->fc2_b = take(b, d, 0.0f, sd);
    }
    b->m.norm_w = take(b, d, 1.0f, 0.1f);
    b->m.norm_b = take(b, d, 0.0f, 0.1f);
    b->m.head_w = take(b, v * d, 0.0f, sd * 5);
    b->m.head_b = take(b, v, 0.0f, sd);
    return b;
}

static void free_model(built *b)
{
    free(b->mem);
    free(b->m.window);
    free(b->m.dilation);
    free(b->m.layers);
    free(b);
}

/* y[r] = x[r] w^T + bias, accumulated in double. */
static void linear_ref(const float *x, int rows, int in, const float *w, const float *bias, int out,
                       float *y)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = bias[o];
            for (int i = 0; i < in; i++)
                s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = (float)s;
        }
}

/* MODEL.md section 3 for one grid, literally. z gets [cells][V]. */
static void forward_ref(const eng_model *m, const eng_grid *g, float *z)
{
    const eng_hparams *hp = &m->hp;
    int d = hp->dim, f = hp->mlp_hidden, dh = hp->head_dim, cells = g->height * g->width;
    float *h = malloc(sizeof(float) * cells * d), *u = malloc(sizeof(float) * cells * d);
    float *qkv = malloc(sizeof(float) * cells * 3 * d), *a = malloc(sizeof(float) * cells * d);
    float *hid = malloc(sizeof(float) * cells * f), *t = malloc(sizeof(float) * cells * d);
    float *scores = malloc(sizeof(float) * cells);
    assert_true(h && u && qkv && a && hid && t && scores);
    for (int c = 0; c < cells; c++) {
        memcpy(h + c * d, m->tok_emb + (size_t)g->tokens[c] * d, sizeof(float) * d);
        if (m->pos_emb) /* the optional position table: row (y, x) of [max_h][max_w][D] */
            for (int i = 0; i < d; i++)
                h[c * d + i] +=
                    m->pos_emb[((size_t)(c / g->width) * hp->max_width + (size_t)(c % g->width)) *
                                   d +
                               i];
    }
    for (int l = 0; l < hp->depth; l++) {
        const eng_layer *ly = &m->layers[l];
        for (int c = 0; c < cells; c++)
            eng__layernorm_ref(h + c * d, u + c * d, ly->norm1_w, ly->norm1_b, d, hp->norm_eps);
        linear_ref(u, cells, d, ly->qkv_w, ly->qkv_b, 3 * d, qkv);
        for (int c = 0; c < cells; c++)
            for (int j = 0; j < hp->heads; j++) {
                int y = c / g->width, x = c % g->width;
                eng__rope_ref(qkv + (size_t)c * 3 * d + j * dh, dh, y, x, hp->rope_base);
                eng__rope_ref(qkv + (size_t)c * 3 * d + d + j * dh, dh, y, x, hp->rope_base);
            }
        for (int j = 0; j < hp->heads; j++) {
            eng__attn at = {.q = qkv + j * dh,
                            .k = qkv + d + j * dh,
                            .v = qkv + 2 * d + j * dh,
                            .ld = 3 * (size_t)d,
                            .out = a + j * dh,
                            .ldo = (size_t)d,
                            .height = g->height,
                            .width = g->width,
                            .head_dim = dh,
                            .radius = hp->window[l],
                            .dilation = hp->dilation[l]};
            eng__attention_ref(&at, 0, cells, scores);
        }
        linear_ref(a, cells, d, ly->proj_w, ly->proj_b, d, t);
        for (int i = 0; i < cells * d; i++)
            h[i] += t[i];
        for (int c = 0; c < cells; c++)
            eng__layernorm_ref(h + c * d, u + c * d, ly->norm2_w, ly->norm2_b, d, hp->norm_eps);
        linear_ref(u, cells, d, ly->fc1_w, ly->fc1_b, f, hid);
        eng__gelu_ref(hid, cells * f);
        linear_ref(hid, cells, f, ly->fc2_w, ly->fc2_b, d, t);
        for (int i = 0; i < cells * d; i++)
            h[i] += t[i];
    }
    for (int c = 0; c < cells; c++)
        eng__layernorm_ref(h + c * d, u + c * d, m->norm_w, m->norm_b, d, hp->norm_eps);
    linear_ref(u, cells, d, m->head_w, m->head_b, hp->vocab_size, z);
    free(h);
    free(u);
    free(qkv);
    free(a);
    free(hid);
    free(t);
    free(scores);
}

static int32_t *random_tokens(int n, int v)
{
    int32_t *t = malloc(n * sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(rnd() * v);
    return t;
}

/* Runs the batch in one call and checks every grid against forward_ref. */
static void check_against_reference(const spec *s, const int (*sizes)[2], int n)
{
    built *b = build_model(s);
    eng_grid grids[8];
    int cells = 0;
    for (int g = 0; g < n; g++) {
        grids[g] = (eng_grid){.height = sizes[g][0],
                              .width = sizes[g][1],
                              .tokens = random_tokens(sizes[g][0] * sizes[g][1], s->v)};
        cells += sizes[g][0] * sizes[g][1];
    }
    eng_workspace *ws = workspace(&b->m, cells, 2);
    const float *z;
    assert_int_equal(eng_forward(ws, grids, n, &z), ENG_OK);
    double worst = 0.0, zmax = 0.0;
    for (int g = 0; g < n; g++) {
        int gc = grids[g].height * grids[g].width;
        float *want = malloc(sizeof(float) * gc * s->v);
        assert_non_null(want);
        forward_ref(&b->m, &grids[g], want);
        for (int i = 0; i < gc * s->v; i++) {
            double e = fabs((double)z[i] - want[i]);
            worst = e > worst ? e : worst;
            zmax = fabs(want[i]) > zmax ? fabs(want[i]) : zmax;
        }
        z += (size_t)gc * s->v;
        free(want);
        free((void *)grids[g].tokens);
    }
    double tol = 1e-4 * (1.0 + zmax); /* MODEL.md 3.3 */
    print_message("D=%d heads=%d F=%d: max |diff| %.3g, max |Z| %.3g\n", s->d, s->heads, s->f,
                  worst, zmax);
    assert_true(worst <= tol);
    eng_workspace_free(ws);
    free_model(b);
}

static void test_reference_head_dim_12_dilated_global(void **state)
{
    (void)state;
    const int window[] = {1, ENG_WINDOW_GLOBAL, 3}, dilation[] = {2, 1, 1};
    spec s = {.v = 11,
              .d = 36,
              .l = 3,
              .heads = 3,
              .f = 50,
              .max_h = 16,
              .max_w = 16,
              .window = window,
              .dilation = dilation,
              .rope_base = 100.0f,
              .eps = 1e-6f};
    const int sizes[][2] = {{7, 5}, {1, 1}, {1, 9}, {12, 3}, {16, 16}};
    check_against_reference(&s, sizes, 5);
}

static void test_reference_head_dim_4_radius_0(void **state)
{
    (void)state;
    const int window[] = {0, 2}, dilation[] = {1, 3};
    spec s = {.v = 7,
              .d = 8,
              .l = 2,
              .heads = 2,
              .f = 8,
              .max_h = 9,
              .max_w = 40,
              .window = window,
              .dilation = dilation,
              .rope_base = 10000.0f,
              .eps = 1e-5f};
    const int sizes[][2] = {{9, 40}, {3, 1}, {2, 2}};
    check_against_reference(&s, sizes, 3);
}

/* --- batch and thread independence ---------------------------------------- */

static void check_independence(const eng_model *m)
{
    const eng_hparams *hp = eng_model_hparams(m);
    /* A spans two row tiles and many kernel panels; the others shift it. */
    int ha = hp->max_height < 13 ? hp->max_height : 13;
    int wa = hp->max_width < 12 ? hp->max_width : 12;
    eng_grid a = {ha, wa, random_tokens(ha * wa, hp->vocab_size)};
    eng_grid b = {5, 7, random_tokens(35, hp->vocab_size)};
    eng_grid c = {1, 1, random_tokens(1, hp->vocab_size)};
    eng_grid d = {3, 9, random_tokens(27, hp->vocab_size)};
    size_t bytes = sizeof(float) * (size_t)ha * wa * hp->vocab_size;

    float *alone = logits_of(m, &a, 1, 0, 1);
    eng_grid batch1[] = {b, a, c};
    eng_grid batch2[] = {c, d, b, a, d};
    eng_grid batch3[] = {a, a, b};
    float *runs[] = {
        logits_of(m, &a, 1, 0, 2),     logits_of(m, batch1, 3, 1, 1), logits_of(m, batch1, 3, 1, 2),
        logits_of(m, batch2, 5, 3, 2), logits_of(m, batch2, 5, 3, 1), logits_of(m, batch3, 3, 1, 2),
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        if (memcmp(alone, runs[i], bytes) != 0)
            fail_msg("run %zu: grid A's logits changed with the batch or thread count", i);
        free(runs[i]);
    }
    free(alone);
    free((void *)a.tokens);
    free((void *)b.tokens);
    free((void *)c.tokens);
    free((void *)d.tokens);
}

static void test_batch_and_threads_do_not_change_a_grid(void **state)
{
    (void)state;
    eng_model *m = load_model("small_f32.safetensors");
    check_independence(m);
    eng_model_free(m);
    /* Wider layers, so that qkv, fc1 and the head have several column blocks. */
    const int window[] = {3, ENG_WINDOW_GLOBAL}, dilation[] = {1, 1};
    spec s = {.v = 300,
              .d = 512,
              .l = 2,
              .heads = 8,
              .f = 600,
              .max_h = 32,
              .max_w = 32,
              .window = window,
              .dilation = dilation,
              .rope_base = 10000.0f,
              .eps = 1e-5f};
    built *b = build_model(&s);
    check_independence(&b->m);
    free_model(b);
}

/* --- refusals and accessors ------------------------------------------------ */

static void test_refusals(void **state)
{
    (void)state;
    eng_model *m = load_model("small_f32.safetensors");
    const eng_hparams *hp = eng_model_hparams(m);
    eng_workspace *ws = workspace(m, 20, 2);
    int32_t tok[40] = {0};
    const float *z = NULL;
    eng_grid g = {4, 5, tok};
    assert_int_equal(eng_forward(ws, &g, 1, &z), ENG_OK);
    eng_grid two[] = {{4, 5, tok}, {1, 1, tok}};
    assert_int_equal(eng_forward(ws, two, 2, &z), ENG_ECAPACITY);
    eng_grid big = {5, 5, tok};
    assert_int_equal(eng_forward(ws, &big, 1, &z), ENG_ECAPACITY);
    eng_grid zero = {0, 5, tok};
    assert_int_equal(eng_forward(ws, &zero, 1, &z), ENG_EINVAL);
    eng_grid wide = {1, hp->max_width + 1, tok};
    assert_int_equal(eng_forward(ws, &wide, 1, &z), ENG_EINVAL);
    eng_grid none = {2, 2, NULL};
    assert_int_equal(eng_forward(ws, &none, 1, &z), ENG_EINVAL);
    tok[7] = hp->vocab_size;
    assert_int_equal(eng_forward(ws, &g, 1, &z), ENG_EINVAL);
    tok[7] = -1;
    assert_int_equal(eng_forward(ws, &g, 1, &z), ENG_EINVAL);
    tok[7] = 0;
    assert_int_equal(eng_forward(ws, &g, -1, &z), ENG_EINVAL);
    assert_int_equal(eng_forward(ws, &g, 1, NULL), ENG_EINVAL);
    /* An empty batch is nothing to do; the workspace still works after refusals. */
    assert_int_equal(eng_forward(ws, NULL, 0, &z), ENG_OK);
    assert_int_equal(eng_forward(ws, &g, 1, &z), ENG_OK);
    for (int i = 0; i < 20 * hp->vocab_size; i++)
        assert_true(isfinite(z[i]));
    eng_workspace_free(ws);

    char err[128] = "";
    assert_null(eng_workspace_create(m, 0, 1, err, sizeof err));
    assert_true(strstr(err, "max_cells") != NULL);
    assert_null(eng_workspace_create(m, 10, 0, err, sizeof err));
    assert_true(strstr(err, "threads") != NULL);
    assert_null(eng_workspace_create(NULL, 10, 1, err, sizeof err));
    eng_model_free(m);
}

static void test_workspace_accessors(void **state)
{
    (void)state;
    eng_model *m = load_model("small_f32.safetensors");
    int v = eng_model_hparams(m)->vocab_size;
    eng_workspace *ws = workspace(m, 33, 3);
    assert_int_equal(eng_workspace_max_cells(ws), 33);
    assert_int_equal(eng_workspace_threads(ws), 3);
    assert_ptr_equal(eng__ws_model(ws), m);
    assert_int_equal(eng__pool_threads(eng__ws_pool(ws)), 3);
    eng_grid *grids = eng__ws_grids(ws);
    assert_non_null(grids);
    memset(grids, 0, 33 * sizeof *grids); /* all max_cells entries are ours */
    for (int t = 0; t < 3; t++) {
        unsigned char *s = eng__ws_scratch(ws, t);
        assert_int_equal((uintptr_t)s % 64, 0);
        memset(s, 0xab, (size_t)4 * v * sizeof(float));
        if (t > 0)
            assert_true(s >= (unsigned char *)eng__ws_scratch(ws, t - 1) + 4 * v * sizeof(float));
    }
    eng_workspace_free(ws);
    eng_workspace_free(NULL);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_parity),
        cmocka_unit_test(test_reference_head_dim_12_dilated_global),
        cmocka_unit_test(test_reference_head_dim_4_radius_0),
        cmocka_unit_test(test_batch_and_threads_do_not_change_a_grid),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_workspace_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
