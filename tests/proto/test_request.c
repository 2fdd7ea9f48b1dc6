/*
 * test_request.c - POST /generate bodies through proto_parse_generate and
 * proto_validate_generate: every refusal with its class, HTTP status and the
 * field it names; the defaults; sizes inferred from rows; text rows with
 * their open character; the seed echo.
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

#include "proto/proto.h"

static const int windows[2] = {3, ENG_WINDOW_GLOBAL};
static const int dilations[2] = {1, 2};

/* A byte model: 256 byte ids plus the mask (256), at most 8 x 16 cells. */
static const eng_hparams byte_hp = {
    .vocab_size = 257,
    .dim = 32,
    .depth = 2,
    .heads = 2,
    .head_dim = 16,
    .mlp_hidden = 128,
    .max_height = 8,
    .max_width = 16,
    .mask_token = 256,
    .tokenizer = ENG_TOKENIZER_BYTE,
    .rope_base = 10000,
    .norm_eps = 1e-5f,
    .window = windows,
    .dilation = dilations,
};

/* An opaque-id model with the mask in the middle of the vocabulary. */
static const eng_hparams id_hp = {
    .vocab_size = 10,
    .dim = 32,
    .depth = 2,
    .heads = 2,
    .head_dim = 16,
    .mlp_hidden = 128,
    .max_height = 4,
    .max_width = 4,
    .mask_token = 5,
    .tokenizer = ENG_TOKENIZER_NONE,
    .rope_base = 10000,
    .norm_eps = 1e-5f,
    .window = windows,
    .dilation = dilations,
};

static const proto_limits lim = {.max_iterations = 32, .max_cells = 100, .max_deadline_ms = 60000};

/* Parses and validates body against hp; returns the class, leaves req to free. */
static proto_err run(const char *body, const eng_hparams *hp, proto_request *req, proto_error *err)
{
    memset(err, 0, sizeof *err);
    proto_err e = proto_parse_generate(body, strlen(body), req, err);
    if (e) return e;
    return proto_validate_generate(req, hp, &lim, err);
}

/* Expects body to be refused with class `want`, naming `field` in field and message. */
static void expect_refused(const char *body, const eng_hparams *hp, proto_err want,
                           const char *field, const char *also_in_message)
{
    proto_request req;
    proto_error err;
    proto_err e = run(body, hp, &req, &err);
    if (e != want || strcmp(err.field, field) || !strstr(err.message, field) ||
        (also_in_message && !strstr(err.message, also_in_message)))
        fail_msg("body %s: got %s (%d) field '%s' message '%s'; wanted %s field '%s' with '%s'",
                 body, proto_err_code(e), proto_err_status(e), err.field, err.message,
                 proto_err_code(want), field, also_in_message ? also_in_message : "");
    assert_int_equal(err.err, want);
    proto_request_free(&req);
    /* free leaves a zeroed struct, and a second free is harmless */
    assert_null(req.given);
    proto_request_free(&req);
}

static void test_invalid_json(void **state)
{
    const char *bodies[] = {"",
                            "{",
                            "{\"height\": 2,}",
                            "nope",
                            "{\"height\": 2} x",
                            "{\"a\":1,\"a\":2}",
                            "{\"text\": [\"\xff\"]}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        proto_request req;
        proto_error err;
        assert_int_equal(run(bodies[i], &byte_hp, &req, &err), PROTO_E_INVALID_JSON);
        assert_int_equal(proto_err_status(err.err), 400);
        assert_non_null(strstr(err.message, "invalid JSON"));
        proto_request_free(&req);
    }
    /* valid JSON, but not an object */
    proto_request req;
    proto_error err;
    assert_int_equal(run("[1, 2]", &byte_hp, &req, &err), PROTO_E_INVALID_TYPE);
    assert_int_equal(run("42", &byte_hp, &req, &err), PROTO_E_INVALID_JSON);
    proto_request_free(&req);
}

static void test_wrong_types_name_the_field(void **state)
{
    struct {
        const char *body, *field;
    } cases[] = {
        {"{\"height\": \"2\", \"width\": 2}", "height"},
        {"{\"height\": 2, \"width\": 2.5}", "width"},
        {"{\"height\": 2, \"width\": 2, \"iterations\": true}", "iterations"},
        {"{\"height\": 2, \"width\": 2, \"temperature\": \"hot\"}", "temperature"},
        {"{\"height\": 2, \"width\": 2, \"top_k\": 1.5}", "top_k"},
        {"{\"height\": 2, \"width\": 2, \"top_p\": [1]}", "top_p"},
        {"{\"height\": 2, \"width\": 2, \"remask_noise\": \"0.5\"}", "remask_noise"},
        {"{\"height\": 2, \"width\": 2, \"remask_noise\": true}", "remask_noise"},
        {"{\"height\": 2, \"width\": 2, \"order\": 1}", "order"},
        {"{\"height\": 2, \"width\": 2, \"order\": [\"margin\"]}", "order"},
        {"{\"height\": 2, \"width\": 2, \"remask\": \"0.5\"}", "remask"},
        {"{\"height\": 2, \"width\": 2, \"remask\": false}", "remask"},
        {"{\"height\": 2, \"width\": 2, \"seed\": 1.0}", "seed"},
        {"{\"height\": 2, \"width\": 2, \"stream\": 1}", "stream"},
        {"{\"height\": 2, \"width\": 2, \"deadline_ms\": \"5s\"}", "deadline_ms"},
        {"{\"height\": 2, \"width\": 2, \"return_text\": \"yes\"}", "return_text"},
        {"{\"height\": 2, \"width\": 2, \"model\": 7}", "model"},
        {"{\"height\": 2, \"width\": 2, \"model\": \"a\\u0000b\"}", "model"},
        {"{\"given\": {\"0\": [1]}}", "given"},
        {"{\"given\": [[1, 2], 3]}", "given[1]"},
        {"{\"given\": [[1, 2], [3, \"x\"]]}", "given[1][1]"},
        {"{\"given\": [[1, 2.0]]}", "given[0][1]"},
        {"{\"text\": \"abc\"}", "text"},
        {"{\"text\": [\"ab\", 5]}", "text[1]"},
        {"{\"text\": [\"ab\"], \"open\": 1}", "open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].body, &byte_hp, PROTO_E_INVALID_TYPE, cases[i].field, NULL);
}

static void test_unknown_missing_and_conflicting_fields(void **state)
{
    expect_refused("{\"height\": 2, \"width\": 2, \"temprature\": 0.5}", &byte_hp,
                   PROTO_E_INVALID_FIELD, "temprature", "unknown");
    expect_refused("{\"given\": [[1]], \"text\": [\"a\"]}", &byte_hp, PROTO_E_INVALID_FIELD, "text",
                   "given");
    expect_refused("{\"width\": 2}", &byte_hp, PROTO_E_INVALID_FIELD, "height", "required");
    expect_refused("{\"height\": 2}", &byte_hp, PROTO_E_INVALID_FIELD, "width", "required");
    expect_refused("{\"given\": []}", &byte_hp, PROTO_E_INVALID_FIELD, "height", NULL);
    expect_refused("{\"given\": [[], []]}", &byte_hp, PROTO_E_INVALID_FIELD, "width", NULL);
    expect_refused("{}", &byte_hp, PROTO_E_INVALID_FIELD, "height", NULL);
    assert_int_equal(proto_err_status(PROTO_E_INVALID_FIELD), 400);
}

static void test_out_of_range_names_field_and_bound(void **state)
{
    struct {
        const char *body, *field, *bound;
        const eng_hparams *hp;
    } cases[] = {
        {"{\"height\": 9, \"width\": 2}", "height", "8", &byte_hp},
        {"{\"height\": 0, \"width\": 2}", "height", "1", &byte_hp},
        {"{\"height\": -3, \"width\": 2}", "height", "1", &byte_hp},
        {"{\"height\": 2, \"width\": 17}", "width", "16", &byte_hp},
        {"{\"height\": 2, \"width\": 4000000000}", "width", "2147483647", &byte_hp},
        {"{\"height\": 8, \"width\": 16}", "height", "100", &byte_hp}, /* 128 cells > max_cells */
        {"{\"height\": 2, \"width\": 2, \"iterations\": 0}", "iterations", "32", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"iterations\": 33}", "iterations", "32", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"temperature\": -0.5}", "temperature", "1000", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"temperature\": 1e300}", "temperature", NULL, &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"temperature\": 5000}", "temperature", "1000", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"top_p\": 0}", "top_p", "(0, 1]", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"top_p\": 1.01}", "top_p", "(0, 1]", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask_noise\": -0.5}", "remask_noise", "100", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask_noise\": 100.5}", "remask_noise", "100", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask_noise\": 1e300}", "remask_noise", NULL, &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"order\": \"random\"}", "order", "margin", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"order\": \"Margin\"}", "order", "raster", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"order\": \"\"}", "order", "confidence", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"order\": \"margin\\u0000\"}", "order", NULL, &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask\": -0.1}", "remask", "[0, 1)", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask\": 1}", "remask", "[0, 1)", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"remask\": 1e300}", "remask", NULL, &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"top_k\": -1}", "top_k", "257", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"top_k\": 258}", "top_k", "257", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"seed\": -1}", "seed", "0", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"deadline_ms\": 0}", "deadline_ms", "1", &byte_hp},
        {"{\"height\": 2, \"width\": 2, \"deadline_ms\": 60001}", "deadline_ms", "60000", &byte_hp},
        /* ids: outside the vocabulary, negative, the mask token as a fixed cell */
        {"{\"given\": [[1, 2], [3, 10]]}", "given[1][1]", "0..9", &id_hp},
        {"{\"given\": [[1, -1]]}", "given[0][1]", "null", &id_hp},
        {"{\"given\": [[1, 5]]}", "given[0][1]", "mask", &id_hp},
        {"{\"given\": [[1, 2147483648]]}", "given[0][1]", NULL, &id_hp},
        /* rows beyond the size asked for, or beyond the model */
        {"{\"height\": 1, \"given\": [[1], [2]]}", "given", "height 1", &id_hp},
        {"{\"width\": 1, \"given\": [[1], [2, 3]]}", "given[1]", "width 1", &id_hp},
        {"{\"given\": [[1, 2, 3, 4, 6]]}", "width", "4", &id_hp},
        /* text rows: wrong tokenizer, too long, too many, the mask byte */
        {"{\"text\": [\"ab\"]}", "text", "byte", &id_hp},
        {"{\"width\": 2, \"text\": [\"abc\"]}", "text[0]", "width 2", &byte_hp},
        {"{\"height\": 1, \"text\": [\"a\", \"b\"]}", "text", "height 1", &byte_hp},
        {"{\"text\": [\"ab\"], \"open\": \"\"}", "open", "one character", &byte_hp},
        {"{\"text\": [\"ab\"], \"open\": \"__\"}", "open", "one character", &byte_hp},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_refused(cases[i].body, cases[i].hp, PROTO_E_OUT_OF_RANGE, cases[i].field,
                       cases[i].bound);
    }
    assert_int_equal(proto_err_status(PROTO_E_OUT_OF_RANGE), 422);
}

static void test_order_and_remask(void **state)
{
    proto_request req;
    proto_error err;
    const char *tiny = "{\"height\":1,\"width\":1}";
    /* absent, with no model default: confidence, no re-opening */
    assert_int_equal(run(tiny, &id_hp, &req, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_CONFIDENCE);
    assert_true(req.sampling.remask == 0.0f);
    proto_request_free(&req);
    /* absent: the model's defaults */
    proto_limits model = lim;
    model.default_order = proto_meta_order("raster");
    model.default_remask = proto_meta_remask("0.25");
    assert_int_equal(proto_parse_generate(tiny, strlen(tiny), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &model, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_RASTER);
    assert_true(req.sampling.remask == 0.25f);
    proto_request_free(&req);
    /* named: the request's, also when it names the plain settings */
    const char *named = "{\"height\":1,\"width\":1,\"order\":\"confidence\",\"remask\":0}";
    assert_int_equal(proto_parse_generate(named, strlen(named), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &model, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_CONFIDENCE);
    assert_true(req.sampling.remask == 0.0f);
    proto_request_free(&req);
    const char *margin = "{\"height\":1,\"width\":1,\"order\":\"margin\",\"remask\":0.5}";
    assert_int_equal(run(margin, &id_hp, &req, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_MARGIN);
    assert_true(req.sampling.remask == 0.5f);
    proto_request_free(&req);
    /* null is absent */
    const char *nulls = "{\"height\":1,\"width\":1,\"order\":null,\"remask\":null}";
    assert_int_equal(proto_parse_generate(nulls, strlen(nulls), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &model, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_RASTER);
    proto_request_free(&req);
    /* a default the limits cannot hold falls back to the plain settings */
    model.default_order = (eng_order)7;
    model.default_remask = NAN;
    assert_int_equal(proto_parse_generate(tiny, strlen(tiny), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &model, &err), PROTO_OK);
    assert_int_equal(req.sampling.order, ENG_ORDER_CONFIDENCE);
    assert_true(req.sampling.remask == 0.0f);
    proto_request_free(&req);
    /* metadata that names no order, or is not one number in [0, 1), suggests nothing */
    assert_int_equal(proto_meta_order(NULL), ENG_ORDER_CONFIDENCE);
    assert_int_equal(proto_meta_order("margin"), ENG_ORDER_MARGIN);
    assert_int_equal(proto_meta_order(" margin"), ENG_ORDER_CONFIDENCE);
    assert_int_equal(proto_meta_order("lifo"), ENG_ORDER_CONFIDENCE);
    assert_true(proto_meta_remask(NULL) == 0.0f);
    assert_true(proto_meta_remask("") == 0.0f);
    assert_true(proto_meta_remask("nan") == 0.0f);
    assert_true(proto_meta_remask("1") == 0.0f);
    assert_true(proto_meta_remask("-0.1") == 0.0f);
    assert_true(proto_meta_remask("0.1x") == 0.0f);
    assert_true(proto_meta_remask("0.125") == 0.125f);
}

static void test_defaults(void **state)
{
    proto_request req;
    proto_error err;
    assert_int_equal(run("{\"height\": 2, \"width\": 3}", &id_hp, &req, &err), PROTO_OK);
    assert_int_equal(req.height, 2);
    assert_int_equal(req.width, 3);
    assert_null(req.model);
    assert_int_equal(req.iterations, PROTO_DEFAULT_ITERATIONS);
    assert_true(req.sampling.temperature == PROTO_DEFAULT_TEMPERATURE);
    assert_int_equal(req.sampling.top_k, 0);
    assert_true(req.sampling.top_p == 1.0f);
    assert_true(req.sampling.remask_noise == 0.0f);
    assert_false(req.stream);
    assert_int_equal(req.deadline_ms, 0);
    assert_false(req.want_text); /* not a byte model */
    assert_int_equal(req.mask_token, 5);
    assert_string_equal(req.open_char, "_");
    for (int i = 0; i < 6; i++)
        assert_int_equal(req.given[i], ENG_OPEN);
    /* no seed given: one is drawn, below 2^53, and recorded */
    assert_false(req.seed_given);
    assert_true(req.sampling.seed < (UINT64_C(1) << 53));
    uint64_t first = req.sampling.seed;
    proto_request_free(&req);
    assert_int_equal(run("{\"height\": 2, \"width\": 3}", &id_hp, &req, &err), PROTO_OK);
    assert_true(req.sampling.seed != first); /* 2^-53 chance of a false failure */
    proto_request_free(&req);

    /* the default iterations never exceed the server's maximum */
    proto_limits small = lim;
    small.max_iterations = 3;
    const char *tiny = "{\"height\":1,\"width\":1}";
    assert_int_equal(proto_parse_generate(tiny, strlen(tiny), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &small, &err), PROTO_OK);
    assert_int_equal(req.iterations, 3);
    proto_request_free(&req);

    /* remask_noise: the model's default when absent, the request's when given */
    proto_limits noisy = lim;
    noisy.default_remask_noise = proto_meta_remask_noise("1.5");
    assert_int_equal(proto_parse_generate(tiny, strlen(tiny), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &noisy, &err), PROTO_OK);
    assert_true(req.sampling.remask_noise == 1.5f);
    proto_request_free(&req);
    const char *plain = "{\"height\":1,\"width\":1,\"remask_noise\":0}";
    assert_int_equal(proto_parse_generate(plain, strlen(plain), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &id_hp, &noisy, &err), PROTO_OK);
    assert_true(req.sampling.remask_noise == 0.0f);
    proto_request_free(&req);
    /* metadata that is not one number in 0..100 suggests nothing */
    assert_true(proto_meta_remask_noise(NULL) == 0.0f);
    assert_true(proto_meta_remask_noise("") == 0.0f);
    assert_true(proto_meta_remask_noise("2x") == 0.0f);
    assert_true(proto_meta_remask_noise("nan") == 0.0f);
    assert_true(proto_meta_remask_noise("-1") == 0.0f);
    assert_true(proto_meta_remask_noise("101") == 0.0f);
    assert_true(proto_meta_remask_noise("0.25") == 0.25f);

    /* null is the same as absent */
    assert_int_equal(run("{\"height\": 1, \"width\": 1, \"seed\": null, \"model\": null, "
                         "\"temperature\": null}",
                         &id_hp, &req, &err),
                     PROTO_OK);
    assert_false(req.seed_given);
    assert_null(req.model);
    assert_true(req.sampling.temperature == PROTO_DEFAULT_TEMPERATURE);
    proto_request_free(&req);
}

static void test_every_field(void **state)
{
    const char *body = "{\"model\": \"tiny\", \"height\": 3, \"width\": 4,"
                       " \"given\": [[1, null, 3], [], [9, 9, 9, 9]], \"iterations\": 12,"
                       " \"temperature\": 0, \"top_k\": 7, \"top_p\": 0.5,"
                       " \"seed\": 9007199254740993, \"stream\": true, \"deadline_ms\": 1500,"
                       " \"return_text\": false}";
    proto_request req;
    proto_error err;
    assert_int_equal(run(body, &id_hp, &req, &err), PROTO_OK);
    assert_string_equal(req.model, "tiny");
    assert_int_equal(req.height, 3);
    assert_int_equal(req.width, 4);
    const int32_t want[12] = {1,        ENG_OPEN, 3, ENG_OPEN, ENG_OPEN, ENG_OPEN,
                              ENG_OPEN, ENG_OPEN, 9, 9,        9,        9};
    assert_memory_equal(req.given, want, sizeof want);
    assert_int_equal(req.iterations, 12);
    assert_true(req.sampling.temperature == 0.0f);
    assert_int_equal(req.sampling.top_k, 7);
    assert_true(req.sampling.top_p == 0.5f);
    assert_true(req.seed_given);
    assert_true(req.sampling.seed == UINT64_C(9007199254740993));
    assert_true(req.stream);
    assert_int_equal(req.deadline_ms, 1500);
    proto_request_free(&req);
}

static void test_size_inferred_from_rows(void **state)
{
    proto_request req;
    proto_error err;
    assert_int_equal(run("{\"given\": [[1], [2, 3, 4], [null, 6]]}", &id_hp, &req, &err), PROTO_OK);
    assert_int_equal(req.height, 3);
    assert_int_equal(req.width, 3);
    const int32_t want[9] = {1, ENG_OPEN, ENG_OPEN, 2, 3, 4, ENG_OPEN, 6, ENG_OPEN};
    assert_memory_equal(req.given, want, sizeof want);
    proto_request_free(&req);

    /* an explicit size larger than the rows pads with open cells */
    assert_int_equal(run("{\"height\": 4, \"width\": 2, \"given\": [[7]]}", &id_hp, &req, &err),
                     PROTO_OK);
    assert_int_equal(req.given[0], 7);
    for (int i = 1; i < 8; i++)
        assert_int_equal(req.given[i], ENG_OPEN);
    proto_request_free(&req);
}

static void test_text_rows(void **state)
{
    proto_request req;
    proto_error err;
    /* default open character "_", short rows padded, inferred size */
    assert_int_equal(run("{\"text\": [\"a_c\", \"\", \"xy\"]}", &byte_hp, &req, &err), PROTO_OK);
    assert_int_equal(req.height, 3);
    assert_int_equal(req.width, 3);
    const int32_t want[9] = {'a', ENG_OPEN, 'c', ENG_OPEN, ENG_OPEN, ENG_OPEN, 'x', 'y', ENG_OPEN};
    assert_memory_equal(req.given, want, sizeof want);
    assert_int_equal(req.n_text, 3);
    assert_true(req.want_text);
    proto_request_free(&req);

    /* a multi-byte open character is one cell; other multi-byte characters
     * are one cell per byte; "_" is then an ordinary byte; \u0000 is byte 0 */
    assert_int_equal(run("{\"open\": \"\\u00b7\", \"text\": [\"_\\u00b7\\u00e9\\u0000\"]}",
                         &byte_hp, &req, &err),
                     PROTO_OK);
    assert_int_equal(req.width, 5);
    const int32_t want2[5] = {'_', ENG_OPEN, 0xC3, 0xA9, 0};
    assert_memory_equal(req.given, want2, sizeof want2);
    assert_string_equal(req.open_char, "\xC2\xB7");
    proto_request_free(&req);

    /* return_text false turns text output off even for byte models */
    assert_int_equal(run("{\"text\": [\"ab\"], \"return_text\": false}", &byte_hp, &req, &err),
                     PROTO_OK);
    assert_false(req.want_text);
    proto_request_free(&req);

    /* a byte model whose mask id is a byte cannot fix that byte through text */
    eng_hparams hp = byte_hp;
    hp.vocab_size = 256;
    hp.mask_token = 'z';
    expect_refused("{\"text\": [\"az\"]}", &hp, PROTO_E_OUT_OF_RANGE, "text[0]", "mask");
}

static void test_content_type(void **state)
{
    proto_error err;
    const char *good[] = {"application/json", "Application/JSON", "application/json; charset=utf-8",
                          "application/json;charset=\"UTF-8\"", " application/json"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(proto_check_content_type(good[i], &err), PROTO_OK);
    const char *bad[] = {NULL,
                         "",
                         "text/plain",
                         "application/jsonx",
                         "application/x-www-form-urlencoded",
                         "application/json; charset=latin1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(proto_check_content_type(bad[i], &err), PROTO_E_UNSUPPORTED_MEDIA_TYPE);
        assert_int_equal(proto_err_status(err.err), 415);
        assert_string_equal(err.field, "Content-Type");
        assert_non_null(strstr(err.message, "Content-Type"));
    }
}

/*
 * The open character "\u0000" passed as one valid byte, then matched as an
 * empty string: the text walk never advanced and wrote past the rows (heap
 * overflow, SIGSEGV in a release build). NUL and every other control
 * character are now refused as `open`, naming it.
 */
static void test_open_control_character_refused(void **state)
{
    expect_refused("{\"text\":[\"ab\"],\"open\":\"\\u0000\",\"height\":1,\"width\":2}", &byte_hp,
                   PROTO_E_OUT_OF_RANGE, "open", "control");
    const char *controls[] = {"\\u0001", "\\n",     "\\t",     "\\u001f",
                              "\\u007f", "\\u0080", "\\u0085", "\\u009f"};
    for (size_t i = 0; i < sizeof controls / sizeof controls[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"text\": [\"a\\u0000b\"], \"open\": \"%s\"}", controls[i]);
        expect_refused(body, &byte_hp, PROTO_E_OUT_OF_RANGE, "open", "control");
    }
    /* the neighbours of the control ranges are ordinary characters */
    const char *fine[] = {" ", "~", "\\u00a0", "\\\"", "\\\\", "\\ud83d\\ude00"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"text\": [\"ab\"], \"open\": \"%s\"}", fine[i]);
        proto_request req;
        proto_error err;
        if (run(body, &byte_hp, &req, &err) != PROTO_OK) fail_msg("%s: %s", body, err.message);
        assert_int_equal(req.width, 2);
        proto_request_free(&req);
    }
}

/* deadline_ms meets a nanosecond clock downstream: above one day it is refused,
 * whatever the server's max_deadline_ms (0: none of its own). */
static void test_deadline_bounded(void **state)
{
    proto_limits open_ended = lim;
    open_ended.max_deadline_ms = 0;
    const char *bodies[] = {"{\"height\":32,\"width\":64,\"iterations\":16,"
                            "\"deadline_ms\":10000000000000}",
                            "{\"height\":1,\"width\":1,\"deadline_ms\":9223372036854775807}",
                            "{\"height\":1,\"width\":1,\"deadline_ms\":86400001}"};
    eng_hparams big = byte_hp;
    big.max_height = 32;
    big.max_width = 64;
    open_ended.max_cells = 0;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        proto_request req;
        proto_error err;
        assert_int_equal(proto_parse_generate(bodies[i], strlen(bodies[i]), &req, &err), PROTO_OK);
        assert_int_equal(proto_validate_generate(&req, &big, &open_ended, &err),
                         PROTO_E_OUT_OF_RANGE);
        assert_string_equal(err.field, "deadline_ms");
        assert_non_null(strstr(err.message, "86400000"));
        proto_request_free(&req);
    }
    /* the bound itself is accepted, and a server maximum below it still wins */
    const char *day = "{\"height\":1,\"width\":1,\"deadline_ms\":86400000}";
    proto_request req;
    proto_error err;
    assert_int_equal(proto_parse_generate(day, strlen(day), &req, &err), PROTO_OK);
    assert_int_equal(proto_validate_generate(&req, &big, &open_ended, &err), PROTO_OK);
    assert_int_equal(req.deadline_ms, PROTO_MAX_DEADLINE_MS);
    proto_request_free(&req);
    expect_refused(day, &byte_hp, PROTO_E_OUT_OF_RANGE, "deadline_ms", "60000");
}

/* Without a server cell limit, a model allowing huge sides still cannot make
 * validate allocate more than PROTO_MAX_CELLS cells. */
static void test_cells_bounded_without_server_limit(void **state)
{
    eng_hparams huge = id_hp;
    huge.max_height = huge.max_width = PROTO_MAX_SIDE;
    proto_limits none = lim;
    none.max_cells = 0;
    const char *bodies[] = {"{\"height\":65536,\"width\":65536}",
                            "{\"height\":4097,\"width\":4096}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        proto_request req;
        proto_error err;
        assert_int_equal(proto_parse_generate(bodies[i], strlen(bodies[i]), &req, &err), PROTO_OK);
        assert_int_equal(proto_validate_generate(&req, &huge, &none, &err), PROTO_E_OUT_OF_RANGE);
        assert_string_equal(err.field, "height");
        assert_non_null(strstr(err.message, "16777216"));
        assert_null(req.given);
        proto_request_free(&req);
    }
}

/* Text rows are bounded in cells, per row and in all, before anything is
 * allocated; a 4-byte open character is one cell. */
static void test_text_cells_bounded(void **state)
{
    /* 65536 open characters of 4 bytes each: 65536 cells, the most a row holds */
    size_t n = PROTO_MAX_SIDE;
    char *body = malloc(64 + 4 * (n + 1));
    int at = sprintf(body, "{\"open\":\"\xF0\x9F\x98\x80\",\"text\":[\"");
    for (size_t i = 0; i < n; i++, at += 4)
        memcpy(body + at, "\xF0\x9F\x98\x80", 4);
    strcpy(body + at, "\"]}");
    proto_request req;
    proto_error err;
    assert_int_equal(proto_parse_generate(body, strlen(body), &req, &err), PROTO_OK);
    assert_int_equal(req.width, PROTO_MAX_SIDE);
    proto_request_free(&req);
    /* one cell more is refused, naming the row */
    strcpy(body + at, "x\"]}");
    assert_int_equal(proto_parse_generate(body, strlen(body), &req, &err), PROTO_E_OUT_OF_RANGE);
    assert_string_equal(err.field, "text[0]");
    assert_non_null(strstr(err.message, "65536"));
    free(body);

    /* 257 full rows: more than PROTO_MAX_CELLS in all */
    size_t rows = PROTO_MAX_CELLS / PROTO_MAX_SIDE + 1, len = 16 + rows * (n + 3);
    body = malloc(len);
    at = sprintf(body, "{\"text\":[");
    for (size_t r = 0; r < rows; r++) {
        body[at++] = r ? ',' : ' ';
        body[at++] = '"';
        memset(body + at, 'a', n);
        at += (int)n;
        body[at++] = '"';
    }
    strcpy(body + at, "]}");
    assert_int_equal(proto_parse_generate(body, strlen(body), &req, &err), PROTO_E_OUT_OF_RANGE);
    assert_string_equal(err.field, "text");
    assert_non_null(strstr(err.message, "16777216"));
    proto_request_free(&req);
    free(body);
}

/* Bodies need not be NUL-terminated: the parser must stop at len. */
static void test_body_not_terminated(void **state)
{
    const char text[] = "{\"height\": 1, \"width\": 2}GARBAGE";
    char *body = malloc(25);
    memcpy(body, text, 25);
    proto_request req;
    proto_error err;
    assert_int_equal(proto_parse_generate(body, 25, &req, &err), PROTO_OK);
    assert_int_equal(req.width, 2);
    proto_request_free(&req);
    free(body);
}

/*
 * Mutated bodies (bytes flipped, inserted, cut) never crash or leak, and
 * every outcome is a known class; run under ASan this is a small fuzzer.
 */
static void test_mutated_bodies(void **state)
{
    const char *seeds[] = {
        "{\"height\": 2, \"width\": 3, \"given\": [[1, null, 3], [4]], \"seed\": 5}",
        "{\"text\": [\"a_b\", \"\\u00e9\"], \"open\": \"_\", \"top_p\": 0.5, \"stream\": true}",
        "{\"model\": \"m\", \"iterations\": 4, \"temperature\": 0.7, \"deadline_ms\": 10}",
    };
    const char alphabet[] = "{}[]\",:0123456789-.eE_ntrufalse\\ \x01\xc3\xa9\xff";
    uint64_t x = 0x9E3779B97F4A7C15u;
    char body[256];
    int ok = 0;
    for (int trial = 0; trial < 30000; trial++) {
        const char *seed = seeds[trial % 3];
        size_t n = strlen(seed);
        memcpy(body, seed, n);
        int edits = 1 + trial % 4;
        for (int k = 0; k < edits; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = n ? (size_t)(x >> 8) % n : 0;
            char c = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            switch ((x >> 40) % 3) {
            case 0:
                body[at] = c;
                break;
            case 1:
                if (n < sizeof body - 1) {
                    memmove(body + at + 1, body + at, n - at);
                    body[at] = c;
                    n++;
                }
                break;
            default:
                n = at;
            }
        }
        proto_request req;
        proto_error err;
        proto_err e = proto_parse_generate(body, n, &req, &err);
        if (!e) e = proto_validate_generate(&req, &byte_hp, &lim, &err);
        assert_true(e >= PROTO_OK && e < PROTO_E_COUNT);
        if (e) {
            int st = proto_err_status(e);
            assert_true(st == 400 || st == 422 || st == 500);
            assert_true(err.message[0] != '\0');
        } else {
            ok++;
            assert_true(req.height >= 1 && req.height <= byte_hp.max_height);
            assert_non_null(req.given);
        }
        proto_request_free(&req);
    }
    assert_true(ok > 0); /* some mutations stay valid, so both paths ran */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_wrong_types_name_the_field),
        cmocka_unit_test(test_unknown_missing_and_conflicting_fields),
        cmocka_unit_test(test_out_of_range_names_field_and_bound),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_order_and_remask),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_size_inferred_from_rows),
        cmocka_unit_test(test_text_rows),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_body_not_terminated),
        cmocka_unit_test(test_open_control_character_refused),
        cmocka_unit_test(test_deadline_bounded),
        cmocka_unit_test(test_cells_bounded_without_server_limit),
        cmocka_unit_test(test_text_cells_bounded),
        cmocka_unit_test(test_mutated_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
