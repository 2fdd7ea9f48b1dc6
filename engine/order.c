/*
 * order.c - the names of the commit orders (eng_order, MODEL.md section 5),
 * apart from generation so that the wire format's parsers can name them
 * without linking the generator.
 */
#include <string.h>

#include "engine/eng.h"

static const char *const names[] = {
    [ENG_ORDER_CONFIDENCE] = "confidence",
    [ENG_ORDER_MARGIN] = "margin",
    [ENG_ORDER_RASTER] = "raster",
};
#define N_ORDERS ((int)(sizeof names / sizeof names[0]))

const char *eng_order_name(int order)
{
    return order >= 0 && order < N_ORDERS ? names[order] : NULL;
}

int eng_order_parse(const char *s)
{
    for (int i = 0; s && i < N_ORDERS; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}
