/*
 * table.c - the settings table of config.h as data: names, env names and
 * flags derived once from each name, so the table itself stays one line per
 * setting and the three spellings can never drift apart.
 */
#include <ctype.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include "config/internal.h"

enum {
#define X(name, type, def, min, max, choices, help) CFG__I_##name,
    CFG_SETTINGS(X)
#undef X
        CFG__N
};

_Static_assert(CFG__N <=
                   (int)(sizeof((cfg_settings *)0)->source / sizeof((cfg_settings *)0)->source[0]),
               "cfg_settings.source is too small for the table");

const size_t cfg__offset[] = {
#define X(name, type, def, min, max, choices, help) offsetof(cfg_settings, name),
    CFG_SETTINGS(X)
#undef X
};

static cfg_setting table[] = {
#define X(name, type, def, min, max, choices, help)                                                \
    {#name, type, def, min, max, choices, help, NULL, NULL},
    CFG_SETTINGS(X)
#undef X
};

static char env_names[CFG__N][48];
static char flag_names[CFG__N][48];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void derive_names(void)
{
    for (int i = 0; i < CFG__N; i++) {
        const char *n = table[i].name;
        int j = snprintf(env_names[i], sizeof env_names[i], "HEPTAPOD_");
        snprintf(flag_names[i], sizeof flag_names[i], "--");
        for (int k = 0; n[k] && j + 1 < (int)sizeof env_names[i]; k++, j++) {
            env_names[i][j] = (char)toupper((unsigned char)n[k]);
            flag_names[i][k + 2] = n[k] == '_' ? '-' : n[k];
            flag_names[i][k + 3] = '\0';
        }
        env_names[i][j] = '\0';
        table[i].env = env_names[i];
        table[i].flag = flag_names[i];
    }
}

const cfg_setting *cfg_table(void)
{
    pthread_once(&once, derive_names);
    return table;
}

int cfg_count(void)
{
    return CFG__N;
}

const char *cfg_source_name(cfg_source src)
{
    switch (src) {
    case CFG_SRC_DEFAULT:
        return "default";
    case CFG_SRC_FILE:
        return "file";
    case CFG_SRC_ENV:
        return "env";
    case CFG_SRC_FLAG:
        return "flag";
    }
    return "unknown";
}

const char *cfg__metavar(const cfg_setting *st)
{
    switch (st->type) {
    case CFG_INT:
        return "N";
    case CFG_BOOL:
        return "BOOL";
    case CFG_LIST:
        return "PATH";
    case CFG_ENUM:
        return "CHOICE";
    case CFG_STRING:
        break;
    }
    return "STR";
}
