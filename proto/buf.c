/* buf.c - the growable byte buffer every renderer appends to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

void proto_buf_init(proto_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void proto_buf_reset(proto_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->data) b->data[0] = '\0';
}

void proto_buf_free(proto_buf *b)
{
    free(b->data);
    proto_buf_init(b);
}

/* Makes room for n more bytes plus the NUL; doubles so appends stay amortised O(1). */
static int reserve(proto_buf *b, size_t n)
{
    if (b->oom) return -1;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int proto_buf_append(proto_buf *b, const void *p, size_t n)
{
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int proto_buf_puts(proto_buf *b, const char *s)
{
    return proto_buf_append(b, s, strlen(s));
}

int proto_buf_printf(proto_buf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return -1;
    }
    if ((size_t)n < sizeof small) return proto_buf_append(b, small, (size_t)n);
    if (reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *proto_buf_steal(proto_buf *b, size_t *len)
{
    if (b->oom) {
        proto_buf_free(b);
        return NULL;
    }
    char *s = b->data;
    size_t n = b->len;
    if (!s) {
        s = malloc(1);
        if (!s) return NULL;
        s[0] = '\0';
        n = 0;
    }
    proto_buf_init(b);
    if (len) *len = n;
    return s;
}
