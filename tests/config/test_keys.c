/*
 * test_keys.c - API keys through cfg_load: comma-separated lists from the
 * flag, the environment and the config file (with precedence), the lines of
 * api_key_file added to them, every refusal naming the source but never a
 * key, and cfg_hide_secrets wiping flag values from argv.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char paths[2][64]; /* files of the current test */

static int setup(void **state)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        unsetenv(t[i].env);
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < 2; i++)
        if (paths[i][0]) unlink(paths[i]);
    memset(paths, 0, sizeof paths);
    return setup(state);
}

static char *write_file(int slot, const char *text)
{
    snprintf(paths[slot], sizeof paths[slot], "/tmp/heptapod-keys-XXXXXX");
    int fd = mkstemp(paths[slot]);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return paths[slot];
}

#define LOAD(s, err, ...)                                                                          \
    cfg_load(s, (int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)),                  \
             (char *[]){"serve", __VA_ARGS__, NULL}, err, sizeof err)
#define LOAD0(s, err) cfg_load(s, 1, (char *[]){"serve", NULL}, err, sizeof err)

static void expect_keys(const cfg_settings *s, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    assert_int_equal(s->n_api_keys, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(s->api_keys[i], va_arg(ap, const char *));
    va_end(ap);
}

static void expect_refused(int rc, const char *err, const char *want1, const char *want2)
{
    if (rc != CFG_ERROR || !strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("rc %d, message '%s'; wanted CFG_ERROR naming '%s' and '%s'", rc, err, want1,
                 want2 ? want2 : "");
}

static void test_no_key(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD0(&s, err), 0);
    expect_keys(&s, 0);
    assert_null(s.api_keys);
    cfg_free(&s);
}

static void test_lists_and_precedence(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD(&s, err, "--api-key", "one"), 0);
    expect_keys(&s, 1, "one");
    cfg_free(&s);
    assert_int_equal(LOAD(&s, err, "--api-key", " a-1 ,b-2,\tc-3 "), 0);
    expect_keys(&s, 3, "a-1", "b-2", "c-3");
    cfg_free(&s);
    /* A repeated key counts once. */
    assert_int_equal(LOAD(&s, err, "--api-key=x,y,x"), 0);
    expect_keys(&s, 2, "x", "y");
    cfg_free(&s);

    /* The environment replaces the config file's list, the flag both. */
    char *cfg = write_file(0, "{\"api_key\": \"file-1,file-2\"}");
    assert_int_equal(LOAD(&s, err, "--config", cfg), 0);
    expect_keys(&s, 2, "file-1", "file-2");
    cfg_free(&s);
    setenv("HEPTAPOD_API_KEY", "env-1,env-2", 1);
    assert_int_equal(LOAD(&s, err, "--config", cfg), 0);
    expect_keys(&s, 2, "env-1", "env-2");
    cfg_free(&s);
    assert_int_equal(LOAD(&s, err, "--config", cfg, "--api-key", "flag-1"), 0);
    expect_keys(&s, 1, "flag-1");
    cfg_free(&s);
}

static void test_key_file(void **state)
{
    cfg_settings s;
    char err[256];
    char *kf = write_file(1, "# the staging clients\n"
                             "\n"
                             "key-one\r\n"
                             "   key-two  \t\n"
                             "  # key-old (retired)\n"
                             "key-three"); /* no newline at the end */
    assert_int_equal(LOAD(&s, err, "--api-key-file", kf), 0);
    expect_keys(&s, 3, "key-one", "key-two", "key-three");
    cfg_free(&s);
    /* The file's keys are added to api_key's, from whichever source. */
    setenv("HEPTAPOD_API_KEY", "env-1, env-2", 1);
    assert_int_equal(LOAD(&s, err, "--api-key-file", kf), 0);
    expect_keys(&s, 5, "env-1", "env-2", "key-one", "key-two", "key-three");
    cfg_free(&s);
    unsetenv("HEPTAPOD_API_KEY");
    setenv("HEPTAPOD_API_KEY_FILE", kf, 1);
    assert_int_equal(LOAD(&s, err, "--api-key", "key-two,flag-key-1"), 0);
    expect_keys(&s, 4, "key-two", "flag-key-1", "key-one", "key-three");
    /* cfg_print names the file but shows no key. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print(f, &s);
    fclose(f);
    assert_non_null(strstr(text, "api_key = (set) (flag)"));
    assert_non_null(strstr(text, kf));
    for (int i = 0; i < s.n_api_keys; i++)
        assert_null(strstr(text, s.api_keys[i]));
    free(text);
    cfg_free(&s);
    expect_keys(&s, 0); /* cfg_free cleared them */
}

static void test_refusals(void **state)
{
    cfg_settings s;
    char err[256];
    expect_refused(LOAD(&s, err, "--api-key", "a,,b"), err, "--api-key: key 2 of the list is empty",
                   NULL);
    expect_refused(LOAD(&s, err, "--api-key", "a,"), err, "--api-key: key 2", "empty");
    expect_refused(LOAD(&s, err, "--api-key", "good,has space"), err, "--api-key: key 2", "space");
    assert_null(strstr(err, "has space"));
    expect_refused(LOAD(&s, err, "--api-key", "tab\there"), err, "--api-key: key 1", NULL);
    expect_refused(LOAD(&s, err, "--api-key", "caf\xc3\xa9"), err, "--api-key: key 1",
                   "visible ASCII");
    setenv("HEPTAPOD_API_KEY", " , ", 1);
    expect_refused(LOAD0(&s, err), err, "HEPTAPOD_API_KEY: key 1 of the list is empty", NULL);
    unsetenv("HEPTAPOD_API_KEY");
    char *cfg = write_file(0, "{\"api_key\": \"a b\"}");
    expect_refused(LOAD(&s, err, "--config", cfg), err, cfg, "api_key: key 1");

    expect_refused(LOAD(&s, err, "--api-key-file", "/nonexistent/keys"), err,
                   "--api-key-file: cannot read the key file /nonexistent/keys", "No such file");
    char *kf = write_file(1, "");
    expect_refused(LOAD(&s, err, "--api-key-file", kf), err, "--api-key-file: the key file",
                   "empty");
    assert_non_null(strstr(err, kf));
    unlink(kf);
    kf = write_file(1, "# nothing yet\n\n   \n");
    expect_refused(LOAD(&s, err, "--api-key-file", kf), err, kf, "holds no key");
    /* The environment's spelling when the path came from there. */
    setenv("HEPTAPOD_API_KEY_FILE", kf, 1);
    expect_refused(LOAD0(&s, err), err, "HEPTAPOD_API_KEY_FILE: the key file", "holds no key");
    unsetenv("HEPTAPOD_API_KEY_FILE");
    unlink(kf);
    kf = write_file(1, "ok-key\n\nsecret part two\n");
    expect_refused(LOAD(&s, err, "--api-key-file", kf), err, kf, "line 3");
    assert_null(strstr(err, "secret"));
    unlink(kf);
    kf = write_file(1, "k1,k2\n");
    expect_refused(LOAD(&s, err, "--api-key-file", kf), err, kf, "line 1");
    unlink(kf);
    kf = write_file(1, "bell\akey\n");
    expect_refused(LOAD(&s, err, "--api-key-file", kf), err, kf, "line 1");
    /* Not a regular file: refused at once rather than read (a FIFO would
     * block the start, a device never end). */
    expect_refused(LOAD(&s, err, "--api-key-file", "/dev/zero"), err,
                   "--api-key-file: the key file /dev/zero", "not a regular file");
    expect_refused(LOAD(&s, err, "--api-key-file", "/tmp"), err, "/tmp", "not a regular file");
    char fifo[80];
    snprintf(fifo, sizeof fifo, "%s.fifo", paths[0]);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_refused(LOAD(&s, err, "--api-key-file", fifo), err, fifo, "not a regular file");
    unlink(fifo);
    /* Through the config file: its path opens the message. */
    unlink(cfg);
    cfg = write_file(0, "{\"api_key_file\": \"/nonexistent/k\"}");
    expect_refused(LOAD(&s, err, "--config", cfg), err, cfg, ": api_key_file: cannot read");
}

static void test_hide_secrets(void **state)
{
    char a0[] = "serve", a1[] = "--api-key", a2[] = "key-in-argv", a3[] = "--port", a4[] = "9",
         a5[] = "--api_key=second-key", a6[] = "--auth-health", a7[] = "--api-key-file",
         a8[] = "/run/keys";
    char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, NULL};
    int argc = 9;
    cfg_settings s;
    char err[256];
    assert_int_equal(cfg_load(&s, argc, argv, err, sizeof err), CFG_ERROR); /* no such file */
    cfg_hide_secrets(argc, argv);
    static const char zeros[32];
    assert_memory_equal(a2, zeros, sizeof a2);
    assert_string_equal(a5, "--api_key=");
    assert_memory_equal(a5 + 10, zeros, sizeof a5 - 10);
    /* Everything else is left as it was. */
    assert_string_equal(a1, "--api-key");
    assert_string_equal(a3, "--port");
    assert_string_equal(a4, "9");
    assert_string_equal(a6, "--auth-health");
    assert_string_equal(a7, "--api-key-file");
    assert_string_equal(a8, "/run/keys");
    /* Malformed arguments are left alone rather than guessed at. */
    char b0[] = "serve", b1[] = "stray", b2[] = "--api-key", b3[] = "k";
    char *bad[] = {b0, b1, b2, b3, NULL};
    cfg_hide_secrets(4, bad);
    assert_string_equal(b3, "k");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists_and_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hide_secrets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
