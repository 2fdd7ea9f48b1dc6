/*
 * test_config.c - the settings table through cfg_load: the precedence
 * defaults < file < environment < flags, flag spellings, list settings, the
 * automatic thread count, and every kind of refusal naming the setting and
 * where it came from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char path[64]; /* the current test's config file */

/* Every test starts from a clean environment: no HEPTAPOD_* setting set. */
static int setup(void **state)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        unsetenv(t[i].env);
    path[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    if (path[0]) unlink(path);
    return setup(state);
}

static const char *write_file(const char *json)
{
    snprintf(path, sizeof path, "/tmp/heptapod-cfg-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    return path;
}

/* cfg_load over an argument list, the subcommand first as in `heptapod serve ...`. */
#define LOAD(s, err, ...)                                                                          \
    cfg_load(s, (int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)),                  \
             (char *[]){"serve", __VA_ARGS__, NULL}, err, sizeof err)
#define LOAD0(s, err) cfg_load(s, 1, (char *[]){"serve", NULL}, err, sizeof err)

static void expect_refused(int rc, const char *err, const char *want1, const char *want2)
{
    if (rc != CFG_ERROR || !strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("rc %d, message '%s'; wanted CFG_ERROR naming '%s' and '%s'", rc, err, want1,
                 want2 ? want2 : "");
}

static void test_defaults(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD0(&s, err), 0);
    assert_string_equal(s.host, "127.0.0.1");
    assert_int_equal(s.port, 8080);
    assert_int_equal(s.n_model, 2); /* the text model (the default) and the Sudoku model */
    assert_string_equal(s.model[0], "models/default.safetensors");
    assert_string_equal(s.model[1], "models/sudoku.safetensors");
    assert_int_equal(s.max_queue, 64);
    assert_false(s.auth_health);
    assert_string_equal(s.api_key, "");
    assert_string_equal(s.log_level, "info");
    assert_string_equal(s.config, "");
    /* threads 0 resolves to the CPUs the process may use / models, at least 1 */
    int per_model = cfg_cpu_count(&cfg_host_default) / 2;
    assert_int_equal(s.threads, per_model > 0 ? per_model : 1);
    for (int i = 0; i < cfg_count(); i++)
        assert_int_equal(s.source[i], CFG_SRC_DEFAULT);
    cfg_free(&s);
    cfg_free(&s); /* harmless twice */
}

/* Every table default must load; every row has its derived spellings. */
static void test_table(void **state)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        assert_memory_equal(t[i].env, "HEPTAPOD_", 9);
        assert_memory_equal(t[i].flag, "--", 2);
        assert_int_equal(strlen(t[i].env), 9 + strlen(t[i].name));
        assert_int_equal(strlen(t[i].flag), 2 + strlen(t[i].name));
        assert_null(strchr(t[i].flag, '_'));
        assert_true(strlen(t[i].help) > 0);
        if (t[i].type == CFG_INT) assert_true(t[i].min <= t[i].max);
    }
    assert_string_equal(t[2].env, "HEPTAPOD_PORT");
}

static void test_precedence(void **state)
{
    cfg_settings s;
    char err[256];
    /* port and max_queue from the file; max_queue and log_level again from env;
     * log_level again from a flag: each level wins over the one below */
    const char *p = write_file("{\"port\": 9000, \"max_queue\": 5, \"log_level\": \"warn\","
                               " \"auth_health\": true, \"model\": [\"a.st\", \"b.st\"]}");
    setenv("HEPTAPOD_MAX_QUEUE", "6", 1);
    setenv("HEPTAPOD_LOG_LEVEL", "error", 1);
    assert_int_equal(LOAD(&s, err, "--config", (char *)p, "--log-level", "debug"), 0);
    assert_int_equal(s.port, 9000);
    assert_int_equal(s.max_queue, 6);
    assert_string_equal(s.log_level, "debug");
    assert_true(s.auth_health);
    assert_int_equal(s.n_model, 2);
    assert_string_equal(s.model[1], "b.st");
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        cfg_source want = CFG_SRC_DEFAULT;
        if (!strcmp(t[i].name, "port") || !strcmp(t[i].name, "auth_health") ||
            !strcmp(t[i].name, "model"))
            want = CFG_SRC_FILE;
        else if (!strcmp(t[i].name, "max_queue"))
            want = CFG_SRC_ENV;
        else if (!strcmp(t[i].name, "log_level") || !strcmp(t[i].name, "config"))
            want = CFG_SRC_FLAG;
        if (s.source[i] != want)
            fail_msg("%s came from %s, wanted %s", t[i].name, cfg_source_name(s.source[i]),
                     cfg_source_name(want));
    }
    cfg_free(&s);

    /* the file can also be named by the environment; a flag still wins */
    setenv("HEPTAPOD_CONFIG", p, 1);
    assert_int_equal(LOAD(&s, err, "--port=9100"), 0);
    assert_int_equal(s.port, 9100);
    assert_int_equal(s.max_queue, 6);
    assert_string_equal(s.log_level, "error");
    cfg_free(&s);
}

static void test_flag_spellings_and_lists(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD(&s, err, "--max-queue", "7", "--max_batch_cells=99", "--auth-health",
                          "--model", "x.st", "--model=y.st", "--port", "0"),
                     0);
    assert_int_equal(s.max_queue, 7);
    assert_int_equal(s.max_batch_cells, 99);
    assert_true(s.auth_health); /* a bare boolean flag means true */
    assert_int_equal(s.n_model, 2);
    assert_string_equal(s.model[0], "x.st");
    assert_string_equal(s.model[1], "y.st");
    assert_int_equal(s.port, 0);
    cfg_free(&s);

    /* a bool flag followed by a bool word takes it; env lists split on commas;
     * flags replace the env list */
    setenv("HEPTAPOD_MODEL", "e1.st,e2.st,e3.st", 1);
    assert_int_equal(LOAD(&s, err, "--auth-health", "0", "--threads", "3"), 0);
    assert_false(s.auth_health);
    assert_int_equal(s.n_model, 3);
    assert_string_equal(s.model[2], "e3.st");
    assert_int_equal(s.threads, 3);
    cfg_free(&s);
    assert_int_equal(LOAD(&s, err, "--model", "f.st"), 0);
    assert_int_equal(s.n_model, 1);
    assert_string_equal(s.model[0], "f.st");
    cfg_free(&s);

    /* automatic threads divide the CPUs among the models */
    long cores = cfg_cpu_count(&cfg_host_default);
    assert_int_equal(LOAD0(&s, err), 0); /* three models from env */
    assert_int_equal(s.threads, cores / 3 > 0 ? cores / 3 : 1);
    cfg_free(&s);

    /* bool words */
    const char *yes[] = {"true", "1", "TRUE", "yes", "on"}, *no[] = {"false", "0", "no", "Off"};
    for (int i = 0; i < 5; i++) {
        setenv("HEPTAPOD_AUTH_HEALTH", yes[i], 1);
        assert_int_equal(LOAD0(&s, err), 0);
        assert_true(s.auth_health);
        cfg_free(&s);
    }
    for (int i = 0; i < 4; i++) {
        setenv("HEPTAPOD_AUTH_HEALTH", no[i], 1);
        assert_int_equal(LOAD0(&s, err), 0);
        assert_false(s.auth_health);
        cfg_free(&s);
    }
}

static void test_help(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD(&s, err, "--port", "1", "--help"), CFG_HELP);
    assert_int_equal(LOAD(&s, err, "--bogus", "-h"), CFG_HELP); /* help wins over errors */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print_help(f);
    fclose(f);
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        assert_non_null(strstr(text, t[i].flag));
        assert_non_null(strstr(text, t[i].env));
        assert_non_null(strstr(text, t[i].help));
        assert_non_null(strstr(text, t[i].def));
    }
    assert_non_null(strstr(text, "0..65535"));
    free(text);
}

static void test_print_hides_api_key(void **state)
{
    cfg_settings s;
    char err[256];
    assert_int_equal(LOAD(&s, err, "--api-key", "sekrit"), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print(f, &s);
    fclose(f);
    assert_null(strstr(text, "sekrit"));
    assert_non_null(strstr(text, "api_key = (set) (flag)"));
    assert_non_null(strstr(text, "port = 8080 (default)"));
    free(text);
    cfg_free(&s);
}

static void test_refusals(void **state)
{
    cfg_settings s;
    char err[256];
    /* flags: unknown, missing value, out of bounds, wrong type, stray argument */
    expect_refused(LOAD(&s, err, "--prot", "80"), err, "--prot", "unknown");
    expect_refused(LOAD(&s, err, "--port"), err, "--port", "needs a value");
    expect_refused(LOAD(&s, err, "--port", "70000"), err, "--port: 70000", "maximum 65535");
    expect_refused(LOAD(&s, err, "--max-queue=0"), err, "--max-queue: 0", "minimum 1");
    expect_refused(LOAD(&s, err, "--threads", "x"), err, "--threads", "not an integer");
    expect_refused(LOAD(&s, err, "--threads", "3x"), err, "--threads", "not an integer");
    expect_refused(LOAD(&s, err, "--threads", ""), err, "--threads", "not an integer");
    expect_refused(LOAD(&s, err, "--port", "\n8080"), err, "--port", "not an integer");
    expect_refused(LOAD(&s, err, "--port", "\v8080"), err, "--port", "not an integer");
    expect_refused(LOAD(&s, err, "--port", "99999999999999999999999"), err, "--port", "maximum");
    expect_refused(LOAD(&s, err, "--log-level", "verbose"), err, "--log-level", "debug|info");
    expect_refused(LOAD(&s, err, "--auth-health=maybe"), err, "--auth-health", "boolean");
    expect_refused(LOAD(&s, err, "--host", ""), err, "--host", "empty");
    expect_refused(LOAD(&s, err, "serve2"), err, "serve2", "unexpected");
    expect_refused(LOAD(&s, err, "-p", "1"), err, "-p", "unexpected");

    /* environment */
    setenv("HEPTAPOD_PORT", "70000", 1);
    expect_refused(LOAD0(&s, err), err, "HEPTAPOD_PORT: 70000 is above the maximum 65535", NULL);
    unsetenv("HEPTAPOD_PORT");
    setenv("HEPTAPOD_DRAIN_TIMEOUT_S", "-1", 1);
    expect_refused(LOAD0(&s, err), err, "HEPTAPOD_DRAIN_TIMEOUT_S", "minimum 0");
    unsetenv("HEPTAPOD_DRAIN_TIMEOUT_S");
    setenv("HEPTAPOD_MODEL", "a.st,,b.st", 1);
    expect_refused(LOAD0(&s, err), err, "HEPTAPOD_MODEL", "empty");
    unsetenv("HEPTAPOD_MODEL");
    /* a bad env value is refused even when a flag would override it: it is
     * still wrong, and silently ignoring it would hide the mistake */
    setenv("HEPTAPOD_MAX_QUEUE", "lots", 1);
    expect_refused(LOAD(&s, err, "--max-queue", "3"), err, "HEPTAPOD_MAX_QUEUE", "integer");
    unsetenv("HEPTAPOD_MAX_QUEUE");
    /* HEPTAPOD_* variables that are not settings are left alone */
    setenv("HEPTAPOD_BIN", "build/heptapod", 1);
    assert_int_equal(LOAD0(&s, err), 0);
    cfg_free(&s);
    unsetenv("HEPTAPOD_BIN");

    /* file: unknown key, wrong type, bounds, bad JSON, missing file, nesting */
    struct {
        const char *json, *want1, *want2;
    } files[] = {
        {"{\"prot\": 80}", "unknown setting 'prot'", NULL},
        {"{\"max-queue\": 3}", "unknown setting 'max-queue'", NULL},
        {"{\"port\": \"80\"}", ": port", "integer"},
        {"{\"port\": 8.5}", ": port", "integer"},
        {"{\"auth_health\": 1}", ": auth_health", "true or false"},
        {"{\"host\": 5}", ": host", "string"},
        {"{\"model\": [\"a\", 3]}", ": model", "string"},
        {"{\"model\": []}", ": model", "empty"},
        {"{\"model\": {}}", ": model", "array"},
        {"{\"port\": 65536}", ": port: 65536", "maximum 65535"},
        {"{\"log_level\": \"loud\"}", ": log_level", "one of"},
        {"{\"config\": \"x.json\"}", "'config'", NULL},
        {"{\"port\": 1,}", "invalid JSON", NULL},
        {"[1]", "JSON object", NULL},
        {"{\"port\": 1, \"port\": 2}", "invalid JSON", NULL},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *p = write_file(files[i].json);
        expect_refused(LOAD(&s, err, "--config", (char *)p), err, files[i].want1, files[i].want2);
        assert_non_null(strstr(err, p)); /* the file is named */
        unlink(path);
        path[0] = '\0';
    }
    expect_refused(LOAD(&s, err, "--config", "/nonexistent/h.json"), err, "/nonexistent/h.json",
                   "cannot read");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_spellings_and_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_hides_api_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
