/*
 * jsonlite.c - strict recursive-descent JSON parser (jsonlite.h).
 *
 * While parsing, nodes and decoded strings live in two growing arrays and
 * refer to each other by index, since the arrays move when they grow. Once
 * the text is consumed, the indices are turned into the pointers of the
 * public eng__jnode array, which never moves again.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/jsonlite.h"

#define NONE ((size_t)-1)

typedef struct jtmp {
    eng__jtype type;
    size_t key, key_len; /* offset into chars, NONE if not a member */
    size_t str, len;     /* offset into chars (NONE for containers and literals) */
    size_t child, next;  /* node indices, NONE if none */
} jtmp;

struct eng__jdoc {
    eng__jnode *nodes;
    char *chars;
};

typedef struct parser {
    const unsigned char *s;
    size_t len, pos;
    jtmp *nodes;
    size_t n_nodes, cap_nodes;
    char *chars;
    size_t n_chars, cap_chars;
    int code; /* first failure: ENG_EFORMAT or ENG_ENOMEM */
    char *err;
    size_t errlen;
} parser;

static int fail(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(parser *p, int code, const char *fmt, ...)
{
    if (p->code == ENG_OK) {
        p->code = code;
        if (p->err && p->errlen > 0) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err, p->errlen, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* Offset of the first byte that breaks UTF-8 (Unicode table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or NONE. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return i;
        }
        if (len - i <= need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += need + 1;
    }
    return NONE;
}

static int grow(parser *p, void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > ((size_t)-1 / 2) / elem) return fail(p, ENG_ENOMEM, "out of memory");
        ncap *= 2;
    }
    void *n = realloc(*arr, ncap * elem);
    if (!n) return fail(p, ENG_ENOMEM, "out of memory");
    *arr = n;
    *cap = ncap;
    return 0;
}

static int put_bytes(parser *p, const void *b, size_t n)
{
    if (grow(p, (void **)&p->chars, &p->cap_chars, p->n_chars + n, 1) < 0) return -1;
    memcpy(p->chars + p->n_chars, b, n);
    p->n_chars += n;
    return 0;
}

static int put_byte(parser *p, unsigned char c)
{
    return put_bytes(p, &c, 1);
}

static int new_node(parser *p, eng__jtype type, size_t *idx)
{
    if (grow(p, (void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof(jtmp)) < 0) return -1;
    p->nodes[p->n_nodes] = (jtmp){type, NONE, 0, NONE, 0, NONE, NONE};
    *idx = p->n_nodes++;
    return 0;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(parser *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return fail(p, ENG_EFORMAT, "truncated \\u escape at byte %zu", p->pos);
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p->s[p->pos + i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return fail(p, ENG_EFORMAT, "invalid \\u escape at byte %zu", p->pos);
        v = v * 16 + d;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static int put_utf8(parser *p, unsigned cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return put_bytes(p, b, n);
}

/* An escape after the backslash at p->pos - 1; surrogate pairs must be whole. */
static int parse_escape(parser *p)
{
    if (p->pos >= p->len) return fail(p, ENG_EFORMAT, "unterminated string at byte %zu", p->pos);
    unsigned char e = p->s[p->pos++];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = e ? strchr(from, e) : NULL;
    if (hit) return put_byte(p, (unsigned char)to[hit - from]);
    if (e != 'u')
        return fail(p, ENG_EFORMAT, "invalid escape '\\%c' at byte %zu",
                    e >= 0x20 && e < 0x7f ? e : '?', p->pos - 1);
    unsigned cp, lo;
    if (hex4(p, &cp) < 0) return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(p, ENG_EFORMAT, "lone low surrogate at byte %zu", p->pos - 6);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return fail(p, ENG_EFORMAT, "lone high surrogate at byte %zu", p->pos - 6);
        p->pos += 2;
        if (hex4(p, &lo) < 0) return -1;
        if (lo < 0xdc00 || lo > 0xdfff)
            return fail(p, ENG_EFORMAT, "lone high surrogate at byte %zu", p->pos - 12);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return put_utf8(p, cp);
}

/* A string at p->pos (the opening quote), decoded into chars. */
static int parse_string(parser *p, size_t *off, size_t *len)
{
    size_t start = p->pos++;
    *off = p->n_chars;
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, ENG_EFORMAT, "unterminated string starting at byte %zu", start);
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            *len = p->n_chars - *off;
            return put_byte(p, 0);
        }
        if (c < 0x20)
            return fail(p, ENG_EFORMAT, "control character in string at byte %zu", p->pos);
        p->pos++;
        if (c == '\\') {
            if (parse_escape(p) < 0) return -1;
        } else if (put_byte(p, c) < 0) { /* UTF-8 was checked for the whole text */
            return -1;
        }
    }
}

static size_t digits(parser *p)
{
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        p->pos++;
        n++;
    }
    return n;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, kept as text. */
static int parse_number(parser *p, size_t *off, size_t *len)
{
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0')
        p->pos++;
    else if (digits(p) == 0)
        return fail(p, ENG_EFORMAT, "invalid number at byte %zu", start);
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (digits(p) == 0) return fail(p, ENG_EFORMAT, "invalid number at byte %zu", start);
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (digits(p) == 0) return fail(p, ENG_EFORMAT, "invalid number at byte %zu", start);
    }
    *off = p->n_chars;
    *len = p->pos - start;
    if (put_bytes(p, p->s + start, *len) < 0) return -1;
    return put_byte(p, 0);
}

static int parse_value(parser *p, int depth, size_t *idx);

/* The elements of an array or the members of an object at p->pos (the
 * opening bracket), appended as children of node `parent`. */
static int parse_children(parser *p, int depth, size_t parent, int is_object)
{
    char close = is_object ? '}' : ']';
    size_t prev = NONE, count = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        size_t key = NONE, key_len = 0, child;
        skip_ws(p);
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, ENG_EFORMAT, "expected a string key at byte %zu", p->pos);
            if (parse_string(p, &key, &key_len) < 0) return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, ENG_EFORMAT, "expected ':' at byte %zu", p->pos);
            p->pos++;
        }
        if (parse_value(p, depth + 1, &child) < 0) return -1;
        p->nodes[child].key = key;
        p->nodes[child].key_len = key_len;
        if (prev == NONE)
            p->nodes[parent].child = child;
        else
            p->nodes[prev].next = child;
        prev = child;
        p->nodes[parent].len = ++count;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return 0;
        }
        return fail(p, ENG_EFORMAT, "expected ',' or '%c' at byte %zu", close, p->pos);
    }
}

static int parse_value(parser *p, int depth, size_t *idx)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, ENG_EFORMAT, "unexpected end of text at byte %zu", p->pos);
    unsigned char c = p->s[p->pos];
    static const struct {
        const char *word;
        eng__jtype type;
    } literals[] = {{"true", ENG__JTRUE}, {"false", ENG__JFALSE}, {"null", ENG__JNULL}};

    if (c == '{' || c == '[') {
        if (depth >= ENG__JSON_MAX_DEPTH)
            return fail(p, ENG_EFORMAT, "nesting deeper than %d at byte %zu", ENG__JSON_MAX_DEPTH,
                        p->pos);
        if (new_node(p, c == '{' ? ENG__JOBJECT : ENG__JARRAY, idx) < 0) return -1;
        return parse_children(p, depth, *idx, c == '{');
    }
    if (c == '"' || c == '-' || (c >= '0' && c <= '9')) {
        size_t off, len;
        int rc = c == '"' ? parse_string(p, &off, &len) : parse_number(p, &off, &len);
        if (rc < 0 || new_node(p, c == '"' ? ENG__JSTRING : ENG__JNUMBER, idx) < 0) return -1;
        p->nodes[*idx].str = off;
        p->nodes[*idx].len = len;
        return 0;
    }
    for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
        size_t n = strlen(literals[i].word);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, literals[i].word, n) == 0) {
            p->pos += n;
            return new_node(p, literals[i].type, idx);
        }
    }
    return fail(p, ENG_EFORMAT, "unexpected character at byte %zu", p->pos);
}

/* Turns the index-linked parse nodes into the public pointer-linked ones. */
static eng__jdoc *finish(parser *p)
{
    eng__jdoc *doc = calloc(1, sizeof *doc);
    eng__jnode *nodes = calloc(p->n_nodes, sizeof *nodes);
    if (!doc || !nodes) {
        free(doc);
        free(nodes);
        fail(p, ENG_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < p->n_nodes; i++) {
        const jtmp *t = &p->nodes[i];
        nodes[i] = (eng__jnode){
            .type = t->type,
            .key = t->key == NONE ? NULL : p->chars + t->key,
            .key_len = t->key_len,
            .str = t->str == NONE ? NULL : p->chars + t->str,
            .len = t->len,
            .child = t->child == NONE ? NULL : &nodes[t->child],
            .next = t->next == NONE ? NULL : &nodes[t->next],
        };
    }
    doc->nodes = nodes;
    doc->chars = p->chars;
    p->chars = NULL;
    return doc;
}

int eng__json_parse(const char *text, size_t len, eng__jdoc **out, char *err, size_t errlen)
{
    parser p = {.s = (const unsigned char *)text, .len = len, .err = err, .errlen = errlen};
    size_t root, bad = utf8_invalid_at(p.s, len);
    *out = NULL;
    if (bad != NONE)
        fail(&p, ENG_EFORMAT, "invalid UTF-8 at byte %zu", bad);
    else if (parse_value(&p, 0, &root) == 0) {
        skip_ws(&p);
        if (p.pos != p.len)
            fail(&p, ENG_EFORMAT, "unexpected text after the value at byte %zu", p.pos);
        else
            *out = finish(&p); /* the root is node 0: it is created first */
    }
    free(p.nodes);
    free(p.chars);
    return *out ? ENG_OK : p.code;
}

void eng__json_free(eng__jdoc *doc)
{
    if (!doc) return;
    free(doc->nodes);
    free(doc->chars);
    free(doc);
}

const eng__jnode *eng__json_root(const eng__jdoc *doc)
{
    return &doc->nodes[0];
}

const eng__jnode *eng__json_get(const eng__jnode *obj, const char *key)
{
    if (!obj || obj->type != ENG__JOBJECT) return NULL;
    size_t n = strlen(key);
    for (const eng__jnode *c = obj->child; c; c = c->next)
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}

int eng__json_u64(const eng__jnode *n, uint64_t *out)
{
    if (!n || n->type != ENG__JNUMBER || n->len == 0) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n->len; i++) {
        unsigned char c = (unsigned char)n->str[i];
        if (c < '0' || c > '9') return -1; /* '-', '.', 'e': not a non-negative integer */
        if (v > (UINT64_MAX - (c - '0')) / 10) return -1;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}
