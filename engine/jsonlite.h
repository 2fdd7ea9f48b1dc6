/*
 * jsonlite.h - a small strict JSON parser (RFC 8259) for safetensors headers,
 * so that the engine needs no JSON library.
 *
 * Strict means: exactly one value surrounded by optional whitespace, the
 * whole text valid UTF-8, no trailing commas, no comments, no leading zeros,
 * no NaN/Infinity, no control characters inside strings, no lone
 * surrogates in \u escapes, nesting at most ENG__JSON_MAX_DEPTH deep.
 * Duplicate object keys are kept (in order); callers that care refuse them.
 */
#ifndef HEPTAPOD_ENG_JSONLITE_H
#define HEPTAPOD_ENG_JSONLITE_H

#include <stddef.h>
#include <stdint.h>

#define ENG__JSON_MAX_DEPTH 64

typedef enum eng__jtype {
    ENG__JNULL,
    ENG__JFALSE,
    ENG__JTRUE,
    ENG__JNUMBER,
    ENG__JSTRING,
    ENG__JARRAY,
    ENG__JOBJECT
} eng__jtype;

typedef struct eng__jnode eng__jnode;
struct eng__jnode {
    eng__jtype type;
    const char *key;         /* member of an object: its decoded name, NUL-terminated; else NULL */
    size_t key_len;          /* bytes of key (it may hold a \u0000) */
    const char *str;         /* string: decoded bytes; number: its text; both NUL-terminated */
    size_t len;              /* bytes of str, or the number of children of an array/object */
    const eng__jnode *child; /* first element or member, NULL if none */
    const eng__jnode *next;  /* next sibling in the parent, NULL if last */
};

typedef struct eng__jdoc eng__jdoc;

/**
 * Parses text[0, len) into *out (free with eng__json_free). Returns ENG_OK,
 * ENG_EFORMAT with a message such as "invalid UTF-8 at byte 12" or
 * "expected ':' at byte 40" written into err, or ENG_ENOMEM; on failure
 * *out is NULL.
 */
int eng__json_parse(const char *text, size_t len, eng__jdoc **out, char *err, size_t errlen);
void eng__json_free(eng__jdoc *doc);
/** The top-level value; owned by doc. */
const eng__jnode *eng__json_root(const eng__jdoc *doc);
/** The first member of object obj named key (no embedded NUL), or NULL. */
const eng__jnode *eng__json_get(const eng__jnode *obj, const char *key);
/**
 * Stores a number that is a non-negative integer (no fraction, no exponent,
 * no minus sign) and fits in uint64 into *out; returns 0, or -1 otherwise.
 */
int eng__json_u64(const eng__jnode *n, uint64_t *out);

#endif
