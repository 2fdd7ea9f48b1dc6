/*
 * generate.c - `heptapod generate`: one generation run locally, printing the
 * grid after every refinement iteration, as text rows or one JSON object per
 * iteration.
 *
 * Every default is the daemon's for the same request (the default model,
 * PROTO_DEFAULT_ITERATIONS, PROTO_DEFAULT_TEMPERATURE, top-k and top-p off,
 * the model's remask_noise, order and remask), so `heptapod generate` shows what POST
 * /generate would answer; only the seed differs, fixed at 0 here where the
 * daemon draws one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/grid.h"
#include "engine/eng.h"
#include "proto/proto.h"

static const char usage[] =
    "usage: heptapod generate [--model CKPT] [--height H --width W]\n"
    "                         [--prompt TEXT | --given GRID.json] [--iterations K]\n"
    "                         [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "                         [--remask-noise X] [--order O] [--remask R]\n"
    "                         [--threads N] [--precision P] [--json]\n"
    "\n"
    "Generates one grid by iterative refinement and prints it after every\n"
    "iteration. The defaults are those of POST /generate on `heptapod serve`.\n"
    "\n"
    "  --model CKPT       safetensors checkpoint (default " CLI_DEFAULT_MODEL ")\n"
    "  --height H         rows (default: the model's max_height, at most 16)\n"
    "  --width W          columns (default: the model's max_width, at most 64)\n"
    "  --prompt TEXT      tokenizer=byte models: TEXT's bytes are given cells from\n"
    "                     the top-left corner, one grid row per line ('\\n' starts\n"
    "                     the next row); every other cell is open\n"
    "  --given FILE       JSON [H][W] array of token ids, -1 or null for an open\n"
    "                     cell; sets the size (- reads stdin)\n"
    "  --iterations K     refinement iterations (default %d)\n"
    "  --temperature T    0 is greedy (default %g)\n"
    "  --top-k K          keep the K most probable tokens; 0 keeps all (default 0)\n"
    "  --top-p P          keep the most probable tokens until their probability\n"
    "                     reaches P, in (0, 1] (default 1)\n"
    "  --seed S           seed of the random draws (default 0); the same seed and\n"
    "                     settings give the same grids\n"
    "  --remask-noise X   annealed Gumbel noise on the re-masking order, 0..100;\n"
    "                     0 re-masks strictly by confidence (default: the model's\n"
    "                     metadata remask_noise if it is a valid number, else 0)\n"
    "  --order O          which sampled cells each iteration commits: confidence\n"
    "                     (most probable sample), margin (largest top-1 minus top-2\n"
    "                     probability) or raster (first open cells, row-major;\n"
    "                     --iterations equal to the open cells: one cell a step)\n"
    "                     (default: the model's metadata order, else confidence)\n"
    "  --remask R         in [0, 1): share of the committed cells re-opened, least\n"
    "                     probable first, in every iteration but the last (default:\n"
    "                     the model's metadata remask if valid, else 0)\n"
    "  --threads N        threads of the engine (default 1)\n"
    "  --precision P      arithmetic of the Linear layers: f32, bf16 or int8\n"
    "                     (default: the checkpoint's `precision` metadata, else f32)\n"
    "  --json             one JSON object per iteration and line instead of text:\n"
    "                     {\"iteration\", \"iterations\", \"masked\", \"mask_token\",\n"
    "                     \"grid\": [H][W] token ids}\n"
    "\n"
    "Text output: a line \"iteration t/K, N masked\", then the grid's rows, then\n"
    "an empty line. For tokenizer=byte models each cell is one character: the\n"
    "byte itself if it is printable ASCII (0x20-0x7e), \u2591 (U+2591) for a cell\n"
    "still masked, and \u00b7 (U+00B7) for any other byte or id; use --json for the\n"
    "exact ids. Other models print rows of ids, with _ for a masked cell.\n"
    "\n"
    "Exit status: 0 done; 1 the model or a file cannot be read, or the run\n"
    "failed; 2 invalid arguments.\n";

#define CMD "generate"
#define MASK_GLYPH "\u2591"
#define OTHER_GLYPH "\u00b7"

/* Lays the prompt's lines out from the top-left of a h x w array of open
 * cells. Returns 0 or an exit code after a message. */
static int prompt_cells(const char *text, int h, int w, int32_t *given)
{
    for (int c = 0; c < h * w; c++)
        given[c] = ENG_OPEN;
    int y = 0, x = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '\n') {
            y++;
            x = 0;
            continue;
        }
        if (y >= h) return cli__fail(CMD, 2, "--prompt has more lines than the grid's %d rows", h);
        if (x >= w)
            return cli__fail(CMD, 2, "--prompt line %d is longer than the grid's %d columns", y + 1,
                             w);
        given[y * w + x++] = *p;
    }
    return 0;
}

static void print_text(const eng_gen *g, const eng_hparams *hp)
{
    int digits = snprintf(NULL, 0, "%d", hp->vocab_size - 1);
    printf("iteration %d/%d, %d masked\n", g->iter, g->iterations, g->n_masked);
    for (int y = 0; y < g->height; y++) {
        for (int x = 0; x < g->width; x++) {
            int32_t id = g->tokens[y * g->width + x];
            if (hp->tokenizer == ENG_TOKENIZER_BYTE) {
                if (id == hp->mask_token)
                    fputs(MASK_GLYPH, stdout);
                else if (id >= 0x20 && id <= 0x7e)
                    putchar(id);
                else
                    fputs(OTHER_GLYPH, stdout);
            } else if (id == hp->mask_token) {
                printf("%s%*s", x ? " " : "", digits, "_");
            } else {
                printf("%s%*d", x ? " " : "", digits, (int)id);
            }
        }
        putchar('\n');
    }
    putchar('\n');
}

static void print_json(const eng_gen *g, const eng_hparams *hp)
{
    printf("{\"iteration\":%d,\"iterations\":%d,\"masked\":%d,\"mask_token\":%d,\"grid\":[",
           g->iter, g->iterations, g->n_masked, hp->mask_token);
    for (int y = 0; y < g->height; y++) {
        fputs(y ? ",[" : "[", stdout);
        for (int x = 0; x < g->width; x++)
            printf(x ? ",%d" : "%d", (int)g->tokens[y * g->width + x]);
        putchar(']');
    }
    puts("]}");
}

/* Reads --given into *given and its size; a set --height/--width must agree. */
static int read_given(const char *path, int *h, int *w, int h_set, int w_set, int32_t **given)
{
    char err[512];
    json_t *root = cli__load_json(path, err, sizeof err);
    if (!root) return cli__fail(CMD, 1, "%s", err);
    int gh, gw;
    int bad = cli__parse_grid(root, 0, 1, given, &gh, &gw, err, sizeof err);
    json_decref(root);
    if (bad) return cli__fail(CMD, 2, "%s: %s", path, err);
    if ((h_set && *h != gh) || (w_set && *w != gw)) {
        free(*given);
        *given = NULL;
        return cli__fail(CMD, 2, "--height/--width %dx%d disagree with %s, which is %dx%d",
                         h_set ? *h : gh, w_set ? *w : gw, path, gh, gw);
    }
    *h = gh;
    *w = gw;
    return 0;
}

int cli_generate(int argc, char **argv)
{
    const char *model_path = CLI_DEFAULT_MODEL, *prompt = NULL, *given_path = NULL;
    int height = 0, width = 0, iterations = PROTO_DEFAULT_ITERATIONS, threads = 1, json = 0;
    int h_set = 0, w_set = 0, noise_set = 0, remask_set = 0, precision = ENG_PRECISION_DEFAULT;
    const char *order = NULL;
    eng_sampling s = {.temperature = PROTO_DEFAULT_TEMPERATURE, .top_k = 0, .top_p = 1.0f, .seed = 0};
    const cli_opt opts[] = {
        {"--model", CLI_OPT_STRING, &model_path, NULL},
        {"--height", CLI_OPT_INT, &height, &h_set},
        {"--width", CLI_OPT_INT, &width, &w_set},
        {"--prompt", CLI_OPT_STRING, &prompt, NULL},
        {"--given", CLI_OPT_STRING, &given_path, NULL},
        {"--iterations", CLI_OPT_INT, &iterations, NULL},
        {"--temperature", CLI_OPT_FLOAT, &s.temperature, NULL},
        {"--top-k", CLI_OPT_INT, &s.top_k, NULL},
        {"--top-p", CLI_OPT_FLOAT, &s.top_p, NULL},
        {"--seed", CLI_OPT_U64, &s.seed, NULL},
        {"--remask-noise", CLI_OPT_FLOAT, &s.remask_noise, &noise_set},
        {"--order", CLI_OPT_STRING, &order, NULL},
        {"--remask", CLI_OPT_FLOAT, &s.remask, &remask_set},
        {"--threads", CLI_OPT_INT, &threads, NULL},
        {"--precision", CLI_OPT_PRECISION, &precision, NULL},
        {"--json", CLI_OPT_FLAG, &json, NULL},
    };
    int parsed = cli__parse(CMD, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
    if (parsed == CLI_HELP) {
        printf(usage, PROTO_DEFAULT_ITERATIONS, (double)PROTO_DEFAULT_TEMPERATURE);
        return 0;
    }
    if (parsed != CLI_PARSED) return 2;
    if (prompt && given_path) return cli__fail(CMD, 2, "--prompt and --given exclude each other");
    if (threads < 1) return cli__fail(CMD, 2, "--threads %d must be at least 1", threads);
    if (order && eng_order_parse(order) < 0)
        return cli__fail(CMD, 2, "--order '%s' is not one of confidence, margin, raster", order);

    char err[512];
    eng_load_opts lo = ENG_LOAD_OPTS_INIT;
    lo.precision = precision;
    eng_model *m = eng_model_load_opts(model_path, &lo, err, sizeof err);
    if (!m) return cli__fail(CMD, 1, "%s", err);
    const eng_hparams *hp = eng_model_hparams(m);
    if (!noise_set) s.remask_noise = proto_meta_remask_noise(eng_model_meta(m, "remask_noise"));
    s.order =
        order ? (eng_order)eng_order_parse(order) : proto_meta_order(eng_model_meta(m, "order"));
    if (!remask_set) s.remask = proto_meta_remask(eng_model_meta(m, "remask"));
    int32_t *given = NULL;
    eng_workspace *ws = NULL;
    eng_gen g = {0};
    int rc = 0;
    if (!h_set) height = hp->max_height < 16 ? hp->max_height : 16;
    if (!w_set) width = hp->max_width < 64 ? hp->max_width : 64;
    if (given_path) {
        rc = read_given(given_path, &height, &width, h_set, w_set, &given);
        if (rc) goto done;
    } else if (prompt) {
        if (hp->tokenizer != ENG_TOKENIZER_BYTE) {
            rc = cli__fail(CMD, 2, "--prompt needs a tokenizer=byte model; use --given");
            goto done;
        }
        /* Sizes are checked here only as far as the layout needs them;
         * eng_gen_init names the bounds. */
        if (height >= 1 && width >= 1 && height <= hp->max_height && width <= hp->max_width) {
            given = malloc(sizeof *given * (size_t)height * (size_t)width);
            if (!given) {
                rc = cli__fail(CMD, 1, "out of memory");
                goto done;
            }
            rc = prompt_cells(prompt, height, width, given);
            if (rc) goto done;
        }
    }
    int irc = eng_gen_init(&g, m, height, width, given, iterations, &s, err, sizeof err);
    if (irc != ENG_OK) {
        rc = cli__fail(CMD, irc == ENG_ERANGE ? 2 : 1, "%s", err);
        goto done;
    }
    ws = eng_workspace_create(m, height * width, threads, err, sizeof err);
    if (!ws) {
        rc = cli__fail(CMD, 1, "%s", err);
        goto done;
    }
    eng_gen *one = &g;
    while (!eng_gen_done(&g)) {
        int src = eng_step(ws, &one, 1);
        if (src != ENG_OK) {
            rc = cli__fail(CMD, 1, "iteration %d failed: %s", g.iter + 1, eng_strerror(src));
            goto done;
        }
        if (json)
            print_json(&g, hp);
        else
            print_text(&g, hp);
        if (fflush(stdout) != 0) {
            rc = cli__fail(CMD, 1, "cannot write to stdout");
            goto done;
        }
    }
done:
    eng_workspace_free(ws);
    eng_gen_close(&g);
    free(given);
    eng_model_free(m);
    return rc;
}
