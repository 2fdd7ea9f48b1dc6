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

/** Resolves s->api_keys from api_key and api_key_file (keys.c; their
 * table indices name their sources in messages). Returns 0 or CFG_ERROR
 * with a message that opens with the source and never shows a key. */
int cfg__load_keys(cfg_settings *s, int api_key_index, int api_key_file_index, char *err,
                   size_t errlen);
/** Wipes and frees s->api_keys. */
void cfg__free_keys(cfg_settings *s);

/** Whether item (n bytes) is shaped like a model option: "key=..." with a
 * key of [a-z_] (known or not). */
int cfg__model_option_item(const char *item, size_t n);
/** Whether the entry (n bytes) ends in an option list (model.c's rule). */
int cfg__model_has_options(const char *entry, size_t n);

#endif
