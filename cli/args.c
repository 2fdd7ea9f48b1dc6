/* args.c - the subcommands' shared flag parser (args.h). */
#include "cli/args.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"

int cli__fail(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "heptapod %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* Stores text into opt's destination; 0, or -1 if it is not a valid value. */
static int store(const cli_opt *opt, const char *text)
{
    char *end;
    errno = 0;
    switch (opt->type) {
    case CLI_OPT_STRING:
        *(const char **)opt->value = text;
        return 0;
    case CLI_OPT_INT: {
        long v = strtol(text, &end, 10);
        if (end == text || *end || errno || v < INT_MIN || v > INT_MAX) return -1;
        *(int *)opt->value = (int)v;
        return 0;
    }
    case CLI_OPT_FLOAT: {
        float v = strtof(text, &end);
        if (end == text || *end) return -1;
        *(float *)opt->value = v;
        return 0;
    }
    case CLI_OPT_U64: {
        /* strtoull would silently wrap "-1" around. */
        if (strchr(text, '-')) return -1;
        unsigned long long v = strtoull(text, &end, 10);
        if (end == text || *end || errno) return -1;
        *(uint64_t *)opt->value = (uint64_t)v;
        return 0;
    }
    case CLI_OPT_FLAG:
        *(int *)opt->value = 1;
        return 0;
    case CLI_OPT_PRECISION: {
        int p = eng_precision_parse(text);
        if (p < 0) return -1;
        *(int *)opt->value = p;
        return 0;
    }
    }
    return -1;
}

static const char *const type_names[] = {
    [CLI_OPT_STRING] = "a string", [CLI_OPT_INT] = "an integer",
    [CLI_OPT_FLOAT] = "a number",  [CLI_OPT_U64] = "a non-negative integer",
    [CLI_OPT_FLAG] = "nothing",    [CLI_OPT_PRECISION] = "f32, bf16 or int8",
};

int cli__parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return CLI_HELP;
        if (strncmp(arg, "--", 2) != 0)
            return cli__fail(cmd, CLI_BAD, "unexpected argument '%s' (try --help)", arg);
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const cli_opt *opt = NULL;
        for (int k = 0; k < n && !opt; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, arg, len)) opt = &opts[k];
        if (!opt)
            return cli__fail(cmd, CLI_BAD, "unknown option '%.*s' (try --help)", (int)len, arg);
        const char *value = NULL;
        if (opt->type == CLI_OPT_FLAG) {
            if (eq) return cli__fail(cmd, CLI_BAD, "%s takes no value", opt->name);
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return cli__fail(cmd, CLI_BAD, "%s needs a value", opt->name);
        }
        if (store(opt, value) != 0)
            return cli__fail(cmd, CLI_BAD, "%s '%s' is not %s", opt->name, value,
                             type_names[opt->type]);
        if (opt->seen) *opt->seen = 1;
    }
    return CLI_PARSED;
}
