/*
 * oracle.h - checks the proto/ fuzz drivers hold every rendered byte to,
 * written independently of proto/ so that a bug there cannot hide itself:
 * a UTF-8 decoder that works on code point values (proto/text.c checks byte
 * ranges), a JSON check through jansson, and the shape of one SSE frame.
 * Every failed check abort()s, which libFuzzer reports as a crash with the
 * input that caused it. Header-only: each driver is one translation unit.
 */
#ifndef HEPTAPOD_FUZZ_ORACLE_H
#define HEPTAPOD_FUZZ_ORACLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fails the run with a note on stderr (libFuzzer then saves the input). */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "oracle: %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * Length (1..4) of the valid, shortest-form UTF-8 character at s (n bytes
 * available), its code point in *cp; 0 if none starts there (a stray or
 * missing continuation byte, an overlong form, a surrogate, above U+10FFFF).
 */
static inline int fz_utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (n == 0) return 0;
    int len = s[0] < 0x80             ? 1
              : (s[0] & 0xE0) == 0xC0 ? 2
              : (s[0] & 0xF0) == 0xE0 ? 3
              : (s[0] & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t c = len == 1 ? s[0] : s[0] & (0x7Fu >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    if (c < least[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

/* Whether s (n bytes) is valid UTF-8 throughout. */
static inline int fz_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int len = fz_utf8_char(u + i, n - i, &cp);
        if (len == 0) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* Number of code points of valid UTF-8 s (n bytes). */
static inline size_t fz_utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/*
 * Checks that s (n bytes) is one JSON value of the given jansson type,
 * valid UTF-8, with no raw control byte (JSON escapes them; an SSE data line
 * must not break), and returns it parsed (caller decrefs).
 */
static inline json_t *fz_json(const char *s, size_t n, json_type type)
{
    FZ_CHECK(fz_utf8_valid(s, n), "not valid UTF-8: %.*s", (int)n, s);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK((unsigned char)s[i] >= 0x20, "raw control byte 0x%02x at %zu", s[i], i);
    json_error_t jerr;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    FZ_CHECK(v, "not JSON (%s at %d): %.*s", jerr.text, jerr.position, (int)n, s);
    FZ_CHECK(json_typeof(v) == type, "JSON of type %d, wanted %d", json_typeof(v), type);
    return v;
}

/*
 * Checks one Server-Sent Events frame "event: NAME\ndata: JSON\n\n" with the
 * JSON on a single line (no raw CR or LF inside) and returns the data, which
 * must be an object (caller decrefs).
 */
static inline json_t *fz_sse_frame(const char *s, size_t n, const char *name)
{
    char head[64];
    int h = snprintf(head, sizeof head, "event: %s\ndata: ", name);
    FZ_CHECK(n > (size_t)h + 2 && !memcmp(s, head, (size_t)h), "frame does not open with %s", head);
    FZ_CHECK(!memcmp(s + n - 2, "\n\n", 2), "frame not ended by a blank line");
    const char *data = s + h;
    size_t len = n - (size_t)h - 2;
    FZ_CHECK(!memchr(data, '\n', len) && !memchr(data, '\r', len), "line break inside data");
    return fz_json(data, len, JSON_OBJECT);
}

#endif
