/*
 * validate.c - stage 2 of a POST /generate: ranges against the chosen model
 * and the server's limits, then the request is completed (size, the full
 * `given` grid, defaults, a seed) so that nothing downstream guesses.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "proto/internal.h"

/* A seed below 2^53 survives a round trip through a JavaScript number. */
static uint64_t random_seed(void)
{
    static atomic_uint_fast64_t counter;
    uint64_t x;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        /* No entropy yet (early boot): the clock and a counter, mixed. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
            (atomic_fetch_add(&counter, 1) << 40);
        x += 0x9E3779B97F4A7C15u;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
        x ^= x >> 31;
    }
    return x & ((UINT64_C(1) << 53) - 1);
}

static proto_err side(const char *name, int v, int max, const char *maxname, proto_error *err)
{
    if (v < 1)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name, "%s: %d is below the minimum 1",
                               name, v);
    if (v > max)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name, "%s: %d is above the model's %s %d",
                               name, v, maxname, max);
    return PROTO_OK;
}

/* Checks the rows against the size and the vocabulary; `src` is "given" or "text". */
static proto_err check_rows(const proto_request *req, const eng_hparams *hp, proto_error *err)
{
    const char *src = req->n_text ? "text" : "given";
    char name[PROTO_FIELD_MAX];
    if (req->n_rows > req->height)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, src,
                               "%s has %d rows, more than height %d", src, req->n_rows,
                               req->height);
    for (int r = 0; r < req->n_rows; r++) {
        snprintf(name, sizeof name, "%s[%d]", src, r);
        if (req->row_len[r] > req->width)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                   "%s has %d cells, more than width %d", name, req->row_len[r],
                                   req->width);
        const int32_t *row = req->rows + req->row_off[r];
        for (int c = 0; c < req->row_len[r]; c++) {
            if (row[c] == ENG_OPEN) continue;
            if (!req->n_text) snprintf(name, sizeof name, "given[%d][%d]", r, c);
            if (row[c] >= hp->vocab_size)
                return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                       "%s: token id %d is outside the vocabulary 0..%d", name,
                                       (int)row[c], hp->vocab_size - 1);
            if (row[c] == hp->mask_token)
                return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                       "%s: %d is the mask token and cannot be fixed; "
                                       "mark an open cell with %s",
                                       name, (int)row[c],
                                       req->n_text ? "the open character" : "null");
        }
    }
    return PROTO_OK;
}

static proto_err check(proto_request *req, const eng_hparams *hp, const proto_limits *lim,
                       proto_error *err)
{
    if (req->n_text && hp->tokenizer != ENG_TOKENIZER_BYTE)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "text",
                               "text rows need a model with tokenizer=byte; send ids in given");
    if (!(req->has & PROTO__HAS_HEIGHT) && req->height == 0)
        return proto_error_set(err, PROTO_E_INVALID_FIELD, "height",
                               "height is required when neither given nor text has rows");
    if (!(req->has & PROTO__HAS_WIDTH) && req->width == 0)
        return proto_error_set(err, PROTO_E_INVALID_FIELD, "width",
                               "width is required when neither given nor text has cells");
    if (side("height", req->height, hp->max_height, "max_height", err) ||
        side("width", req->width, hp->max_width, "max_width", err))
        return err->err;
    int64_t cells = (int64_t)req->height * req->width;
    int64_t max_cells = proto__max_cells(lim);
    if (cells > max_cells)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "height",
                               "height x width: %d x %d = %lld cells is above the maximum %lld",
                               req->height, req->width, (long long)cells, (long long)max_cells);
    if (check_rows(req, hp, err)) return err->err;
    if (req->has & PROTO__HAS_ITERATIONS) {
        if (req->iterations < 1 || req->iterations > lim->max_iterations)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "iterations",
                                   "iterations: %d is outside 1 .. %d (max_iterations)",
                                   req->iterations, lim->max_iterations);
    }
    float t = req->sampling.temperature;
    if (!isfinite(t) || t < 0 || t > PROTO_MAX_TEMPERATURE)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "temperature",
                               "temperature: %g is outside 0 .. %g", (double)t,
                               (double)PROTO_MAX_TEMPERATURE);
    if (req->sampling.top_k < 0 || req->sampling.top_k > hp->vocab_size)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "top_k",
                               "top_k: %d is outside 0 .. %d (vocab_size; 0: no filter)",
                               req->sampling.top_k, hp->vocab_size);
    float p = req->sampling.top_p;
    if (!(p > 0 && p <= 1))
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "top_p", "top_p: %g is outside (0, 1]",
                               (double)p);
    float nu = req->sampling.remask_noise;
    if (!(nu >= 0 && nu <= ENG_MAX_REMASK_NOISE))
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "remask_noise",
                               "remask_noise: %g is outside 0 .. %g", (double)nu,
                               (double)ENG_MAX_REMASK_NOISE);
    float rm = req->sampling.remask;
    if (!(rm >= 0 && rm < 1))
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "remask", "remask: %g is outside [0, 1)",
                               (double)rm);
    if (req->has & PROTO__HAS_DEADLINE) {
        if (req->deadline_ms < 1)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "deadline_ms",
                                   "deadline_ms: %lld is below the minimum 1",
                                   (long long)req->deadline_ms);
        int64_t max_ms = proto__max_deadline_ms(lim);
        if (req->deadline_ms > max_ms)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "deadline_ms",
                                   "deadline_ms: %lld is above the maximum %lld",
                                   (long long)req->deadline_ms, (long long)max_ms);
    }
    return PROTO_OK;
}

proto_err proto_validate_generate(proto_request *req, const eng_hparams *hp,
                                  const proto_limits *lim, proto_error *err)
{
    proto_error scratch;
    if (!err) err = &scratch;
    if (check(req, hp, lim, err)) return err->err;

    size_t cells = (size_t)req->height * (size_t)req->width;
    int32_t *g = malloc(cells * sizeof *g);
    if (!g) return proto_error_set(err, PROTO_E_INTERNAL, NULL, "out of memory");
    for (size_t i = 0; i < cells; i++)
        g[i] = ENG_OPEN;
    for (int r = 0; r < req->n_rows; r++)
        memcpy(g + (size_t)r * req->width, req->rows + req->row_off[r],
               (size_t)req->row_len[r] * sizeof *g);
    free(req->given);
    req->given = g;
    free(req->rows);
    free(req->row_off);
    free(req->row_len);
    req->rows = NULL;
    req->row_off = req->row_len = NULL;
    req->n_rows = 0;

    if (!(req->has & PROTO__HAS_ITERATIONS))
        req->iterations = PROTO_DEFAULT_ITERATIONS < lim->max_iterations ? PROTO_DEFAULT_ITERATIONS
                                                                         : lim->max_iterations;
    if (!req->seed_given) req->sampling.seed = random_seed();
    if (!(req->has & PROTO__HAS_REMASK_NOISE)) {
        float d = lim->default_remask_noise;
        req->sampling.remask_noise = d >= 0 && d <= ENG_MAX_REMASK_NOISE ? d : 0.0f;
    }
    if (!(req->has & PROTO__HAS_ORDER))
        req->sampling.order =
            eng_order_name((int)lim->default_order) ? lim->default_order : ENG_ORDER_CONFIDENCE;
    if (!(req->has & PROTO__HAS_REMASK)) {
        float d = lim->default_remask;
        req->sampling.remask = d >= 0 && d < 1 ? d : 0.0f;
    }
    req->mask_token = hp->mask_token;
    req->want_text = req->want_text && hp->tokenizer == ENG_TOKENIZER_BYTE;
    return PROTO_OK;
}

int64_t proto__max_cells(const proto_limits *lim)
{
    return lim->max_cells > 0 && lim->max_cells < PROTO_MAX_CELLS ? lim->max_cells
                                                                  : PROTO_MAX_CELLS;
}

int64_t proto__max_deadline_ms(const proto_limits *lim)
{
    return lim->max_deadline_ms > 0 && lim->max_deadline_ms < PROTO_MAX_DEADLINE_MS
               ? lim->max_deadline_ms
               : PROTO_MAX_DEADLINE_MS;
}

float proto_meta_remask_noise(const char *value)
{
    if (!value || !*value) return 0.0f;
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || *end || end == value || !(x >= 0 && x <= ENG_MAX_REMASK_NOISE)) return 0.0f;
    return (float)x;
}

eng_order proto_meta_order(const char *value)
{
    int o = eng_order_parse(value);
    return o < 0 ? ENG_ORDER_CONFIDENCE : (eng_order)o;
}

float proto_meta_remask(const char *value)
{
    if (!value || !*value) return 0.0f;
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || *end || end == value || !(x >= 0 && x < 1)) return 0.0f;
    return (float)x;
}

proto_err proto_check_content_type(const char *ct, proto_error *err)
{
    static const char json[] = "application/json";
    if (!ct)
        return proto_error_set(err, PROTO_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                               "Content-Type must be application/json (none was sent)");
    const char *p = ct;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = sizeof json - 1;
    const char *rest = p + n;
    int ok = !strncasecmp(p, json, n) &&
             (*rest == '\0' || *rest == ';' || *rest == ' ' || *rest == '\t');
    /* Parameters: only a charset matters, and JSON is UTF-8 (RFC 8259). */
    for (const char *q = ok ? strchr(rest, ';') : NULL; q; q = strchr(q + 1, ';')) {
        const char *k = q + 1;
        while (*k == ' ' || *k == '\t')
            k++;
        if (!strncasecmp(k, "charset=", 8)) {
            const char *v = k + 8;
            if (*v == '"') v++;
            if (strncasecmp(v, "utf-8", 5) ||
                (v[5] && v[5] != '"' && v[5] != ';' && v[5] != ' ' && v[5] != '\t'))
                ok = 0;
        }
    }
    if (!ok)
        return proto_error_set(err, PROTO_E_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                               "Content-Type must be application/json, got '%.100s'", ct);
    return PROTO_OK;
}
