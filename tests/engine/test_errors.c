/*
 * test_errors.c - the engine's error table: every code has its own message,
 * anything else is "unknown error", and eng__fail writes the message it is
 * given (truncated to the buffer, or nowhere) and returns the code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "engine/internal.h"

static void test_strerror(void **state)
{
    assert_string_equal(eng_strerror(ENG_EIO), "cannot read the file");
    assert_string_equal(eng_strerror(ENG_EFORMAT), "malformed checkpoint");
    assert_string_equal(eng_strerror(ENG_ECAPACITY), "batch larger than the workspace");
    assert_string_equal(eng_strerror(ENG_OK), "success");
    assert_string_equal(eng_strerror(ENG_ECAPACITY - 1), "unknown error");
    assert_string_equal(eng_strerror(1), "unknown error");
    assert_string_equal(eng_strerror(-2147483647 - 1), "unknown error");
    /* Distinct codes, distinct messages. */
    const int codes[] = {ENG_EIO, ENG_EFORMAT, ENG_ENOMEM, ENG_EINVAL, ENG_ERANGE, ENG_ECAPACITY};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(eng_strerror(codes[i]), eng_strerror(codes[j]));
}

static void test_fail(void **state)
{
    char buf[16];
    assert_int_equal(eng__fail(buf, sizeof buf, ENG_ERANGE, "%s = %d", "depth", 0), ENG_ERANGE);
    assert_string_equal(buf, "depth = 0");
    assert_int_equal(eng__fail(buf, 6, ENG_EINVAL, "%s", "a long message"), ENG_EINVAL);
    assert_string_equal(buf, "a lon");
    assert_int_equal(eng__fail(NULL, 0, ENG_EIO, "nowhere"), ENG_EIO);
    buf[0] = 'x';
    assert_int_equal(eng__fail(buf, 0, ENG_EIO, "nowhere"), ENG_EIO);
    assert_int_equal(buf[0], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
