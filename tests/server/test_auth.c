/*
 * test_auth.c - API keys on requests: the key a request presents (Bearer
 * token or X-Api-Key), and matching against several keys: any key matches,
 * a prefix, an extension, a one-byte change or an empty key never does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "server/auth.h"

static void test_presented(void **state)
{
    assert_string_equal(srv__auth_presented("Bearer abc", NULL), "abc");
    assert_string_equal(srv__auth_presented("bearer   abc", "x"), "abc");
    assert_string_equal(srv__auth_presented("BEARER abc", NULL), "abc");
    /* Another scheme or none: X-Api-Key is used, whatever it is. */
    assert_string_equal(srv__auth_presented("Basic abc", "key"), "key");
    assert_string_equal(srv__auth_presented("abc", "key"), "key");
    assert_null(srv__auth_presented("Basic abc", NULL));
    assert_null(srv__auth_presented(NULL, NULL));
    assert_string_equal(srv__auth_presented(NULL, "key"), "key");
    assert_string_equal(srv__auth_presented("Bearer ", NULL), "");
}

static void test_check(void **state)
{
    char *keys[] = {"alpha-0123456789", "beta", "gamma-key-gamma"};
    for (int i = 0; i < 3; i++)
        assert_true(srv__auth_check(keys, 3, keys[i]));
    const char *wrong[] = {"",
                           "alpha-012345678",
                           "alpha-01234567890",
                           "alpha-0123456788",
                           "Alpha-0123456789",
                           "bet",
                           "betaa",
                           "gamma-key-gamm@",
                           "beta\n",
                           " beta",
                           "alpha-0123456789,beta"};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        if (srv__auth_check(keys, 3, wrong[i])) fail_msg("'%s' was accepted", wrong[i]);
    assert_false(srv__auth_check(keys, 3, NULL));
    assert_false(srv__auth_check(keys, 0, "beta")); /* no keys: nothing matches */
    /* One key, as a single --api-key gives. */
    assert_true(srv__auth_check(keys + 1, 1, "beta"));
    assert_false(srv__auth_check(keys + 1, 1, "alpha-0123456789"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presented),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
