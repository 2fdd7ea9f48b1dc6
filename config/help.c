/* help.c - `heptapod serve --help` and the effective-settings dump, both from the table. */
#include <inttypes.h>
#include <stdio.h>

#include "config/internal.h"

void cfg_print_help(FILE *f)
{
    const cfg_setting *t = cfg_table();
    fprintf(f, "usage: heptapod serve [--name value | --name=value]...\n\n"
               "Serves HeptaPod checkpoints over HTTP. Each setting is taken, in increasing\n"
               "precedence, from its default, the JSON file named by --config (keys are the\n"
               "setting names), its HEPTAPOD_* environment variable, then its flag. Booleans:\n"
               "true/false/1/0. --model repeats (env: comma-separated); the first model is the\n"
               "default. Flags may also be spelt with '_' (--max_queue).\n\nsettings:\n");
    for (int i = 0; i < cfg_count(); i++) {
        const cfg_setting *st = &t[i];
        char head[96];
        snprintf(head, sizeof head, "%s %s", st->flag, cfg__metavar(st));
        fprintf(f, "  %-28s %s\n", head, st->help);
        fprintf(f, "  %-28s env %s, default ", "", st->env);
        if (st->type == CFG_STRING || st->type == CFG_LIST)
            fprintf(f, "'%s'", st->def);
        else
            fprintf(f, "%s", st->def);
        if (st->type == CFG_INT)
            fprintf(f, ", %" PRId64 "..%" PRId64, st->min, st->max);
        else if (st->type == CFG_ENUM)
            fprintf(f, ", one of %s", st->choices);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-28s %s\n", "--help, -h", "print this help and exit");
}

void cfg_print(FILE *f, const cfg_settings *s)
{
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++) {
        const void *field = (const char *)s + cfg__offset[i];
        fprintf(f, "%s = ", t[i].name);
        switch (t[i].type) {
        case CFG_INT:
            fprintf(f, "%" PRId64, *(const int64_t *)field);
            break;
        case CFG_BOOL:
            fprintf(f, "%s", *(const int *)field ? "true" : "false");
            break;
        case CFG_STRING:
        case CFG_ENUM: {
            const char *v = *(char *const *)field;
            if (field == (const void *)&s->api_key)
                fprintf(f, "%s", v && *v ? "(set)" : "(empty)");
            else
                fprintf(f, "'%s'", v ? v : "");
            break;
        }
        case CFG_LIST:
            for (int k = 0; k < s->n_model; k++)
                fprintf(f, "%s'%s'", k ? "," : "", s->model[k]);
            break;
        }
        fprintf(f, " (%s)\n", cfg_source_name(s->source[i]));
    }
}
