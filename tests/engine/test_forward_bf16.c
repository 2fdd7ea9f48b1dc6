/*
 * test_forward_bf16.c - the bf16 precision of a model (engine/bgemm.c
 * through the loader and the forward pass):
 *   - loading with precision bf16 (option and checkpoint metadata), the
 *     packed weights, the model's bytes and the workspace's scratch;
 *   - the forward pass against the PyTorch reference's bf16 logits
 *     (tests/fixtures/precision_bf16_*.json: largest and mean difference
 *     within the file's tolerances), printing how far bf16 is from f32;
 *   - a grid's logits bitwise the same alone or batched, on 1 or 2 threads,
 *     with several column blocks and blocks starting inside a group of 16.
 * The kernels themselves are test_bgemm.c's.
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

#include "engine/bgemm.h"
#include "engine/workspace.h"
#include "tests/engine/ckpt_harness.h"

#include "tests/engine/test_rand.h"
#include "tests/engine/test_logits.h"

/* --- loading ---------------------------------------------------------------- */

static eng_model *load_fixture(const char *file, int precision)
{
    char p[512], e[256];
    snprintf(p, sizeof p, "tests/fixtures/%s", file);
    eng_load_opts o = ENG_LOAD_OPTS_INIT;
    o.precision = precision;
    eng_model *m = eng_model_load_opts(p, &o, e, sizeof e);
    if (!m) fail_msg("%s", e);
    return m;
}

static void test_load_bf16(void **state)
{
    (void)state;
    eng_model *f = load_fixture("small_f32.safetensors", ENG_PRECISION_F32);
    eng_model *b = load_fixture("small_f32.safetensors", ENG_PRECISION_BF16);
    assert_int_equal(eng_model_precision(f), ENG_PRECISION_F32);
    assert_int_equal(eng_model_precision(b), ENG_PRECISION_BF16);
    const eng_hparams *hp = eng_model_hparams(b);
    int d = hp->dim, ff = hp->mlp_hidden;
    size_t packed =
        (size_t)hp->depth * (eng__bgemm_packed_bytes(3 * d, d) + eng__bgemm_packed_bytes(d, d) +
                             eng__bgemm_packed_bytes(ff, d) + eng__bgemm_packed_bytes(d, ff)) +
        eng__bgemm_packed_bytes(hp->vocab_size, d);
    assert_int_equal(eng_model_bytes(b), eng_model_bytes(f) + packed);
    /* The packed head is the rounded head. */
    const uint32_t *head = eng__bgemm_weight(b, ENG__MAT_HEAD, 0);
    const float *hw = b->head_w;
    assert_int_equal(head[16 * 1 + 2] & 0xffff, eng__bf16_round(hw[2 * d + 2]));
    assert_int_equal(head[16 * 1 + 2] >> 16, eng__bf16_round(hw[2 * d + 3]));
    const uint32_t *fc2 = eng__bgemm_weight(b, ENG__MAT_FC2, 1);
    int kp = (ff + 1) / 2;
    assert_int_equal(fc2[(size_t)(1 * kp + 5) * 16 + 3] & 0xffff,
                     eng__bf16_round(b->layers[1].fc2_w[(size_t)19 * ff + 10]));

    /* The workspace adds a scratch of rows in bf16 per thread, and nothing else. */
    size_t sf = eng_workspace_bytes(f, 1000, 3), sb = eng_workspace_bytes(b, 1000, 3);
    int k = ff > d ? ff : d;
    assert_int_equal(sb - sf, 3 * eng__bgemm_scratch_bytes(ENG__TILE_ROWS, k));
    assert_int_equal(eng_workspace_bytes(b, 10, 2) - eng_workspace_bytes(f, 10, 2),
                     2 * eng__bgemm_scratch_bytes(10, k));
    eng_model_free(f);
    eng_model_free(b);
}

static void test_metadata_precision(void **state)
{
    (void)state;
    wspec s;
    w_init(&s, 2, "F32");
    w_set(&s, "precision", "bf16");
    eng_model *m = load_ok(&s);
    assert_int_equal(eng_model_precision(m), ENG_PRECISION_BF16);
    assert_non_null(m->bf16);
    eng_model_free(m);
    /* The caller's choice wins over the metadata. */
    snprintf(path, sizeof path, "%s/meta.safetensors", tmpdir);
    w_write(&s, path);
    eng_load_opts o = ENG_LOAD_OPTS_INIT;
    o.precision = ENG_PRECISION_F32;
    m = eng_model_load_opts(path, &o, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(eng_model_precision(m), ENG_PRECISION_F32);
    assert_null(m->bf16);
    eng_model_free(m);
    unlink(path);
    /* BF16-stored weights at precision bf16: rounding them again changes nothing. */
    w_init(&s, 1, "BF16");
    w_set(&s, "precision", "bf16");
    m = load_ok(&s);
    const uint32_t *qkv = eng__bgemm_weight(m, ENG__MAT_QKV, 0);
    assert_int_equal(qkv[16 + 1], eng__bf16_round(m->layers[0].qkv_w[8 + 2]) |
                                      (uint32_t)eng__bf16_round(m->layers[0].qkv_w[8 + 3]) << 16);
    eng_model_free(m);
    w_set(&s, "precision", "bf17");
    EXPECT_REFUSED(&s, "precision", "bf17");
}

/* --- the forward pass ---------------------------------------------------------- */

/* One precision_bf16_*.json file: its grids in one call on 2 threads. */
static void check_fixture(const char *file)
{
    json_error_t jerr;
    json_t *root = json_load_file(file, 0, &jerr);
    if (!root) fail_msg("%s:%d: %s", file, jerr.line, jerr.text);
    assert_string_equal(json_string_value(json_object_get(root, "precision")), "bf16");
    eng_model *m =
        load_fixture(json_string_value(json_object_get(root, "model")), ENG_PRECISION_BF16);
    int v = eng_model_hparams(m)->vocab_size;
    double tol = json_number_value(json_object_get(root, "tolerance"));
    double mean_tol = json_number_value(json_object_get(root, "mean_tolerance"));
    assert_true(tol > 0.0 && mean_tol > 0.0);
    json_t *grids = json_object_get(root, "grids"), *want = json_object_get(root, "logits");
    int n = (int)json_array_size(grids), cells = 0;
    eng_grid g[16];
    int32_t *tok[16];
    assert_true(n >= 1 && n <= 16);
    for (int i = 0; i < n; i++) {
        json_t *rows = json_array_get(grids, i);
        int h = (int)json_array_size(rows), w = (int)json_array_size(json_array_get(rows, 0));
        tok[i] = malloc(sizeof(int32_t) * h * w);
        assert_non_null(tok[i]);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                tok[i][y * w + x] =
                    (int32_t)json_integer_value(json_array_get(json_array_get(rows, y), x));
        g[i] = (eng_grid){.height = h, .width = w, .tokens = tok[i]};
        cells += h * w;
    }
    eng_workspace *ws = eng_workspace_create(m, cells, 2, err, sizeof err);
    assert_non_null(ws);
    const float *z;
    assert_int_equal(eng_forward(ws, g, n, &z), ENG_OK);
    double worst = 0.0, sum = 0.0;
    const float *zz = z;
    for (int i = 0; i < n; i++)
        for (int y = 0; y < g[i].height; y++)
            for (int x = 0; x < g[i].width; x++, zz += v) {
                json_t *cell = json_array_get(json_array_get(json_array_get(want, i), y), x);
                assert_int_equal(json_array_size(cell), v);
                for (int j = 0; j < v; j++) {
                    double e = fabs(zz[j] - json_number_value(json_array_get(cell, j)));
                    worst = e > worst ? e : worst;
                    sum += e;
                }
            }
    double mean = sum / ((double)cells * v);
    print_message("%s (%s): %d grids, max |diff| %.3g (tolerance %.3g), mean %.3g (%.3g)\n", file,
                  eng_isa_name(), n, worst, tol, mean, mean_tol);
    if (!(worst <= tol)) fail_msg("%s: max |diff| %.3g > %.3g", file, worst, tol);
    if (!(mean <= mean_tol)) fail_msg("%s: mean |diff| %.3g > %.3g", file, mean, mean_tol);
    /* For the record: how far bf16 is from f32 on these grids. */
    eng_model *m32 =
        load_fixture(json_string_value(json_object_get(root, "model")), ENG_PRECISION_F32);
    eng_workspace *ws32 = eng_workspace_create(m32, cells, 2, err, sizeof err);
    assert_non_null(ws32);
    const float *z32;
    assert_int_equal(eng_forward(ws32, g, n, &z32), ENG_OK);
    double dmax = 0.0, zmax = 0.0;
    for (size_t i = 0; i < (size_t)cells * v; i++) {
        dmax = fabs(z[i] - z32[i]) > dmax ? fabs(z[i] - z32[i]) : dmax;
        zmax = fabs(z32[i]) > zmax ? fabs(z32[i]) : zmax;
    }
    print_message("  engine bf16 vs f32: max |diff| %.3g, %.3g of max|Z|\n", dmax, dmax / zmax);
    eng_workspace_free(ws32);
    eng_model_free(m32);
    eng_workspace_free(ws);
    for (int i = 0; i < n; i++)
        free(tok[i]);
    eng_model_free(m);
    json_decref(root);
}

static void test_fixtures(void **state)
{
    (void)state;
    glob_t gl;
    if (glob("tests/fixtures/precision_bf16_*.json", 0, NULL, &gl) != 0)
        fail_msg("no tests/fixtures/precision_bf16_*.json");
    for (size_t i = 0; i < gl.gl_pathc; i++)
        check_fixture(gl.gl_pathv[i]);
    globfree(&gl);
}

static float *fill(float *p, size_t n, float mean, float sd)
{
    for (size_t i = 0; i < n; i++)
        p[i] = mean + sd * gauss();
    return p;
}

/* A model built in memory: weights N(0, sd), LayerNorm weights 1, biases 0. */
typedef struct built {
    eng_model m;
    float *mem;
} built;

static built *build(int v, int d, int heads, int f, int depth)
{
    built *b = calloc(1, sizeof *b);
    assert_non_null(b);
    size_t per = (size_t)3 * d * d + 3 * d + (size_t)d * d + d + 2 * (size_t)f * d + f + d + 4 * d;
    size_t total = 2 * (size_t)v * d + v + 2 * d + per * depth, used = 0;
    b->mem = malloc(sizeof(float) * total);
    b->m.window = malloc(sizeof(int) * depth);
    b->m.dilation = malloc(sizeof(int) * depth);
    b->m.layers = calloc((size_t)depth, sizeof *b->m.layers);
    assert_true(b->mem && b->m.window && b->m.dilation && b->m.layers);
#define TAKE(n, mean, sd) (used += (n), fill(b->mem + used - (n), (n), mean, sd))
    for (int l = 0; l < depth; l++) {
        b->m.window[l] = l % 2 ? ENG_WINDOW_GLOBAL : 2;
        b->m.dilation[l] = 1;
    }
    b->m.hp = (eng_hparams){.vocab_size = v,
                            .dim = d,
                            .depth = depth,
                            .heads = heads,
                            .head_dim = d / heads,
                            .mlp_hidden = f,
                            .max_height = 32,
                            .max_width = 32,
                            .tokenizer = ENG_TOKENIZER_NONE,
                            .rope_base = 10000.0f,
                            .norm_eps = 1e-5f,
                            .window = b->m.window,
                            .dilation = b->m.dilation};
    b->m.precision = ENG_PRECISION_BF16;
    b->m.tok_emb = TAKE((size_t)v * d, 0.0f, 1.0f);
    for (int l = 0; l < depth; l++) {
        eng_layer *ly = &b->m.layers[l];
        ly->norm1_w = TAKE((size_t)d, 1.0f, 0.0f);
        ly->norm1_b = TAKE((size_t)d, 0.0f, 0.0f);
        ly->qkv_w = TAKE((size_t)3 * d * d, 0.0f, 0.2f);
        ly->qkv_b = TAKE((size_t)3 * d, 0.0f, 0.02f);
        ly->proj_w = TAKE((size_t)d * d, 0.0f, 0.05f);
        ly->proj_b = TAKE((size_t)d, 0.0f, 0.02f);
        ly->norm2_w = TAKE((size_t)d, 1.0f, 0.0f);
        ly->norm2_b = TAKE((size_t)d, 0.0f, 0.0f);
        ly->fc1_w = TAKE((size_t)f * d, 0.0f, 0.1f);
        ly->fc1_b = TAKE((size_t)f, 0.0f, 0.02f);
        ly->fc2_w = TAKE((size_t)d * f, 0.0f, 0.05f);
        ly->fc2_b = TAKE((size_t)d, 0.0f, 0.02f);
    }
    b->m.norm_w = TAKE((size_t)d, 1.0f, 0.0f);
    b->m.norm_b = TAKE((size_t)d, 0.0f, 0.0f);
    b->m.head_w = TAKE((size_t)v * d, 0.0f, 0.1f);
    b->m.head_b = TAKE((size_t)v, 0.0f, 0.02f);
#undef TAKE
    assert_true(used <= total);
    assert_int_equal(eng__bgemm_prepare(&b->m), ENG_OK);
    return b;
}

static void build_free(built *b)
{
    free(b->mem);
    free(b->m.bf16);
    free(b->m.window);
    free(b->m.dilation);
    free(b->m.layers);
    free(b);
}

static int32_t *tokens(int n, int v)
{
    int32_t *t = malloc(sizeof *t * n);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(rnd() * v);
    return t;
}

static void check_independence(const eng_model *m)
{
    int v = m->hp.vocab_size;
    /* A spans two row tiles, neither a multiple of the register blocks. */
    eng_grid a = {15, 11, tokens(165, v)}, b = {5, 7, tokens(35, v)}, c = {1, 1, tokens(1, v)};
    eng_grid d = {3, 9, tokens(27, v)};
    size_t bytes = sizeof(float) * 165 * v;
    float *alone = logits_of(m, &a, 1, 0, 1);
    for (int i = 0; i < 165 * v; i++)
        assert_true(isfinite(alone[i]));
    eng_grid batch1[] = {b, a, c}, batch2[] = {c, d, b, a, d};
    float *runs[] = {logits_of(m, &a, 1, 0, 2), logits_of(m, batch1, 3, 1, 1),
                     logits_of(m, batch1, 3, 1, 2), logits_of(m, batch2, 5, 3, 2),
                     logits_of(m, batch2, 5, 3, 1)};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        if (memcmp(alone, runs[i], bytes) != 0)
            fail_msg("run %zu: grid A's bf16 logits changed with the batch or thread count", i);
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
    eng_model *m = load_fixture("small_f32.safetensors", ENG_PRECISION_BF16);
    check_independence(m);
    eng_model_free(m);
    /* Several column blocks for qkv, fc1 and the head; head dim 12, so that
     * qkv blocks start inside a group of 16 columns; F and V not multiples
     * of 16. */
    built *b = build(300, 228, 19, 600, 2);
    check_independence(&b->m);
    build_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_bf16),
        cmocka_unit_test(test_metadata_precision),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_batch_and_threads_do_not_change_a_grid),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
