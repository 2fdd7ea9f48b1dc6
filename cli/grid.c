/* grid.c - JSON grids of token ids for the subcommands (grid.h). */
#include "cli/grid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *cli__load_json(const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = strcmp(path, "-") ? json_load_file(path, 0, &jerr) : json_loadf(stdin, 0, &jerr);
    if (!root) snprintf(err, errlen, "%s: line %d: %s", path, jerr.line, jerr.text);
    return root;
}

int cli__parse_grid(const json_t *rows, int vocab, int open_ok, int32_t **out, int *h, int *w,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (!json_is_array(rows) || json_array_size(rows) == 0 ||
        !json_is_array(json_array_get(rows, 0)) || json_array_size(json_array_get(rows, 0)) == 0) {
        snprintf(err, errlen, "a grid must be a non-empty array of non-empty rows");
        return -1;
    }
    size_t height = json_array_size(rows), width = json_array_size(json_array_get(rows, 0));
    if (height > INT32_MAX / width) {
        snprintf(err, errlen, "a grid of %zux%zu cells is too large", height, width);
        return -1;
    }
    int32_t *ids = malloc(height * width * sizeof *ids);
    if (!ids) {
        snprintf(err, errlen, "no memory for a %zux%zu grid", height, width);
        return -1;
    }
    for (size_t y = 0; y < height; y++) {
        const json_t *row = json_array_get(rows, y);
        if (!json_is_array(row) || json_array_size(row) != width) {
            snprintf(err, errlen,
                     "row %zu is not an array of %zu cells like row 0 "
                     "(grids must be rectangular)",
                     y, width);
            goto fail;
        }
        for (size_t x = 0; x < width; x++) {
            const json_t *cell = json_array_get(row, x);
            json_int_t id;
            if (open_ok && json_is_null(cell)) {
                id = -1;
            } else if (json_is_integer(cell)) {
                id = json_integer_value(cell);
            } else {
                snprintf(err, errlen, "cell (%zu,%zu) is not a token id", y, x);
                goto fail;
            }
            if (!(open_ok && id == -1) &&
                (id < 0 || id > INT32_MAX || (vocab > 0 && id >= vocab))) {
                if (vocab > 0)
                    snprintf(err, errlen, "token %lld at (%zu,%zu) is outside the vocabulary (%d)",
                             (long long)id, y, x, vocab);
                else
                    snprintf(err, errlen, "token %lld at (%zu,%zu) is not a token id",
                             (long long)id, y, x);
                goto fail;
            }
            ids[y * width + x] = (int32_t)id;
        }
    }
    *out = ids;
    *h = (int)height;
    *w = (int)width;
    return 0;
fail:
    free(ids);
    return -1;
}
