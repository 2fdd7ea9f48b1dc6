/*
 * static.h - the files the daemon serves from its own binary: the
 * playground of server/static/ and the OpenAPI document proto/openapi.json.
 * tools/embed.sh turns them into C arrays at build time (the Makefile's
 * $(BUILD)/gen/embedded.c), so a lone binary serves them with no file
 * system, CDN or build tool behind it.
 */
#ifndef HEPTAPOD_SRV_STATIC_H
#define HEPTAPOD_SRV_STATIC_H

#include <stddef.h>

/** One embedded file, as generated: its source path, bytes (with a NUL
 * after the last one, not counted in len) and a strong ETag made of their
 * CRC (POSIX cksum) and length, quotes included. */
typedef struct srv_embedded {
    const char *file;
    const unsigned char *data;
    size_t len;
    const char *etag;
} srv_embedded;

/** Every embedded file, ended by an entry whose file is NULL (generated). */
extern const srv_embedded srv__embedded[];

/** A file as served: where, with which type and headers. Static storage. */
typedef struct srv_asset {
    const char *url;  /* the exact request path, e.g. "/static/heptapod.js" */
    const char *file; /* the embedded file it serves */
    const char *type; /* Content-Type */
    int page;         /* an HTML page: sent with the Content-Security-Policy */
} srv_asset;

/** The asset served at url, or NULL. */
const srv_asset *srv__asset_find(const char *url);

/** The embedded file of an asset, or NULL if the build did not embed it
 * (then the asset answers 404). */
const srv_embedded *srv__asset_file(const srv_asset *a);

/** The Content-Security-Policy of pages: scripts, styles and requests from
 * the daemon's own origin only; nothing inline, no frames, no forms. */
#define SRV_PAGE_CSP                                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#endif
