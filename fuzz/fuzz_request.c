/*
 * fuzz_request.c - libFuzzer driver for the whole request path of POST
 * /generate: any bytes are a request body. Each body is parsed and validated
 * against three models (a byte model with vocab 257 and mask 256, an opaque
 * id model with the mask inside the vocabulary, and a tiny byte model whose
 * vocabulary goes past 255), each with its own server limits. A refusal is
 * rendered as the error body and the SSE error frame; an accepted request
 * gets a synthetic result grid - a deterministic function of the input that
 * mixes mask cells, the given ids, input bytes and ids outside the
 * vocabulary - rendered as the JSON result, an SSE iteration frame and the
 * done frame.
 *
 * Oracles beyond "no crash, no leak" (ASan, UBSan): a refusal is a 400 or
 * 422 whose message names its field; an accepted request satisfies every
 * bound proto.h promises; every rendered body is valid UTF-8 JSON of the
 * documented shape whose grid holds exactly the synthetic ids (null for the
 * mask); every SSE frame is "event: NAME\ndata: JSON\n\n" with the JSON on
 * one line. `make fuzz` builds and runs it with fuzz/request.dict on a copy
 * of fuzz/corpus/request.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/oracle.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int windows[2] = {3, ENG_WINDOW_GLOBAL};
static const int dilations[2] = {1, 2};

#define HP(V, MASK, H, W, TOK)                                                                     \
    {                                                                                              \
        .vocab_size = V, .dim = 32, .depth = 2, .heads = 2, .head_dim = 16, .mlp_hidden = 128,     \
        .max_height = H, .max_width = W, .mask_token = MASK, .tokenizer = TOK, .rope_base = 10000, \
        .norm_eps = 1e-5f, .window = windows, .dilation = dilations                                \
    }

/* One model with the server limits it is served under. */
static const struct variant {
    eng_hparams hp;
    proto_limits lim;
} variants[] = {
    {HP(257, 256, 8, 16, ENG_TOKENIZER_BYTE),
     {.max_iterations = 16, .max_cells = 100, .max_deadline_ms = 60000}},
    {HP(10, 5, 4, 4, ENG_TOKENIZER_NONE),
     {.max_iterations = 64,
      .max_cells = 0,
      .max_deadline_ms = 0,
      .default_remask_noise = 1.5f,
      .default_order = ENG_ORDER_MARGIN,
      .default_remask = 0.25f}},
    {HP(300, 299, 2, 3, ENG_TOKENIZER_BYTE),
     {.max_iterations = 1, .max_cells = 4, .max_deadline_ms = 1}},
    /* One step per open cell; the mask token (0) an ordinary id. */
    {HP(16, 0, 8, 8, ENG_TOKENIZER_NONE), {.max_iterations = 20, .cell_per_step = 1}},
};

/* Timings a server could (or should never) hand over; the renderer copes with all. */
static const double odd_ms[] = {0, 0.0004, 1.25, 31.5, 1e9, -1, NAN, INFINITY, -INFINITY, DBL_MAX};

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

/* The id cell i of the synthetic grid holds. */
static int32_t synthetic(const proto_request *req, const eng_hparams *hp, const uint8_t *data,
                         size_t size, uint64_t h, size_t i)
{
    static const int32_t odd[] = {-1, INT32_MIN, INT32_MAX, 255, 256, 257, 0xC3, 0xA9, 0xED, 0xF4};
    uint64_t x = mix(h ^ i);
    switch (x % 8) {
    case 0:
        return req->mask_token;
    case 1:
        if (req->given[i] != ENG_OPEN) return req->given[i];
        /* fall through */
    case 2:
    case 3:
    case 4:
        return size ? data[i % size] : 0;
    case 5:
        return (int32_t)((x >> 8) % (uint64_t)(hp->vocab_size + 2));
    default:
        return odd[(x >> 8) % (sizeof odd / sizeof odd[0])];
    }
}

/* A refusal: its class and message, then both renderings of it. */
static void check_refusal(proto_err e, const proto_error *err)
{
    int st = proto_err_status(e);
    FZ_CHECK(e == err->err, "returned %d, recorded %d", e, err->err);
    FZ_CHECK(st == 400 || st == 422, "status %d (%s): %s", st, proto_err_code(e), err->message);
    FZ_CHECK(err->message[0], "empty message");
    FZ_CHECK(!err->field[0] || strstr(err->message, err->field), "message '%s' omits field '%s'",
             err->message, err->field);

    proto_buf b = {0};
    FZ_CHECK(proto_render_error(&b, err) == 0, "render_error failed");
    json_t *v = fz_json(b.data, b.len, JSON_OBJECT);
    json_t *o = json_object_get(v, "error");
    FZ_CHECK(json_is_object(o), "no error object");
    FZ_CHECK(json_is_string(json_object_get(o, "code")) &&
                 !strcmp(json_string_value(json_object_get(o, "code")), proto_err_code(e)),
             "wrong code");
    FZ_CHECK(json_is_string(json_object_get(o, "message")), "no message");
    FZ_CHECK(!json_object_get(o, "field") == !err->field[0], "field present iff set");
    json_decref(v);
    proto_buf_reset(&b);
    FZ_CHECK(proto_render_sse_error(&b, err) == 0, "render_sse_error failed");
    json_decref(fz_sse_frame(b.data, b.len, "error"));
    proto_buf_free(&b);
}

/* What proto_validate_generate promises about an accepted request. */
static void check_accepted(const proto_request *req, const struct variant *va)
{
    const eng_hparams *hp = &va->hp;
    const proto_limits *lim = &va->lim;
    int64_t cells = (int64_t)req->height * req->width;
    FZ_CHECK(req->height >= 1 && req->height <= hp->max_height, "height %d", req->height);
    FZ_CHECK(req->width >= 1 && req->width <= hp->max_width, "width %d", req->width);
    FZ_CHECK(cells <= PROTO_MAX_CELLS && (lim->max_cells == 0 || cells <= lim->max_cells),
             "cells %lld", (long long)cells);
    FZ_CHECK(req->iterations >= 1 && req->iterations <= lim->max_iterations, "iterations %d",
             req->iterations);
    FZ_CHECK(req->given, "no given grid");
    int64_t open = 0;
    for (int64_t i = 0; i < cells; i++) {
        open += req->given[i] == ENG_OPEN;
        FZ_CHECK(req->given[i] == ENG_OPEN ||
                     (req->given[i] >= 0 && req->given[i] < hp->vocab_size &&
                      (req->given[i] != hp->mask_token || lim->cell_per_step)),
                 "given[%lld] = %d", (long long)i, req->given[i]);
    }
    if (lim->cell_per_step)
        FZ_CHECK(req->iterations == (open > 0 ? open : 1) &&
                     req->sampling.order == ENG_ORDER_RASTER && req->sampling.remask == 0 &&
                     req->sampling.remask_noise == 0,
                 "one step per open cell: %d iterations for %lld open cells", req->iterations,
                 (long long)open);
    float t = req->sampling.temperature, p = req->sampling.top_p, nu = req->sampling.remask_noise;
    FZ_CHECK(t >= 0 && t <= PROTO_MAX_TEMPERATURE, "temperature %g", (double)t);
    FZ_CHECK(p > 0 && p <= 1, "top_p %g", (double)p);
    FZ_CHECK(nu >= 0 && nu <= ENG_MAX_REMASK_NOISE, "remask_noise %g", (double)nu);
    FZ_CHECK(eng_order_name((int)req->sampling.order) != NULL, "order %d",
             (int)req->sampling.order);
    FZ_CHECK(req->sampling.remask >= 0 && req->sampling.remask < 1, "remask %g",
             (double)req->sampling.remask);
    FZ_CHECK(req->sampling.top_k >= 0 && req->sampling.top_k <= hp->vocab_size, "top_k %d",
             req->sampling.top_k);
    FZ_CHECK(req->seed_given || req->sampling.seed < (UINT64_C(1) << 53), "drawn seed too big");
    FZ_CHECK(req->sampling.seed <= INT64_MAX, "seed above 2^63-1");
    FZ_CHECK(req->deadline_ms == 0 ||
                 (req->deadline_ms >= 1 && req->deadline_ms <= PROTO_MAX_DEADLINE_MS &&
                  (lim->max_deadline_ms == 0 || req->deadline_ms <= lim->max_deadline_ms)),
             "deadline_ms %lld", (long long)req->deadline_ms);
    size_t ol = strlen(req->open_char);
    uint32_t cp = 0;
    FZ_CHECK(ol >= 1 && fz_utf8_char((const unsigned char *)req->open_char, ol, &cp) == (int)ol,
             "open is not one character");
    FZ_CHECK(cp >= 0x20 && !(cp >= 0x7F && cp <= 0x9F), "open U+%04X is a control", cp);
    FZ_CHECK(req->mask_token == (lim->cell_per_step ? ENG_OPEN : hp->mask_token),
             "mask token not set");
    FZ_CHECK(!req->want_text || hp->tokenizer == ENG_TOKENIZER_BYTE, "text for a non-byte model");
}

/* "grid" (and "text" with want_text) of a rendered object hold tokens. */
static void check_grid(json_t *v, const proto_request *req, const int32_t *tokens)
{
    json_t *g = json_object_get(v, "grid");
    FZ_CHECK(json_is_array(g) && json_array_size(g) == (size_t)req->height, "grid rows");
    for (int y = 0; y < req->height; y++) {
        json_t *row = json_array_get(g, (size_t)y);
        FZ_CHECK(json_is_array(row) && json_array_size(row) == (size_t)req->width, "grid row %d",
                 y);
        for (int x = 0; x < req->width; x++) {
            json_t *c = json_array_get(row, (size_t)x);
            int32_t want = tokens[(size_t)y * req->width + x];
            if (want == req->mask_token)
                FZ_CHECK(json_is_null(c), "mask cell (%d, %d) is not null", y, x);
            else
                FZ_CHECK(json_is_integer(c) && json_integer_value(c) == want, "cell (%d, %d)", y,
                         x);
        }
    }
    json_t *text = json_object_get(v, "text");
    if (!req->want_text) {
        FZ_CHECK(!text, "text rows without want_text");
        return;
    }
    FZ_CHECK(json_is_array(text) && json_array_size(text) == (size_t)req->height, "text rows");
    for (int y = 0; y < req->height; y++) {
        json_t *row = json_array_get(text, (size_t)y);
        FZ_CHECK(json_is_string(row), "text row %d is not a string", y);
        /* each cell renders as one code point at most, a valid sequence of k cells as one */
        size_t k = fz_utf8_count(json_string_value(row), json_string_length(row));
        FZ_CHECK(k >= 1 && k <= (size_t)req->width, "text row %d: %zu code points for %d cells", y,
                 k, req->width);
    }
}

static void check_timings(json_t *v)
{
    static const char *const keys[] = {"queued_ms", "compute_ms", "total_ms", "first_iteration_ms"};
    json_t *t = json_object_get(v, "timings");
    FZ_CHECK(json_is_object(t) && json_object_size(t) == 4, "timings");
    for (int i = 0; i < 4; i++) {
        json_t *x = json_object_get(t, keys[i]);
        FZ_CHECK(json_is_number(x) && json_number_value(x) >= 0, "timing %s", keys[i]);
    }
}

static int64_t int_of(json_t *v, const char *key)
{
    json_t *x = json_object_get(v, key);
    FZ_CHECK(json_is_integer(x), "%s is not an integer", key);
    return json_integer_value(x);
}

/* Renders the result, an iteration frame and the done frame of an accepted request. */
/* The order and remask used are echoed as they are in req. */
static void check_order_echo(json_t *v, const proto_request *req)
{
    const char *o = json_string_value(json_object_get(v, "order"));
    FZ_CHECK(o && !strcmp(o, eng_order_name((int)req->sampling.order)), "order echo");
    json_t *r = json_object_get(v, "remask");
    FZ_CHECK(json_is_number(r) && (float)json_number_value(r) == req->sampling.remask,
             "remask echo");
    json_t *nu = json_object_get(v, "remask_noise");
    FZ_CHECK(json_is_number(nu) && (float)json_number_value(nu) == req->sampling.remask_noise,
             "remask_noise echo");
}

static void render_all(const proto_request *req, const struct variant *va, const uint8_t *data,
                       size_t size, uint64_t h)
{
    size_t cells = (size_t)req->height * (size_t)req->width;
    int32_t *tokens = malloc(cells * sizeof *tokens);
    FZ_CHECK(tokens, "out of memory");
    int open = 0;
    for (size_t i = 0; i < cells; i++) {
        tokens[i] = synthetic(req, &va->hp, data, size, h, i);
        open += tokens[i] == req->mask_token;
    }
    size_t nt = sizeof odd_ms / sizeof odd_ms[0];
    proto_timings t = {odd_ms[h % nt], odd_ms[(h >> 8) % nt], odd_ms[(h >> 16) % nt],
                       odd_ms[(h >> 24) % nt]};
    int iteration = 1 + (int)((h >> 32) % (uint64_t)req->iterations);
    const char *model = req->model ? req->model : "default";
    proto_grid g = {.iteration = iteration, .open = open, .tokens = tokens};
    proto_buf b = {0};

    FZ_CHECK(proto_render_result(&b, req, "req-1", model, &g, &t) == 0, "render_result failed");
    json_t *v = fz_json(b.data, b.len, JSON_OBJECT);
    FZ_CHECK(int_of(v, "height") == req->height && int_of(v, "width") == req->width, "size");
    FZ_CHECK(int_of(v, "iterations") == iteration, "iterations");
    FZ_CHECK((uint64_t)int_of(v, "seed") == req->sampling.seed, "seed");
    FZ_CHECK(!strcmp(json_string_value(json_object_get(v, "model")), model), "model echo");
    FZ_CHECK(json_is_number(json_object_get(v, "remask_noise")), "remask_noise");
    check_order_echo(v, req);
    check_grid(v, req, tokens);
    check_timings(v);
    json_decref(v);

    proto_buf_reset(&b);
    FZ_CHECK(proto_render_sse_iteration(&b, req, &g) == 0, "render_sse_iteration failed");
    v = fz_sse_frame(b.data, b.len, "iteration");
    FZ_CHECK(int_of(v, "iteration") == iteration && int_of(v, "iterations") == req->iterations &&
                 int_of(v, "open") == open,
             "iteration frame counters");
    check_grid(v, req, tokens);
    json_decref(v);

    proto_buf_reset(&b);
    FZ_CHECK(proto_render_sse_done(&b, req, "req-1", model, iteration, &t) == 0,
             "render_sse_done failed");
    v = fz_sse_frame(b.data, b.len, "done");
    FZ_CHECK((uint64_t)int_of(v, "seed") == req->sampling.seed, "done seed");
    check_order_echo(v, req);
    check_timings(v);
    json_decref(v);
    proto_buf_free(&b);
    free(tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a of the input seeds the synthetic grid */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211u;
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
        const struct variant *va = &variants[k];
        proto_request req;
        proto_error err;
        memset(&err, 0, sizeof err);
        proto_err e = proto_parse_generate((const char *)data, size, &req, &err);
        if (e == PROTO_OK) e = proto_validate_generate(&req, &va->hp, &va->lim, &err);
        if (e != PROTO_OK) {
            check_refusal(e, &err);
        } else {
            check_accepted(&req, va);
            render_all(&req, va, data, size, h ^ k);
        }
        proto_request_free(&req);
    }
    return 0;
}
