/*
 * test_model.c - model entries: "PATH[:key=value[,key=value]]" taken apart
 * by cfg_model_parse (paths holding ':' stay paths, options are refused by
 * name), and the same entries through cfg_load from a flag, the file and
 * HEPTAPOD_MODEL's comma list.
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

static int setup(void **state)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        unsetenv(t[i].env);
    return 0;
}

#define LOAD(s, err, ...)                                                                          \
    cfg_load(s, (int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)),                  \
             (char *[]){"serve", __VA_ARGS__, NULL}, err, sizeof err)

/* Parses entry and checks its three parts (NULL: absent). */
static void expect(const char *entry, const char *path, const char *name, const char *precision)
{
    cfg_model_spec m;
    char err[256];
    if (cfg_model_parse(entry, &m, err, sizeof err)) fail_msg("'%s' refused: %s", entry, err);
    assert_string_equal(m.path, path);
    if (name)
        assert_string_equal(m.name, name);
    else
        assert_null(m.name);
    if (precision)
        assert_string_equal(m.precision, precision);
    else
        assert_null(m.precision);
    cfg_model_spec_free(&m);
}

static void refused(const char *entry, const char *want)
{
    cfg_model_spec m;
    char err[256] = "";
    int rc = cfg_model_parse(entry, &m, err, sizeof err);
    if (rc != CFG_ERROR || !strstr(err, want) || !strstr(err, entry))
        fail_msg("'%s': rc %d, message '%s'; wanted a refusal quoting it and naming '%s'", entry,
                 rc, err, want);
    assert_null(m.path);
}

static void test_entries(void **state)
{
    expect("models/a.safetensors", "models/a.safetensors", NULL, NULL);
    expect("models/a.safetensors:precision=int8", "models/a.safetensors", NULL, "int8");
    expect("a.st:precision=bf16,name=fast", "a.st", "fast", "bf16");
    expect("a.st:name=x.1_b-2,precision=f32", "a.st", "x.1_b-2", "f32");
    /* ':' inside a path, and suffixes that are not option lists */
    expect("/data/run:3/a.st", "/data/run:3/a.st", NULL, NULL);
    expect("/data/a:b.st:precision=int8", "/data/a:b.st", NULL, "int8");
    expect("c:\\models\\a.st", "c:\\models\\a.st", NULL, NULL);
    expect("a.st:", "a.st:", NULL, NULL);
    expect("a.st:other=1", "a.st:other=1", NULL, NULL);
    expect("a.st:precision", "a.st:precision", NULL, NULL);
    /* the precision's value is the engine's to judge, not the parser's */
    expect("a.st:precision=fp8", "a.st", NULL, "fp8");
}

static void test_refusals(void **state)
{
    refused("a.st:precision=int8,nmae=x", "unknown option nmae=x");
    refused("a.st:precision=int8,", "unknown option (empty)");
    refused("a.st:precision=", "no value in precision=");
    refused("a.st:precision=int8,precision=f32", "option given twice: precision");
    refused("a.st:name=a/b", "invalid name 'a/b'");
    refused("a.st:name=..", "invalid name '..'");
    refused(":precision=int8", "empty path");
    assert_true(cfg_model_name_ok("default"));
    assert_false(cfg_model_name_ok(""));
    assert_false(cfg_model_name_ok("a b"));
}

/* Entries keep their text in cfg_settings.model; options are checked at
 * load with the source named. HEPTAPOD_MODEL's items that are options
 * continue the entry before them. */
static void test_through_cfg_load(void **state)
{
    cfg_settings s;
    char err[512];
    assert_int_equal(LOAD(&s, err, "--model", "a.st:precision=int8,name=a", "--model", "b:c.st"),
                     0);
    assert_int_equal(s.n_model, 2);
    assert_string_equal(s.model[0], "a.st:precision=int8,name=a");
    assert_string_equal(s.model[1], "b:c.st");
    cfg_free(&s);

    setenv("HEPTAPOD_MODEL", "a.st:precision=int8,name=a,b.st,c.st:name=c", 1);
    assert_int_equal(LOAD(&s, err, "--port", "0"), 0);
    assert_int_equal(s.n_model, 3);
    assert_string_equal(s.model[0], "a.st:precision=int8,name=a");
    assert_string_equal(s.model[1], "b.st");
    assert_string_equal(s.model[2], "c.st:name=c");
    cfg_free(&s);
    /* an option item with no option list before it is an entry of its own */
    setenv("HEPTAPOD_MODEL", "a.st,name=b", 1);
    assert_int_equal(LOAD(&s, err, "--port", "0"), 0);
    assert_int_equal(s.n_model, 2);
    assert_string_equal(s.model[1], "name=b");
    cfg_free(&s);

    setenv("HEPTAPOD_MODEL", "a.st:precision=int8,nmae=b", 1);
    int rc = LOAD(&s, err, "--port", "0");
    if (rc != CFG_ERROR || !strstr(err, "HEPTAPOD_MODEL") || !strstr(err, "nmae=b"))
        fail_msg("rc %d, message '%s'", rc, err);
    unsetenv("HEPTAPOD_MODEL");
    rc = LOAD(&s, err, "--model", "a.st:name=a b");
    if (rc != CFG_ERROR || !strstr(err, "--model") || !strstr(err, "invalid name"))
        fail_msg("rc %d, message '%s'", rc, err);
    /* the config file's list takes the same entries */
    char path[64];
    snprintf(path, sizeof path, "/tmp/heptapod-model-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *json = "{\"model\": [\"a.st:precision=bf16\", \"/m:x/b.st:name=b\"]}";
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    assert_int_equal(LOAD(&s, err, "--config", path), 0);
    assert_int_equal(s.n_model, 2);
    assert_string_equal(s.model[0], "a.st:precision=bf16");
    assert_string_equal(s.model[1], "/m:x/b.st:name=b");
    cfg_free(&s);
    unlink(path);
    /* model_admin is an enum */
    rc = LOAD(&s, err, "--model-admin", "maybe");
    if (rc != CFG_ERROR || !strstr(err, "auto|on|off")) fail_msg("rc %d, message '%s'", rc, err);
    assert_int_equal(LOAD(&s, err, "--model-admin", "on"), 0);
    assert_string_equal(s.model_admin, "on");
    cfg_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_entries, setup),
        cmocka_unit_test_setup(test_refusals, setup),
        cmocka_unit_test_setup_teardown(test_through_cfg_load, setup, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
