/*
 * render.c - results as JSON bodies and Server-Sent Events, the model list
 * and the health bodies. Written by hand into a proto_buf rather than built
 * as a jansson tree: a grid is thousands of small integers rendered on every
 * iteration of every stream, and the number formats (3-decimal timings) are
 * part of the contract.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

/* Appends a decimal integer without the cost of a printf per grid cell. */
static void put_int(proto_buf *b, int64_t v)
{
    char tmp[24];
    int i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    proto_buf_append(b, tmp + i, sizeof tmp - (size_t)i);
}

static void put_key(proto_buf *b, const char *key)
{
    proto__json_cstr(b, key);
    proto_buf_append(b, ":", 1);
}

/* "grid":[[id|null,...],...] and, with want_text, "text":[...]. */
static void put_grid(proto_buf *b, const proto_request *req, const int32_t *tokens)
{
    proto_buf_puts(b, "\"grid\":[");
    for (int y = 0; y < req->height; y++) {
        const int32_t *row = tokens + (size_t)y * req->width;
        proto_buf_puts(b, y ? ",[" : "[");
        for (int x = 0; x < req->width; x++) {
            if (x) proto_buf_append(b, ",", 1);
            if (row[x] == req->mask_token)
                proto_buf_append(b, "null", 4);
            else
                put_int(b, row[x]);
        }
        proto_buf_append(b, "]", 1);
    }
    proto_buf_append(b, "]", 1);
    if (!req->want_text) return;
    proto_buf_puts(b, ",\"text\":[");
    for (int y = 0; y < req->height; y++) {
        if (y) proto_buf_append(b, ",", 1);
        proto_render_text_row(b, tokens + (size_t)y * req->width, req->width, req->mask_token,
                              req->open_char);
    }
    proto_buf_append(b, "]", 1);
}

/* A time or a remask_noise as JSON: printf's "nan" and "inf" are not JSON,
 * and the contract says both are >= 0, so anything else (never expected from
 * a validated request and the server's clocks) renders as 0. */
static double nonneg(double v)
{
    return isfinite(v) && v > 0 ? v : 0.0;
}

/* A float the client sent, echoed so that it reads back as the same float:
 * the shortest of %.6g .. %.9g that round-trips (0.1 stays "0.1"; %g alone
 * turns 0.9999909 into 1). */
static void put_float(proto_buf *b, float v)
{
    char s[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v) break;
    }
    proto_buf_puts(b, s);
}

static void put_timings(proto_buf *b, const proto_timings *t)
{
    proto_buf_printf(b,
                     "\"timings\":{\"queued_ms\":%.3f,\"compute_ms\":%.3f,\"total_ms\":%.3f,"
                     "\"first_iteration_ms\":%.3f}",
                     nonneg(t->queued_ms), nonneg(t->compute_ms), nonneg(t->total_ms),
                     nonneg(t->first_iteration_ms));
}

/* "remask_noise":..,"order":..,"remask":.., (trailing comma): the sampling
 * settings the result and the done event echo. A remask outside [0, 1), never
 * expected after validation, renders 0. */
static void put_sampling_echo(proto_buf *b, const proto_request *req)
{
    const char *name = eng_order_name((int)req->sampling.order);
    float rm = req->sampling.remask;
    proto_buf_puts(b, "\"remask_noise\":");
    put_float(b, (float)nonneg(req->sampling.remask_noise));
    proto_buf_printf(b, ",\"order\":\"%s\",\"remask\":", name ? name : "confidence");
    put_float(b, rm >= 0 && rm < 1 ? rm : 0.0f);
    proto_buf_append(b, ",", 1);
}

/* "request_id":..,"model":.., shared by the result and the done event. */
static void put_ids(proto_buf *b, const char *request_id, const char *model)
{
    put_key(b, "request_id");
    proto__json_cstr(b, request_id ? request_id : "");
    proto_buf_append(b, ",", 1);
    put_key(b, "model");
    proto__json_cstr(b, model ? model : "");
}

int proto_render_result(proto_buf *b, const proto_request *req, const char *request_id,
                        const char *model, const proto_grid *g, const proto_timings *t)
{
    proto_buf_append(b, "{", 1);
    put_ids(b, request_id, model);
    proto_buf_printf(b, ",\"height\":%d,\"width\":%d,\"iterations\":%d,\"seed\":%" PRIu64 ",",
                     req->height, req->width, g->iteration, req->sampling.seed);
    put_sampling_echo(b, req);
    put_grid(b, req, g->tokens);
    proto_buf_append(b, ",", 1);
    put_timings(b, t);
    return proto_buf_append(b, "}", 1);
}

int proto_render_sse_iteration(proto_buf *b, const proto_request *req, const proto_grid *g)
{
    proto_buf_printf(b, "event: iteration\ndata: {\"iteration\":%d,\"iterations\":%d,\"open\":%d,",
                     g->iteration, req->iterations, g->open);
    put_grid(b, req, g->tokens);
    return proto_buf_puts(b, "}\n\n");
}

int proto_render_sse_done(proto_buf *b, const proto_request *req, const char *request_id,
                          const char *model, int iterations_run, const proto_timings *t)
{
    proto_buf_puts(b, "event: done\ndata: {");
    put_ids(b, request_id, model);
    proto_buf_printf(b, ",\"iterations\":%d,\"seed\":%" PRIu64 ",", iterations_run,
                     req->sampling.seed);
    put_sampling_echo(b, req);
    put_timings(b, t);
    return proto_buf_puts(b, "}\n\n");
}

static void put_int_list(proto_buf *b, const int *v, int n, int global_ok)
{
    proto_buf_append(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) proto_buf_append(b, ",", 1);
        if (global_ok && v[i] == ENG_WINDOW_GLOBAL)
            proto_buf_puts(b, "\"global\"");
        else
            put_int(b, v[i]);
    }
    proto_buf_append(b, "]", 1);
}

static void put_model(proto_buf *b, const proto_model_info *m, const proto_limits *lim)
{
    const eng_hparams *hp = m->hp;
    /* "id" is the same name under the key OpenAI-style clients look for. */
    proto_buf_append(b, "{", 1);
    put_key(b, "id");
    proto__json_cstr(b, m->name ? m->name : "");
    proto_buf_append(b, ",", 1);
    put_key(b, "name");
    proto__json_cstr(b, m->name ? m->name : "");
    proto_buf_printf(b, ",\"default\":%s", m->is_default ? "true" : "false");
    if (m->path) {
        proto_buf_append(b, ",", 1);
        put_key(b, "path");
        proto__json_cstr(b, m->path);
    }
    if (m->arch) {
        proto_buf_append(b, ",", 1);
        put_key(b, "arch");
        proto__json_cstr(b, m->arch);
    }
    if (m->precision) {
        proto_buf_append(b, ",", 1);
        put_key(b, "precision");
        proto__json_cstr(b, m->precision);
    }
    if (m->isa) {
        proto_buf_append(b, ",", 1);
        put_key(b, "isa");
        proto__json_cstr(b, m->isa);
    }
    if (m->state) {
        proto_buf_append(b, ",", 1);
        put_key(b, "state");
        proto__json_cstr(b, m->state);
        proto_buf_puts(b, ",\"last_error\":");
        if (m->last_error)
            proto__json_cstr(b, m->last_error);
        else
            proto_buf_puts(b, "null");
        proto_buf_printf(b, ",\"generation\":%ld", m->generation);
    }
    proto_buf_printf(b,
                     ",\"hparams\":{\"vocab_size\":%d,\"dim\":%d,\"depth\":%d,\"heads\":%d,"
                     "\"head_dim\":%d,\"mlp_hidden\":%d,\"window\":",
                     hp->vocab_size, hp->dim, hp->depth, hp->heads, hp->head_dim, hp->mlp_hidden);
    put_int_list(b, hp->window, hp->depth, 1);
    proto_buf_puts(b, ",\"dilation\":");
    put_int_list(b, hp->dilation, hp->depth, 0);
    proto_buf_printf(b,
                     ",\"rope_base\":%.7g,\"norm_eps\":%.7g,\"mask_token\":%d,\"tokenizer\":\"%s\","
                     "\"max_height\":%d,\"max_width\":%d}",
                     (double)hp->rope_base, (double)hp->norm_eps, hp->mask_token,
                     hp->tokenizer == ENG_TOKENIZER_BYTE ? "byte" : "none", hp->max_height,
                     hp->max_width);
    int64_t cells = (int64_t)hp->max_height * hp->max_width;
    if (proto__max_cells(lim) < cells) cells = proto__max_cells(lim);
    proto_buf_printf(b,
                     ",\"limits\":{\"max_height\":%d,\"max_width\":%d,\"max_cells\":%" PRId64
                     ",\"max_iterations\":%d,\"max_deadline_ms\":%" PRId64 "}",
                     hp->max_height, hp->max_width, cells, lim->max_iterations,
                     proto__max_deadline_ms(lim));
    proto_buf_puts(b, ",\"metadata\":{");
    for (int i = 0; i < m->n_meta; i++) {
        if (i) proto_buf_append(b, ",", 1);
        put_key(b, m->meta_keys[i]);
        proto__json_cstr(b, m->meta_values[i] ? m->meta_values[i] : "");
    }
    proto_buf_puts(b, "}}");
}

int proto_render_models(proto_buf *b, const proto_model_info *models, int n,
                        const proto_limits *lim)
{
    const char *def = NULL;
    for (int i = 0; i < n && !def; i++)
        if (models[i].is_default) def = models[i].name;
    proto_buf_puts(b, "{\"object\":\"list\",\"default\":");
    if (def)
        proto__json_cstr(b, def);
    else
        proto_buf_puts(b, "null");
    proto_buf_puts(b, ",\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i) proto_buf_append(b, ",", 1);
        put_model(b, &models[i], lim);
    }
    return proto_buf_puts(b, "]}");
}

int proto_render_model(proto_buf *b, const proto_model_info *m, const proto_limits *lim)
{
    put_model(b, m, lim);
    return b->oom ? -1 : 0;
}

int proto_render_status(proto_buf *b, const char *status, const char *detail)
{
    proto_buf_puts(b, "{\"status\":");
    proto__json_cstr(b, status ? status : "");
    if (detail) {
        proto_buf_puts(b, ",\"detail\":");
        proto__json_cstr(b, detail);
    }
    return proto_buf_append(b, "}", 1);
}
