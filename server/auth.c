/*
 * auth.c - matching a presented API key against the configured ones.
 *
 * The comparison must not tell an attacker, through its duration, how many
 * leading bytes of a guess were right: each key is compared over its whole
 * length with the differences OR-ed together, and every key is compared
 * even once one matched. What remains observable is only the number and
 * lengths of the keys, which a guess cannot improve on.
 */
#include <string.h>
#include <strings.h>

#include "server/auth.h"
#include "server/log.h"

const char *srv__auth_presented(const char *authorization, const char *x_api_key)
{
    if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        const char *tok = authorization + 7;
        while (*tok == ' ')
            tok++;
        return tok;
    }
    return x_api_key;
}

/* 0 when equal, nonzero otherwise, in time that depends on the lengths only. */
static unsigned key_diff(const char *given, size_t glen, const char *key)
{
    size_t klen = strlen(key);
    unsigned diff = glen != klen;
    for (size_t i = 0; i < klen; i++) {
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned)(g ^ (unsigned char)key[i]);
    }
    return diff;
}

int srv__auth_check(char *const *keys, int n, const char *given)
{
    if (!given) return 0;
    size_t glen = strlen(given);
    /* volatile: the compiler may not stop at the first match either */
    volatile unsigned matched = 0;
    for (int i = 0; i < n; i++)
        matched |= key_diff(given, glen, keys[i]) == 0;
    return matched != 0;
}

void srv__auth_announce(const cfg_settings *cfg)
{
    if (cfg->n_api_keys == 0) return;
    const cfg_setting *t = cfg_table();
    for (int i = 0; i < cfg_count(); i++)
        if (!strcmp(t[i].name, "api_key") && cfg->source[i] == CFG_SRC_FLAG && cfg->api_key[0])
            SRV_LOG(SRV_LOG_WARN,
                    "the API key was given with --api-key: other local users could read it in "
                    "/proc/PID/cmdline before it was wiped there; use --api-key-file or "
                    "HEPTAPOD_API_KEY instead");
    SRV_LOG(SRV_LOG_INFO, "API key required: %d key%s accepted", cfg->n_api_keys,
            cfg->n_api_keys == 1 ? "" : "s");
}
