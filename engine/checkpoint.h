/*
 * checkpoint.h - what the two halves of the checkpoint loader share:
 * checkpoint.c (file, tensors, layout) and ckpt_meta.c (__metadata__ and
 * the hyper-parameters of MODEL.md section 2).
 */
#ifndef HEPTAPOD_ENG_CHECKPOINT_H
#define HEPTAPOD_ENG_CHECKPOINT_H

#include <stddef.h>

#include "engine/internal.h"
#include "engine/jsonlite.h"

/**
 * Copies the __metadata__ object `meta` (NULL if the header has none) into
 * m->meta, sorted by key, and fills m->hp, m->window and m->dilation from it.
 * Returns ENG_OK, or an error code with a message (without the path) in
 * msg; whatever was allocated is left in m for eng_model_free.
 */
int eng__ckpt_meta(eng_model *m, const eng__jnode *meta, char *msg, size_t msglen);

/**
 * Writes s into buf (n bytes) fit for a one-line message: bytes outside
 * printable ASCII become '?', and long names are cut with "...". Returns buf.
 */
const char *eng__ckpt_safe(const char *s, char *buf, size_t n);

#endif
