/*
 * test_text.c - text rows of byte tokens and JSON strings: whatever the
 * bytes, the output is valid UTF-8 JSON; valid sequences pass through, each
 * byte outside one becomes exactly one U+FFFD; masked cells render as the
 * open character; controls are escaped. The fast byte-range decoder is held
 * against a reference that decodes code points and checks them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

#define MASK 256
#define FFFD "\xEF\xBF\xBD"

/* Renders a row and returns the JSON text (malloc'd). */
static char *render(const int32_t *t, int n, const char *open)
{
    proto_buf b = {0};
    assert_int_equal(proto_render_text_row(&b, t, n, MASK, open), 0);
    return proto_buf_steal(&b, NULL);
}

/* Renders a row, parses it back as JSON (jansson refuses invalid UTF-8) and
 * compares the decoded string with want (want_len bytes). */
static void expect_row(const int32_t *t, int n, const char *open, const char *want, size_t want_len)
{
    char *s = render(t, n, open);
    json_error_t jerr;
    json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) fail_msg("rendered %s is not valid JSON: %s", s, jerr.text);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), want_len);
    assert_memory_equal(json_string_value(v), want, want_len);
    json_decref(v);
    free(s);
}

#define ROW(...) ((const int32_t[]){__VA_ARGS__}), (int)(sizeof((const int32_t[]){__VA_ARGS__}) / 4)
#define STR(s) s, sizeof(s) - 1

static void test_valid_utf8_passes_through(void **state)
{
    expect_row(ROW('h', 'i'), "_", STR("hi"));
    expect_row(ROW(0xC3, 0xA9), "_", STR("\xC3\xA9"));                     /* U+00E9 */
    expect_row(ROW(0xE2, 0x82, 0xAC), "_", STR("\xE2\x82\xAC"));           /* U+20AC */
    expect_row(ROW(0xF0, 0x9F, 0x99, 0x82), "_", STR("\xF0\x9F\x99\x82")); /* U+1F642 */
    expect_row(ROW(0xF4, 0x8F, 0xBF, 0xBF), "_", STR("\xF4\x8F\xBF\xBF")); /* U+10FFFF */
    expect_row(ROW(0xEF, 0xBF, 0xBD), "_", STR(FFFD)); /* a real U+FFFD stays one */
}

static void test_invalid_bytes_become_one_fffd_each(void **state)
{
    expect_row(ROW(0xFF), "_", STR(FFFD));
    expect_row(ROW('a', 0x80, 'b'), "_", STR("a" FFFD "b"));     /* lone continuation */
    expect_row(ROW(0xC3), "_", STR(FFFD));                       /* truncated at row end */
    expect_row(ROW(0xE2, 0x82), "_", STR(FFFD FFFD));            /* truncated 3-byte */
    expect_row(ROW(0xC0, 0xAF), "_", STR(FFFD FFFD));            /* overlong '/' */
    expect_row(ROW(0xE0, 0x80, 0xAF), "_", STR(FFFD FFFD FFFD)); /* overlong, 3 bytes */
    expect_row(ROW(0xF0, 0x80, 0x80, 0xAF), "_", STR(FFFD FFFD FFFD FFFD));
    expect_row(ROW(0xED, 0xA0, 0x80), "_", STR(FFFD FFFD FFFD));            /* surrogate U+D800 */
    expect_row(ROW(0xF4, 0x90, 0x80, 0x80), "_", STR(FFFD FFFD FFFD FFFD)); /* > U+10FFFF */
    expect_row(ROW(0xF5, 0x80), "_", STR(FFFD FFFD));
    expect_row(ROW(0xE2, 'x', 0xAC), "_", STR(FFFD "x" FFFD)); /* broken by ASCII */
    /* ids that are not bytes */
    expect_row(ROW(300, 'a', -7, 65536), "_", STR(FFFD "a" FFFD FFFD));
}

static void test_mask_renders_as_open_character(void **state)
{
    expect_row(ROW('a', MASK, 'b'), "_", STR("a_b"));
    expect_row(ROW(MASK, MASK), "\xC2\xB7", STR("\xC2\xB7\xC2\xB7"));
    /* a masked cell inside a sequence breaks it */
    expect_row(ROW(0xE2, MASK, 0xAC), "_", STR(FFFD "_" FFFD));
    /* open characters that need JSON escaping */
    expect_row(ROW(MASK, 'x'), "\"", STR("\"x"));
    expect_row(ROW(MASK, 'x'), "\\", STR("\\x"));
}

static void test_controls_are_escaped(void **state)
{
    char *s = render(ROW(0, '\n', '\t', 0x1F, 0x7F, '"', '\\'), "_");
    assert_string_equal(s, "\"\\u0000\\n\\t\\u001f\x7f\\\"\\\\\"");
    free(s);
    expect_row(ROW(0, 1, '\r', 0x7F), "_", STR("\0\x01\r\x7F"));
}

/* Reference: decode a code point and check it, instead of byte ranges. */
static int ref_len(const unsigned char *s, size_t n)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    int len = s[0] < 0x80         ? 1
              : (s[0] >> 5) == 6  ? 2
              : (s[0] >> 4) == 14 ? 3
              : (s[0] >> 3) == 30 ? 4
                                  : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t cp = len == 1 ? s[0] : s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static uint64_t rng = 88172645463325252u;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_decoder_matches_reference(void **state)
{
    unsigned char s[4];
    /* every 1- and 2-byte prefix exhaustively, then random 3/4-byte ones
     * drawn mostly from the interesting lead and continuation ranges */
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++) {
            s[0] = (unsigned char)a, s[1] = (unsigned char)b;
            assert_int_equal(proto__utf8_len(s, 1), ref_len(s, 1));
            assert_int_equal(proto__utf8_len(s, 2), ref_len(s, 2));
        }
    for (int i = 0; i < 2000000; i++) {
        s[0] = (unsigned char)(0xE0 + next() % 0x20);
        for (int k = 1; k < 4; k++)
            s[k] = (unsigned char)(next() % 4 ? 0x80 + next() % 0x40 : next());
        size_t n = 1 + next() % 4;
        assert_int_equal(proto__utf8_len(s, n), ref_len(s, n));
    }
}

/* Random rows: the output is always valid JSON, and it matches the reference
 * decoding built here cell by cell. */
static void test_random_rows(void **state)
{
    int32_t row[64];
    for (int trial = 0; trial < 20000; trial++) {
        int n = 1 + (int)(next() % 64);
        for (int i = 0; i < n; i++) {
            uint32_t r = next() % 16;
            row[i] = r == 0   ? MASK
                     : r < 4  ? (int32_t)(next() % 128)
                     : r < 14 ? (int32_t)(0x80 + next() % 0x80)
                              : 0xE0 + (int32_t)(next() % 16);
        }
        char want[64 * 4];
        size_t wl = 0;
        for (int i = 0; i < n;) {
            if (row[i] == MASK) {
                want[wl++] = '.';
                i++;
                continue;
            }
            unsigned char seq[4];
            int m = 0;
            while (m < 4 && i + m < n && row[i + m] != MASK)
                seq[m] = (unsigned char)row[i + m], m++;
            int len = ref_len(seq, (size_t)m);
            if (len) {
                memcpy(want + wl, seq, (size_t)len);
                wl += (size_t)len;
                i += len;
            } else {
                memcpy(want + wl, FFFD, 3);
                wl += 3;
                i++;
            }
        }
        expect_row(row, n, ".", want, wl);
    }
}

static void test_json_strings_are_sanitised(void **state)
{
    /* strings from elsewhere (metadata, messages cut mid-character) */
    proto_buf b = {0};
    proto__json_str(&b, "ok\xC3", 3);
    assert_string_equal(b.data, "\"ok" FFFD "\"");
    proto_buf_reset(&b);
    proto__json_str(&b, "a\0b", 3);
    assert_string_equal(b.data, "\"a\\u0000b\"");
    proto_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_utf8_passes_through),
        cmocka_unit_test(test_invalid_bytes_become_one_fffd_each),
        cmocka_unit_test(test_mask_renders_as_open_character),
        cmocka_unit_test(test_controls_are_escaped),
        cmocka_unit_test(test_decoder_matches_reference),
        cmocka_unit_test(test_random_rows),
        cmocka_unit_test(test_json_strings_are_sanitised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
