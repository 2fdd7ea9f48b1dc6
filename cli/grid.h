/*
 * grid.h - grids of token ids as JSON for the subcommands: reading a JSON
 * document from a file or stdin, and turning a [H][W] array into ids.
 */
#ifndef HEPTAPOD_CLI_GRID_H
#define HEPTAPOD_CLI_GRID_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/** Parses the JSON document at path ("-": stdin). Returns a new reference,
 *  or NULL with "PATH: line L: fault" in err. */
json_t *cli__load_json(const char *path, char *err, size_t errlen);

/**
 * Reads rows, a JSON array of H rows of W token ids (H, W >= 1, every row the
 * same length), into *out (malloc'd, H*W row-major; the caller frees it).
 * With vocab > 0 every id must lie in [0, vocab); with open_ok, -1 and null
 * stand for an open cell and become -1. Returns 0, or -1 with a one-line
 * message naming the first fault in err and nothing to free.
 */
int cli__parse_grid(const json_t *rows, int vocab, int open_ok, int32_t **out, int *h, int *w,
                    char *err, size_t errlen);

#endif
