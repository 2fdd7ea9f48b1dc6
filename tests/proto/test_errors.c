/*
 * test_errors.c - the error table: every class's HTTP status and code, the
 * one error body shape (plain and as an SSE event), and proto_error_set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const struct {
    proto_err e;
    int status;
    const char *code;
} expected[] = {
    {PROTO_E_INVALID_JSON, 400, "invalid_json"},
    {PROTO_E_INVALID_TYPE, 400, "invalid_type"},
    {PROTO_E_INVALID_FIELD, 400, "invalid_field"},
    {PROTO_E_BAD_REQUEST, 400, "bad_request"},
    {PROTO_E_UNAUTHORIZED, 401, "unauthorized"},
    {PROTO_E_NOT_FOUND, 404, "not_found"},
    {PROTO_E_METHOD_NOT_ALLOWED, 405, "method_not_allowed"},
    {PROTO_E_REQUEST_TIMEOUT, 408, "request_timeout"},
    {PROTO_E_CONFLICT, 409, "conflict"},
    {PROTO_E_PAYLOAD_TOO_LARGE, 413, "payload_too_large"},
    {PROTO_E_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type"},
    {PROTO_E_OUT_OF_RANGE, 422, "out_of_range"},
    {PROTO_E_LOAD_FAILED, 422, "load_failed"},
    {PROTO_E_OVERLOADED, 429, "overloaded"},
    {PROTO_E_CANCELLED, 499, "cancelled"},
    {PROTO_E_INTERNAL, 500, "internal"},
    {PROTO_E_NOT_IMPLEMENTED, 501, "not_implemented"},
    {PROTO_E_UNAVAILABLE, 503, "unavailable"},
    {PROTO_E_DEADLINE_EXCEEDED, 504, "deadline_exceeded"},
};

static void test_every_class(void **state)
{
    size_t n = sizeof expected / sizeof expected[0];
    assert_int_equal(n, PROTO_E_COUNT - 1); /* the table and this list agree */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(proto_err_status(expected[i].e), expected[i].status);
        assert_string_equal(proto_err_code(expected[i].e), expected[i].code);
        /* codes are unique */
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(expected[i].code, expected[j].code);
    }
    assert_int_equal(proto_err_status(PROTO_OK), 200);
    assert_int_equal(proto_err_status(PROTO_E_COUNT), 500);
    assert_int_equal(proto_err_status((proto_err)-3), 500);
    assert_string_equal(proto_err_code((proto_err)999), "internal");
}

/* Renders e, parses it and checks the shape {"error":{"code","message"[,"field"]}}. */
static void check_body(const char *body, const proto_error *e)
{
    json_error_t jerr;
    json_t *v = json_loads(body, 0, &jerr);
    if (!v) fail_msg("not JSON: %s (%s)", body, jerr.text);
    assert_int_equal(json_object_size(v), 1);
    json_t *inner = json_object_get(v, "error");
    assert_true(json_is_object(inner));
    assert_string_equal(json_string_value(json_object_get(inner, "code")), proto_err_code(e->err));
    assert_true(json_is_string(json_object_get(inner, "message")));
    if (e->field[0]) {
        assert_int_equal(json_object_size(inner), 3);
        assert_string_equal(json_string_value(json_object_get(inner, "field")), e->field);
    } else {
        assert_int_equal(json_object_size(inner), 2);
    }
    json_decref(v);
}

static void test_error_bodies(void **state)
{
    proto_buf b;
    proto_buf_init(&b);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        proto_error e;
        proto_err r = proto_error_set(&e, expected[i].e, i % 2 ? "top_p" : NULL,
                                      "problem %zu with \"quotes\"\n", i);
        assert_int_equal(r, expected[i].e);
        proto_buf_reset(&b);
        assert_int_equal(proto_render_error(&b, &e), 0);
        check_body(b.data, &e);
        assert_non_null(strstr(b.data, "\\\"quotes\\\"\\n"));

        proto_buf_reset(&b);
        assert_int_equal(proto_render_sse_error(&b, &e), 0);
        const char *prefix = "event: error\ndata: ";
        assert_memory_equal(b.data, prefix, strlen(prefix));
        assert_string_equal(b.data + b.len - 2, "\n\n");
        /* one data line: no raw newline inside the JSON */
        assert_null(memchr(b.data + strlen(prefix), '\n', b.len - strlen(prefix) - 2));
        b.data[b.len - 2] = '\0';
        check_body(b.data + strlen(prefix), &e);
    }
    proto_buf_free(&b);
}

static void test_error_set_truncates(void **state)
{
    proto_error e;
    char longname[300];
    memset(longname, 'f', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    proto_error_set(&e, PROTO_E_INVALID_FIELD, longname, "unknown field '%s'", longname);
    assert_int_equal(strlen(e.field), PROTO_FIELD_MAX - 1);
    assert_int_equal(strlen(e.message), PROTO_MSG_MAX - 1);
    /* NULL target is allowed and still returns the class */
    assert_int_equal(proto_error_set(NULL, PROTO_E_NOT_FOUND, NULL, "x"), PROTO_E_NOT_FOUND);
    /* an empty message renders as the code */
    proto_buf b = {0};
    proto_error_set(&e, PROTO_E_OVERLOADED, NULL, "%s", "");
    proto_render_error(&b, &e);
    assert_string_equal(b.data, "{\"error\":{\"code\":\"overloaded\",\"message\":\"overloaded\"}}");
    proto_buf_free(&b);
}

static void test_buf(void **state)
{
    proto_buf b;
    proto_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(proto_buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t before = b.len;
    assert_int_equal(proto_buf_printf(&b, "[%s]", big), 0); /* longer than printf's scratch */
    assert_int_equal(b.len, before + 1001);
    assert_int_equal(b.data[b.len - 1], ']');
    size_t len;
    char *s = proto_buf_steal(&b, &len);
    assert_int_equal(len, strlen(s));
    assert_null(b.data);
    free(s);
    s = proto_buf_steal(&b, &len); /* nothing appended: an empty string */
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_class),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_error_set_truncates),
        cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
