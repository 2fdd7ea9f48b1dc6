/*
 * sudoku_solve.c - solves many Sudoku puzzles with a 9x9 model through the
 * engine's own generation (eng_gen_init / eng_step), batched, greedy.
 *
 *   sudoku_solve --model PATH [--iterations K] [--order NAME] [--batch B]
 *                [--threads T] [--remask R] < puzzles > answers
 *
 * Input: one puzzle a line, 81 cells row-major, '1'-'9' given, '.' or '0'
 * open; anything after the 81st cell (a grade, a solution) is ignored.
 * Output: one line per puzzle, the model's 81 digits ('.' where the model
 * left a cell that is not a digit), in input order. A byte-tokenizer model
 * holds the characters '1'-'9'; a model without tokenizer the ids 1-9.
 * Judging the answers is tools/sudoku_eval.py's job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng.h"

#define CELLS 81

static void usage(void)
{
    fprintf(stderr, "usage: sudoku_solve --model PATH [--iterations K] [--order NAME] "
                    "[--batch B] [--threads T] [--remask R] < puzzles\n");
    exit(2);
}

/* Reads the next puzzle into given[81] (digit ids, ENG_OPEN for open cells);
 * 0 at the end of the input, -1 for a malformed line. */
static int read_puzzle(FILE *in, int32_t *given, int byte_model, long *line)
{
    char buf[512];
    while (fgets(buf, sizeof buf, in)) {
        ++*line;
        size_t n = strlen(buf);
        if (n && buf[n - 1] != '\n' && !feof(in)) return -1; /* longer than any puzzle line */
        if (buf[0] == '\n' || buf[0] == '#') continue;
        for (int c = 0; c < CELLS; c++) {
            char ch = buf[c];
            if (ch >= '1' && ch <= '9')
                given[c] = byte_model ? ch : ch - '0';
            else if (ch == '.' || ch == '0')
                given[c] = ENG_OPEN;
            else
                return -1;
        }
        return 1;
    }
    return 0;
}

static int set_order(eng_sampling *s, const char *name)
{
    int o = eng_order_parse(name);
    if (o < 0) return -1;
    s->order = (eng_order)o;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *order = "confidence";
    int iterations = 81, batch = 32, threads = 1;
    float remask = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--model"))
            path = v;
        else if (!strcmp(k, "--iterations"))
            iterations = atoi(v);
        else if (!strcmp(k, "--order"))
            order = v;
        else if (!strcmp(k, "--batch"))
            batch = atoi(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--remask"))
            remask = strtof(v, NULL);
        else
            usage();
    }
    if (!path || iterations < 1 || batch < 1 || batch > 4096 || threads < 1) usage();
    eng_sampling s;
    memset(&s, 0, sizeof s);
    s.top_p = 1.0f; /* greedy: temperature 0, no filter, no noise */
    s.remask = remask; /* MODEL.md 5.2; eng_gen_init rejects one outside [0, 1) */
    if (set_order(&s, order)) {
        fprintf(stderr, "sudoku_solve: order %s is not known to this engine\n", order);
        return 2;
    }
    char err[512];
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "sudoku_solve: %s\n", err);
        return 1;
    }
    const eng_hparams *hp = eng_model_hparams(m);
    if (hp->max_height < 9 || hp->max_width < 9) {
        fprintf(stderr, "sudoku_solve: %s: grids of at most %dx%d, not 9x9\n", path,
                hp->max_height, hp->max_width);
        eng_model_free(m);
        return 1;
    }
    int byte_model = hp->tokenizer == ENG_TOKENIZER_BYTE;
    eng_workspace *ws = eng_workspace_create(m, batch * CELLS, threads, err, sizeof err);
    eng_gen *gens = calloc((size_t)batch, sizeof *gens);
    eng_gen **ptrs = calloc((size_t)batch, sizeof *ptrs);
    int32_t given[CELLS];
    int rc = 0, n = 0, at_end = 0;
    long line = 0;
    if (!ws || !gens || !ptrs) {
        fprintf(stderr, "sudoku_solve: %s\n", ws ? "out of memory" : err);
        rc = 1;
        goto out;
    }
    while (!at_end) {
        /* Fill a batch, run every iteration on it, print it. */
        for (n = 0; n < batch; n++) {
            int r = read_puzzle(stdin, given, byte_model, &line);
            if (r < 0) {
                fprintf(stderr, "sudoku_solve: line %ld: not 81 cells of 1-9, '.' or '0'\n", line);
                rc = 1;
                goto out;
            }
            if (r == 0) {
                at_end = 1;
                break;
            }
            if (eng_gen_init(&gens[n], m, 9, 9, given, iterations, &s, err, sizeof err)) {
                fprintf(stderr, "sudoku_solve: line %ld: %s\n", line, err);
                rc = 1;
                goto out;
            }
            ptrs[n] = &gens[n];
        }
        if (n == 0) break;
        for (int t = 0; t < iterations; t++) {
            int e = eng_step(ws, ptrs, n);
            if (e) {
                fprintf(stderr, "sudoku_solve: %s\n", eng_strerror(e));
                rc = 1;
                goto out;
            }
        }
        for (int i = 0; i < n; i++) {
            char row[CELLS + 2];
            for (int c = 0; c < CELLS; c++) {
                int v = gens[i].tokens[c] - (byte_model ? '0' : 0);
                row[c] = v >= 1 && v <= 9 ? (char)('0' + v) : '.';
            }
            row[CELLS] = '\n';
            row[CELLS + 1] = 0;
            fputs(row, stdout);
            eng_gen_close(&gens[i]);
        }
        n = 0;
    }
out:
    for (int i = 0; i < n; i++) eng_gen_close(&gens[i]);
    free(ptrs);
    free(gens);
    eng_workspace_free(ws);
    eng_model_free(m);
    return rc;
}
