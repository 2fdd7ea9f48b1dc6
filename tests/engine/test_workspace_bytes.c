/*
 * test_workspace_bytes.c - eng_workspace_bytes and eng_model_bytes, the
 * sizes the daemon checks against its memory limit before it allocates:
 * per cell the workspace grows by exactly its per-cell buffers (workspace.h),
 * a converted checkpoint counts its converted tensors, and impossible
 * arguments give SIZE_MAX rather than a small number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/eng.h"

static eng_model *load(const char *file)
{
    char path[256], err[256];
    snprintf(path, sizeof path, "tests/fixtures/%s", file);
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

static size_t file_size(const char *file)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "tests/fixtures/%s", file);
    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static void test_workspace_grows_per_cell(void **state)
{
    eng_model *m = load("byte_f32.safetensors");
    const eng_hparams *hp = eng_model_hparams(m);
    size_t d = (size_t)hp->dim, f = (size_t)hp->mlp_hidden, v = (size_t)hp->vocab_size;
    size_t big = 3 * d > f ? 3 * d : f;
    /* h, u, big, qkv (3 D), logits; three index arrays; one eng_grid. */
    size_t per_cell =
        (2 * d + big + 3 * d + v) * sizeof(float) + 3 * sizeof(int32_t) + sizeof(eng_grid);
    size_t n = 1 << 14;
    size_t a = eng_workspace_bytes(m, (int)n, 2), b = eng_workspace_bytes(m, (int)(2 * n), 2);
    assert_true(a < b);
    /* Each buffer rounds up to 64 bytes: at most 12 x 64 apart. */
    size_t slope = b - a;
    if (slope + 12 * 64 < n * per_cell || slope > n * per_cell + 12 * 64)
        fail_msg("%zu more bytes for %zu more cells, want %zu per cell", slope, n, per_cell);
    /* More threads: more scratch only. */
    assert_true(eng_workspace_bytes(m, (int)n, 8) > a);
    assert_true(eng_workspace_bytes(m, (int)n, 8) - a < 6 * 4 * v * sizeof(float) + 6 * 64);
    /* The largest max_batch_cells is a large but finite number. */
    size_t huge = eng_workspace_bytes(m, 16777216, 2);
    assert_true(huge != SIZE_MAX && huge > (size_t)16777216 * per_cell);
    /* A workspace really made of a size is possible (and freed). */
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, 64, 1, err, sizeof err);
    assert_non_null(ws);
    eng_workspace_free(ws);
    eng_model_free(m);
}

static void test_refused_arguments(void **state)
{
    eng_model *m = load("byte_f32.safetensors");
    assert_int_equal(eng_workspace_bytes(m, 0, 1), SIZE_MAX);
    assert_int_equal(eng_workspace_bytes(m, 10, 0), SIZE_MAX);
    assert_int_equal(eng_workspace_bytes(NULL, 10, 1), SIZE_MAX);
    eng_model_free(m);
}

static void test_model_bytes(void **state)
{
    /* F32: used in place, the mapped file is the model. */
    eng_model *m = load("small_f32.safetensors");
    assert_int_equal(eng_model_bytes(m), file_size("small_f32.safetensors"));
    eng_model_free(m);
    /* F16: the file plus every weight converted to F32 (twice its bytes). */
    m = load("small_f16.safetensors");
    size_t fs = file_size("small_f16.safetensors");
    assert_true(eng_model_bytes(m) > fs + fs / 2);
    assert_true(eng_model_bytes(m) < 3 * fs);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workspace_grows_per_cell),
        cmocka_unit_test(test_refused_arguments),
        cmocka_unit_test(test_model_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
