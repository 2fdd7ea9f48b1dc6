/*
 * proto.h - the wire format of the heptapod daemon: JSON request bodies into a
 * validated C struct, C results into JSON bodies and Server-Sent Events, and
 * the one table of error classes with their HTTP statuses.
 *
 * Nothing here touches a socket, a thread or a clock: every function is a pure
 * transformation of its arguments, so the server decides when and where bytes
 * go and the unit tests drive everything without a network.
 *
 * The request format (POST /generate, application/json), every field optional
 * unless said otherwise; fields not listed are refused (400 invalid_field), so
 * a misspelt "temprature" never silently falls back to a default:
 *
 *   model        string   name from GET /v1/models; absent or null: the default model
 *   height       int      rows; absent: the number of rows of `given` / `text`
 *   width        int      columns; absent: the longest row of `given` / `text`
 *   given        [[int|null]]  rows of token ids, null for an open cell; rows may be
 *                         shorter than width and fewer than height (the rest is open)
 *   text         [string] byte-tokenizer models only, exclusive with `given`: one string
 *                         per row, each UTF-8 byte one cell; the `open` character marks
 *                         an open cell; short rows are padded with open cells
 *   open         string   the one character (one Unicode code point, not a control
 *                         character) that marks an open cell in `text` and in rendered
 *                         text rows; default "_"
 *   iterations   int      refinement iterations K, default PROTO_DEFAULT_ITERATIONS
 *                         (lowered to the server's max_iterations if that is smaller)
 *   temperature  number   0 .. PROTO_MAX_TEMPERATURE, default 1.0; 0 is greedy (argmax,
 *                         ties to the lower id)
 *   top_k        int      0 .. vocab_size, default 0 (no top-k filter)
 *   top_p        number   in (0, 1], default 1.0 (no top-p filter)
 *   remask_noise number   0 .. ENG_MAX_REMASK_NOISE (100): annealed Gumbel noise on the
 *                         re-masking order (MODEL.md 5); absent: the model's default
 *                         (proto_limits.default_remask_noise), 0 keeps the plain order
 *   order        string   "confidence", "margin" or "raster": which sampled cells each
 *                         iteration commits (MODEL.md 5); absent: the model's default
 *                         (proto_limits.default_order)
 *   remask       number   in [0, 1): share of the committed cells re-opened in each
 *                         iteration but the last (MODEL.md 5); absent: the model's
 *                         default (proto_limits.default_remask), 0 re-opens none
 *   seed         int      0 .. 2^63-1; absent: a random seed below 2^53 is drawn and
 *                         echoed in the response, so every result can be reproduced
 *   stream       bool     default false: one JSON body; true: Server-Sent Events
 *   deadline_ms  int      1 .. PROTO_MAX_DEADLINE_MS (one day), relative to the request's
 *                         arrival; absent: the server's default deadline (if any)
 *   return_text  bool     default true; byte-tokenizer models add text rows to results
 *
 * A field set to null is the same as an absent field. A text row can only
 * fix bytes that form valid UTF-8 (JSON strings are Unicode); other bytes are
 * fixed through `given`.
 *
 * Output grids are rows of ids in which a cell still holding the mask token is
 * null (the same convention as `given`). Text rows (byte models) decode each
 * row's bytes as UTF-8: every byte that is not part of a valid, shortest-form
 * UTF-8 sequence (also surrogates and code points above U+10FFFF) becomes
 * U+FFFD, and so does a token id outside 0..255; a masked cell renders as the
 * request's `open` character; NUL and other control bytes are kept as the
 * characters they are and escaped by JSON (\u0000, \n, ...). The ids are
 * authoritative; text rows are a convenience view of them.
 */
#ifndef HEPTAPOD_PROTO_H
#define HEPTAPOD_PROTO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/eng.h"

/* ---- errors ----------------------------------------------------------------- */

/*
 * Every error the daemon answers with: enum name, HTTP status, stable code
 * string. One table, yielding the enum, the status and the code.
 * CANCELLED is for accounting only (metrics, logs): the client has gone, so
 * nothing is ever sent with it; 499 follows the common proxy convention.
 */
#define PROTO_ERRORS(X)                                                                            \
    X(INVALID_JSON, 400, "invalid_json")                                                           \
    X(INVALID_TYPE, 400, "invalid_type")                                                           \
    X(INVALID_FIELD, 400, "invalid_field")                                                         \
    X(BAD_REQUEST, 400, "bad_request")                                                             \
    X(UNAUTHORIZED, 401, "unauthorized")                                                           \
    X(NOT_FOUND, 404, "not_found")                                                                 \
    X(METHOD_NOT_ALLOWED, 405, "method_not_allowed")                                               \
    X(REQUEST_TIMEOUT, 408, "request_timeout")                                                     \
    X(CONFLICT, 409, "conflict")                                                                   \
    X(PAYLOAD_TOO_LARGE, 413, "payload_too_large")                                                 \
    X(UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type")                                       \
    X(OUT_OF_RANGE, 422, "out_of_range")                                                           \
    X(LOAD_FAILED, 422, "load_failed")                                                             \
    X(OVERLOADED, 429, "overloaded")                                                               \
    X(CANCELLED, 499, "cancelled")                                                                 \
    X(INTERNAL, 500, "internal")                                                                   \
    X(NOT_IMPLEMENTED, 501, "not_implemented")                                                     \
    X(UNAVAILABLE, 503, "unavailable")                                                             \
    X(DEADLINE_EXCEEDED, 504, "deadline_exceeded")

/** Error classes; PROTO_OK (0) is success, PROTO_E_COUNT bounds the table. */
typedef enum proto_err {
    PROTO_OK = 0,
#define X(name, status, code) PROTO_E_##name,
    PROTO_ERRORS(X)
#undef X
        PROTO_E_COUNT
} proto_err;

/** HTTP status of an error class (200 for PROTO_OK, 500 for anything unknown). */
int proto_err_status(proto_err e);

/** Stable code string of an error class ("ok" for PROTO_OK, "internal" if unknown). */
const char *proto_err_code(proto_err e);

/** Size of proto_error.message, including the terminating NUL. */
#define PROTO_MSG_MAX 256
/** Size of proto_error.field, including the terminating NUL. */
#define PROTO_FIELD_MAX 64

/**
 * One error with its class, the request field it concerns (empty if none,
 * e.g. "given[2][3]" or "temperature") and a one-line message for humans
 * that names that field and, for ranges, the bound. Plain value, no heap.
 */
typedef struct proto_error {
    proto_err err;
    char field[PROTO_FIELD_MAX];
    char message[PROTO_MSG_MAX];
} proto_error;

/**
 * Fills *e (which may be NULL: then nothing happens) with class `err`,
 * `field` (NULL: none) and a printf-style message, truncated to fit.
 * Returns err, so `return proto_error_set(e, PROTO_E_NOT_FOUND, NULL, "...")`
 * reads naturally.
 */
proto_err proto_error_set(proto_error *e, proto_err err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- growable output buffer --------------------------------------------------- */

/**
 * A growable byte buffer that renderers append to. Zero-initialise it (or
 * call proto_buf_init), reuse it with proto_buf_reset, release it with
 * proto_buf_free. `data` is always NUL-terminated once anything was appended
 * (len excludes the NUL). After an allocation failure `oom` is set, further
 * appends do nothing and every renderer returns -1.
 */
typedef struct proto_buf {
    char *data;
    size_t len, cap;
    int oom;
} proto_buf;

/** Sets b to empty without allocating. */
void proto_buf_init(proto_buf *b);
/** Empties b, keeping its memory. Clears oom. */
void proto_buf_reset(proto_buf *b);
/** Frees b's memory and empties it. */
void proto_buf_free(proto_buf *b);
/** Appends n bytes. Returns 0, or -1 after an allocation failure. */
int proto_buf_append(proto_buf *b, const void *p, size_t n);
/** Appends a NUL-terminated string. Returns 0 or -1. */
int proto_buf_puts(proto_buf *b, const char *s);
/** Appends printf-style. Returns 0 or -1. */
int proto_buf_printf(proto_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/**
 * Hands over b's bytes (NUL-terminated, malloc'd, caller frees) and empties
 * b; *len gets their length if len is not NULL. Returns NULL after oom or if
 * nothing was appended (then an empty malloc'd string is returned instead,
 * unless even that allocation fails).
 */
char *proto_buf_steal(proto_buf *b, size_t *len);

/* ---- request ------------------------------------------------------------------ */

/** Default number of refinement iterations when a request names none. */
#define PROTO_DEFAULT_ITERATIONS 8
/** Default temperature when a request names none (1.0: sample from the model). */
#define PROTO_DEFAULT_TEMPERATURE 1.0f
/** Default character marking an open cell in text rows. */
#define PROTO_DEFAULT_OPEN "_"
/** Largest height or width accepted by the parser before any model is known. */
#define PROTO_MAX_SIDE 65536
/**
 * Most cells one request may have, whatever the model and the server's
 * limits: height x width, and the cells sent in `given` or `text` together.
 * 2^24, the largest max_batch_cells the server accepts; it keeps every cell
 * index and row offset far inside an int and one request's grids small.
 */
#define PROTO_MAX_CELLS (1 << 24)
/**
 * Largest deadline_ms accepted (one day), whatever the server's
 * max_deadline_ms: deadlines are added to nanosecond clocks, and a day is
 * longer than any request is worth waiting for.
 */
#define PROTO_MAX_DEADLINE_MS INT64_C(86400000)
/** Largest temperature accepted. */
#define PROTO_MAX_TEMPERATURE 1000.0f

/**
 * A POST /generate request. Filled by proto_parse_generate, completed by
 * proto_validate_generate; the caller owns it and releases it with
 * proto_request_free (also after a failed parse: it then holds nothing).
 *
 * After proto_validate_generate succeeds: height, width >= 1 and within the
 * model; `given` holds height*width ids with ENG_OPEN for open cells (never
 * NULL); `sampling` is complete, seed included; mask_token, want_text and
 * open_char are set for the renderers. Fields below "internal" are proto's.
 */
typedef struct proto_request {
    char *model;           /* model name, NULL: the default model */
    int height, width;     /* 0 until known (absent and not inferable) */
    int32_t *given;        /* [height*width], ENG_OPEN for open cells; NULL before validate */
    int iterations;        /* 0 until validated when absent: the default then */
    eng_sampling sampling; /* temperature, top_k, top_p, seed */
    int seed_given;        /* nonzero if the request named its seed */
    int stream;            /* nonzero: answer with Server-Sent Events */
    int64_t deadline_ms;   /* relative to arrival; 0: none given */
    int want_text;         /* render text rows (byte models, return_text) */
    int mask_token;        /* the chosen model's mask id (set by validate) */
    char open_char[5];     /* UTF-8 of the open-cell character, NUL-terminated */
    int n_text;            /* rows given as `text` (0: none, ids came from `given`) */
    /* internal: the rows as parsed, before the size is known; row r has
     * row_len[r] cells starting at rows + row_off[r]. */
    unsigned has; /* bit set of fields present (proto/request.c) */
    int32_t *rows;
    int *row_off, *row_len;
    int n_rows;
} proto_request;

/** Releases everything req owns and zeroes it. Safe on a zeroed struct. */
void proto_request_free(proto_request *req);

/**
 * Stage 1: parses a POST /generate body (len bytes, need not be
 * NUL-terminated) into *req, which it first zeroes. Checks JSON syntax, that
 * the body is an object, each field's type, that no unknown field appears and
 * that `given` and `text` do not both appear. Nothing here depends on a model.
 * A field set to null counts as absent. Text rows are turned into ids here
 * (each byte a cell, the `open` character an open cell).
 * Returns PROTO_OK, or INVALID_JSON / INVALID_TYPE / INVALID_FIELD (400)
 * with err naming the field; also OUT_OF_RANGE (422) for values no field can
 * hold whatever the model (an id or seed below 0, an integer beyond the C
 * type, a number beyond float, an `open` that is not one character or is a
 * control character, an `order` that names no order, more than
 * PROTO_MAX_SIDE rows or cells in a row, more than PROTO_MAX_CELLS cells in
 * all).
 * On failure req holds nothing (free is harmless).
 */
proto_err proto_parse_generate(const char *body, size_t len, proto_request *req, proto_error *err);

/** Server limits that bound a request beyond what the model itself allows. */
typedef struct proto_limits {
    int max_iterations;      /* >= 1 */
    int64_t max_cells;       /* largest height*width of one request; 0: PROTO_MAX_CELLS */
    int64_t max_deadline_ms; /* 0: none beyond PROTO_MAX_DEADLINE_MS */
    float default_remask_noise; /* remask_noise of requests naming none (the model's) */
    eng_order default_order;    /* order of requests naming none (the model's) */
    float default_remask;       /* remask of requests naming none (the model's) */
} proto_limits;

/**
 * Stage 2: checks req against the chosen model and the server limits and
 * completes it (see proto_request). Refuses with OUT_OF_RANGE (422), err
 * naming the field and the bound: height/width outside 1..max_height/
 * max_width or more rows/columns given than that, height*width above
 * lim->max_cells or PROTO_MAX_CELLS, a given id outside 0..vocab_size-1 or equal to the mask
 * token, `text` for a model whose tokenizer is not byte, a text row longer
 * than width or more rows than height, iterations outside
 * 1..lim->max_iterations, a negative or non-finite temperature, top_k above
 * vocab_size or negative, top_p outside (0, 1], remask_noise outside
 * 0..ENG_MAX_REMASK_NOISE, remask outside [0, 1), a negative seed, deadline_ms
 * < 1 or above lim->max_deadline_ms or PROTO_MAX_DEADLINE_MS. Refuses with INVALID_FIELD (400) when
 * the height or width is absent and cannot be inferred. Draws a random seed
 * (< 2^53) when none was given. Call it once per parsed request. On failure
 * req stays valid for proto_request_free.
 */
proto_err proto_validate_generate(proto_request *req, const eng_hparams *hp,
                                  const proto_limits *lim, proto_error *err);

/**
 * Checks a Content-Type header value for a JSON body: "application/json",
 * case-insensitive, optionally with parameters (a charset, if given, must
 * be utf-8). NULL or anything else is UNSUPPORTED_MEDIA_TYPE (415).
 */
/**
 * The remask_noise a model's metadata value suggests (eng_model_meta(m,
 * "remask_noise")): the number it holds if it is one whole decimal number in
 * 0..ENG_MAX_REMASK_NOISE, else 0 (also for NULL).
 */
float proto_meta_remask_noise(const char *value);

/**
 * The order a model's metadata value `order` suggests: the eng_order it
 * names exactly ("confidence", "margin", "raster"), else ENG_ORDER_CONFIDENCE
 * (also for NULL).
 */
eng_order proto_meta_order(const char *value);

/**
 * The remask a model's metadata value `remask` suggests: the number it holds
 * if it is one whole decimal number in [0, 1), else 0 (also for NULL).
 */
float proto_meta_remask(const char *value);

proto_err proto_check_content_type(const char *content_type, proto_error *err);

/* ---- results ------------------------------------------------------------------ */

/** Timings of one request in milliseconds (rendered with 3 decimals). */
typedef struct proto_timings {
    double queued_ms;          /* arrival until its first iteration started */
    double compute_ms;         /* first iteration start until the last one ended */
    double total_ms;           /* arrival until the result was rendered */
    double first_iteration_ms; /* arrival until the first grid was ready */
} proto_timings;

/**
 * A grid produced by iteration `iteration` (1..iterations) of a validated
 * request: req->height * req->width ids row-major (borrowed); cells holding
 * req->mask_token render as null (and as the open character in text rows).
 */
typedef struct proto_grid {
    int iteration;         /* iterations run so far */
    int open;              /* cells still holding the mask token */
    const int32_t *tokens; /* [height*width] */
} proto_grid;

/**
 * Appends the non-streaming 200 body:
 *   {"request_id", "model", "height", "width", "iterations" (run), "seed", "remask_noise",
 *    "order", "remask", "grid": [[id|null]], "text": [string] (only with req->want_text),
 *    "timings": {"queued_ms", "compute_ms", "total_ms", "first_iteration_ms"}}
 * Output is valid UTF-8 JSON whatever the ids. Returns 0, or -1 on oom.
 */
int proto_render_result(proto_buf *b, const proto_request *req, const char *request_id,
                        const char *model, const proto_grid *g, const proto_timings *t);

/**
 * Appends one SSE event "event: iteration\ndata: {...}\n\n" with
 *   {"iteration", "iterations", "open", "grid", "text" (with want_text)}.
 * Returns 0 or -1.
 */
int proto_render_sse_iteration(proto_buf *b, const proto_request *req, const proto_grid *g);

/**
 * Appends the final SSE event "event: done\ndata: {...}\n\n" with
 *   {"request_id", "model", "iterations" (run), "seed", "remask_noise", "order", "remask",
 *    "timings": {...}}.
 * Returns 0 or -1.
 */
int proto_render_sse_done(proto_buf *b, const proto_request *req, const char *request_id,
                          const char *model, int iterations_run, const proto_timings *t);

/**
 * Appends the error body {"error": {"code", "message"[, "field"]}} ("field"
 * only when e->field is not empty). The HTTP status is proto_err_status(e->err).
 * Returns 0 or -1.
 */
int proto_render_error(proto_buf *b, const proto_error *e);

/**
 * Appends "event: error\ndata: <the error body>\n\n": the in-band error once
 * the stream has started; the stream ends after it. Returns 0 or -1.
 */
int proto_render_sse_error(proto_buf *b, const proto_error *e);

/** An SSE comment to keep idle streams alive (and notice gone clients). */
#define PROTO_SSE_KEEPALIVE ": keepalive\n\n"

/** One loaded model as GET /v1/models shows it; everything borrowed. */
typedef struct proto_model_info {
    const char *name;       /* what requests put in "model" */
    const char *path;       /* checkpoint path, or NULL: omitted */
    int is_default;         /* nonzero for the model used when none is named */
    const char *precision;  /* the weights' arithmetic: "f32", "bf16", "int8" */
    const char *isa;        /* instruction set of the engine's kernels; NULL: omitted */
    const char *state;      /* the last load: "loading", "ready" or "failed"; NULL: omitted */
    const char *last_error; /* why the last load failed; NULL: null */
    long generation;        /* loads that succeeded (1 after the first) */
    const eng_hparams *hp;
    int n_meta;                     /* checkpoint __metadata__ entries */
    const char *const *meta_keys;   /* [n_meta] */
    const char *const *meta_values; /* [n_meta] */
} proto_model_info;

/**
 * Appends the GET /v1/models body:
 *   {"object": "list", "default": name, "data": [{"id", "name", "default", "path"?,
 *    "precision"?, "isa"?, "state"?, "last_error"? (with state), "generation"? (with state),
 *    "hparams": {vocab_size, dim, depth, heads, head_dim, mlp_hidden,
 *                window: [int|"global"], dilation: [int], rope_base, norm_eps,
 *                mask_token, tokenizer: "byte"|"none", max_height, max_width},
 *    "limits": {max_height, max_width, max_cells, max_iterations, max_deadline_ms},
 *    "metadata": {key: value}}]}
 * where limits combine the model's and lim's (max_cells: the smaller of
 * max_height*max_width and lim->max_cells). Returns 0 or -1.
 */
int proto_render_models(proto_buf *b, const proto_model_info *models, int n,
                        const proto_limits *lim);

/**
 * Appends one model as an item of proto_render_models' "data" (the body of
 * GET /v1/models/{name}): {"id", "name", "default", ...}; "id" equals
 * "name". Returns 0 or -1.
 */
int proto_render_model(proto_buf *b, const proto_model_info *m, const proto_limits *lim);

/**
 * Appends {"status": status} plus, when detail is not NULL, "detail": detail
 * (bodies of /healthz and /readyz). Returns 0 or -1.
 */
int proto_render_status(proto_buf *b, const char *status, const char *detail);

/**
 * Appends the JSON string (quotes included) for a row of `n` byte tokens as
 * described at the top of this file: UTF-8 decoding with U+FFFD for invalid
 * bytes and ids outside 0..255, `mask` cells as open_char (a NUL-terminated
 * UTF-8 character), JSON escapes for '"', '\\' and control characters.
 * Returns 0 or -1.
 */
int proto_render_text_row(proto_buf *b, const int32_t *tokens, int n, int mask,
                          const char *open_char);

#endif
