#!/bin/sh
# test_server_auth.sh - the optional API key: 401 with WWW-Authenticate
# without it or with a wrong one (also a prefix or an extension of the right
# one), accepted as a Bearer token or X-Api-Key; health, readiness and
# metrics stay public unless auth_health says otherwise.
set -eu
. tests/integration/server_lib.sh

KEY=s3cret-key-0123
REQ='{"height":2,"width":2,"iterations":2,"seed":1}'

code() {
    curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$@"
}

start_server --api-key "$KEY"
expect "no key" "$(post "$REQ")" 401
expect "its code" "$(json "$TMP/body" "d['error']['code']")" unauthorized
expect "WWW-Authenticate" "$(header WWW-Authenticate)" Bearer
schema response /generate post 401 "$TMP/body"
expect "wrong key" "$(post "$REQ" -H 'Authorization: Bearer nope')" 401
expect "a prefix of the key" "$(post "$REQ" -H "Authorization: Bearer ${KEY%?}")" 401
expect "the key and more" "$(post "$REQ" -H "Authorization: Bearer ${KEY}x")" 401
expect "the key without Bearer" "$(post "$REQ" -H "Authorization: $KEY")" 401
expect "Bearer KEY" "$(post "$REQ" -H "Authorization: Bearer $KEY")" 200
expect "bearer (any case) KEY" "$(post "$REQ" -H "Authorization: bearer $KEY")" 200
expect "X-Api-Key" "$(post "$REQ" -H "X-Api-Key: $KEY")" 200
expect "/v1/models needs the key" "$(code "$URL/v1/models")" 401
expect "/v1/models with the key" "$(code -H "Authorization: Bearer $KEY" "$URL/v1/models")" 200
expect "/healthz is public" "$(code "$URL/healthz")" 200
expect "/readyz is public" "$(code "$URL/readyz")" 200
expect "/metrics is public" "$(code "$URL/metrics")" 200
stop_server
expect "exit code" "$STOP_CODE" 0

READY_HEADER="Authorization: Bearer $KEY"
start_server --api-key "$KEY" --auth-health true
expect "auth_health: /healthz needs the key" "$(code "$URL/healthz")" 401
expect "auth_health: /metrics needs the key" "$(code "$URL/metrics")" 401
expect "auth_health: /metrics with the key" "$(code -H "Authorization: Bearer $KEY" "$URL/metrics")" 200
grep -q '^heptapod_http_requests_total{endpoint="/metrics",status="401"} 1' "$TMP/body" &&
    ok "the refusal was counted" || fail "no 401 for /metrics in the scrape"
stop_server
expect "exit code" "$STOP_CODE" 0

check_schemas
finish
