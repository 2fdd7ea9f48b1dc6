/*
 * test_kernels_isa.c - the instruction-set paths of the fast kernels
 * (engine/kernels_scalar.c, kernels_avx2.c, kernels_avx512.c) give the same
 * bits: each kernel on the same random inputs, compared byte for byte
 * across every path this CPU runs; the dispatch honours HEPTAPOD_ISA; and
 * whole forward passes of the fixture models, each run in a child process
 * under HEPTAPOD_ISA=scalar, avx2 and avx512, give identical logits.
 *
 * A path the CPU lacks is skipped with a message (test_kernels.c holds each
 * path against the plain references).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/kernels.h"
#include "engine/simd.h"
#include "engine/vmath.h"

#define TEST_RAND_SEED 0x2545f4914f6cdd1dull
#include "tests/engine/test_rand.h"

static float *copy_floats(const float *x, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static int kernel_sets(const eng__kernel_set *out[3])
{
    int n = 0;
    for (int l = ENG__ISA_SCALAR; l <= ENG__ISA_AVX512; l++)
        if (eng__kernels_at((eng__isa_level)l)) out[n++] = eng__kernels_at((eng__isa_level)l);
    if (n < 3) print_message("only %d of 3 instruction-set paths run on this CPU\n", n);
    return n;
}

/* Bytes of a and b equal, or a failure naming the kernel and the paths. */
static void same_bits(const char *what, const eng__kernel_set *x, const eng__kernel_set *y,
                      const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0)
            fail_msg("%s: %s and %s differ at %zu: %a vs %a", what, x->isa, y->isa, i, (double)a[i],
                     (double)b[i]);
}

static void test_gelu_and_bias_same_bits(void **state)
{
    (void)state;
    const eng__kernel_set *ks[3];
    int nk = kernel_sets(ks);
    int sizes[] = {1, 7, 8, 15, 16, 17, 33, 1024, 4099};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *x = random_floats((size_t)n, 3.0f), *b = random_floats((size_t)n, 1.0f);
        if (n > 4) x[3] = -INFINITY, x[4] = 1e30f;
        /* GELU by the scalar formula of vmath.h, which every path must equal. */
        float *want = copy_floats(x, (size_t)n);
        for (int i = 0; i < n; i++)
            want[i] = 0.5f * want[i] * (1.0f + eng__erf(want[i] * 0.70710678118654752f));
        for (int k = 0; k < nk; k++) {
            float *g = copy_floats(x, (size_t)n);
            ks[k]->gelu(g, n);
            same_bits("gelu", ks[k], ks[0], g, want, (size_t)n);
            float *a = copy_floats(x, (size_t)n), *a0 = copy_floats(x, (size_t)n);
            ks[k]->add_bias(a, b, n);
            ks[0]->add_bias(a0, b, n);
            same_bits("add_bias", ks[k], ks[0], a, a0, (size_t)n);
            free(g);
            free(a);
            free(a0);
        }
        free(x);
        free(b);
        free(want);
    }
}

/* The vector exp and erf of simd.h are vmath.h's scalar ones to the bit
 * (here compiled for the baseline, ENG__VW lanes; the paths then agree
 * through the kernels that use them). */
static void test_vector_math_is_the_scalar_math(void **state)
{
    (void)state;
    enum { W = ENG__VW };
    float x[W], e[W], r[W];
    for (int i = -1200000; i < 1200000; i += W) {
        for (int t = 0; t < W; t++)
            x[t] = (float)(i + t) * 1e-4f * (float)(1 + (t & 3));
        eng__vf v;
        memcpy(&v, x, sizeof v);
        eng__vf en = eng__vexp(-0.0f - v * v), ef = eng__verf_v(v);
        memcpy(e, &en, sizeof e);
        memcpy(r, &ef, sizeof r);
        for (int t = 0; t < W; t++) {
            float want_e = eng__vexp_neg(-0.0f - x[t] * x[t]), want_r = eng__verf(x[t]);
            if (memcmp(&e[t], &want_e, sizeof want_e) != 0 || memcmp(&r[t], &want_r, sizeof want_r))
                fail_msg("x = %a: exp %a vs %a, erf %a vs %a", (double)x[t], (double)e[t],
                         (double)want_e, (double)r[t], (double)want_r);
        }
    }
    /* exp is defined for x <= 0 (and NaN); erf everywhere. */
    float odd_e[16] = {NAN,     -INFINITY, -87.5f, -1000.0f, 0.0f,   -0.0f,  -3.9f,  -4.0f,
                       -1e-30f, -88.0f,    -1.0f,  -0.5f,    -20.0f, -50.0f, -86.9f, -87.0f};
    float odd_r[16] = {NAN,   INFINITY, -INFINITY, -87.5f, -1000.0f, 0.0f,  -0.0f,  3.9f,
                       -3.9f, 4.0f,     -4.0f,     1e-30f, -1e-30f,  88.0f, -88.0f, 1.0f};
    for (int k = 0; k < 16; k += W) {
        eng__vf ve, vr;
        memcpy(&ve, odd_e + k, sizeof ve);
        memcpy(&vr, odd_r + k, sizeof vr);
        eng__vf en = eng__vexp(ve), ef = eng__verf_v(vr);
        memcpy(e, &en, sizeof e);
        memcpy(r, &ef, sizeof r);
        for (int t = 0; t < W; t++) {
            float want_e = eng__vexp_neg(odd_e[k + t]), want_r = eng__verf(odd_r[k + t]);
            assert_memory_equal(&e[t], &want_e, sizeof want_e);
            assert_memory_equal(&r[t], &want_r, sizeof want_r);
        }
    }
}

static void test_layernorm_same_bits(void **state)
{
    (void)state;
    const eng__kernel_set *ks[3];
    int nk = kernel_sets(ks);
    int sizes[] = {1, 3, 8, 13, 16, 24, 32, 256, 1000, 1024};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *x = random_floats((size_t)n, 3.0f), *w = random_floats((size_t)n, 0.1f);
        float *b = random_floats((size_t)n, 0.1f), *bias = random_floats((size_t)n, 0.5f);
        float *y0 = random_floats((size_t)n, 1.0f), *h0 = copy_floats(x, (size_t)n);
        ks[0]->layernorm(x, y0, w, b, n, 1e-5f);
        for (int k = 0; k < nk; k++) {
            float *y = random_floats((size_t)n, 1.0f);
            ks[k]->layernorm(x, y, w, b, n, 1e-5f);
            same_bits("layernorm", ks[k], ks[0], y, y0, (size_t)n);
            /* bias_layernorm is add_bias then layernorm, to the bit. */
            float *h = copy_floats(x, (size_t)n), *yb = random_floats((size_t)n, 1.0f);
            float *h2 = copy_floats(x, (size_t)n), *y2 = random_floats((size_t)n, 1.0f);
            ks[k]->bias_layernorm(h, bias, yb, w, b, n, 1e-5f);
            ks[0]->add_bias(h2, bias, n);
            ks[0]->layernorm(h2, y2, w, b, n, 1e-5f);
            same_bits("bias_layernorm h", ks[k], ks[0], h, h2, (size_t)n);
            same_bits("bias_layernorm y", ks[k], ks[0], yb, y2, (size_t)n);
            free(y);
            free(h);
            free(yb);
            free(h2);
            free(y2);
        }
        free(x);
        free(w);
        free(b);
        free(bias);
        free(y0);
        free(h0);
    }
}

static void test_rope_same_bits(void **state)
{
    (void)state;
    const eng__kernel_set *ks[3];
    int nk = kernel_sets(ks);
    int dims[] = {4, 8, 12, 16, 32, 64, 96, 128};
    int positions = 40;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        int dh = dims[di];
        size_t nf = (size_t)dh / 4;
        float *ct = malloc(positions * nf * sizeof *ct), *st = malloc(positions * nf * sizeof *st);
        assert_non_null(ct);
        assert_non_null(st);
        eng__rope_tables(ct, st, positions, dh, 10000.0f);
        for (int trial = 0; trial < 20; trial++) {
            int y = (int)(rnd() * positions), x = (int)(rnd() * positions);
            float *t = random_floats((size_t)dh, 1.0f);
            float *o0 = random_floats((size_t)dh, 1.0f);
            ks[0]->rope_store(o0, t, dh, y, x, ct, st);
            for (int k = 0; k < nk; k++) {
                float *o = random_floats((size_t)dh, 1.0f), *in = copy_floats(t, (size_t)dh);
                ks[k]->rope_store(o, t, dh, y, x, ct, st);
                same_bits("rope_store", ks[k], ks[0], o, o0, (size_t)dh);
                ks[k]->rope_store(in, in, dh, y, x, ct, st);
                same_bits("rope in place", ks[k], ks[0], in, o0, (size_t)dh);
                free(o);
                free(in);
            }
            free(t);
            free(o0);
        }
        free(ct);
        free(st);
    }
}

static void test_attention_same_bits(void **state)
{
    (void)state;
    const eng__kernel_set *ks[3];
    int nk = kernel_sets(ks);
    struct {
        int h, w, dh, r, d, ld_extra;
    } cases[] = {
        {1, 1, 8, 3, 1, 0},
        {1, 9, 16, 2, 1, 0},
        {9, 1, 16, 2, 1, 5},
        {5, 7, 8, 0, 1, 0},
        {7, 9, 32, 3, 1, 0},
        {6, 5, 12, 20, 1, 0},
        {9, 11, 16, 2, 2, 0},
        {10, 7, 4, 1, 3, 4},
        {4, 6, 16, ENG_WINDOW_GLOBAL, 1, 0},
        {2, 150, 8, ENG_WINDOW_GLOBAL, 1, 0},
        {3, 140, 8, 40, 1, 0},
        {8, 8, 16, ENG_WINDOW_GLOBAL, 1, 0},
        {5, 13, 16, ENG_WINDOW_GLOBAL, 1, 0},
        {32, 32, 32, 3, 1, 0},
        {16, 16, 32, 3, 1, 64},
        {6, 9, 64, 2, 1, 0},
        {5, 4, 20, 1, 1, 0},
        {4, 7, 72, 2, 2, 0},
        {3, 3, 128, 1, 1, 0},
        {4, 5, 48, 2, 1, 0},
        {3, 20, 24, ENG_WINDOW_GLOBAL, 1, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t cells = (size_t)cases[ci].h * cases[ci].w;
        size_t ld = (size_t)(cases[ci].dh + cases[ci].ld_extra), ldo = (size_t)cases[ci].dh + 1;
        float *q = random_floats(cells * ld, 1.5f), *kk = random_floats(cells * ld, 1.5f);
        float *v = random_floats(cells * ld, 1.0f);
        float *out0 = random_floats(cells * ldo, 1.0f);
        eng__attn a = {.q = q,
                       .k = kk,
                       .v = v,
                       .ld = ld,
                       .out = out0,
                       .ldo = ldo,
                       .height = cases[ci].h,
                       .width = cases[ci].w,
                       .head_dim = cases[ci].dh,
                       .radius = cases[ci].r,
                       .dilation = cases[ci].d};
        ks[0]->attention(&a, 0, (int)cells);
        for (int k = 0; k < nk; k++) {
            float *out = copy_floats(out0, cells * ldo);
            for (size_t i = 0; i < cells; i++) /* rows rewritten, gaps kept */
                memset(out + i * ldo, 0xff, (size_t)cases[ci].dh * sizeof *out);
            a.out = out;
            int split = (int)(cells / 2);
            ks[k]->attention(&a, 0, split);
            ks[k]->attention(&a, split, (int)cells);
            char what[64];
            snprintf(what, sizeof what, "attention case %zu", ci);
            same_bits(what, ks[k], ks[0], out, out0, cells * ldo);
            free(out);
        }
        free(q);
        free(kk);
        free(v);
        free(out0);
    }
}

/* --- the dispatch, through child processes ------------------------------------ */

/* FNV-1a over the bytes of n floats. */
static uint64_t hash_floats(const float *z, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *p = (const unsigned char *)z;
    for (size_t i = 0; i < n * sizeof *z; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/*
 * The child: prints the kernel set eng__kernels() chose, then for each
 * model given the hash of its logits on a batch of two square grids (6x6
 * and 3x3, fixed tokens; square, which every architecture takes) on 2
 * threads.
 */
static int child(int argc, char **argv)
{
    printf("%s", eng__kernels()->isa);
    for (int i = 2; i < argc; i++) {
        char err[256];
        eng_model *m = eng_model_load(argv[i], err, sizeof err);
        if (!m) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        const eng_hparams *hp = eng_model_hparams(m);
        enum { CELLS = 36 + 9 };
        int32_t tok[CELLS];
        for (int c = 0; c < CELLS; c++)
            tok[c] = (int32_t)((c * 7 + 3) % hp->vocab_size);
        eng_grid g[2] = {{.height = 6, .width = 6, .tokens = tok},
                         {.height = 3, .width = 3, .tokens = tok + 36}};
        eng_workspace *ws = eng_workspace_create(m, CELLS, 2, err, sizeof err);
        const float *z;
        int rc = ws ? eng_forward(ws, g, 2, &z) : ENG_ENOMEM;
        if (rc != ENG_OK) {
            fprintf(stderr, "%s: forward: %s\n", argv[i], ws ? eng_strerror(rc) : err);
            return 1;
        }
        printf(" %016llx", (unsigned long long)hash_floats(z, (size_t)CELLS * hp->vocab_size));
        eng_workspace_free(ws);
        eng_model_free(m);
    }
    printf("\n");
    return 0;
}

static char self_path[4096];

/* Runs the child under HEPTAPOD_ISA=cap (NULL: unset) on the models. */
static void run_child(const char *cap, const char *models, char *out, size_t len)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s%s '%s' --child %s", cap ? "HEPTAPOD_ISA=" : "env -u HEPTAPOD_ISA",
             cap ? cap : "", self_path, models);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (!fgets(out, (int)len, f)) out[0] = 0;
    assert_int_equal(pclose(f), 0);
    out[strcspn(out, "\n")] = 0;
}

static void test_forward_same_bits_on_every_path(void **state)
{
    (void)state;
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    char pattern[512], models[4096] = "";
    snprintf(pattern, sizeof pattern, "%s/*.safetensors", dir && *dir ? dir : "tests/fixtures");
    glob_t gl;
    if (glob(pattern, 0, NULL, &gl) != 0) fail_msg("no models match %s", pattern);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        size_t used = strlen(models);
        snprintf(models + used, sizeof models - used, " '%s'", gl.gl_pathv[i]);
    }
    globfree(&gl);

    char best[4096], got[4096];
    run_child(NULL, models, best, sizeof best);
    const char *best_hashes = strchr(best, ' ');
    assert_non_null(best_hashes);
    print_message("uncapped: %s\n", best);
    static const char *const caps[] = {"scalar", "avx2", "avx512"};
    const char *best_isa_end = best_hashes;
    int best_level = 0;
    for (int l = 0; l < 3; l++)
        if ((size_t)(best_isa_end - best) == strlen(caps[l]) &&
            strncmp(best, caps[l], strlen(caps[l])) == 0)
            best_level = l;
    for (int l = 0; l < 3; l++) {
        run_child(caps[l], models, got, sizeof got);
        print_message("HEPTAPOD_ISA=%s: %s\n", caps[l], got);
        /* The cap is honoured: the path is min(cap, what the CPU has). */
        const char *want = caps[l < best_level ? l : best_level];
        assert_true(strncmp(got, want, strlen(want)) == 0 && got[strlen(want)] == ' ');
        assert_string_equal(strchr(got, ' '), best_hashes);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child(argc, argv);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) return 1;
    self_path[n] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_math_is_the_scalar_math),
        cmocka_unit_test(test_gelu_and_bias_same_bits),
        cmocka_unit_test(test_layernorm_same_bits),
        cmocka_unit_test(test_rope_same_bits),
        cmocka_unit_test(test_attention_same_bits),
        cmocka_unit_test(test_forward_same_bits_on_every_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
