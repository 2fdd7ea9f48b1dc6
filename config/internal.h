/*
 * internal.h - what config/'s own files share and nothing outside calls.
 */
#ifndef HEPTAPOD_CFG_INTERNAL_H
#define HEPTAPOD_CFG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/** Byte offset of each setting's field in cfg_settings, in table order. */
extern const size_t cfg__offset[];

/** Flag spelling for the help text: "--port INT", "--model PATH". */
const char *cfg__metavar(const cfg_setting *st);

/** max_connections when set to 0: the soft RLIMIT_NOFILE less a reserve. */
int64_t cfg__connections_from_nofile(void);

#endif
