/*
 * test_checkpoint.c - eng_model_load on checkpoints written by
 * ckpt_harness.h: valid ones load with exact weights (in place or
 * converted), hyper-parameters, defaults and metadata; each kind of broken
 * file, header, entry, layout or tensor set is refused with NULL and a
 * message "PATH: fault" that names the fault (metadata faults:
 * test_checkpoint_meta.c). The PyTorch reference's checkpoints (every
 * .safetensors file of tests/fixtures; HEPTAPOD_FIXTURES overrides the
 * folder) must load too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/jsonlite.h"
#include "tests/engine/ckpt_harness.h"

/* --- where a weight lives in the model ---------------------------------- */

static const struct {
    const char *name;
    size_t off;
} layer_fields[] = {
    {"norm1.weight", offsetof(eng_layer, norm1_w)},
    {"norm1.bias", offsetof(eng_layer, norm1_b)},
    {"attn.qkv.weight", offsetof(eng_layer, qkv_w)},
    {"attn.qkv.bias", offsetof(eng_layer, qkv_b)},
    {"attn.proj.weight", offsetof(eng_layer, proj_w)},
    {"attn.proj.bias", offsetof(eng_layer, proj_b)},
    {"norm2.weight", offsetof(eng_layer, norm2_w)},
    {"norm2.bias", offsetof(eng_layer, norm2_b)},
    {"mlp.fc1.weight", offsetof(eng_layer, fc1_w)},
    {"mlp.fc1.bias", offsetof(eng_layer, fc1_b)},
    {"mlp.fc2.weight", offsetof(eng_layer, fc2_w)},
    {"mlp.fc2.bias", offsetof(eng_layer, fc2_b)},
};

static const float *weight_of(const eng_model *m, const char *name)
{
    int l, n = 0;
    if (!strcmp(name, "tok_emb.weight")) return m->tok_emb;
    if (!strcmp(name, "norm.weight")) return m->norm_w;
    if (!strcmp(name, "norm.bias")) return m->norm_b;
    if (!strcmp(name, "head.weight")) return m->head_w;
    if (!strcmp(name, "head.bias")) return m->head_b;
    if (!strcmp(name, "pos_emb.weight")) return m->pos_emb;
    if (sscanf(name, "blocks.%d.%n", &l, &n) == 1 && n > 0 && l >= 0 && l < m->hp.depth)
        for (size_t k = 0; k < sizeof layer_fields / sizeof layer_fields[0]; k++)
            if (!strcmp(name + n, layer_fields[k].name)) {
                const float *p;
                memcpy(&p, (const char *)&m->layers[l] + layer_fields[k].off, sizeof p);
                return p;
            }
    fail_msg("no weight %s", name);
    return NULL;
}

enum where { IN_MAP, IN_OWNED, ANYWHERE };

/* Every weight equals the writer's values exactly and lives where it should. */
static void check_weights(const eng_model *m, const wspec *s, enum where where)
{
    const char *map = m->map;
    for (int i = 0; i < s->n_t; i++) {
        const wtensor *t = &s->t[i];
        const float *w = weight_of(m, t->name);
        uint64_t n = w_nelem(t);
        int in_map = (const char *)w >= map && (const char *)(w + n) <= map + m->map_len;
        if (where == IN_MAP) assert_true(in_map);
        if (where == IN_OWNED) assert_false(in_map);
        if (in_map) /* used in place: aligned F32 from this tensor's own bytes */
            assert_true((uintptr_t)w % 4 == 0 && strcmp(t->dtype, "F32") == 0);
        else
            assert_true(m->owned && w >= m->owned);
        for (uint64_t j = 0; j < n; j++)
            if (w[j] != w_value(i, j))
                fail_msg("%s[%llu] = %g, expected %g", t->name, (unsigned long long)j, (double)w[j],
                         (double)w_value(i, j));
    }
}

/* --- valid checkpoints ---------------------------------------------------- */

static void test_f32_loads_in_place(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    eng_model *m = load_ok(&s);
    const eng_hparams *hp = eng_model_hparams(m);
    assert_int_equal(hp->vocab_size, 7);
    assert_int_equal(hp->dim, 8);
    assert_int_equal(hp->depth, 2);
    assert_int_equal(hp->heads, 2);
    assert_int_equal(hp->head_dim, 4);
    assert_int_equal(hp->mlp_hidden, 12);
    assert_int_equal(hp->mask_token, 6);
    assert_int_equal(hp->max_height, 16);
    assert_int_equal(hp->max_width, 24);
    assert_int_equal(hp->tokenizer, ENG_TOKENIZER_BYTE);
    assert_true(hp->rope_base == 10000.0f);
    assert_true(hp->norm_eps == 1e-5f);
    for (int l = 0; l < 2; l++) {
        assert_int_equal(hp->window[l], 1);
        assert_int_equal(hp->dilation[l], 1);
    }
    assert_ptr_equal(hp->window, m->window);
    assert_ptr_equal(hp->dilation, m->dilation);
    assert_string_equal(eng_model_path(m), path);
    assert_null(m->owned);
    check_weights(m, &s, IN_MAP);
    eng_model_free(m);
}

static void test_f16_converts_exactly(void **state)
{
    wspec s;
    w_init(&s, 2, "F16");
    eng_model *m = load_ok(&s);
    check_weights(m, &s, IN_OWNED);
    eng_model_free(m);
}

static void test_bf16_converts_exactly(void **state)
{
    wspec s;
    w_init(&s, 1, "BF16");
    eng_model *m = load_ok(&s);
    check_weights(m, &s, IN_OWNED);
    eng_model_free(m);
}

static void test_misaligned_f32_is_copied(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    s.data_align = 2; /* the data region starts 2 bytes past a multiple of 4 */
    eng_model *m = load_ok(&s);
    assert_int_equal((m->map_len - s.t[s.n_t - 1].end) % 4, 2); /* where the data starts */
    check_weights(m, &s, IN_OWNED);
    eng_model_free(m);
}

static void test_mixed_dtypes(void **state)
{
    wspec s;
    static const char *const kinds[] = {"F32", "F16", "BF16"};
    w_init(&s, 2, "F32");
    for (int i = 0; i < s.n_t; i++) /* odd-sized F16 tensors shift later F32 ones off alignment */
        snprintf(s.t[i].dtype, sizeof s.t[i].dtype, "%s", kinds[i % 3]);
    eng_model *m = load_ok(&s);
    check_weights(m, &s, ANYWHERE);
    eng_model_free(m);
}

static void test_metadata_lookup(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_set(&s, "note", "caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"");
    eng_model *m = load_ok(&s);
    assert_string_equal(eng_model_meta(m, "trained_on"), "unit test");
    assert_string_equal(eng_model_meta(m, "format"), "heptapod");
    assert_string_equal(eng_model_meta(m, "note"), "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\"");
    assert_null(eng_model_meta(m, "nope"));
    assert_int_equal(eng_model_meta_count(m), s.n_meta);
    for (int i = 0; i < eng_model_meta_count(m); i++) {
        const char *k, *v;
        eng_model_meta_at(m, i, &k, &v);
        assert_non_null(k);
        assert_ptr_equal(eng_model_meta(m, k), v);
    }
    const char *k = "x", *v = "y";
    eng_model_meta_at(m, s.n_meta, &k, &v);
    assert_null(k);
    assert_null(v);
    eng_model_free(m);
}

static void test_defaults_apply(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    const char *optional[] = {"dilation", "mlp_hidden", "rope_base", "norm_eps", "tokenizer"};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        w_set(&s, optional[i], NULL);
    for (int i = 0; i < s.n_t; i++) /* F defaults to 4 * D = 32 */
        for (int d = 0; d < s.t[i].ndim; d++)
            if (strstr(s.t[i].name, "mlp.fc") && s.t[i].shape[d] == 12) s.t[i].shape[d] = 32;
    eng_model *m = load_ok(&s);
    const eng_hparams *hp = eng_model_hparams(m);
    assert_int_equal(hp->mlp_hidden, 32);
    assert_true(hp->rope_base == 10000.0f);
    assert_true(hp->norm_eps == 1e-5f);
    assert_int_equal(hp->tokenizer, ENG_TOKENIZER_NONE);
    assert_int_equal(hp->dilation[0], 1);
    assert_int_equal(hp->dilation[1], 1);
    check_weights(m, &s, IN_MAP);
    eng_model_free(m);
}

static void test_window_global(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    w_set(&s, "window", "global");
    w_set(&s, "dilation", "2");
    w_set(&s, "tokenizer", "none");
    w_set(&s, "rope_base", "500.5");
    w_set(&s, "norm_eps", "0.001");
    eng_model *m = load_ok(&s);
    const eng_hparams *hp = eng_model_hparams(m);
    for (int l = 0; l < 2; l++) {
        assert_int_equal(hp->window[l], ENG_WINDOW_GLOBAL);
        assert_int_equal(hp->dilation[l], 2);
    }
    assert_int_equal(hp->tokenizer, ENG_TOKENIZER_NONE);
    assert_true(hp->rope_base == 500.5f);
    assert_true(hp->norm_eps == 0.001f);
    eng_model_free(m);
}

static void test_comma_lists(void **state)
{
    wspec s;
    w_init(&s, 3, "F32");
    w_set(&s, "window", "2, global,0");
    w_set(&s, "dilation", "1,2,3");
    eng_model *m = load_ok(&s);
    const eng_hparams *hp = eng_model_hparams(m);
    const int win[] = {2, ENG_WINDOW_GLOBAL, 0}, dil[] = {1, 2, 3};
    for (int l = 0; l < 3; l++) {
        assert_int_equal(hp->window[l], win[l]);
        assert_int_equal(hp->dilation[l], dil[l]);
    }
    check_weights(m, &s, IN_MAP);
    eng_model_free(m);
}

static void test_fixtures_load(void **state)
{
    const char *dir = getenv("HEPTAPOD_FIXTURES");
    char pattern[512];
    glob_t gl;
    snprintf(pattern, sizeof pattern, "%s/*.safetensors", dir && *dir ? dir : "tests/fixtures");
    if (glob(pattern, 0, NULL, &gl) != 0)
        fail_msg("no fixture checkpoints match %s (make fixtures)", pattern);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        eng_model *m = eng_model_load(gl.gl_pathv[i], err, sizeof err);
        if (!m) fail_msg("%s", err);
        const eng_hparams *hp = eng_model_hparams(m);
        assert_true(hp->depth >= 1 && hp->vocab_size >= 2 && hp->head_dim % 4 == 0);
        assert_string_equal(eng_model_meta(m, "format"), "heptapod");
        eng_model_free(m);
    }
    globfree(&gl);
}

/* --- the file and its header ---------------------------------------------- */

static void test_short_file(void **state)
{
    snprintf(path, sizeof path, "%s/short.safetensors", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("\x05\0\0\0\0", 1, 5, f);
    fclose(f);
    assert_null(eng_model_load(path, err, sizeof err));
    check_refusal("too short", (char *)NULL);
    unlink(path);
}

static void test_unreadable_path(void **state)
{
    snprintf(path, sizeof path, "%s/absent.safetensors", tmpdir);
    assert_null(eng_model_load(path, err, sizeof err));
    check_refusal("cannot open", (char *)NULL);
    snprintf(path, sizeof path, "%s", tmpdir);
    assert_null(eng_model_load(path, err, sizeof err));
    check_refusal("not a regular file", (char *)NULL);
    assert_null(eng_model_load(NULL, err, sizeof err));
    /* A missing or tiny message buffer is fine. */
    snprintf(path, sizeof path, "%s/absent.safetensors", tmpdir);
    assert_null(eng_model_load(path, NULL, 0));
    char tiny[8];
    assert_null(eng_model_load(path, tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), 7);
}

static void test_header_past_end(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    s.override_len = 1;
    s.header_len = 1u << 20;
    EXPECT_REFUSED(&s, "header length 1048576", "past the end");
    s.header_len = UINT64_MAX; /* 8 + N would wrap around */
    EXPECT_REFUSED(&s, "header length", "past the end");
    /* Inside the file but beyond any sane header: a sparse file of 100 MiB. */
    snprintf(path, sizeof path, "%s/huge.safetensors", tmpdir);
    FILE *f = fopen(path, "wb");
    const unsigned char len[8] = {1, 0, 0x40, 6}; /* 100 MiB + 1, little-endian */
    assert_non_null(f);
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(ftruncate(fileno(f), 8 + (100 << 20) + 64), 0);
    fclose(f);
    assert_null(eng_model_load(path, err, sizeof err));
    check_refusal("header length 104857601 is too large", (char *)NULL);
    unlink(path);
}

static void test_header_not_json(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":01}",
        "{\"a\":NaN}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":tru}",
        "{'a':1}",
        "{\"a\":[1,]}",
        "{\"a\":\"x\"} x",
        "{\"a\":\"\\q\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":1}{}",
        "{\"a\":\"unterminated}",
        "{\"a\":1} \x01",
        "{\"a\":\"\\u0041\\uZZZZ\"}",
        NULL, /* nesting deeper than the parser allows, built below */
    };
    char deep[2 * (ENG__JSON_MAX_DEPTH + 2) + 8];
    size_t n = 0;
    deep[n++] = '{', deep[n++] = '"', deep[n++] = 'a', deep[n++] = '"', deep[n++] = ':';
    for (int i = 0; i < ENG__JSON_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < ENG__JSON_MAX_DEPTH; i++)
        deep[n++] = ']';
    deep[n++] = '}', deep[n] = 0;
    wspec s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w_init(&s, 1, "F32");
        s.raw_header = bad[i] ? bad[i] : deep;
        EXPECT_REFUSED(&s, "header is not valid JSON");
    }
}

static void test_header_not_utf8(void **state)
{
    static const char *const bad[] = {
        "{\"a\xff\":1}",                /* never valid */
        "{\"a\":\"\xc0\xaf\"}",         /* overlong '/' */
        "{\"a\":\"\xe0\x80\xaf\"}",     /* overlong '/' in three bytes */
        "{\"a\":\"\xf0\x80\x80\xaf\"}", /* and in four */
        "{\"a\":\"\xed\xa0\x80\"}",     /* encoded surrogate */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"a\":\"\xe2\x82\"}",         /* cut short */
    };
    wspec s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w_init(&s, 1, "F32");
        s.raw_header = bad[i];
        EXPECT_REFUSED(&s, "not valid JSON", "UTF-8");
    }
}

static void test_header_not_object(void **state)
{
    static const char *const bad[] = {"[]", "\"x\"", "1", "null"};
    wspec s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w_init(&s, 1, "F32");
        s.raw_header = bad[i];
        EXPECT_REFUSED(&s, "not a JSON object");
    }
}

/* --- header entries -------------------------------------------------------- */

/* Replaces norm.bias's entry with raw JSON and expects a refusal naming it. */
static void refuse_entry(const char *raw, const char *word)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_find(&s, "norm.bias")->raw = raw;
    EXPECT_REFUSED(&s, "norm.bias", word);
}

static void test_entry_not_object(void **state)
{
    refuse_entry("[1,2]", "not an object");
    refuse_entry("\"F32\"", "not an object");
}

static void test_entry_missing_field(void **state)
{
    refuse_entry("{\"shape\":[8],\"data_offsets\":[0,32]}", "missing dtype");
    refuse_entry("{\"dtype\":\"F32\",\"data_offsets\":[0,32]}", "missing shape");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8]}", "missing data_offsets");
}

static void test_entry_wrong_types(void **state)
{
    refuse_entry("{\"dtype\":5,\"shape\":[8],\"data_offsets\":[0,32]}", "dtype");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":\"8\",\"data_offsets\":[0,32]}", "shape");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[2,\"4\"],\"data_offsets\":[0,32]}", "shape");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[-8],\"data_offsets\":[0,32]}", "shape");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8.0],\"data_offsets\":[0,32]}", "shape");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":{}}", "data_offsets");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0]}", "data_offsets");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32,64]}", "data_offsets");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[32,0]}", "begin <= end");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[-4,28]}", "data_offsets");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,3.2e1]}", "data_offsets");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,18446744073709551616]}",
                 "data_offsets");
}

static void test_unknown_dtype(void **state)
{
    static const char *const bad[] = {"I64", "F64", "f32", "F8_E4M3", "BOOL", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wspec s;
        w_init(&s, 1, "F32");
        snprintf(w_find(&s, "head.bias")->dtype, 16, "%s", bad[i]);
        EXPECT_REFUSED(&s, "head.bias", "dtype");
    }
}

static void test_length_mismatch(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_find(&s, "norm.weight")->end_delta = -4;
    EXPECT_REFUSED(&s, "norm.weight", "length mismatch", "needs 32");
    w_init(&s, 1, "F16");
    w_find(&s, "head.weight")->end_delta = 2;
    EXPECT_REFUSED(&s, "head.weight", "length mismatch", "F16");
}

static void test_absurd_sizes(void **state)
{
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}",
                 "too large");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}",
                 "too large");
    refuse_entry("{\"dtype\":\"F32\",\"shape\":[4611686018427387903],"
                 "\"data_offsets\":[0,18446744073709551612]}",
                 "past the end");
    refuse_meta("vocab_size", "16777217", "vocab_size", "out of range");
    refuse_meta("dim", "99999999999999999999999", "dim", "out of range");
    refuse_meta("depth", "100000", "depth", "out of range");
    refuse_meta("window", "1,100000", "window", "out of range");
}

/* --- layout of the data region ------------------------------------------- */

static void test_truncated_data(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    s.truncate = 3;
    EXPECT_REFUSED(&s, "head.bias", "truncated");
    w_init(&s, 1, "F32");
    w_find(&s, "norm.bias")->begin_delta = 1u << 20;
    w_find(&s, "norm.bias")->end_delta = 1u << 20;
    EXPECT_REFUSED(&s, "norm.bias", "past the end");
}

static void test_overlap(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_find(&s, "norm.bias")->begin_delta = -4;
    w_find(&s, "norm.bias")->end_delta = -4;
    EXPECT_REFUSED(&s, "norm.weight and norm.bias overlap");
}

static void test_gap(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_find(&s, "blocks.0.attn.qkv.bias")->gap_before = 4;
    EXPECT_REFUSED(&s, "gap of 4", "blocks.0.attn.qkv.bias");
    w_init(&s, 1, "F32");
    s.t[0].gap_before = 8; /* before the first tensor */
    EXPECT_REFUSED(&s, "gap of 8", "tok_emb.weight");
    w_init(&s, 1, "F32");
    s.trailing = 5; /* after the last one */
    EXPECT_REFUSED(&s, "gap of 5", "end of the file");
}

/* --- names and shapes ---------------------------------------------------- */

static void test_missing_tensor(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    w_remove(&s, "blocks.1.mlp.fc2.bias");
    EXPECT_REFUSED(&s, "missing tensor blocks.1.mlp.fc2.bias");
    w_init(&s, 2, "F32");
    w_remove(&s, "tok_emb.weight");
    EXPECT_REFUSED(&s, "missing tensor tok_emb.weight");
}

static void test_wrong_shape(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    w_find(&s, "blocks.1.attn.qkv.weight")->shape[1] = 7;
    EXPECT_REFUSED(&s, "blocks.1.attn.qkv.weight", "wrong shape [24, 7], expected [24, 8]");
    w_init(&s, 2, "F32");
    wtensor *t = w_find(&s, "blocks.0.mlp.fc1.weight"); /* transposed */
    t->shape[0] = 8, t->shape[1] = 12;
    EXPECT_REFUSED(&s, "blocks.0.mlp.fc1.weight", "wrong shape [8, 12], expected [12, 8]");
    w_init(&s, 2, "F32");
    t = w_find(&s, "head.bias"); /* right size, one axis too many */
    t->ndim = 2, t->shape[1] = 1;
    EXPECT_REFUSED(&s, "head.bias", "wrong shape [7, 1], expected [7]");
}

/* The optional position table: [max_height, max_width, D] (16, 24, 8 here). */
static void add_pos_emb(wspec *s, const char *dtype, uint64_t h, uint64_t w, uint64_t d)
{
    w_add(s, dtype, "pos_emb.weight", 3, h, w);
    s->t[s->n_t - 1].shape[2] = d;
}

static void test_pos_emb(void **state)
{
    wspec s;
    w_init(&s, 2, "F32");
    eng_model *m = load_ok(&s);
    assert_null(m->pos_emb); /* absent: the relative model */
    eng_model_free(m);
    w_init(&s, 2, "F32");
    add_pos_emb(&s, "F32", 16, 24, 8);
    m = load_ok(&s);
    assert_non_null(m->pos_emb);
    check_weights(m, &s, IN_MAP);
    eng_model_free(m);
    w_init(&s, 1, "F16");
    add_pos_emb(&s, "F16", 16, 24, 8);
    m = load_ok(&s);
    check_weights(m, &s, IN_OWNED);
    eng_model_free(m);
}

static void test_pos_emb_refused(void **state)
{
    static const uint64_t bad[][3] = {{16, 23, 8}, {15, 24, 8}, {16, 24, 4}, {24, 16, 8}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wspec s;
        w_init(&s, 2, "F32");
        add_pos_emb(&s, "F32", bad[i][0], bad[i][1], bad[i][2]);
        EXPECT_REFUSED(&s, "pos_emb.weight: wrong shape", "expected [16, 24, 8]");
    }
    wspec s;
    w_init(&s, 2, "F32");
    w_add(&s, "F32", "pos_emb.weight", 2, 16 * 24, 8); /* flattened */
    EXPECT_REFUSED(&s, "pos_emb.weight: wrong shape [384, 8], expected [16, 24, 8]");
    w_init(&s, 2, "F32");
    add_pos_emb(&s, "F32", 16, 24, 8);
    add_pos_emb(&s, "F32", 16, 24, 8);
    EXPECT_REFUSED(&s, "duplicate tensor pos_emb.weight");
}

static void test_extra_tensor(void **state)
{
    static const char *const extra[] = {"extra.weight", "blocks.2.norm1.weight",
                                        "blocks.01.norm1.weight", "blocks.0.norm3.weight"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        wspec s;
        w_init(&s, 2, "F32");
        w_add(&s, "F32", extra[i], 1, 8, 0);
        EXPECT_REFUSED(&s, "unexpected tensor", extra[i]);
    }
}

static void test_duplicate_tensor(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    w_add(&s, "F32", "norm.bias", 1, 8, 0);
    EXPECT_REFUSED(&s, "duplicate tensor norm.bias");
}

static void test_nul_in_names(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    snprintf(w_find(&s, "norm.bias")->name, 64, "norm.bias\\u0000x");
    EXPECT_REFUSED(&s, "NUL");
    w_init(&s, 1, "F32");
    w_set(&s, "trained_on", "a\\u0000b");
    EXPECT_REFUSED(&s, "trained_on", "NUL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_loads_in_place),
        cmocka_unit_test(test_f16_converts_exactly),
        cmocka_unit_test(test_bf16_converts_exactly),
        cmocka_unit_test(test_misaligned_f32_is_copied),
        cmocka_unit_test(test_mixed_dtypes),
        cmocka_unit_test(test_metadata_lookup),
        cmocka_unit_test(test_defaults_apply),
        cmocka_unit_test(test_window_global),
        cmocka_unit_test(test_comma_lists),
        cmocka_unit_test(test_fixtures_load),
        cmocka_unit_test(test_short_file),
        cmocka_unit_test(test_unreadable_path),
        cmocka_unit_test(test_header_past_end),
        cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_header_not_utf8),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_entry_not_object),
        cmocka_unit_test(test_entry_missing_field),
        cmocka_unit_test(test_entry_wrong_types),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_length_mismatch),
        cmocka_unit_test(test_absurd_sizes),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_pos_emb),
        cmocka_unit_test(test_pos_emb_refused),
        cmocka_unit_test(test_extra_tensor),
        cmocka_unit_test(test_duplicate_tensor),
        cmocka_unit_test(test_nul_in_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
