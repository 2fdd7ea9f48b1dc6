/*
 * model.c - a `model` entry taken apart: "PATH[:key=value[,key=value]]".
 *
 * Paths may hold ':' themselves, so the suffix after the last ':' is an
 * option list only if it reads as one: key=value items split by ',' whose
 * first key is a known option. Anything else is part of the path. Once the
 * suffix is an option list, every item must be a known key with a value,
 * each key at most once: a typo in a second option is refused rather than
 * read as part of a file name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

static const char *const known[] = {"precision", "name"};
#define N_KNOWN ((int)(sizeof known / sizeof known[0]))

/* Index of the option that `item` (n bytes, "key=value") names, or -1. */
static int option_of(const char *item, size_t n)
{
    const char *eq = memchr(item, '=', n);
    if (!eq) return -1;
    size_t k = (size_t)(eq - item);
    for (int i = 0; i < N_KNOWN; i++)
        if (strlen(known[i]) == k && !strncmp(item, known[i], k)) return i;
    return -1;
}

int cfg__model_option_item(const char *item, size_t n)
{
    /* Shaped like one ("key=..." with a lower-case key), known or not: a
     * misspelt option is then refused by name rather than taken for a
     * file. */
    size_t k = 0;
    while (k < n && ((item[k] >= 'a' && item[k] <= 'z') || item[k] == '_'))
        k++;
    return k > 0 && k < n && item[k] == '=';
}

/* Where the option list of entry starts (just past its ':'), or NULL. */
static const char *options_of(const char *entry)
{
    const char *colon = strrchr(entry, ':');
    if (!colon || !colon[1]) return NULL;
    const char *first = colon + 1;
    const char *comma = strchr(first, ',');
    size_t n = comma ? (size_t)(comma - first) : strlen(first);
    return option_of(first, n) >= 0 ? first : NULL;
}

int cfg__model_has_options(const char *entry, size_t n)
{
    char buf[4096];
    if (n >= sizeof buf) return 0;
    memcpy(buf, entry, n);
    buf[n] = '\0';
    return options_of(buf) != NULL;
}

static int fail(char *err, size_t errlen, const char *entry, const char *what, const char *arg)
{
    if (err && errlen) snprintf(err, errlen, "model entry '%s': %s%s", entry, what, arg);
    return CFG_ERROR;
}

/* A name requests and URLs can carry as is: [A-Za-z0-9._-], 1..127 bytes. */
int cfg_model_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 127 || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int cfg_model_parse(const char *entry, cfg_model_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *opts = options_of(entry);
    size_t path_len = opts ? (size_t)(opts - 1 - entry) : strlen(entry);
    if (path_len == 0) return fail(err, errlen, entry, "empty path", "");
    if (!(out->path = strndup(entry, path_len)))
        return fail(err, errlen, entry, "out of memory", "");
    char **field[N_KNOWN] = {&out->precision, &out->name};
    for (const char *p = opts; p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[160];
        snprintf(item, sizeof item, "%.*s", (int)(n < 120 ? n : 120), p);
        int k = option_of(p, n);
        if (k < 0) {
            cfg_model_spec_free(out);
            return fail(err, errlen, entry, "unknown option ", item[0] ? item : "(empty)");
        }
        const char *value = (const char *)memchr(p, '=', n) + 1;
        size_t vn = n - (size_t)(value - p);
        if (vn == 0) {
            cfg_model_spec_free(out);
            return fail(err, errlen, entry, "no value in ", item);
        }
        if (*field[k]) {
            cfg_model_spec_free(out);
            return fail(err, errlen, entry, "option given twice: ", known[k]);
        }
        if (!(*field[k] = strndup(value, vn))) {
            cfg_model_spec_free(out);
            return fail(err, errlen, entry, "out of memory", "");
        }
        p = comma ? comma + 1 : NULL;
    }
    if (out->name && !cfg_model_name_ok(out->name)) {
        char name[200];
        snprintf(name, sizeof name, "'%.128s' (letters, digits, '.', '_', '-'; at most 127)",
                 out->name);
        cfg_model_spec_free(out);
        return fail(err, errlen, entry, "invalid name ", name);
    }
    return 0;
}

void cfg_model_spec_free(cfg_model_spec *s)
{
    free(s->path);
    free(s->name);
    free(s->precision);
    memset(s, 0, sizeof *s);
}
