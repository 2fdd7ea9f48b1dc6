/* main.c - `heptapod SUBCOMMAND ...`: dispatch to the subcommands of cli.h. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cli_serve, "run the HTTP daemon on one or more models"},
    {"generate", cli_generate, "generate one grid locally, printing every iteration"},
    {"forward", cli_forward, "compute logits for grids given as JSON (parity checks)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: heptapod COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`heptapod COMMAND --help` describes each.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "heptapod: unknown command '%s' (try --help)\n", argv[1]);
    return 2;
}
