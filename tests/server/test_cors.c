/*
 * test_cors.c - the cors_allow_origin setting: which values start the
 * daemon, and which Access-Control-Allow-Origin each request origin gets
 * (exact matches only: no prefix, suffix, case or scheme games).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "server/server.h"

static const char *allow(const char *list, const char *origin)
{
    cfg_settings cfg = {.cors_allow_origin = (char *)list};
    return srv__cors_allow(&cfg, origin);
}

static void test_check(void **state)
{
    char err[320];
    const char *good[] = {"",
                          "*",
                          "https://app.example",
                          "http://localhost:3000",
                          " https://a.example , http://b.example:8080 ,",
                          "https://[::1]:8443"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(srv__cors_check(good[i], err, sizeof err), 0);
    const char *bad[] = {
        "app.example", "https://app.example/", "https://app.example/path", "https://",
        "://x",        "https://*.example",    "https://a.example, b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(srv__cors_check(bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "cors_allow_origin"));
    }
    srv__cors_check("https://a.example, ftp:/x", err, sizeof err);
    assert_non_null(strstr(err, "'ftp:/x'")); /* names the entry that is wrong */
}

static void test_allow(void **state)
{
    const char *list = "https://app.example, http://localhost:3000";
    assert_string_equal(allow(list, "https://app.example"), "https://app.example");
    assert_string_equal(allow(list, "http://localhost:3000"), "http://localhost:3000");
    const char *no[] = {"https://app.example.evil",
                        "https://app.exampl",
                        "http://app.example",
                        "HTTPS://APP.EXAMPLE",
                        "http://localhost:30001",
                        "",
                        "null"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_null(allow(list, no[i]));
    assert_null(allow(list, NULL));
    assert_null(allow("", "https://app.example")); /* off */
    assert_string_equal(allow("*", "https://any.example"), "*");
    assert_string_equal(allow("https://app.example, *", "https://app.example"),
                        "https://app.example");
    assert_null(allow("*", NULL)); /* no Origin: not a cross-origin request */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_allow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
