/*
 * test_jsonlite.c - the engine's strict JSON parser on its own: what it
 * decodes (escapes, surrogate pairs, numbers as text, nesting, member
 * order, duplicate keys), what it refuses and where it says the fault is,
 * and eng__json_u64's bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/jsonlite.h"

static eng__jdoc *parse_ok(const char *text)
{
    eng__jdoc *doc;
    char err[128];
    if (eng__json_parse(text, strlen(text), &doc, err, sizeof err) != ENG_OK)
        fail_msg("refused %s: %s", text, err);
    return doc;
}

static void test_decodes_a_header(void **state)
{
    const char *text = " {\"__metadata__\" : {\"k\":\"caf\\u00e9\\n\\ud83d\\ude00\\/\\\\\"},\n"
                       "\t\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"t\":[true,false,null,-1.5e+3]}   ";
    eng__jdoc *doc = parse_ok(text);
    const eng__jnode *root = eng__json_root(doc);
    assert_int_equal(root->type, ENG__JOBJECT);
    assert_int_equal(root->len, 3);
    const eng__jnode *k = eng__json_get(eng__json_get(root, "__metadata__"), "k");
    assert_non_null(k);
    assert_string_equal(k->str, "caf\xc3\xa9\n\xf0\x9f\x98\x80/\\");
    assert_int_equal(k->len, strlen(k->str));
    /* Duplicate keys are kept in order; eng__json_get finds the first. */
    const eng__jnode *t = eng__json_get(root, "t");
    assert_ptr_equal(t, root->child->next);
    assert_int_equal(t->type, ENG__JOBJECT);
    const eng__jnode *shape = eng__json_get(t, "shape");
    assert_int_equal(shape->type, ENG__JARRAY);
    assert_int_equal(shape->len, 2);
    assert_string_equal(shape->child->str, "2");
    assert_string_equal(shape->child->next->str, "3");
    assert_null(shape->child->next->next);
    const eng__jnode *t2 = t->next;
    assert_string_equal(t2->key, "t");
    assert_int_equal(t2->type, ENG__JARRAY);
    const eng__jnode *e = t2->child;
    assert_int_equal(e->type, ENG__JTRUE);
    assert_int_equal(e->next->type, ENG__JFALSE);
    assert_int_equal(e->next->next->type, ENG__JNULL);
    assert_int_equal(e->next->next->next->type, ENG__JNUMBER);
    assert_string_equal(e->next->next->next->str, "-1.5e+3");
    assert_null(eng__json_get(root, "absent"));
    assert_null(eng__json_get(shape, "0")); /* not an object */
    eng__json_free(doc);
}

static void test_embedded_nul_and_empty(void **state)
{
    eng__jdoc *doc = parse_ok("{\"a\\u0000b\":\"\",\"\":[]}");
    const eng__jnode *root = eng__json_root(doc);
    assert_int_equal(root->child->key_len, 3);
    assert_memory_equal(root->child->key, "a\0b", 4);
    assert_int_equal(root->child->len, 0);
    assert_null(eng__json_get(root, "a")); /* the NUL is part of the key */
    assert_non_null(eng__json_get(root, ""));
    assert_null(eng__json_get(root, "")->child);
    eng__json_free(doc);
}

static void test_nesting_limit(void **state)
{
    char text[2 * ENG__JSON_MAX_DEPTH + 8];
    eng__jdoc *doc;
    char err[128];
    for (int depth = ENG__JSON_MAX_DEPTH; depth <= ENG__JSON_MAX_DEPTH + 1; depth++) {
        memset(text, '[', (size_t)depth);
        memset(text + depth, ']', (size_t)depth);
        int rc = eng__json_parse(text, 2 * (size_t)depth, &doc, err, sizeof err);
        if (depth == ENG__JSON_MAX_DEPTH) {
            assert_int_equal(rc, ENG_OK);
            eng__json_free(doc);
        } else {
            assert_int_equal(rc, ENG_EFORMAT);
            assert_null(doc);
            assert_non_null(strstr(err, "nesting deeper than"));
        }
    }
}

static void test_refusals_say_where(void **state)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"{\"a\":1,}", "expected a string key at byte 7"},
        {"[1 2]", "expected ',' or ']' at byte 3"},
        {"{\"a\":01}", "expected ',' or '}' at byte 6"},
        {"[1.]", "invalid number at byte 1"},
        {"[\"\\x\"]", "invalid escape '\\x' at byte 3"},
        {"[\"\\ud800\\u0041\"]", "lone high surrogate at byte 2"},
        {"[\"a\xc3\"]", "invalid UTF-8 at byte 3"},
        {"[\"\t\"]", "control character in string at byte 2"},
        {"{} {}", "unexpected text after the value at byte 3"},
        {"  ", "unexpected end of text at byte 2"},
        {"[nul]", "unexpected character at byte 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng__jdoc *doc = (eng__jdoc *)&doc;
        char err[128] = "";
        int rc = eng__json_parse(cases[i].text, strlen(cases[i].text), &doc, err, sizeof err);
        assert_int_equal(rc, ENG_EFORMAT);
        assert_null(doc);
        if (strcmp(err, cases[i].msg) != 0)
            fail_msg("%s: \"%s\", expected \"%s\"", cases[i].text, err, cases[i].msg);
    }
}

/* Only the bytes given are read: a valid prefix of a longer buffer parses. */
static void test_length_bounds_the_text(void **state)
{
    const char text[] = "[1]garbage";
    eng__jdoc *doc;
    assert_int_equal(eng__json_parse(text, 3, &doc, NULL, 0), ENG_OK);
    eng__json_free(doc);
    assert_int_equal(eng__json_parse(text, 2, &doc, NULL, 0), ENG_EFORMAT);
}

static void test_u64(void **state)
{
    eng__jdoc *doc = parse_ok("[0,18446744073709551615,18446744073709551616,-1,1.0,1e3,\"7\",42]");
    const eng__jnode *n = eng__json_root(doc)->child;
    uint64_t v = 99;
    assert_int_equal(eng__json_u64(n, &v), 0);
    assert_true(v == 0);
    assert_int_equal(eng__json_u64(n = n->next, &v), 0);
    assert_true(v == UINT64_MAX);
    for (int i = 0; i < 5; i++) /* too large, negative, fraction, exponent, string */
        assert_int_equal(eng__json_u64(n = n->next, &v), -1);
    assert_int_equal(eng__json_u64(n = n->next, &v), 0);
    assert_true(v == 42);
    eng__json_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_a_header),
        cmocka_unit_test(test_embedded_nul_and_empty),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_refusals_say_where),
        cmocka_unit_test(test_length_bounds_the_text),
        cmocka_unit_test(test_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
