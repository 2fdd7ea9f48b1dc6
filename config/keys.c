/*
 * keys.c - the API keys: api_key's comma-separated list and the lines of
 * api_key_file, checked and combined into cfg_settings.api_keys; and the
 * scrubbing of a key given as a flag from the process's argument memory.
 *
 * A key is one or more visible ASCII characters other than ',' (it travels
 * in an HTTP header and in a comma-separated list). A refusal names the
 * source, and the file and line, but never the key itself.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

/* A key file larger than this is surely not one. */
#define KEY_FILE_MAX (1 << 20)

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return CFG_ERROR;
}

static int key_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != ',';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Appends the n bytes at p as a key, if they are not a duplicate. */
static int add_key(cfg_settings *s, const char *p, size_t n)
{
    for (int i = 0; i < s->n_api_keys; i++)
        if (strlen(s->api_keys[i]) == n && !memcmp(s->api_keys[i], p, n)) return 0;
    char **k = realloc(s->api_keys, (size_t)(s->n_api_keys + 1) * sizeof *k);
    if (!k) return -1;
    s->api_keys = k;
    if (!(k[s->n_api_keys] = strndup(p, n))) return -1;
    s->n_api_keys++;
    return 0;
}

/* Trims [*p, *p + *n) of whitespace on both sides. */
static void trim(const char **p, size_t *n)
{
    while (*n > 0 && is_space(**p))
        (*p)++, (*n)--;
    while (*n > 0 && is_space((*p)[*n - 1]))
        (*n)--;
}

/* The first byte of [p, p + n) that a key may not hold, or -1. */
static long bad_char(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!key_char((unsigned char)p[i])) return (long)i;
    return -1;
}

static int load_list(cfg_settings *s, const char *where, char *err, size_t errlen)
{
    const char *v = s->api_key;
    if (!v[0]) return 0;
    int entry = 0;
    for (const char *p = v;; entry++) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *k = p;
        trim(&k, &n);
        if (n == 0) return fail(err, errlen, "%s: key %d of the list is empty", where, entry + 1);
        if (bad_char(k, n) >= 0)
            return fail(err, errlen,
                        "%s: key %d holds a space or a character that is not visible ASCII", where,
                        entry + 1);
        if (add_key(s, k, n)) return fail(err, errlen, "%s: out of memory", where);
        if (!comma) return 0;
        p = comma + 1;
    }
}

static int load_file(cfg_settings *s, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) return fail(err, errlen, "api_key_file %s: cannot read it: %s", path, strerror(errno));
    char *text = malloc(KEY_FILE_MAX + 1);
    size_t len = text ? fread(text, 1, KEY_FILE_MAX + 1, f) : 0;
    int rc = 0, bad_read = ferror(f);
    fclose(f);
    if (!text) return fail(err, errlen, "api_key_file %s: out of memory", path);
    if (bad_read) {
        rc = fail(err, errlen, "api_key_file %s: cannot read it", path);
        goto out;
    }
    if (len > KEY_FILE_MAX) {
        rc = fail(err, errlen, "api_key_file %s: larger than %d bytes", path, KEY_FILE_MAX);
        goto out;
    }
    int before = s->n_api_keys, line = 0;
    for (size_t off = 0; off < len; line++) {
        const char *p = text + off;
        const char *nl = memchr(p, '\n', len - off);
        size_t n = nl ? (size_t)(nl - p) : len - off;
        off += n + 1;
        trim(&p, &n);
        if (n == 0 || p[0] == '#') continue;
        if (bad_char(p, n) >= 0) {
            rc = fail(err, errlen,
                      "api_key_file %s: line %d holds a space, a comma or a character that is "
                      "not visible ASCII (one key per line)",
                      path, line + 1);
            goto out;
        }
        if (add_key(s, p, n)) {
            rc = fail(err, errlen, "api_key_file %s: out of memory", path);
            goto out;
        }
    }
    if (s->n_api_keys == before && len == 0)
        rc = fail(err, errlen, "api_key_file %s: the file is empty", path);
    else if (s->n_api_keys == before)
        rc =
            fail(err, errlen, "api_key_file %s: holds no key (only blank lines or comments)", path);
out:
    explicit_bzero(text, KEY_FILE_MAX + 1);
    free(text);
    return rc;
}

int cfg__load_keys(cfg_settings *s, int api_key_index, char *err, size_t errlen)
{
    const cfg_setting *st = &cfg_table()[api_key_index];
    char where[128];
    switch (s->source[api_key_index]) {
    case CFG_SRC_FLAG:
        snprintf(where, sizeof where, "%s", st->flag);
        break;
    case CFG_SRC_ENV:
        snprintf(where, sizeof where, "%s", st->env);
        break;
    default:
        snprintf(where, sizeof where, "%s: %s", s->config[0] ? s->config : "config file", st->name);
        break;
    }
    if (load_list(s, where, err, errlen)) return CFG_ERROR;
    if (s->api_key_file[0] && load_file(s, s->api_key_file, err, errlen)) return CFG_ERROR;
    return 0;
}

void cfg__free_keys(cfg_settings *s)
{
    for (int i = 0; i < s->n_api_keys; i++) {
        explicit_bzero(s->api_keys[i], strlen(s->api_keys[i]));
        free(s->api_keys[i]);
    }
    free(s->api_keys);
    s->api_keys = NULL;
    s->n_api_keys = 0;
}
