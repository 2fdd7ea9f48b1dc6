/*
 * request.c - stage 1 of a POST /generate: JSON syntax, field types and
 * values no C field could hold. Nothing here depends on a model, so it runs
 * before the server picks one and the 400 errors come first.
 *
 * Unknown fields are refused (400 invalid_field) rather than ignored: a
 * misspelt "temprature" would otherwise sample with the default silently.
 */
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

static const char *const known[] = {
    "model",       "height", "width", "given", "text",   "open",        "iterations",
    "temperature", "top_k",  "top_p", "seed",  "stream", "deadline_ms", "return_text",
    "remask_noise", "order", "remask",
};

void proto_request_free(proto_request *req)
{
    free(req->model);
    free(req->given);
    free(req->rows);
    free(req->row_off);
    free(req->row_len);
    memset(req, 0, sizeof *req);
}

/* Present and not null: returns the value, else NULL. */
static json_t *field(json_t *root, const char *name)
{
    json_t *v = json_object_get(root, name);
    return json_is_null(v) ? NULL : v;
}

/* Reads an integer field within [lo, hi] (the C type's range). Returns 1 if
 * present, 0 if absent, -1 after filling err. */
static int get_int(json_t *root, const char *name, int64_t lo, int64_t hi, int64_t *out,
                   proto_error *err)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        proto_error_set(err, PROTO_E_INVALID_TYPE, name, "%s must be an integer", name);
        return -1;
    }
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        proto_error_set(err, PROTO_E_OUT_OF_RANGE, name, "%s: %" PRId64 " is %s the %s %" PRId64,
                        name, x, x < lo ? "below" : "above", x < lo ? "minimum" : "maximum",
                        x < lo ? lo : hi);
        return -1;
    }
    *out = x;
    return 1;
}

static int get_number(json_t *root, const char *name, float *out, proto_error *err)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_number(v)) {
        proto_error_set(err, PROTO_E_INVALID_TYPE, name, "%s must be a number", name);
        return -1;
    }
    double x = json_number_value(v);
    if (!(x >= -FLT_MAX && x <= FLT_MAX)) {
        proto_error_set(err, PROTO_E_OUT_OF_RANGE, name, "%s: %g is out of range", name, x);
        return -1;
    }
    *out = (float)x;
    return 1;
}

static int get_bool(json_t *root, const char *name, int *out, proto_error *err)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        proto_error_set(err, PROTO_E_INVALID_TYPE, name, "%s must be true or false", name);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

/* Allocates the row index for n rows of at most `cells` cells in all. */
static proto_err alloc_rows(proto_request *req, size_t n, size_t cells, proto_error *err)
{
    req->row_off = calloc(n ? n : 1, sizeof *req->row_off);
    req->row_len = calloc(n ? n : 1, sizeof *req->row_len);
    req->rows = malloc((cells ? cells : 1) * sizeof *req->rows);
    if (!req->row_off || !req->row_len || !req->rows)
        return proto_error_set(err, PROTO_E_INTERNAL, NULL, "out of memory");
    return PROTO_OK;
}

static proto_err parse_given(proto_request *req, json_t *v, proto_error *err)
{
    if (!json_is_array(v))
        return proto_error_set(err, PROTO_E_INVALID_TYPE, "given",
                               "given must be an array of rows (arrays of ids or null)");
    size_t n = json_array_size(v), cells = 0;
    char name[PROTO_FIELD_MAX];
    if (n > PROTO_MAX_SIDE)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "given",
                               "given: %zu rows is above the maximum %d", n, PROTO_MAX_SIDE);
    for (size_t r = 0; r < n; r++) {
        json_t *row = json_array_get(v, r);
        snprintf(name, sizeof name, "given[%zu]", r);
        if (!json_is_array(row))
            return proto_error_set(err, PROTO_E_INVALID_TYPE, name,
                                   "%s must be an array of ids or null", name);
        if (json_array_size(row) > PROTO_MAX_SIDE)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                   "%s: %zu cells is above the maximum %d", name,
                                   json_array_size(row), PROTO_MAX_SIDE);
        cells += json_array_size(row);
        if (cells > PROTO_MAX_CELLS)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "given",
                                   "given: more than %d cells in all", PROTO_MAX_CELLS);
    }
    if (alloc_rows(req, n, cells, err)) return err->err;
    size_t at = 0;
    for (size_t r = 0; r < n; r++) {
        json_t *row = json_array_get(v, r);
        req->row_off[r] = (int)at;
        req->row_len[r] = (int)json_array_size(row);
        for (size_t c = 0; c < json_array_size(row); c++) {
            json_t *cell = json_array_get(row, c);
            snprintf(name, sizeof name, "given[%zu][%zu]", r, c);
            if (json_is_null(cell)) {
                req->rows[at++] = ENG_OPEN;
                continue;
            }
            if (!json_is_integer(cell))
                return proto_error_set(err, PROTO_E_INVALID_TYPE, name,
                                       "%s must be a token id (integer) or null", name);
            json_int_t id = json_integer_value(cell);
            if (id < 0 || id > INT32_MAX)
                return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                       "%s: %" JSON_INTEGER_FORMAT
                                       " is not a token id (ids are 0 .. vocab_size-1; "
                                       "null marks an open cell)",
                                       name, id);
            req->rows[at++] = (int32_t)id;
        }
    }
    req->n_rows = (int)n;
    return PROTO_OK;
}

/* Code point of the one UTF-8 character s (len bytes, valid per proto__utf8_len). */
static unsigned code_point(const unsigned char *s, int len)
{
    static const unsigned lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    unsigned cp = s[0] & lead_mask[len];
    for (int i = 1; i < len; i++)
        cp = cp << 6 | (s[i] & 0x3F);
    return cp;
}

/*
 * The open character: exactly one code point, and not a control character
 * (C0, DEL, C1). A NUL would be an empty C string to everything that reads
 * open_char, and a control character in a text row is almost surely a
 * mistake that should not silently turn cells into open ones.
 */
static proto_err parse_open(proto_request *req, json_t *v, proto_error *err)
{
    if (!json_is_string(v))
        return proto_error_set(err, PROTO_E_INVALID_TYPE, "open",
                               "open must be a string of one character");
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t n = json_string_length(v);
    int len = proto__utf8_len(s, n);
    if (n == 0 || len <= 0 || (size_t)len != n)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "open",
                               "open must be exactly one character, got %zu bytes", n);
    unsigned cp = code_point(s, len);
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "open",
                               "open: U+%04X is a control character; pick a visible one", cp);
    memcpy(req->open_char, s, n);
    req->open_char[n] = '\0';
    return PROTO_OK;
}

/*
 * One text row as cells: each byte one cell, each occurrence of the open
 * character (ol >= 1 bytes) one open cell. Writes the ids to out unless it is
 * NULL; returns the number of cells either way, so the same walk sizes the
 * rows and then fills them.
 */
static size_t text_row(const unsigned char *s, size_t len, const unsigned char *open, size_t ol,
                       int32_t *out)
{
    size_t cells = 0;
    for (size_t i = 0; i < len; cells++) {
        int is_open = ol > 0 && len - i >= ol && !memcmp(s + i, open, ol);
        if (out) out[cells] = is_open ? ENG_OPEN : s[i];
        i += is_open ? ol : 1;
    }
    return cells;
}

/* Text rows become id rows; sized first, so that every bound is checked
 * before anything is allocated. */
static proto_err parse_text(proto_request *req, json_t *v, proto_error *err)
{
    if (!json_is_array(v))
        return proto_error_set(err, PROTO_E_INVALID_TYPE, "text",
                               "text must be an array of strings (one per row)");
    size_t n = json_array_size(v), cells = 0;
    char name[PROTO_FIELD_MAX];
    if (n > PROTO_MAX_SIDE)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "text",
                               "text: %zu rows is above the maximum %d", n, PROTO_MAX_SIDE);
    const unsigned char *open = (const unsigned char *)req->open_char;
    size_t ol = strlen(req->open_char);
    for (size_t r = 0; r < n; r++) {
        json_t *row = json_array_get(v, r);
        snprintf(name, sizeof name, "text[%zu]", r);
        if (!json_is_string(row))
            return proto_error_set(err, PROTO_E_INVALID_TYPE, name, "%s must be a string", name);
        size_t k = text_row((const unsigned char *)json_string_value(row), json_string_length(row),
                            open, ol, NULL);
        if (k > PROTO_MAX_SIDE)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, name,
                                   "%s: %zu cells is above the maximum %d", name, k,
                                   PROTO_MAX_SIDE);
        cells += k;
        if (cells > PROTO_MAX_CELLS)
            return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "text",
                                   "text: more than %d cells in all", PROTO_MAX_CELLS);
    }
    if (alloc_rows(req, n, cells, err)) return err->err;
    size_t at = 0;
    for (size_t r = 0; r < n; r++) {
        json_t *row = json_array_get(v, r);
        size_t k = text_row((const unsigned char *)json_string_value(row), json_string_length(row),
                            open, ol, req->rows + at);
        req->row_off[r] = (int)at;
        req->row_len[r] = (int)k;
        at += k;
    }
    req->n_rows = (int)n;
    req->n_text = (int)n;
    return PROTO_OK;
}

/* `order`: a name eng_order_parse knows. Any other string is a value no
 * model takes (422); anything but a string is a type error (400). */
static proto_err parse_order(proto_request *req, json_t *v, proto_error *err)
{
    if (!json_is_string(v))
        return proto_error_set(err, PROTO_E_INVALID_TYPE, "order",
                               "order must be a string: confidence, margin or raster");
    const char *s = json_string_value(v);
    int o = strlen(s) == json_string_length(v) ? eng_order_parse(s) : -1;
    if (o < 0)
        return proto_error_set(err, PROTO_E_OUT_OF_RANGE, "order",
                               "order: '%.40s' is not one of confidence, margin, raster", s);
    req->sampling.order = (eng_order)o;
    req->has |= PROTO__HAS_ORDER;
    return PROTO_OK;
}

/* Everything after the syntax check; the caller frees req on failure. */
static proto_err parse_fields(json_t *root, proto_request *req, proto_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(key, known[i]))
            i++;
        if (i == sizeof known / sizeof known[0])
            return proto_error_set(err, PROTO_E_INVALID_FIELD, key, "unknown field '%s'", key);
    }

    if ((v = field(root, "model"))) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return proto_error_set(err, PROTO_E_INVALID_TYPE, "model",
                                   "model must be a string (a name from GET /v1/models)");
        if (!(req->model = strdup(json_string_value(v))))
            return proto_error_set(err, PROTO_E_INTERNAL, NULL, "out of memory");
        req->has |= PROTO__HAS_MODEL;
    }

    int64_t x;
    int rc;
    if ((rc = get_int(root, "height", INT_MIN, INT_MAX, &x, err)) < 0) return err->err;
    if (rc) {
        req->height = (int)x;
        req->has |= PROTO__HAS_HEIGHT;
    }
    if ((rc = get_int(root, "width", INT_MIN, INT_MAX, &x, err)) < 0) return err->err;
    if (rc) {
        req->width = (int)x;
        req->has |= PROTO__HAS_WIDTH;
    }
    if ((rc = get_int(root, "iterations", INT_MIN, INT_MAX, &x, err)) < 0) return err->err;
    if (rc) {
        req->iterations = (int)x;
        req->has |= PROTO__HAS_ITERATIONS;
    }
    if ((rc = get_int(root, "top_k", INT_MIN, INT_MAX, &x, err)) < 0) return err->err;
    if (rc) req->sampling.top_k = (int)x;
    if ((rc = get_int(root, "seed", 0, INT64_MAX, &x, err)) < 0) return err->err;
    if (rc) {
        req->sampling.seed = (uint64_t)x;
        req->seed_given = 1;
    }
    if ((rc = get_int(root, "deadline_ms", INT64_MIN, INT64_MAX, &x, err)) < 0) return err->err;
    if (rc) {
        req->deadline_ms = x;
        req->has |= PROTO__HAS_DEADLINE;
    }
    if (get_number(root, "temperature", &req->sampling.temperature, err) < 0 ||
        get_number(root, "top_p", &req->sampling.top_p, err) < 0 ||
        get_bool(root, "stream", &req->stream, err) < 0 ||
        get_bool(root, "return_text", &req->want_text, err) < 0)
        return err->err;
    if ((rc = get_number(root, "remask_noise", &req->sampling.remask_noise, err)) < 0)
        return err->err;
    if (rc) req->has |= PROTO__HAS_REMASK_NOISE;
    if ((rc = get_number(root, "remask", &req->sampling.remask, err)) < 0) return err->err;
    if (rc) req->has |= PROTO__HAS_REMASK;
    if ((v = field(root, "order")) && parse_order(req, v, err)) return err->err;

    if ((v = field(root, "open")) && parse_open(req, v, err)) return err->err;
    json_t *given = field(root, "given"), *text = field(root, "text");
    if (given && text)
        return proto_error_set(err, PROTO_E_INVALID_FIELD, "text",
                               "given and text are exclusive: send one of them");
    if (given && parse_given(req, given, err)) return err->err;
    if (text && parse_text(req, text, err)) return err->err;

    /* A missing size is the extent of the rows sent; validate checks the rest. */
    if (!(req->has & PROTO__HAS_HEIGHT)) req->height = req->n_rows;
    if (!(req->has & PROTO__HAS_WIDTH))
        for (int r = 0; r < req->n_rows; r++)
            if (req->row_len[r] > req->width) req->width = req->row_len[r];
    return PROTO_OK;
}

proto_err proto_parse_generate(const char *body, size_t len, proto_request *req, proto_error *err)
{
    proto_error scratch;
    if (!err) err = &scratch;
    memset(req, 0, sizeof *req);
    req->sampling.temperature = PROTO_DEFAULT_TEMPERATURE;
    req->sampling.top_k = 0;
    req->sampling.top_p = 1.0f;
    req->want_text = 1;
    req->mask_token = -1;
    memcpy(req->open_char, PROTO_DEFAULT_OPEN, sizeof PROTO_DEFAULT_OPEN);

    json_error_t jerr;
    /* JSON_ALLOW_NUL: "\u0000" is a legitimate byte in a text row. */
    json_t *root = json_loadb(body ? body : "", body ? len : 0,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return proto_error_set(err, PROTO_E_INVALID_JSON, NULL,
                               "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                               jerr.text);
    proto_err e = PROTO_OK;
    if (!json_is_object(root))
        e = proto_error_set(err, PROTO_E_INVALID_TYPE, NULL,
                            "the request body must be a JSON object");
    else
        e = parse_fields(root, req, err);
    json_decref(root);
    if (e) {
        proto_request_free(req);
        return e;
    }
    return PROTO_OK;
}
