/*
 * errors.c - the engine's error messages: one table (ENG_ERRORS in eng.h)
 * yields both the codes and their text, and eng__fail writes the one-line
 * message a failing call hands back.
 */
#include <stdarg.h>
#include <stdio.h>

#include "engine/internal.h"

static const char *const messages[] = {
#define X(name, msg) msg,
    ENG_ERRORS(X)
#undef X
};

const char *eng_strerror(int err)
{
    if (err == ENG_OK) return "success";
    /* Codes are -(index + 1); anything outside the table is unknown. */
    if (err < 0 && -(long)err - 1 < (long)(sizeof messages / sizeof messages[0]))
        return messages[-(long)err - 1];
    return "unknown error";
}

int eng__fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        /* Truncation is fine: the message is for people, and the code says what happened. */
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
