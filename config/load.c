/*
 * load.c - cfg_load: defaults < JSON file < HEPTAPOD_* environment < flags.
 *
 * Every value, whatever its source, goes through set_value as text, so a
 * bound or a type is checked in one place and every refusal reads
 * "<where>: <what is wrong>". Flags are scanned first (syntax only) because
 * one of them may name the file; they are applied last.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "config/internal.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return CFG_ERROR;
}

static void free_list(cfg_settings *s)
{
    for (int i = 0; i < s->n_model; i++)
        free(s->model[i]);
    free(s->model);
    s->model = NULL;
    s->n_model = 0;
}

void cfg_free(cfg_settings *s)
{
    const cfg_setting *t = cfg_table();
    if (s->api_key) explicit_bzero(s->api_key, strlen(s->api_key));
    for (int i = 0; i < cfg_count(); i++)
        if (t[i].type == CFG_STRING || t[i].type == CFG_ENUM)
            free(*(char **)((char *)s + cfg__offset[i]));
    free_list(s);
    cfg__free_keys(s);
    memset(s, 0, sizeof *s);
}

static int append_model(cfg_settings *s, const char *path, size_t n, const char *where, char *err,
                        size_t errlen)
{
    if (n == 0) return fail(err, errlen, "%s: empty path in the model list", where);
    char **m = realloc(s->model, (size_t)(s->n_model + 1) * sizeof *m);
    if (!m) return fail(err, errlen, "%s: out of memory", where);
    s->model = m;
    if (!(m[s->n_model] = strndup(path, n))) return fail(err, errlen, "%s: out of memory", where);
    s->n_model++;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = 1, 0;
        if (!strcasecmp(v, no[i])) return *out = 0, 0;
    }
    return -1;
}

static int in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/*
 * Sets setting i from text v. `where` names the source for messages
 * ("--port", "HEPTAPOD_PORT", "file.json: port"). A list value replaces the
 * list when `append` is 0 and is split on commas when `split` is set.
 */
static int set_value(cfg_settings *s, int i, const char *v, const char *where, cfg_source src,
                     int append, int split, char *err, size_t errlen)
{
    const cfg_setting *st = &cfg_table()[i];
    void *field = (char *)s + cfg__offset[i];
    switch (st->type) {
    case CFG_INT: {
        char *end;
        long long x = strtoll(v, &end, 10);
        /* strtoll skips leading white space and takes a '+': neither is an integer here */
        if (!*v || *end || isspace((unsigned char)v[0]) || v[0] == '+')
            return fail(err, errlen, "%s: '%s' is not an integer", where, v);
        /* strtoll saturates on overflow, which the bounds below then refuse */
        if (x < st->min)
            return fail(err, errlen, "%s: %s is below the minimum %" PRId64, where, v, st->min);
        if (x > st->max)
            return fail(err, errlen, "%s: %s is above the maximum %" PRId64, where, v, st->max);
        *(int64_t *)field = x;
        break;
    }
    case CFG_BOOL:
        if (parse_bool(v, (int *)field))
            return fail(err, errlen, "%s: '%s' is not a boolean (true/false/1/0)", where, v);
        break;
    case CFG_ENUM:
    case CFG_STRING: {
        size_t n = strlen(v);
        if (st->type == CFG_ENUM && !in_choices(st->choices, v))
            return fail(err, errlen, "%s: '%s' is not one of %s", where, v, st->choices);
        if (st->type == CFG_STRING && (int64_t)n < st->min)
            return fail(err, errlen, "%s: must not be empty", where);
        if (st->type == CFG_STRING && st->max > 0 && (int64_t)n > st->max)
            return fail(err, errlen, "%s: longer than %" PRId64 " bytes", where, st->max);
        char *copy = strdup(v);
        if (!copy) return fail(err, errlen, "%s: out of memory", where);
        free(*(char **)field);
        *(char **)field = copy;
        break;
    }
    case CFG_LIST: {
        if (!append) free_list(s);
        /* Split on commas, except that an item which is a model option
         * ("name=a") continues the option list of the entry before it:
         * "a.st:precision=int8,name=a,b.st" is two entries. */
        const char *start = v;
        int first = s->n_model;
        for (const char *p = v;;) {
            const char *comma = split ? strchr(p, ',') : NULL;
            const char *next = comma ? comma + 1 : NULL;
            size_t n = next ? (size_t)(strchrnul(next, ',') - next) : 0;
            int joins = next && cfg__model_option_item(next, n) &&
                        cfg__model_has_options(start, (size_t)(comma - start));
            if (!joins) {
                size_t len = comma ? (size_t)(comma - start) : strlen(start);
                if (append_model(s, start, len, where, err, errlen)) return CFG_ERROR;
                start = next;
            }
            if (!comma) break;
            p = next;
        }
        /* Each entry's options are checked here, so the message names the
         * source; the precision's value is the engine's to judge. */
        for (int k = first; k < s->n_model; k++) {
            cfg_model_spec spec;
            char why[400];
            if (cfg_model_parse(s->model[k], &spec, why, sizeof why))
                return fail(err, errlen, "%s: %s", where, why);
            cfg_model_spec_free(&spec);
        }
        break;
    }
    }
    s->source[i] = src;
    return 0;
}

/* Index of the setting spelt `name` (n bytes, '-' and '_' alike), or -1. */
static int find(const char *name, size_t n)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        const char *k = t[i].name;
        size_t j = 0;
        while (j < n && k[j] && (k[j] == name[j] || (k[j] == '_' && name[j] == '-')))
            j++;
        if (j == n && !k[j]) return i;
    }
    return -1;
}

static int load_file(cfg_settings *s, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0 && jerr.position == 0)
            return fail(err, errlen, "%s: cannot read the config file: %s", path, jerr.text);
        return fail(err, errlen, "%s: invalid JSON at line %d, column %d: %s", path, jerr.line,
                    jerr.column, jerr.text);
    }
    int rc = 0;
    const char *key;
    json_t *v;
    char where[512], text[32];
    if (!json_is_object(root)) {
        rc = fail(err, errlen, "%s: the config file must hold a JSON object", path);
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        int i = find(key, strlen(key));
        snprintf(where, sizeof where, "%s: %s", path, key);
        if (i < 0 || strchr(key, '-')) {
            rc = fail(err, errlen, "%s: unknown setting '%s'", path, key);
            goto out;
        }
        const cfg_setting *st = &cfg_table()[i];
        if (!strcmp(st->name, "config")) {
            rc = fail(err, errlen, "%s: 'config' cannot be set inside a config file", path);
            goto out;
        }
        const char *val = NULL;
        switch (st->type) {
        case CFG_INT:
            if (json_is_integer(v))
                snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            val = json_is_integer(v) ? text : NULL;
            break;
        case CFG_BOOL:
            val = json_is_boolean(v) ? (json_is_true(v) ? "true" : "false") : NULL;
            break;
        case CFG_STRING:
        case CFG_ENUM:
            val = json_string_value(v);
            break;
        case CFG_LIST:
            if (json_is_string(v)) {
                val = json_string_value(v);
                break;
            }
            if (!json_is_array(v)) break;
            if (json_array_size(v) == 0) {
                rc = fail(err, errlen, "%s: the list is empty", where);
                goto out;
            }
            for (size_t k = 0; k < json_array_size(v); k++) {
                const char *p = json_string_value(json_array_get(v, k));
                if (!p) {
                    rc = fail(err, errlen, "%s: every entry must be a string", where);
                    goto out;
                }
                if ((rc = set_value(s, i, p, where, CFG_SRC_FILE, k > 0, 0, err, errlen))) goto out;
            }
            continue;
        }
        if (!val) {
            static const char *const want[] = {[CFG_STRING] = "a string",
                                               [CFG_INT] = "an integer",
                                               [CFG_BOOL] = "true or false",
                                               [CFG_ENUM] = "a string",
                                               [CFG_LIST] = "a string or an array of strings"};
            rc = fail(err, errlen, "%s: must be %s", where, want[st->type]);
            goto out;
        }
        if ((rc = set_value(s, i, val, where, CFG_SRC_FILE, 0, 0, err, errlen))) goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* Connections the descriptor limit allows: the soft RLIMIT_NOFILE less a
 * reserve for what is not a connection (listeners, epoll, models, logs),
 * so that accept never fails for want of a descriptor. */
int64_t cfg__connections_from_nofile(void)
{
    struct rlimit rl;
    int64_t n = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = (int64_t)rl.rlim_cur;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        n = 1048576;
    int64_t reserve = 64 + n / 16;
    int64_t c = n - reserve;
    if (c > 1000000) c = 1000000;
    return c >= 1 ? c : 1;
}

/* One flag occurrence: the setting and its value (borrowed from argv). */
typedef struct flag_use {
    int index;
    const char *value;
    const char *spelling; /* e.g. "--port" as the user wrote it, for messages */
    char buf[64];
} flag_use;

/* Scans argv for syntax only; fills uses[] (argc entries at most). */
static int scan_flags(int argc, char **argv, flag_use *uses, int *n_uses, char *err, size_t errlen)
{
    *n_uses = 0;
    for (int a = 1; a < argc; a++)
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) return CFG_HELP;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) || !arg[2])
            return fail(err, errlen, "unexpected argument '%s' (settings are --name value)", arg);
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        int i = find(arg + 2, n);
        if (i < 0) return fail(err, errlen, "unknown flag '%.*s' (see --help)", (int)(n + 2), arg);
        flag_use *u = &uses[(*n_uses)++];
        u->index = i;
        snprintf(u->buf, sizeof u->buf, "%.*s", (int)(n + 2), arg);
        u->spelling = u->buf;
        if (eq) {
            u->value = eq + 1;
        } else if (cfg_table()[i].type == CFG_BOOL) {
            /* A bare boolean flag means true; a following bool word is its value. */
            int dummy;
            if (a + 1 < argc && !parse_bool(argv[a + 1], &dummy))
                u->value = argv[++a];
            else
                u->value = "true";
        } else if (a + 1 < argc) {
            u->value = argv[++a];
        } else {
            return fail(err, errlen, "%s needs a value", u->spelling);
        }
    }
    return 0;
}

static int load(cfg_settings *s, int argc, char **argv, flag_use *uses, char *err, size_t errlen)
{
    const cfg_setting *t = cfg_table();
    int n_uses, rc;
    char where[128];
    if ((rc = scan_flags(argc, argv, uses, &n_uses, err, errlen))) return rc;
    for (int i = 0; i < cfg_count(); i++) {
        snprintf(where, sizeof where, "default of %s", t[i].name);
        if (set_value(s, i, t[i].def, where, CFG_SRC_DEFAULT, 0, 1, err, errlen)) return CFG_ERROR;
    }

    /* The file comes first in precedence but is named by a flag or env var. */
    const char *path = getenv("HEPTAPOD_CONFIG");
    for (int k = 0; k < n_uses; k++)
        if (!strcmp(t[uses[k].index].name, "config")) path = uses[k].value;
    if (path && *path && load_file(s, path, err, errlen)) return CFG_ERROR;

    for (int i = 0; i < cfg_count(); i++) {
        const char *v = getenv(t[i].env);
        if (v && set_value(s, i, v, t[i].env, CFG_SRC_ENV, 0, 1, err, errlen)) return CFG_ERROR;
    }

    int list_seen = 0;
    for (int k = 0; k < n_uses; k++) {
        int i = uses[k].index, append = 0;
        if (t[i].type == CFG_LIST)
            append = list_seen++ > 0; /* the first --model replaces, the rest add */
        if (set_value(s, i, uses[k].value, uses[k].spelling, CFG_SRC_FLAG, append, 0, err, errlen))
            return CFG_ERROR;
    }

    if (s->max_connections == 0) s->max_connections = cfg__connections_from_nofile();
    if (s->threads == 0) {
        int cpus = cfg_cpu_count(&cfg_host_default);
        int64_t per = cpus / (s->n_model > 0 ? s->n_model : 1);
        s->threads = per > 0 ? per : 1;
    }
    return cfg__load_keys(s, find("api_key", 7), find("api_key_file", 12), err, errlen);
}

void cfg_hide_secrets(int argc, char **argv)
{
    flag_use *uses = calloc(argc > 0 ? (size_t)argc : 1, sizeof *uses);
    int n_uses = 0, key = find("api_key", 7);
    char err[16];
    if (uses && scan_flags(argc, argv, uses, &n_uses, err, sizeof err) == 0)
        for (int k = 0; k < n_uses; k++)
            if (uses[k].index == key) /* the value lies inside argv[] */
                explicit_bzero((char *)uses[k].value, strlen(uses[k].value));
    free(uses);
}

int cfg_load(cfg_settings *s, int argc, char **argv, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (err && errlen) err[0] = '\0';
    flag_use *uses = calloc(argc > 0 ? (size_t)argc : 1, sizeof *uses);
    if (!uses) return fail(err, errlen, "out of memory");
    int rc = load(s, argc, argv, uses, err, errlen);
    free(uses);
    if (rc) cfg_free(s);
    return rc;
}
