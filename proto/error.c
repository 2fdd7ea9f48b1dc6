/* error.c - the error table: HTTP statuses, code strings, the error bodies. */
#include <stdio.h>
#include <string.h>

#include "proto/internal.h"

static const struct {
    int status;
    const char *code;
} table[PROTO_E_COUNT] = {[PROTO_OK] = {200, "ok"},
#define X(name, st, cd) [PROTO_E_##name] = {st, cd},
                          PROTO_ERRORS(X)
#undef X
};

int proto_err_status(proto_err e)
{
    if ((int)e < 0 || e >= PROTO_E_COUNT) return 500;
    return table[e].status;
}

const char *proto_err_code(proto_err e)
{
    if ((int)e < 0 || e >= PROTO_E_COUNT) return "internal";
    return table[e].code;
}

proto_err proto_error_set(proto_error *e, proto_err err, const char *field, const char *fmt, ...)
{
    if (!e) return err;
    e->err = err;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return err;
}

int proto_render_error(proto_buf *b, const proto_error *e)
{
    proto_buf_puts(b, "{\"error\":{\"code\":");
    proto__json_cstr(b, proto_err_code(e->err));
    proto_buf_puts(b, ",\"message\":");
    /* A message may have been cut inside a multi-byte character by
     * truncation; the escaper turns such a stump into U+FFFD. */
    proto__json_cstr(b, e->message[0] ? e->message : proto_err_code(e->err));
    if (e->field[0]) {
        proto_buf_puts(b, ",\"field\":");
        proto__json_cstr(b, e->field);
    }
    return proto_buf_puts(b, "}}");
}

int proto_render_sse_error(proto_buf *b, const proto_error *e)
{
    proto_buf_puts(b, "event: error\ndata: ");
    proto_render_error(b, e);
    return proto_buf_puts(b, "\n\n");
}
