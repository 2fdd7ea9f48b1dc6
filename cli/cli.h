/*
 * cli.h - subcommands of the heptapod program. Each takes the arguments after
 * its own name (argv[0] is the subcommand) and returns the process exit code:
 * 0 success, 1 failure while running, 2 bad arguments (one-line message).
 */
#ifndef HEPTAPOD_CLI_H
#define HEPTAPOD_CLI_H

/** Checkpoint used when --model is absent: the same as `heptapod serve`'s
 *  default model (config/config.h), relative to the working directory. */
#define CLI_DEFAULT_MODEL "models/default.safetensors"

int cli_forward(int argc, char **argv);  /* cli/forward.c */
int cli_generate(int argc, char **argv); /* cli/generate.c */
int cli_serve(int argc, char **argv);    /* server/main.c */

#endif
