/*
 * text.c - UTF-8 checking and JSON string output. Everything the daemon
 * writes goes through proto__json_str, which is why any byte a model emits
 * still yields valid UTF-8 JSON: bytes outside a valid sequence become
 * U+FFFD one for one, so a reader can still count the bad cells.
 */
#include <string.h>

#include "proto/internal.h"

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

int proto__utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong below */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates above */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 or F5..FF */
    }
    if (n < (size_t)len || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Appends one ASCII byte with JSON's escaping. */
static int json_ascii(proto_buf *b, unsigned char c)
{
    switch (c) {
    case '"':
        return proto_buf_puts(b, "\\\"");
    case '\\':
        return proto_buf_puts(b, "\\\\");
    case '\b':
        return proto_buf_puts(b, "\\b");
    case '\f':
        return proto_buf_puts(b, "\\f");
    case '\n':
        return proto_buf_puts(b, "\\n");
    case '\r':
        return proto_buf_puts(b, "\\r");
    case '\t':
        return proto_buf_puts(b, "\\t");
    default:
        if (c < 0x20) return proto_buf_printf(b, "\\u%04x", c);
        return proto_buf_append(b, &c, 1);
    }
}

int proto__json_char(proto_buf *b, const unsigned char *s, int n)
{
    if (n == 1) return json_ascii(b, s[0]);
    return proto_buf_append(b, s, (size_t)n);
}

int proto__json_str(proto_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    proto_buf_append(b, "\"", 1);
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        int len = proto__utf8_len(s + i, n - i);
        if (len > 1) {
            i += (size_t)len;
            continue;
        }
        proto_buf_append(b, s + run, i - run);
        if (len == 1)
            json_ascii(b, c);
        else
            proto_buf_append(b, REPLACEMENT, 3);
        run = ++i;
    }
    proto_buf_append(b, s + run, n - run);
    return proto_buf_append(b, "\"", 1);
}

int proto__json_cstr(proto_buf *b, const char *s)
{
    return proto__json_str(b, s, strlen(s));
}

int proto_render_text_row(proto_buf *b, const int32_t *tokens, int n, int mask,
                          const char *open_char)
{
    proto_buf_append(b, "\"", 1);
    int i = 0;
    while (i < n) {
        int32_t t = tokens[i];
        if (t == mask) {
            /* The open character may itself need escaping ('"', a control). */
            size_t ol = strlen(open_char);
            int len = proto__utf8_len((const unsigned char *)open_char, ol);
            if (len > 0 && (size_t)len == ol)
                proto__json_char(b, (const unsigned char *)open_char, len);
            else
                proto_buf_append(b, REPLACEMENT, 3);
            i++;
            continue;
        }
        if (t < 0 || t > 255) {
            proto_buf_append(b, REPLACEMENT, 3);
            i++;
            continue;
        }
        /* Gather up to 4 byte cells (a mask or a non-byte id ends the run)
         * and see whether a valid sequence starts here. */
        unsigned char seq[4] = {0};
        int m = 0;
        while (m < 4 && i + m < n && tokens[i + m] != mask && tokens[i + m] >= 0 &&
               tokens[i + m] <= 255) {
            seq[m] = (unsigned char)tokens[i + m];
            m++;
        }
        int len = proto__utf8_len(seq, (size_t)m);
        if (len > 0) {
            proto__json_char(b, seq, len);
            i += len;
        } else {
            proto_buf_append(b, REPLACEMENT, 3);
            i++;
        }
    }
    return proto_buf_append(b, "\"", 1);
}
