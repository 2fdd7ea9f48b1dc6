/*
 * forward.c - `heptapod forward`: logits for grids given as JSON, all in one
 * batched pass, for parity checks against other implementations and for
 * tools that score many grids.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/grid.h"
#include "engine/eng.h"

static const char usage[] =
    "usage: heptapod forward --model CKPT --input GRIDS.json --output LOGITS.json\n"
    "                        [--threads N] [--precision P] [--binary]\n"
    "\n"
    "Runs the model once on every grid of GRIDS.json, all in one batch, and\n"
    "writes their logits.\n"
    "\n"
    "  --model CKPT      safetensors checkpoint\n"
    "  --input FILE      JSON array of grids, each an array of rows of token ids,\n"
    "                    e.g. [[[1,2,3],[4,5,6]], [[7]]]; - reads stdin\n"
    "  --output FILE     where the logits go; - writes stdout\n"
    "  --threads N       threads of the engine (default 1)\n"
    "  --precision P     arithmetic of the Linear layers: f32, bf16 or int8\n"
    "                    (default: the checkpoint's `precision` metadata, else f32)\n"
    "  --binary          write raw little-endian float32 instead of JSON\n"
    "\n"
    "The JSON output is an array with one [H][W][V] array of logits per input\n"
    "grid (V = vocab_size), each float printed with 9 significant digits so that\n"
    "it reads back as the same float32; a non-finite logit is written as null.\n"
    "With --binary the output is the logits of grid 0 (row-major cells, V floats\n"
    "per cell), then grid 1, ..., with no header: sum(H*W) * V * 4 bytes.\n"
    "\n"
    "Grids must be non-empty and rectangular, at most max_height x max_width of\n"
    "the model, with ids in [0, vocab_size).\n"
    "\n"
    "Exit status: 0 done; 1 the model or input cannot be read, or the output\n"
    "cannot be written; 2 invalid arguments or grids.\n";

#define CMD "forward"

/* Parsed input: grid i's ids are ids[i], described by grids[i]. */
typedef struct batch {
    eng_grid *grids;
    int32_t **ids;
    int n, cells;
} batch;

static void batch_free(batch *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->ids[i]);
    free(b->ids);
    free(b->grids);
}

/* Reads and checks the grids against the model; returns an exit code. */
static int read_batch(const char *path, const eng_hparams *hp, batch *b)
{
    char err[512];
    json_t *root = cli__load_json(path, err, sizeof err);
    if (!root) return cli__fail(CMD, 1, "%s", err);
    int rc = 2;
    size_t n = json_array_size(root);
    if (!json_is_array(root)) {
        cli__fail(CMD, 2, "%s: expected a JSON array of grids", path);
        goto done;
    }
    b->grids = calloc(n + 1, sizeof *b->grids);
    b->ids = calloc(n + 1, sizeof *b->ids);
    if (!b->grids || !b->ids) {
        rc = cli__fail(CMD, 1, "out of memory");
        goto done;
    }
    long long cells = 0;
    for (size_t i = 0; i < n; i++) {
        eng_grid *g = &b->grids[i];
        if (cli__parse_grid(json_array_get(root, i), hp->vocab_size, 0, &b->ids[i], &g->height,
                            &g->width, err, sizeof err) != 0) {
            cli__fail(CMD, 2, "%s: grid %zu: %s", path, i, err);
            goto done;
        }
        b->n++; /* ids[i] is owned from here */
        g->tokens = b->ids[i];
        if (g->height > hp->max_height || g->width > hp->max_width) {
            cli__fail(CMD, 2, "%s: grid %zu is %dx%d, larger than the model allows (%dx%d)", path,
                      i, g->height, g->width, hp->max_height, hp->max_width);
            goto done;
        }
        cells += (long long)g->height * g->width;
        if (cells > 1 << 30) {
            cli__fail(CMD, 2, "%s: more than 2^30 cells in one batch", path);
            goto done;
        }
    }
    b->cells = (int)cells;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static void write_json(FILE *f, const batch *b, const float *z, int v)
{
    fputc('[', f);
    for (int i = 0; i < b->n; i++) {
        const eng_grid *g = &b->grids[i];
        fputs(i ? ",\n[" : "[", f);
        for (int y = 0; y < g->height; y++) {
            fputs(y ? ",\n [" : "[", f);
            for (int x = 0; x < g->width; x++) {
                fputs(x ? ",[" : "[", f);
                for (int k = 0; k < v; k++, z++) {
                    if (k) fputc(',', f);
                    if (isfinite(*z))
                        fprintf(f, "%.9g", (double)*z);
                    else
                        fputs("null", f);
                }
                fputc(']', f);
            }
            fputc(']', f);
        }
        fputc(']', f);
    }
    fputs("]\n", f);
}

/* Little-endian float32 whatever the host's byte order. */
static void write_binary(FILE *f, const float *z, size_t count)
{
    const uint32_t probe = 1;
    if (count == 0) return;
    if (*(const unsigned char *)&probe == 1) {
        fwrite(z, sizeof *z, count, f);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &z[i], sizeof bits);
        unsigned char le[4] = {bits & 0xff, (bits >> 8) & 0xff, (bits >> 16) & 0xff, bits >> 24};
        fwrite(le, 1, sizeof le, f);
    }
}

int cli_forward(int argc, char **argv)
{
    const char *model_path = NULL, *input = NULL, *output = NULL;
    int threads = 1, binary = 0, precision = ENG_PRECISION_DEFAULT;
    /* One option a line, as in generate.c. */
    /* clang-format off */
    const cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &model_path, NULL},
        {"--input", CLI_OPT_STRING, &input, NULL},
        {"--output", CLI_OPT_STRING, &output, NULL},
        {"--threads", CLI_OPT_INT, &threads, NULL},
        {"--precision", CLI_OPT_PRECISION, &precision, NULL},
        {"--binary", CLI_OPT_FLAG, &binary, NULL},
    };
    /* clang-format on */
    int parsed = cli__parse(CMD, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
    if (parsed == CLI_HELP) {
        fputs(usage, stdout);
        return 0;
    }
    if (parsed != CLI_PARSED) return 2;
    if (!model_path || !input || !output)
        return cli__fail(CMD, 2, "--model, --input and --output are required (try --help)");
    if (threads < 1) return cli__fail(CMD, 2, "--threads %d must be at least 1", threads);

    char err[512];
    eng_load_opts lo = ENG_LOAD_OPTS_INIT;
    lo.precision = precision;
    eng_model *m = eng_model_load_opts(model_path, &lo, err, sizeof err);
    if (!m) return cli__fail(CMD, 1, "%s", err);
    const eng_hparams *hp = eng_model_hparams(m);
    batch b = {0};
    eng_workspace *ws = NULL;
    FILE *out = NULL;
    int rc = read_batch(input, hp, &b);
    if (rc != 0) goto done;
    const float *logits = NULL;
    if (b.n > 0) {
        ws = eng_workspace_create(m, b.cells, threads, err, sizeof err);
        if (!ws) {
            rc = cli__fail(CMD, 1, "%s", err);
            goto done;
        }
        int frc = eng_forward(ws, b.grids, b.n, &logits);
        if (frc != ENG_OK) {
            rc = cli__fail(CMD, 1, "forward pass failed: %s", eng_strerror(frc));
            goto done;
        }
    }
    out = strcmp(output, "-") ? fopen(output, binary ? "wb" : "w") : stdout;
    if (!out) {
        rc = cli__fail(CMD, 1, "%s: cannot open for writing: %s", output, strerror(errno));
        goto done;
    }
    if (binary)
        write_binary(out, logits, (size_t)b.cells * (size_t)hp->vocab_size);
    else
        write_json(out, &b, logits, hp->vocab_size);
    if (fflush(out) != 0 || ferror(out)) rc = cli__fail(CMD, 1, "%s: write failed", output);
done:
    if (out && out != stdout && fclose(out) != 0 && rc == 0)
        rc = cli__fail(CMD, 1, "%s: write failed", output);
    eng_workspace_free(ws);
    batch_free(&b);
    eng_model_free(m);
    return rc;
}
