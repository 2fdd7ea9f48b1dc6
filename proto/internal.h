/*
 * internal.h - what proto/'s own files share and nothing outside calls.
 */
#ifndef HEPTAPOD_PROTO_INTERNAL_H
#define HEPTAPOD_PROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/**
 * Length (1..4) of the valid, shortest-form UTF-8 sequence starting at s
 * (n bytes available), or 0 if s[0] does not start one: no overlong forms,
 * no surrogates, nothing above U+10FFFF.
 */
int proto__utf8_len(const unsigned char *s, size_t n);

/**
 * Appends s (n bytes) as a JSON string, quotes included: '"', '\\' and
 * control characters escaped, each byte outside a valid UTF-8 sequence
 * replaced by U+FFFD, so the output is valid UTF-8 JSON whatever s holds.
 * Returns 0 or -1 on oom.
 */
int proto__json_str(proto_buf *b, const char *s, size_t n);

/** proto__json_str for a NUL-terminated string. */
int proto__json_cstr(proto_buf *b, const char *s);

/** Appends the JSON escape of one code point cp's UTF-8 bytes (s, n bytes). */
int proto__json_char(proto_buf *b, const unsigned char *s, int n);

/** Largest height*width a request may have under lim: lim->max_cells capped at PROTO_MAX_CELLS. */
int64_t proto__max_cells(const proto_limits *lim);

/** Largest deadline_ms under lim: lim->max_deadline_ms capped at PROTO_MAX_DEADLINE_MS. */
int64_t proto__max_deadline_ms(const proto_limits *lim);

/* Bits of proto_request.has: which fields the body named (null = absent). */
enum {
    PROTO__HAS_MODEL = 1u << 0,
    PROTO__HAS_HEIGHT = 1u << 1,
    PROTO__HAS_WIDTH = 1u << 2,
    PROTO__HAS_ITERATIONS = 1u << 3,
    PROTO__HAS_DEADLINE = 1u << 4,
    PROTO__HAS_REMASK_NOISE = 1u << 5,
    PROTO__HAS_ORDER = 1u << 6,
    PROTO__HAS_REMASK = 1u << 7,
};

#endif
