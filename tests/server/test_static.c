/*
 * test_static.c - the embedded files: every served path finds its file,
 * the bytes are the source file's (so the build embedded the current
 * ones), ETags are quoted and differ between files, and no other path is
 * served. Run from the repository root (make unit does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/static.h"

static const char *urls[] = {"/", "/static/playground.css", "/static/playground.js",
                             "/static/heptapod.js", "/openapi.json"};

static void test_each_url(void **state)
{
    const char *etags[sizeof urls / sizeof urls[0]];
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        const srv_asset *a = srv__asset_find(urls[i]);
        assert_non_null(a);
        assert_string_equal(a->url, urls[i]);
        const srv_embedded *f = srv__asset_file(a);
        assert_non_null(f);
        FILE *fp = fopen(f->file, "rb");
        assert_non_null(fp);
        char *src = malloc(f->len + 1);
        assert_non_null(src);
        assert_int_equal(fread(src, 1, f->len + 1, fp), f->len); /* same length */
        fclose(fp);
        assert_memory_equal(src, f->data, f->len);
        free(src);
        assert_int_equal(f->data[f->len], 0);
        size_t n = strlen(f->etag);
        assert_true(n > 2 && f->etag[0] == '"' && f->etag[n - 1] == '"');
        etags[i] = f->etag;
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(etags[k], etags[i]);
    }
    assert_int_equal(srv__asset_find("/")->page, 1);
    assert_int_equal(srv__asset_find("/static/heptapod.js")->page, 0);
}

static void test_other_paths(void **state)
{
    const char *no[] = {"",        "/index.html",         "/static/",
                        "/static", "/static/../Makefile", "/static/heptapod.js/",
                        "//",      "/openapi.json.gz"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_null(srv__asset_find(no[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_url),
        cmocka_unit_test(test_other_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
