/*
 * test_render.c - results, SSE events, the model list and health bodies:
 * each parsed back and checked field by field against what went in.
 * With PROTO_SAMPLE_DIR set, each rendered body is also written there as
 * NAME.json so tests/proto/check_openapi.py can validate it against
 * proto/openapi.json.
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

#include "proto/proto.h"

#define MASK 256

static const int windows[3] = {2, 5, ENG_WINDOW_GLOBAL};
static const int dilations[3] = {1, 2, 1};
static const eng_hparams byte_hp = {
    .vocab_size = 257,
    .dim = 48,
    .depth = 3,
    .heads = 3,
    .head_dim = 16,
    .mlp_hidden = 192,
    .max_height = 8,
    .max_width = 16,
    .mask_token = MASK,
    .tokenizer = ENG_TOKENIZER_BYTE,
    .rope_base = 10000,
    .norm_eps = 1e-5f,
    .window = windows,
    .dilation = dilations,
};
static const proto_limits lim = {.max_iterations = 32, .max_cells = 100, .max_deadline_ms = 0};

static void dump(const char *name, const char *data, size_t len)
{
    const char *dir = getenv("PROTO_SAMPLE_DIR");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static json_t *parse(const char *s, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(s, len, JSON_ALLOW_NUL, &jerr);
    if (!v) fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, s);
    return v;
}

/* Splits "event: NAME\ndata: JSON\n\n" and returns the parsed data. */
static json_t *parse_event(const proto_buf *b, const char *name, const char *sample)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "event: %s\ndata: ", name);
    assert_true(b->len > (size_t)n + 2);
    assert_memory_equal(b->data, prefix, (size_t)n);
    assert_memory_equal(b->data + b->len - 2, "\n\n", 2);
    const char *data = b->data + n;
    size_t len = b->len - (size_t)n - 2;
    assert_null(memchr(data, '\n', len)); /* the JSON fits on one data line */
    dump(sample, data, len);
    return parse(data, len);
}

/* A 2 x 4 request with text: "hé" (3 bytes) then an open cell, a bad byte. */
static void make_request(proto_request *req, const char *body)
{
    proto_error err;
    assert_int_equal(proto_parse_generate(body, strlen(body), req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(req, &byte_hp, &lim, &err), PROTO_OK);
}

static const int32_t grid[8] = {'h', 0xC3, 0xA9, MASK, 0xFF, '"', 0, 'z'};

static void check_grid(json_t *v)
{
    json_t *g = json_object_get(v, "grid");
    assert_int_equal(json_array_size(g), 2);
    for (int y = 0; y < 2; y++) {
        json_t *row = json_array_get(g, (size_t)y);
        assert_int_equal(json_array_size(row), 4);
        for (int x = 0; x < 4; x++) {
            json_t *c = json_array_get(row, (size_t)x);
            if (grid[y * 4 + x] == MASK)
                assert_true(json_is_null(c));
            else
                assert_int_equal(json_integer_value(c), grid[y * 4 + x]);
        }
    }
}

static void check_text(json_t *v, int want)
{
    json_t *t = json_object_get(v, "text");
    if (!want) {
        assert_null(t);
        return;
    }
    assert_int_equal(json_array_size(t), 2);
    assert_string_equal(json_string_value(json_array_get(t, 0)), "h\xC3\xA9*");
    json_t *r1 = json_array_get(t, 1);
    assert_int_equal(json_string_length(r1), 6);
    assert_memory_equal(json_string_value(r1), "\xEF\xBF\xBD\"\0z", 6);
}

static const proto_timings times = {
    .queued_ms = 1.25, .compute_ms = 30.0006, .total_ms = 31.5, .first_iteration_ms = 5};

static void test_result(void **state)
{
    proto_request req;
    make_request(&req, "{\"height\": 2, \"width\": 4, \"seed\": 42, \"open\": \"*\","
                       " \"iterations\": 3, \"order\": \"margin\", \"remask\": 0.25}");
    proto_grid g = {.iteration = 3, .open = 1, .tokens = grid};
    proto_buf b = {0};
    assert_int_equal(proto_render_result(&b, &req, "req-1", "tiny", &g, &times), 0);
    dump("result", b.data, b.len);
    json_t *v = parse(b.data, b.len);
    assert_string_equal(json_string_value(json_object_get(v, "request_id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(v, "model")), "tiny");
    assert_int_equal(json_integer_value(json_object_get(v, "height")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "width")), 4);
    assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "seed")), 42);
    assert_string_equal(json_string_value(json_object_get(v, "order")), "margin");
    assert_true(json_number_value(json_object_get(v, "remask")) == 0.25);
    check_grid(v);
    check_text(v, 1);
    json_t *t = json_object_get(v, "timings");
    assert_true(fabs(json_real_value(json_object_get(t, "queued_ms")) - 1.25) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(t, "total_ms")) - 31.5) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(t, "first_iteration_ms")) - 5) < 1e-9);
    /* three decimals, as documented */
    assert_non_null(strstr(b.data, "\"compute_ms\":30.001"));
    json_decref(v);
    proto_buf_free(&b);
    proto_request_free(&req);

    /* return_text false: ids only */
    make_request(&req, "{\"height\": 2, \"width\": 4, \"return_text\": false}");
    assert_int_equal(proto_render_result(&b, &req, "req-2", "tiny", &g, &times), 0);
    v = parse(b.data, b.len);
    check_text(v, 0);
    /* the default order and remask are echoed too */
    assert_string_equal(json_string_value(json_object_get(v, "order")), "confidence");
    assert_true(json_number_value(json_object_get(v, "remask")) == 0);
    /* the seed drawn for the request is the one echoed */
    assert_true((uint64_t)json_integer_value(json_object_get(v, "seed")) == req.sampling.seed);
    json_decref(v);
    proto_buf_free(&b);
    proto_request_free(&req);
}

/* Checks and frees v: its remask and remask_noise are the request's floats. */
static void check_sampling_echo(json_t *v, const proto_request *req)
{
    assert_true((float)json_number_value(json_object_get(v, "remask")) == req->sampling.remask);
    assert_true((float)json_number_value(json_object_get(v, "remask_noise")) ==
                req->sampling.remask_noise);
    json_decref(v);
}

/* remask and remask_noise read back as the float the request holds: %g alone
 * printed 0.9999909 as 1, which the client never sent. Short values stay short. */
static void test_float_echo_round_trips(void **state)
{
    static const char *const cases[][3] = {
        {"0.9999909", "1.2345678", "\"remask\":0.9999909,"},
        {"0.1", "0.5", "\"remask\":0.1,"},
        {"0.25", "1e-07", "\"remask_noise\":1e-07,"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"height\": 1, \"width\": 4, \"remask\": %s, \"remask_noise\": %s}", cases[i][0],
                 cases[i][1]);
        proto_request req;
        make_request(&req, body);
        proto_grid g = {.iteration = 1, .open = 0, .tokens = grid};
        proto_buf b = {0};
        assert_int_equal(proto_render_result(&b, &req, "r", "tiny", &g, &times), 0);
        assert_non_null(strstr(b.data, cases[i][2]));
        check_sampling_echo(parse(b.data, b.len), &req);
        proto_buf_reset(&b);
        assert_int_equal(proto_render_sse_done(&b, &req, "r", "tiny", 1, &times), 0);
        assert_non_null(strstr(b.data, cases[i][2]));
        check_sampling_echo(parse_event(&b, "done", "sse_done"), &req);
        proto_buf_free(&b);
        proto_request_free(&req);
    }
    (void)state;
}

static void test_sse_iteration_and_done(void **state)
{
    proto_request req;
    make_request(&req, "{\"height\": 2, \"width\": 4, \"seed\": 7, \"open\": \"*\","
                       " \"iterations\": 5, \"stream\": true, \"order\": \"raster\"}");
    proto_grid g = {.iteration = 2, .open = 1, .tokens = grid};
    proto_buf b = {0};
    assert_int_equal(proto_render_sse_iteration(&b, &req, &g), 0);
    json_t *v = parse_event(&b, "iteration", "sse_iteration");
    assert_int_equal(json_integer_value(json_object_get(v, "iteration")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 5);
    assert_int_equal(json_integer_value(json_object_get(v, "open")), 1);
    check_grid(v);
    check_text(v, 1);
    json_decref(v);

    proto_buf_reset(&b);
    assert_int_equal(proto_render_sse_done(&b, &req, "req-9", "tiny", 5, &times), 0);
    v = parse_event(&b, "done", "sse_done");
    assert_string_equal(json_string_value(json_object_get(v, "request_id")), "req-9");
    assert_string_equal(json_string_value(json_object_get(v, "model")), "tiny");
    assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 5);
    assert_int_equal(json_integer_value(json_object_get(v, "seed")), 7);
    assert_string_equal(json_string_value(json_object_get(v, "order")), "raster");
    assert_true(json_number_value(json_object_get(v, "remask")) == 0);
    assert_true(json_is_object(json_object_get(v, "timings")));
    json_decref(v);

    proto_error e;
    proto_error_set(&e, PROTO_E_DEADLINE_EXCEEDED, "deadline_ms", "deadline_ms: 100 ms passed");
    proto_buf_reset(&b);
    proto_render_sse_error(&b, &e);
    json_decref(parse_event(&b, "error", "sse_error"));
    proto_buf_reset(&b);
    proto_render_error(&b, &e);
    dump("error", b.data, b.len);
    proto_buf_free(&b);
    proto_request_free(&req);
}

/* Times that are not finite or below 0 (never expected from the server's
 * clocks) render as 0: printf's "nan" and "-inf" would not be JSON. */
static void test_odd_timings_stay_json(void **state)
{
    proto_request req;
    make_request(&req, "{\"height\": 2, \"width\": 4, \"seed\": 1}");
    proto_grid g = {.iteration = 1, .open = 1, .tokens = grid};
    const proto_timings odd = {
        .queued_ms = NAN, .compute_ms = INFINITY, .total_ms = -INFINITY, .first_iteration_ms = -3};
    proto_buf b = {0};
    assert_int_equal(proto_render_result(&b, &req, "r", "m", &g, &odd), 0);
    json_t *v = parse(b.data, b.len);
    json_t *t = json_object_get(v, "timings");
    const char *keys[] = {"queued_ms", "compute_ms", "total_ms", "first_iteration_ms"};
    for (int i = 0; i < 4; i++)
        assert_true(json_number_value(json_object_get(t, keys[i])) == 0.0);
    json_decref(v);
    proto_buf_reset(&b);
    assert_int_equal(proto_render_sse_done(&b, &req, "r", "m", 1, &odd), 0);
    v = parse_event(&b, "done", "done_odd_timings");
    assert_true(json_number_value(json_object_get(json_object_get(v, "timings"), "total_ms")) ==
                0.0);
    json_decref(v);
    proto_buf_free(&b);
    proto_request_free(&req);
}

static void test_models(void **state)
{
    const char *keys[] = {"format", "note"}, *values[] = {"heptapod", "caf\xC3\xA9 \xFF"};
    const eng_hparams id_hp = {.vocab_size = 10,
                               .dim = 32,
                               .depth = 1,
                               .heads = 2,
                               .head_dim = 16,
                               .mlp_hidden = 64,
                               .max_height = 20,
                               .max_width = 30,
                               .mask_token = 9,
                               .tokenizer = ENG_TOKENIZER_NONE,
                               .rope_base = 500,
                               .norm_eps = 1e-6f,
                               .window = windows,
                               .dilation = dilations};
    proto_model_info models[2] = {
        {.name = "bytes",
         .path = "models/b.safetensors",
         .is_default = 1,
         .arch = ENG_ARCH_V1,
         .precision = "int8",
         .isa = "avx2",
         .state = "failed",
         .last_error = "b2.safetensors: cannot read the file",
         .generation = 3,
         .hp = &byte_hp,
         .n_meta = 2,
         .meta_keys = keys,
         .meta_values = values},
        {.name = "ids", .arch = ENG_ARCH_SEED, .hp = &id_hp},
    };
    proto_buf b = {0};
    assert_int_equal(proto_render_models(&b, models, 2, &lim), 0);
    dump("models", b.data, b.len);
    json_t *v = parse(b.data, b.len);
    assert_string_equal(json_string_value(json_object_get(v, "default")), "bytes");
    json_t *data = json_object_get(v, "data");
    assert_int_equal(json_array_size(data), 2);
    json_t *m0 = json_array_get(data, 0), *m1 = json_array_get(data, 1);
    assert_true(json_is_true(json_object_get(m0, "default")));
    assert_true(json_is_false(json_object_get(m1, "default")));
    assert_string_equal(json_string_value(json_object_get(m0, "path")), "models/b.safetensors");
    assert_null(json_object_get(m1, "path"));
    /* the architecture of each model */
    assert_string_equal(json_string_value(json_object_get(m0, "arch")), "heptapod-v1");
    assert_string_equal(json_string_value(json_object_get(m1, "arch")),
                        "nonlinear-transformer-0.0.3");
    /* precision and load state where given; last_error null-able */
    assert_string_equal(json_string_value(json_object_get(m0, "precision")), "int8");
    assert_string_equal(json_string_value(json_object_get(m0, "isa")), "avx2");
    assert_string_equal(json_string_value(json_object_get(m0, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(m0, "last_error")),
                        "b2.safetensors: cannot read the file");
    assert_int_equal(json_integer_value(json_object_get(m0, "generation")), 3);
    assert_null(json_object_get(m1, "precision"));
    assert_null(json_object_get(m1, "state"));
    json_t *hp = json_object_get(m0, "hparams");
    assert_int_equal(json_integer_value(json_object_get(hp, "vocab_size")), 257);
    assert_int_equal(json_integer_value(json_object_get(hp, "depth")), 3);
    assert_int_equal(json_integer_value(json_object_get(hp, "mask_token")), MASK);
    assert_string_equal(json_string_value(json_object_get(hp, "tokenizer")), "byte");
    json_t *w = json_object_get(hp, "window");
    assert_int_equal(json_array_size(w), 3);
    assert_int_equal(json_integer_value(json_array_get(w, 1)), 5);
    assert_string_equal(json_string_value(json_array_get(w, 2)), "global");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(hp, "dilation"), 1)), 2);
    assert_true(fabs(json_number_value(json_object_get(hp, "norm_eps")) - 1e-5) < 1e-11);
    /* limits: the model's sizes, the server's cell budget where smaller */
    json_t *l0 = json_object_get(m0, "limits"), *l1 = json_object_get(m1, "limits");
    assert_int_equal(json_integer_value(json_object_get(l0, "max_cells")), 100); /* < 8*16 */
    assert_int_equal(json_integer_value(json_object_get(l0, "max_iterations")), 32);
    /* no server deadline limit: the protocol's own, one day */
    assert_int_equal(json_integer_value(json_object_get(l0, "max_deadline_ms")),
                     PROTO_MAX_DEADLINE_MS);
    assert_int_equal(json_integer_value(json_object_get(l1, "max_cells")), 100); /* < 600 */
    assert_int_equal(json_array_size(json_object_get(json_object_get(m1, "hparams"), "window")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(m1, "hparams"), "tokenizer")), "none");
    /* metadata is passed through, sanitised to valid UTF-8 */
    json_t *meta = json_object_get(m0, "metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "format")), "heptapod");
    assert_string_equal(json_string_value(json_object_get(meta, "note")),
                        "caf\xC3\xA9 \xEF\xBF\xBD");
    json_decref(v);

    proto_limits big = lim;
    big.max_cells = 0; /* no server limit: the model's own area */
    proto_buf_reset(&b);
    proto_render_models(&b, models + 1, 1, &big);
    v = parse(b.data, b.len);
    assert_true(json_is_null(json_object_get(v, "default")));
    json_t *l = json_object_get(json_array_get(json_object_get(v, "data"), 0), "limits");
    assert_int_equal(json_integer_value(json_object_get(l, "max_cells")), 600);
    json_decref(v);
    proto_buf_free(&b);
}

/* One model alone (GET /v1/models/{name}) is exactly its item of the list,
 * and carries its name as "id" too. */
static void test_model_alone(void **state)
{
    proto_model_info m = {.name = "bytes",
                          .path = "models/b.safetensors",
                          .precision = "f32",
                          .state = "ready",
                          .generation = 1,
                          .hp = &byte_hp};
    proto_buf one = {0}, list = {0};
    assert_int_equal(proto_render_model(&one, &m, &lim), 0);
    dump("model", one.data, one.len);
    assert_int_equal(proto_render_models(&list, &m, 1, &lim), 0);
    json_t *v = parse(one.data, one.len), *l = parse(list.data, list.len);
    assert_true(json_equal(v, json_array_get(json_object_get(l, "data"), 0)));
    assert_string_equal(json_string_value(json_object_get(v, "id")), "bytes");
    assert_string_equal(json_string_value(json_object_get(v, "name")), "bytes");
    json_decref(v);
    json_decref(l);
    proto_buf_free(&one);
    proto_buf_free(&list);
}

static void test_status(void **state)
{
    proto_buf b = {0};
    proto_render_status(&b, "ok", NULL);
    dump("healthz", b.data, b.len);
    assert_string_equal(b.data, "{\"status\":\"ok\"}");
    proto_buf_reset(&b);
    proto_render_status(&b, "draining", "SIGTERM received");
    dump("readyz", b.data, b.len);
    json_t *v = parse(b.data, b.len);
    assert_string_equal(json_string_value(json_object_get(v, "detail")), "SIGTERM received");
    json_decref(v);
    proto_buf_free(&b);
}

/* A large grid of arbitrary ids stays valid JSON and keeps every id. */
static void test_large_random_grid(void **state)
{
    eng_hparams hp = byte_hp;
    hp.max_height = hp.max_width = 64;
    proto_limits l = lim;
    l.max_cells = 0;
    proto_request req;
    proto_error err;
    const char *body = "{\"height\": 64, \"width\": 64}";
    assert_int_equal(proto_parse_generate(body, strlen(body), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &hp, &l, &err), PROTO_OK);
    int32_t *t = malloc(64 * 64 * sizeof *t);
    uint32_t x = 12345;
    for (int i = 0; i < 64 * 64; i++) {
        x = x * 1103515245u + 12345u;
        t[i] = (int32_t)((x >> 8) % 257);
    }
    proto_grid g = {.iteration = 1, .open = 0, .tokens = t};
    proto_buf b = {0};
    assert_int_equal(proto_render_sse_iteration(&b, &req, &g), 0);
    json_t *v = parse_event(&b, "iteration", "sse_iteration_large");
    json_t *grid_v = json_object_get(v, "grid");
    for (int i = 0; i < 64 * 64; i++) {
        json_t *c = json_array_get(json_array_get(grid_v, (size_t)(i / 64)), (size_t)(i % 64));
        if (t[i] == MASK)
            assert_true(json_is_null(c));
        else
            assert_int_equal(json_integer_value(c), t[i]);
    }
    assert_int_equal(json_array_size(json_object_get(v, "text")), 64);
    json_decref(v);
    proto_buf_free(&b);
    free(t);
    proto_request_free(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_float_echo_round_trips),
        cmocka_unit_test(test_sse_iteration_and_done),
        cmocka_unit_test(test_odd_timings_stay_json),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_model_alone),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_large_random_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
