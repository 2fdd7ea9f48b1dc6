/*
 * test_qgemm.c - the int8 precision (engine/qgemm*.c, engine/q8model.c):
 *   - the scalar kernel equals a plain implementation of MODEL.md section
 *     6.1 written here from the f32 weights (so the packing is checked too),
 *     and the AVX2 and AVX-512 kernels equal the scalar one bit for bit, on
 *     odd shapes, unaligned column ranges and rows of zeros, tiny values,
 *     inf and NaN;
 *   - an int8 forward: a grid's logits do not depend on its batch-mates or
 *     the thread count, and they are bitwise the same with HEPTAPOD_ISA =
 *     scalar, avx2 and avx512 (each in its own process: the test runs
 *     itself with `--dump FILE` under each setting and compares the files);
 *   - parity with the PyTorch reference's int8 fixture (forward_int8.json);
 *   - the load: int8 from metadata or options, eng_model_bytes and
 *     eng_workspace_bytes count the int8 data exactly, and a weight holding
 *     NaN is refused with its name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/isa.h"
#include "engine/qgemm.h"
#include "engine/workspace.h"
#include "tests/engine/test_logits.h"

static const char *fixtures_dir(void)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    return dir && *dir ? dir : "tests/fixtures";
}

static eng_model *load_at(const char *file, int precision)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", fixtures_dir(), file);
    eng_load_opts o = ENG_LOAD_OPTS_INIT;
    o.precision = precision;
    eng_model *m = eng_model_load_opts(path, &o, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float *random_floats(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((rnd() * 2.0 - 1.0) * scale);
    return p;
}

/* --- kernels ---------------------------------------------------------------- */

/* MODEL.md 6.1 literally, from the f32 weights: c += dequant(a w^T). */
static void plain_tile(const float *a, int rows, int k, const float *w, int col0, int cols,
                       float *c, size_t ldc)
{
    for (int r = 0; r < rows; r++) {
        const float *x = a + (size_t)r * k;
        float amax = 0.0f;
        int bad = 0;
        for (int i = 0; i < k; i++) {
            if (!isfinite(x[i])) bad = 1;
            amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        }
        float as = bad ? NAN : amax < 0x1p-100f ? 0.0f : amax / 127.0f;
        float inv = bad || amax < 0x1p-100f ? 0.0f : 127.0f / amax;
        for (int j = 0; j < cols; j++) {
            const float *wr = w + (size_t)(col0 + j) * k;
            float wmax = 0.0f;
            for (int i = 0; i < k; i++)
                wmax = fabsf(wr[i]) > wmax ? fabsf(wr[i]) : wmax;
            float ws = wmax < 0x1p-100f ? 1.0f : wmax / 127.0f;
            int64_t acc = 0;
            for (int i = 0; i < k; i++) {
                float qa = bad ? 0.0f : fminf(fmaxf(x[i] * inv, -127.0f), 127.0f);
                float qw = wmax < 0x1p-100f ? 0.0f : fminf(fmaxf(wr[i] / ws, -127.0f), 127.0f);
                acc += (int64_t)lrintf(qa) * lrintf(qw);
            }
            float s = as * ws;
            float p = (float)acc * s;
            c[(size_t)r * ldc + col0 + j] = c[(size_t)r * ldc + col0 + j] + p;
        }
    }
}

typedef void (*kernel_fn)(const eng__qtile *);

/* Runs kernel on a copy of c0 (rows x out, columns [col0, col0 + cols)). */
static float *run_kernel(kernel_fn kernel, const eng__qmat *q, const float *a, int rows, int col0,
                         int cols, const float *c0)
{
    size_t n = (size_t)rows * q->out;
    float *c = malloc(n * sizeof *c);
    void *scratch = NULL;
    assert_non_null(c);
    memcpy(c, c0, n * sizeof *c);
    assert_int_equal(posix_memalign(&scratch, 64, eng__qscratch_bytes(rows, q->k)), 0);
    eng__qtile t = {.q = q,
                    .rows = rows,
                    .col0 = col0,
                    .cols = cols,
                    .a = a,
                    .lda = (size_t)q->k,
                    .c = c + col0,
                    .ldc = (size_t)q->out,
                    .scratch = scratch};
    kernel(&t);
    free(scratch);
    return c;
}

static void test_kernels_match_reference(void **state)
{
    (void)state;
    /* rows, out, k, col0, cols */
    static const int shapes[][5] = {
        {1, 1, 1, 0, 1},       {5, 17, 3, 0, 17},       {7, 40, 9, 3, 30},   {13, 70, 130, 16, 54},
        {6, 64, 256, 0, 64},   {25, 257, 32, 128, 129}, {12, 33, 5, 32, 1},  {31, 100, 67, 8, 90},
        {64, 96, 1024, 0, 96}, {2, 200, 4, 0, 200},     {11, 48, 48, 20, 8}, {9, 130, 257, 5, 125},
    };
    eng__isa_level isa = eng__isa();
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int rows = shapes[s][0], out = shapes[s][1], k = shapes[s][2];
        int col0 = shapes[s][3], cols = shapes[s][4];
        float *w = random_floats((size_t)out * k, 0.5f);
        float *a = random_floats((size_t)rows * k, 3.0f);
        float *c0 = random_floats((size_t)rows * out, 1.0f);
        /* Special rows: zeros, tiny, one large value, inf, NaN; a zero weight row. */
        if (rows > 3) memset(a + k, 0, (size_t)k * sizeof *a);
        if (rows > 4)
            for (int i = 0; i < k; i++)
                a[2 * k + i] *= 1e-32f;
        if (rows > 5) a[3 * k + k / 2] = 1e6f;
        if (rows > 8) a[4 * k + k - 1] = INFINITY;
        if (rows > 10) a[5 * k] = NAN;
        if (out > 4) memset(w + 2 * (size_t)k, 0, (size_t)k * sizeof *w);

        void *mem = NULL;
        eng__qmat q;
        int bad = -1;
        assert_int_equal(posix_memalign(&mem, 64, eng__qmat_bytes(out, k)), 0);
        assert_int_equal(eng__qmat_pack(&q, w, out, k, mem, &bad), 0);

        float *want = malloc((size_t)rows * out * sizeof *want);
        assert_non_null(want);
        memcpy(want, c0, (size_t)rows * out * sizeof *want);
        plain_tile(a, rows, k, w, col0, cols, want, (size_t)out);
        float *got = run_kernel(eng__qgemm_scalar, &q, a, rows, col0, cols, c0);
        if (memcmp(want, got, (size_t)rows * out * sizeof *got) != 0)
            fail_msg("shape %zu: scalar kernel differs from the plain formula", s);
        kernel_fn fast[] = {eng__qgemm_avx2, eng__qgemm_avx512};
        for (int f = 0; f < 2; f++) {
            if (isa < (f ? ENG__ISA_AVX512 : ENG__ISA_AVX2)) continue;
            float *c = run_kernel(fast[f], &q, a, rows, col0, cols, c0);
            if (memcmp(c, got, (size_t)rows * out * sizeof *c) != 0) {
                for (size_t i = 0; i < (size_t)rows * out; i++)
                    if (memcmp(&c[i], &got[i], sizeof *c))
                        print_message("row %zu col %zu: %.9g vs scalar %.9g\n", i / out, i % out,
                                      c[i], got[i]);
                fail_msg("shape %zu: %s kernel differs from the scalar one", s,
                         f ? "AVX-512" : "AVX2");
            }
            free(c);
        }
        /* Outside the tile's columns nothing moved; inside, something did. */
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < out; j++) {
                size_t i = (size_t)r * out + j;
                if (j < col0 || j >= col0 + cols) assert_memory_equal(&got[i], &c0[i], sizeof *got);
            }
        if (isa < ENG__ISA_AVX512) print_message("shape %zu: AVX-512 kernel not run (CPU)\n", s);
        free(got);
        free(want);
        free(mem);
        free(w);
        free(a);
        free(c0);
    }
}

static void test_pack_refuses_nan(void **state)
{
    (void)state;
    float w[3 * 5] = {0};
    w[2 * 5 + 4] = NAN;
    void *mem = NULL;
    eng__qmat q;
    int bad = -1;
    assert_int_equal(posix_memalign(&mem, 64, eng__qmat_bytes(3, 5)), 0);
    assert_int_equal(eng__qmat_pack(&q, w, 3, 5, mem, &bad), -1);
    assert_int_equal(bad, 2);
    free(mem);
}

/* --- forward ------------------------------------------------------------------ */

static int32_t *tokens_for(int n, int v, int seed)
{
    int32_t *t = malloc((size_t)n * sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(((unsigned)(i + 1) * 2654435761u + (unsigned)seed * 40503u) % (unsigned)v);
    return t;
}

static void test_batch_and_threads_do_not_change_a_grid(void **state)
{
    (void)state;
    eng_model *m = load_at("byte_f32.safetensors", ENG_PRECISION_INT8);
    assert_int_equal(eng_model_precision(m), ENG_PRECISION_INT8);
    int v = eng_model_hparams(m)->vocab_size;
    /* A spans two row tiles (>= 128 cells); the others shift it. */
    eng_grid a = {12, 13, tokens_for(156, v, 1)}, b = {5, 7, tokens_for(35, v, 2)};
    eng_grid c = {1, 1, tokens_for(1, v, 3)}, d = {3, 9, tokens_for(27, v, 4)};
    size_t bytes = sizeof(float) * 156 * (size_t)v;
    float *alone = logits_of(m, &a, 1, 0, 1);
    eng_grid batch1[] = {b, a, c}, batch2[] = {c, d, b, a, d};
    float *runs[] = {logits_of(m, &a, 1, 0, 2), logits_of(m, batch1, 3, 1, 1),
                     logits_of(m, batch1, 3, 1, 2), logits_of(m, batch2, 5, 3, 2)};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        if (memcmp(alone, runs[i], bytes) != 0)
            fail_msg("run %zu: grid A's int8 logits changed with the batch or thread count", i);
        free(runs[i]);
    }
    /* And int8 is not f32 in disguise: the logits differ, a little. */
    eng_model *f = load_at("byte_f32.safetensors", ENG_PRECISION_F32);
    float *exact = logits_of(f, &a, 1, 0, 2);
    double worst = 0.0, zmax = 0.0;
    for (size_t i = 0; i < 156 * (size_t)v; i++) {
        worst = fmax(worst, fabs((double)alone[i] - exact[i]));
        zmax = fmax(zmax, fabs((double)exact[i]));
    }
    print_message("byte_f32 int8 vs f32: max |diff| %.3g, max |z| %.3g\n", worst, zmax);
    assert_true(worst > 0.0 && worst < 0.1 * zmax);
    free(exact);
    eng_model_free(f);
    free(alone);
    free((void *)a.tokens);
    free((void *)b.tokens);
    free((void *)c.tokens);
    free((void *)d.tokens);
    eng_model_free(m);
}

/*
 * The cross-ISA dump: int8 logits of a few grids (one spans three row tiles,
 * one is a single cell) on three fixture models, preceded by the ISA name
 * the process ran with, written raw to path.
 */
static int dump_logits(const char *path)
{
    static const char *const models[] = {"byte_f32.safetensors", "small_f32.safetensors",
                                         "dilated_global.safetensors"};
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    fprintf(f, "%s\n", eng_isa_name());
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        eng_model *m = load_at(models[i], ENG_PRECISION_INT8);
        int v = eng_model_hparams(m)->vocab_size;
        eng_grid g[] = {{20, 30, tokens_for(600, v, 5)},
                        {1, 1, tokens_for(1, v, 6)},
                        {3, 5, tokens_for(15, v, 7)}};
        char err[256];
        eng_workspace *ws = eng_workspace_create(m, 616, 2, err, sizeof err);
        const float *z;
        if (!ws || eng_forward(ws, g, 3, &z) != ENG_OK) return 1;
        fwrite(z, sizeof *z, (size_t)616 * v, f);
        eng_workspace_free(ws);
        for (int j = 0; j < 3; j++)
            free((void *)g[j].tokens);
        eng_model_free(m);
    }
    return fclose(f) != 0;
}

/* The file `self --dump path` writes under HEPTAPOD_ISA=isa, read back. */
static char *dump_under(const char *isa, size_t *len)
{
    char path[] = "/tmp/heptapod-q8-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    /* readlink rather than exec of /proc/self/exe, which under valgrind is
     * valgrind's own tool (readlink is made to give the test's path). */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("HEPTAPOD_ISA", isa, 1);
        execl(self, "test_qgemm", "--dump", path, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("--dump under %s failed", isa);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    char *buf = malloc(*len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    buf[*len] = 0;
    fclose(f);
    unlink(path);
    return buf;
}

static void test_same_bits_on_every_isa(void **state)
{
    (void)state;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    int top = (int)eng__isa();
    size_t len0 = 0;
    char *first = NULL;
    for (int i = 0; i <= top; i++) {
        size_t len;
        char *d = dump_under(isas[i], &len);
        size_t name = strlen(isas[i]);
        /* The child really ran at that level. */
        if (len < name + 1 || memcmp(d, isas[i], name) != 0 || d[name] != '\n')
            fail_msg("the process under HEPTAPOD_ISA=%s reports another ISA", isas[i]);
        if (!first) {
            first = d;
            len0 = len;
            continue;
        }
        size_t off = strlen(isas[0]) + 1;
        if (len - (name + 1) != len0 - off || memcmp(d + name + 1, first + off, len0 - off) != 0)
            fail_msg("int8 logits under HEPTAPOD_ISA=%s differ from scalar's", isas[i]);
        print_message("%s: int8 logits identical to scalar's (%zu bytes)\n", isas[i], len0 - off);
        free(d);
    }
    if (top < ENG__ISA_AVX512) print_message("this CPU stops at %s\n", isas[top]);
    free(first);
}

/* --- fixture ---------------------------------------------------------------- */

static void test_fixture_parity(void **state)
{
    (void)state;
    char path[512];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/forward_int8.json", fixtures_dir());
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    /* The checkpoint asks for int8 in its metadata. */
    char mpath[512], err[256];
    snprintf(mpath, sizeof mpath, "%s/%s", fixtures_dir(),
             json_string_value(json_object_get(root, "model")));
    eng_model *m = eng_model_load(mpath, err, sizeof err);
    if (!m) fail_msg("%s", err);
    assert_int_equal(eng_model_precision(m), ENG_PRECISION_INT8);
    int v = eng_model_hparams(m)->vocab_size;
    json_t *grids = json_object_get(root, "grids"), *want = json_object_get(root, "logits");
    int n = (int)json_array_size(grids), cells = 0;
    eng_grid g[16];
    assert_true(n >= 1 && n <= 16);
    for (int i = 0; i < n; i++) {
        json_t *rows = json_array_get(grids, i);
        int h = (int)json_array_size(rows), w = (int)json_array_size(json_array_get(rows, 0));
        int32_t *t = malloc((size_t)h * w * sizeof *t);
        assert_non_null(t);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                t[y * w + x] =
                    (int32_t)json_integer_value(json_array_get(json_array_get(rows, y), x));
        g[i] = (eng_grid){h, w, t};
        cells += h * w;
    }
    eng_workspace *ws = eng_workspace_create(m, cells, 2, err, sizeof err);
    assert_non_null(ws);
    const float *z;
    assert_int_equal(eng_forward(ws, g, n, &z), ENG_OK);
    double worst = 0.0, tol = json_number_value(json_object_get(root, "tolerance"));
    assert_true(tol > 0.0);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < g[i].height; y++)
            for (int x = 0; x < g[i].width; x++) {
                json_t *cell = json_array_get(json_array_get(json_array_get(want, i), y), x);
                assert_int_equal(json_array_size(cell), v);
                for (int j = 0; j < v; j++)
                    worst = fmax(worst, fabs(z[j] - json_number_value(json_array_get(cell, j))));
                z += v;
            }
    print_message("%s: max |diff| %.3g (tolerance %.3g)\n", path, worst, tol);
    if (!(worst <= tol))
        fail_msg("int8 logits differ from the reference by %.3g > %.3g", worst, tol);
    for (int i = 0; i < n; i++)
        free((void *)g[i].tokens);
    eng_workspace_free(ws);
    eng_model_free(m);
    json_decref(root);
}

/* --- load and sizes ----------------------------------------------------------- */

static void test_bytes_are_exact(void **state)
{
    (void)state;
    eng_model *f = load_at("byte_f32.safetensors", ENG_PRECISION_F32);
    eng_model *q = load_at("byte_f32.safetensors", ENG_PRECISION_INT8);
    const eng_hparams *hp = eng_model_hparams(q);
    int d = hp->dim, ff = hp->mlp_hidden, v = hp->vocab_size;
    size_t per_block = eng__qmat_bytes(3 * d, d) + eng__qmat_bytes(d, d) + eng__qmat_bytes(ff, d) +
                       eng__qmat_bytes(d, ff);
    size_t n = (size_t)hp->depth * 4 + 1;
    size_t want = hp->depth * per_block + eng__qmat_bytes(v, d) + n * sizeof(eng__qmat);
    assert_int_equal(eng_model_bytes(q) - eng_model_bytes(f), want);
    /* The workspace adds one scratch per thread, for min(cells, 256) rows of max(D, F),
     * and its tag. */
    int kmax = d > ff ? d : ff;
    for (int threads = 1; threads <= 3; threads++) {
        size_t s100 = (ENG__QTAG + eng__qscratch_bytes(100, kmax)) * threads;
        size_t s256 = (ENG__QTAG + eng__qscratch_bytes(256, kmax)) * threads;
        assert_int_equal(eng_workspace_bytes(q, 100, threads) -
                             eng_workspace_bytes(f, 100, threads),
                         (s100 + 63) / 64 * 64);
        assert_int_equal(eng_workspace_bytes(q, 5000, threads) -
                             eng_workspace_bytes(f, 5000, threads),
                         (s256 + 63) / 64 * 64);
    }
    eng_model_free(f);
    eng_model_free(q);
}

/* small_f32 with a NaN in head.weight row 3: f32 loads it, int8 names it. */
static void test_nan_weight_is_refused(void **state)
{
    (void)state;
    char src[512], dst[] = "/tmp/heptapod-q8-nan-XXXXXX", err[256];
    snprintf(src, sizeof src, "%s/small_f32.safetensors", fixtures_dir());
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    rewind(f);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, len, f), len);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    json_error_t jerr;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hlen, 0, &jerr);
    assert_non_null(h);
    json_t *e = json_object_get(h, "head.weight");
    size_t begin =
        (size_t)json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
    int d = (int)json_integer_value(json_array_get(json_object_get(e, "shape"), 1));
    float nan = NAN;
    memcpy(buf + 8 + hlen + begin + (size_t)(3 * d + 1) * sizeof(float), &nan, sizeof nan);
    json_decref(h);
    int fd = mkstemp(dst);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);

    eng_load_opts o = ENG_LOAD_OPTS_INIT;
    o.precision = ENG_PRECISION_F32;
    eng_model *m = eng_model_load_opts(dst, &o, err, sizeof err);
    assert_non_null(m);
    eng_model_free(m);
    o.precision = ENG_PRECISION_INT8;
    assert_null(eng_model_load_opts(dst, &o, err, sizeof err));
    print_message("refused: %s\n", err);
    assert_non_null(strstr(err, "head.weight row 3 holds inf or NaN"));
    assert_non_null(strstr(err, dst));
    unlink(dst);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump_logits(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_pack_refuses_nan),
        cmocka_unit_test(test_batch_and_threads_do_not_change_a_grid),
        cmocka_unit_test(test_same_bits_on_every_isa),
        cmocka_unit_test(test_fixture_parity),
        cmocka_unit_test(test_bytes_are_exact),
        cmocka_unit_test(test_nan_weight_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
