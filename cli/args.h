/*
 * args.h - the flag parser the subcommands share: `--name value` and
 * `--name=value`, typed destinations, one-line errors.
 */
#ifndef HEPTAPOD_CLI_ARGS_H
#define HEPTAPOD_CLI_ARGS_H

#include <stdint.h>

typedef enum cli_opt_type {
    CLI_OPT_STRING,    /* const char ** (points into argv) */
    CLI_OPT_INT,       /* int *, decimal */
    CLI_OPT_FLOAT,     /* float * */
    CLI_OPT_U64,       /* uint64_t *, decimal */
    CLI_OPT_FLAG,      /* int *, set to 1; takes no value */
    CLI_OPT_PRECISION, /* int *, an eng_precision: f32, bf16 or int8 */
} cli_opt_type;

/** One option: its name with the dashes ("--model"), type and destination.
 *  `seen`, if set, is set to 1 when the option appears. */
typedef struct cli_opt {
    const char *name;
    cli_opt_type type;
    void *value;
    int *seen;
} cli_opt;

enum { CLI_PARSED = 0, CLI_HELP = 1, CLI_BAD = 2 };

/**
 * Parses argv[1..argc) against the n options. Returns CLI_PARSED, CLI_HELP
 * when --help or -h appears (the caller prints its usage to stdout), or
 * CLI_BAD after printing one line "heptapod CMD: ..." to stderr for an
 * unknown option, a missing or malformed value, or a stray argument.
 */
int cli__parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n);

/** Prints "heptapod CMD: message" and a newline to stderr; returns code. */
int cli__fail(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
