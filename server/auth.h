/*
 * auth.h - API keys on requests: which key a request presents, whether it
 * is one of the configured keys (in time that does not depend on where a
 * guess goes wrong), and the startup notes about how keys were given.
 */
#ifndef HEPTAPOD_SRV_AUTH_H
#define HEPTAPOD_SRV_AUTH_H

#include "config/config.h"

/**
 * The key a request presents: the token of "Authorization: Bearer TOKEN"
 * (scheme in any case, spaces before the token skipped), else the value of
 * X-Api-Key, else NULL. Either header value may be NULL (absent). Returns a
 * pointer into the header value given.
 */
const char *srv__auth_presented(const char *authorization, const char *x_api_key);

/**
 * 1 if `given` (NULL: none) equals one of the n keys, else 0. Every key is
 * compared, each over its whole length, whatever matched before: the time
 * depends on the number and lengths of the keys and on the length of
 * `given`, never on its bytes.
 */
int srv__auth_check(char *const *keys, int n, const char *given);

/**
 * Logs how many keys guard the API (never the keys), and a warning when
 * one came from the --api-key flag, which other local users can read in
 * /proc/PID/cmdline until it is wiped.
 */
void srv__auth_announce(const cfg_settings *cfg);

#endif
