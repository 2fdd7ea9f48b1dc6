/*
 * keys.c - the API keys: api_key's comma-separated list and the lines of
 * api_key_file, checked and combined into cfg_settings.api_keys; and the
 * scrubbing of a key given as a flag from the process's argument memory.
 *
 * A key is one or more visible ASCII characters other than ',' (it travels
 * in an HTTP header and in a comma-separated list). A refusal opens with the
 * setting's source, as every refusal of cfg_load does, and names the file
 * and line, but never the key itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Opens the key file for reading if it is a regular file: a FIFO or a
 * device would block or feed the start without end. Returns the stream or
 * NULL with a reason in err. */
static FILE *open_regular(const char *path, const char *where, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0) {
        fail(err, errlen, "%s: cannot read the key file %s: %s", where, path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        fail(err, errlen, "%s: the key file %s is not a regular file", where, path);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        fail(err, errlen, "%s: cannot read the key file %s: %s", where, path, strerror(errno));
    }
    return f;
}

static int load_file(cfg_settings *s, const char *path, const char *where, char *err, size_t errlen)
{
    FILE *f = open_regular(path, where, err, errlen);
    if (!f) return CFG_ERROR;
    char *text = malloc(KEY_FILE_MAX + 1);
    size_t len = text ? fread(text, 1, KEY_FILE_MAX + 1, f) : 0;
    int rc = 0, bad_read = ferror(f);
    fclose(f);
    if (!text) return fail(err, errlen, "%s: out of memory", where);
    if (bad_read) {
        rc = fail(err, errlen, "%s: cannot read the key file %s", where, path);
        goto out;
    }
    if (len > KEY_FILE_MAX) {
        rc = fail(err, errlen, "%s: the key file %s is larger than %d bytes", where, path,
                  KEY_FILE_MAX);
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
                      "%s: %s line %d holds a space, a comma or a character that is not "
                      "visible ASCII (one key per line)",
                      where, path, line + 1);
            goto out;
        }
        if (add_key(s, p, n)) {
            rc = fail(err, errlen, "%s: out of memory", where);
            goto out;
        }
    }
    if (s->n_api_keys == before && len == 0)
        rc = fail(err, errlen, "%s: the key file %s is empty", where, path);
    else if (s->n_api_keys == before)
        rc = fail(err, errlen, "%s: the key file %s holds no key (only blank lines or comments)",
                  where, path);
out:
    explicit_bzero(text, KEY_FILE_MAX + 1);
    free(text);
    return rc;
}

/* How a refusal names setting i's source, as load.c does: "--api-key",
 * "HEPTAPOD_API_KEY" or "<config file>: api_key". */
static void source_name(const cfg_settings *s, int i, char *out, size_t len)
{
    const cfg_setting *st = &cfg_table()[i];
    switch (s->source[i]) {
    case CFG_SRC_FLAG:
        snprintf(out, len, "%s", st->flag);
        break;
    case CFG_SRC_ENV:
        snprintf(out, len, "%s", st->env);
        break;
    default:
        snprintf(out, len, "%s: %s", s->config[0] ? s->config : "config file", st->name);
        break;
    }
}

int cfg__load_keys(cfg_settings *s, int api_key_index, int api_key_file_index, char *err,
                   size_t errlen)
{
    char where[600];
    source_name(s, api_key_index, where, sizeof where);
    if (load_list(s, where, err, errlen)) return CFG_ERROR;
    if (!s->api_key_file[0]) return 0;
    source_name(s, api_key_file_index, where, sizeof where);
    return load_file(s, s->api_key_file, where, err, errlen);
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
