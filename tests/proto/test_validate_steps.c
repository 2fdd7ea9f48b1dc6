/*
 * test_validate_steps.c - proto_validate_generate for a model that takes one
 * step per open cell (proto_limits.cell_per_step, arch
 * nonlinear-transformer-0.0.3): its mask token may be given, its iterations
 * are its open cells and bounded by max_iterations, the order and re-masking
 * settings are replaced by what runs; and its grids render with only the
 * ENG_OPEN cells as null. The same bodies against an ordinary model show
 * what does not change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const int windows[1] = {1};
static const int dilations[1] = {1};

/* The seed fixture's shape: 16 ids, the mask (pad value) 0, at most 8 x 8. */
static const eng_hparams seed_hp = {
    .vocab_size = 16,
    .dim = 8,
    .depth = 1,
    .heads = 1,
    .head_dim = 8,
    .mlp_hidden = 32,
    .max_height = 8,
    .max_width = 8,
    .mask_token = 0,
    .tokenizer = ENG_TOKENIZER_NONE,
    .rope_base = 10000,
    .norm_eps = 1e-5f,
    .window = windows,
    .dilation = dilations,
};

static const proto_limits steps_lim = {
    .max_iterations = 32, .max_cells = 100, .max_deadline_ms = 60000, .cell_per_step = 1};
static const proto_limits plain_lim = {
    .max_iterations = 32, .max_cells = 100, .max_deadline_ms = 60000};

static proto_err run(const char *body, const proto_limits *lim, proto_request *req,
                     proto_error *err)
{
    memset(err, 0, sizeof *err);
    proto_err e = proto_parse_generate(body, strlen(body), req, err);
    if (e) return e;
    return proto_validate_generate(req, &seed_hp, lim, err);
}

/* The mask token is an ordinary id for such a model: kept as given. For
 * another model it is still refused, naming the cell. */
static void test_mask_token_given(void **state)
{
    (void)state;
    const char *body = "{\"height\": 3, \"width\": 3, \"given\": [[0, null, 7], [null, 0]]}";
    proto_request req;
    proto_error err;
    assert_int_equal(run(body, &steps_lim, &req, &err), PROTO_OK);
    assert_int_equal(req.given[0], 0);
    assert_int_equal(req.given[1], ENG_OPEN);
    assert_int_equal(req.given[2], 7);
    assert_int_equal(req.given[4], 0);
    assert_int_equal(req.mask_token, ENG_OPEN);
    assert_int_equal(req.iterations, 9 - 3);
    proto_request_free(&req);

    assert_int_equal(run(body, &plain_lim, &req, &err), PROTO_E_OUT_OF_RANGE);
    assert_string_equal(err.field, "given[0][0]");
    assert_non_null(strstr(err.message, "mask token"));
    proto_request_free(&req);
}

/* The iterations are the open cells whatever the request asks, and order,
 * remask and remask_noise are what runs: raster, 0, 0. */
static void test_what_runs_replaces_the_request(void **state)
{
    (void)state;
    const char *body = "{\"height\": 4, \"width\": 4, \"given\": [[1, 2], [3]], \"iterations\": 3,"
                       " \"order\": \"margin\", \"remask\": 0.5, \"remask_noise\": 2}";
    proto_request req;
    proto_error err;
    assert_int_equal(run(body, &steps_lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 16 - 3);
    assert_int_equal(req.sampling.order, ENG_ORDER_RASTER);
    assert_true(req.sampling.remask == 0.0f);
    assert_true(req.sampling.remask_noise == 0.0f);
    proto_request_free(&req);

    /* An ordinary model runs what was asked. */
    assert_int_equal(run(body, &plain_lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 3);
    assert_int_equal(req.sampling.order, ENG_ORDER_MARGIN);
    assert_true(req.sampling.remask == 0.5f);
    assert_int_equal(req.mask_token, 0);
    proto_request_free(&req);

    /* Absent iterations: the open cells, not the default. */
    assert_int_equal(run("{\"height\": 2, \"width\": 2}", &steps_lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 4);
    proto_request_free(&req);

    /* Nothing open: one step, which reports the grid. */
    assert_int_equal(run("{\"given\": [[1, 2], [3, 0]]}", &steps_lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 1);
    proto_request_free(&req);

    /* The field's own range still holds. */
    assert_int_equal(
        run("{\"height\": 2, \"width\": 2, \"iterations\": 0}", &steps_lim, &req, &err),
        PROTO_E_OUT_OF_RANGE);
    assert_string_equal(err.field, "iterations");
    proto_request_free(&req);
}

/* More open cells than max_iterations: 422 naming iterations, the count and
 * the bound; exactly max_iterations passes. */
static void test_open_cells_bounded_by_max_iterations(void **state)
{
    (void)state;
    proto_request req;
    proto_error err;
    proto_limits lim = steps_lim;
    lim.max_iterations = 20;
    /* 6 x 6 with 15 cells given (row 0..1 and 3 of row 2): 21 open. */
    const char *body = "{\"height\": 6, \"width\": 6, \"iterations\": 4, \"given\": "
                       "[[1,1,1,1,1,1],[2,2,2,2,2,2],[3,3,3]]}";
    assert_int_equal(run(body, &lim, &req, &err), PROTO_E_OUT_OF_RANGE);
    assert_int_equal(proto_err_status(err.err), 422);
    assert_string_equal(err.field, "iterations");
    assert_string_equal(err.message, "this model takes one step per open cell: 21 open cells "
                                     "exceed max_iterations 20");
    proto_request_free(&req);

    lim.max_iterations = 21;
    assert_int_equal(run(body, &lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 21);
    proto_request_free(&req);

    /* An ordinary model is bounded by its iterations only. */
    lim = plain_lim;
    lim.max_iterations = 20;
    const char *v1 = "{\"height\": 6, \"width\": 6, \"iterations\": 4}";
    assert_int_equal(run(v1, &lim, &req, &err), PROTO_OK);
    assert_int_equal(req.iterations, 4);
    proto_request_free(&req);
}

static json_t *parse(const proto_buf *b)
{
    json_error_t je;
    json_t *v = json_loadb(b->data, b->len, 0, &je);
    if (!v) fail_msg("not JSON (%s): %.*s", je.text, (int)b->len, b->data);
    return v;
}

/* With mask_token ENG_OPEN, id 0 renders as 0 and only ENG_OPEN as null;
 * events report the request's iterations (the open cells). */
static void test_render_ordinary_mask_id(void **state)
{
    (void)state;
    proto_request req;
    proto_error err;
    assert_int_equal(run("{\"given\": [[0, null], [null, 4]]}", &steps_lim, &req, &err), PROTO_OK);
    const int32_t tokens[4] = {0, 9, ENG_OPEN, 4};
    proto_grid g = {.iteration = 1, .open = 1, .tokens = tokens};
    proto_buf b = {0};
    assert_int_equal(proto_render_sse_iteration(&b, &req, &g), 0);
    const char *data = strstr(b.data, "data: ");
    assert_non_null(data);
    proto_buf d = {.data = (char *)data + 6, .len = strlen(data + 6)};
    json_t *v = parse(&d);
    assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 2);
    json_t *grid = json_object_get(v, "grid");
    assert_int_equal(json_integer_value(json_array_get(json_array_get(grid, 0), 0)), 0);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(grid, 0), 1)), 9);
    assert_true(json_is_null(json_array_get(json_array_get(grid, 1), 0)));
    json_decref(v);

    proto_buf_reset(&b);
    const int32_t done[4] = {0, 9, 0, 4};
    proto_grid r = {.iteration = 2, .open = 0, .tokens = done};
    proto_timings t = {0};
    assert_int_equal(proto_render_result(&b, &req, "id", "seed", &r, &t), 0);
    v = parse(&b);
    assert_string_equal(json_string_value(json_object_get(v, "order")), "raster");
    assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 2);
    json_t *row = json_array_get(json_object_get(v, "grid"), 1);
    assert_int_equal(json_integer_value(json_array_get(row, 0)), 0);
    json_decref(v);
    proto_buf_free(&b);
    proto_request_free(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_token_given),
        cmocka_unit_test(test_what_runs_replaces_the_request),
        cmocka_unit_test(test_open_cells_bounded_by_max_iterations),
        cmocka_unit_test(test_render_ordinary_mask_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
