/*
 * cors.c - Cross-Origin Resource Sharing, off unless cors_allow_origin is
 * set. The setting is "*" (any origin) or a comma-separated list of exact
 * origins ("https://app.example.com, http://localhost:3000"); it is checked
 * once at start and read in place for each request, so there is no state.
 *
 * What a browser gets when its origin is allowed: every answer (errors
 * included, so a page can read why it was refused) carries
 * Access-Control-Allow-Origin and exposes X-Request-Id and Retry-After; a
 * preflight (OPTIONS with Access-Control-Request-Method) is answered 204
 * with the route's methods, the request headers the API reads and a max
 * age, before the API key is checked (browsers never send credentials on a
 * preflight). Answers vary by Origin whenever CORS is on. An origin that is
 * not allowed gets the same answers without the Allow-Origin header, which
 * is how a browser learns it may not read them.
 */
#include <stdio.h>
#include <string.h>

#include "server/server.h"

/* The request headers a page may send. */
#define ALLOW_HEADERS "Authorization, Content-Type, X-Api-Key, X-Request-Id"
#define EXPOSE_HEADERS "X-Request-Id, Retry-After"

/* Calls fn on each trimmed, non-empty entry of the list until it returns
 * nonzero; returns that value (0 if none did). */
static int each_origin(const char *list, int (*fn)(const char *p, size_t n, const void *arg),
                       const void *arg)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        size_t n = (size_t)(end - p);
        while (n && p[n - 1] == ' ')
            n--;
        if (n) {
            int rc = fn(p, n, arg);
            if (rc) return rc;
        }
        p = end;
    }
    return 0;
}

/* An origin is "*" or scheme://host[:port], nothing after it. */
static int bad_origin(const char *p, size_t n, const void *arg)
{
    char *err = (char *)arg;
    if (n == 1 && p[0] == '*') return 0;
    const char *sep = memchr(p, ':', n);
    int ok = sep && sep > p && (size_t)(sep - p) + 3 < n && !strncmp(sep, "://", 3);
    for (const char *q = sep ? sep + 3 : p; ok && q < p + n; q++)
        ok = *q != '/' && *q != '*' && *q != ' ' && (unsigned char)*q > 0x20 &&
             (unsigned char)*q < 0x7f;
    if (ok) return 0;
    snprintf(err, 256, "'%.*s' is not an origin (scheme://host[:port], or *)",
             (int)(n < 80 ? n : 80), p);
    return 1;
}

int srv__cors_check(const char *list, char *err, size_t len)
{
    char msg[256] = "";
    if (!each_origin(list, bad_origin, msg)) return 0;
    snprintf(err, len, "cors_allow_origin: %s", msg);
    return -1;
}

struct match {
    const char *origin;
    size_t n;
};

/* 1: the entry is "*", 2: it is the origin itself. */
static int matches(const char *p, size_t n, const void *arg)
{
    const struct match *m = arg;
    if (n == 1 && p[0] == '*') return 1;
    return n == m->n && !memcmp(p, m->origin, n) ? 2 : 0;
}

const char *srv__cors_allow(const cfg_settings *cfg, const char *origin)
{
    if (!cfg->cors_allow_origin[0] || !origin || !origin[0]) return NULL;
    struct match m = {origin, strlen(origin)};
    switch (each_origin(cfg->cors_allow_origin, matches, &m)) {
    case 1:
        return "*";
    case 2:
        return origin;
    default:
        return NULL;
    }
}

void srv__cors_headers(const srv_conn *c, struct MHD_Response *r)
{
    if (!c->srv->cfg->cors_allow_origin[0]) return;
    MHD_add_response_header(r, "Vary", "Origin");
    if (!c->cors_origin) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", c->cors_origin);
    MHD_add_response_header(r, "Access-Control-Expose-Headers", EXPOSE_HEADERS);
}

enum MHD_Result srv__cors_preflight(srv_conn *c, const char *methods)
{
    char age[24];
    snprintf(age, sizeof age, "%lld", (long long)c->srv->cfg->cors_max_age_s);
    const char *extra[9] = {MHD_HTTP_HEADER_ALLOW, methods};
    if (c->cors_origin) { /* an origin that is not allowed learns nothing more */
        const char *cors[] = {"Access-Control-Allow-Methods", methods,
                              "Access-Control-Allow-Headers", ALLOW_HEADERS,
                              "Access-Control-Max-Age",       age};
        memcpy(extra + 2, cors, sizeof cors);
    }
    c->outcome = "preflight";
    return srv__http_reply_headers(c, MHD_HTTP_NO_CONTENT, NULL, 0, NULL, extra);
}
