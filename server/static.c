/*
 * static.c - which embedded file answers which path, and with what type.
 * The bytes themselves are generated (tools/embed.sh); this table is the
 * only hand-written part, so adding a file to the playground is one line
 * here and one in the Makefile's EMBED list.
 */
#include <string.h>

#include "server/static.h"

static const srv_asset assets[] = {
    {"/", "server/static/index.html", "text/html; charset=utf-8", 1},
    {"/static/playground.css", "server/static/playground.css", "text/css; charset=utf-8", 0},
    {"/static/playground.js", "server/static/playground.js", "text/javascript; charset=utf-8", 0},
    {"/static/heptapod.js", "server/static/heptapod.js", "text/javascript; charset=utf-8", 0},
    {"/openapi.json", "proto/openapi.json", "application/json", 0},
};

const srv_asset *srv__asset_find(const char *url)
{
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (!strcmp(url, assets[i].url)) return &assets[i];
    return NULL;
}

const srv_embedded *srv__asset_file(const srv_asset *a)
{
    for (const srv_embedded *e = srv__embedded; e->file; e++)
        if (!strcmp(e->file, a->file)) return e;
    return NULL;
}
