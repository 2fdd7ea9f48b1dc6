#!/bin/sh
# test_server_auth.sh - the optional API key: 401 with WWW-Authenticate
# without it or with a wrong one (also a prefix or an extension of the right
# one), accepted as a Bearer token or X-Api-Key; health, readiness and
# metrics stay public unless auth_health says otherwise. Keys come from
# --api-key (warned about, and wiped from /proc/PID/cmdline), from
# HEPTAPOD_API_KEY and --api-key-file (several keys each, combined), and
# never show in the log or the metrics.
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

# --- several keys, from the environment and a key file ---------------------
KEY2=second-key-4567
FKEY1=file-key-aaaa
FKEY2=file-key-bbbb
printf '# keys of the staging clients\n\n%s\r\n   %s  \n# retired: old-key\n' "$FKEY1" "$FKEY2" >"$TMP/keys"
READY_HEADER="X-Api-Key: $FKEY1"
HEPTAPOD_API_KEY="$KEY, $KEY2" start_server --api-key-file "$TMP/keys"
for k in "$KEY" "$KEY2" "$FKEY1" "$FKEY2"; do
    expect "accepted key ${k%%-*}..." "$(post "$REQ" -H "Authorization: Bearer $k")" 200
done
expect "a commented-out key is refused" "$(post "$REQ" -H "Authorization: Bearer old-key")" 401
expect "two keys glued together are refused" "$(post "$REQ" -H "X-Api-Key: $KEY,$KEY2")" 401
expect "no key" "$(post "$REQ")" 401
grep -q '"API key required: 4 keys accepted"' "$TMP/server.log" && ok "four keys announced" ||
    fail "no 'API key required: 4 keys accepted' line"
grep -q 'cmdline' "$TMP/server.log" && fail "warned about a flag that was not used" ||
    ok "no flag warning for the environment and the file"
curl -s "$URL/metrics" >"$TMP/metrics.txt"
for k in "$KEY" "$KEY2" "$FKEY1" "$FKEY2"; do
    if grep -q -- "$k" "$TMP/server.log" "$TMP/metrics.txt"; then fail "key $k in the log or metrics"; fi
done
ok "no key in the log or the metrics"
stop_server
expect "exit code" "$STOP_CODE" 0

# An empty --api-key (clearing the environment's list) holds no key to warn about.
READY_HEADER="X-Api-Key: $FKEY2"
HEPTAPOD_API_KEY="$KEY" start_server --api-key= --api-key-file "$TMP/keys"
expect "the file's key" "$(post "$REQ" -H "X-Api-Key: $FKEY1")" 200
expect "the environment's list was replaced" "$(post "$REQ" -H "X-Api-Key: $KEY")" 401
grep -q 'cmdline' "$TMP/server.log" && fail "warned about an empty --api-key" ||
    ok "no warning for an empty --api-key"
stop_server

# --- the flag: warned about, wiped from /proc/PID/cmdline -------------------
READY_HEADER="Authorization: Bearer $KEY"
start_server --api-key "$KEY,$KEY2"
grep -q '"level":"warn".*--api-key.*/proc/PID/cmdline.*--api-key-file.*HEPTAPOD_API_KEY' \
    "$TMP/server.log" && ok "the flag is warned about" || fail "no warning about --api-key"
tr '\0' ' ' <"/proc/$SERVER_PID/cmdline" >"$TMP/cmdline"
grep -q -- "--api-key" "$TMP/cmdline" && ok "the flag is still in cmdline" || fail "cmdline: $(cat "$TMP/cmdline")"
if grep -q -- "$KEY\|$KEY2\|s3cret\|second-key" "$TMP/cmdline"; then
    fail "the key is readable in /proc/PID/cmdline: $(cat "$TMP/cmdline")"
else
    ok "the key is gone from /proc/PID/cmdline"
fi
expect "the first flag key" "$(post "$REQ" -H "Authorization: Bearer $KEY")" 200
expect "the second flag key" "$(post "$REQ" -H "X-Api-Key: $KEY2")" 200
stop_server
expect "exit code" "$STOP_CODE" 0
if grep -q -- "$KEY\|$KEY2" "$TMP/server.log"; then fail "a key is in the log"; else ok "no key in the log"; fi

# --- refusals at start, naming the file, never a key -----------------------
refused() {
    set +e
    "$BIN" serve --model "$MODEL" --host 127.0.0.1 --port 0 "$@" >/dev/null 2>"$TMP/refused.log"
    code=$?
    set -e
    echo "$code $(cat "$TMP/refused.log")"
}
out=$(refused --api-key-file "$TMP/nonexistent")
case "$out" in "2 "*"--api-key-file: cannot read the key file $TMP/nonexistent"*) ok "missing key file refused" ;;
*) fail "missing key file: $out" ;; esac
printf '# only a comment\n\n' >"$TMP/nokeys"
out=$(refused --api-key-file "$TMP/nokeys")
case "$out" in "2 "*"--api-key-file: the key file $TMP/nokeys holds no key"*) ok "key file without keys refused" ;;
*) fail "key file without keys: $out" ;; esac
: >"$TMP/empty"
out=$(refused --api-key-file "$TMP/empty")
case "$out" in "2 "*"the key file $TMP/empty is empty"*) ok "empty key file refused" ;;
*) fail "empty key file: $out" ;; esac
printf 'good-key\nbad key-with-a-space\n' >"$TMP/badkeys"
out=$(refused --api-key-file "$TMP/badkeys")
case "$out" in "2 "*"$TMP/badkeys line 2"*) ok "a key with a space refused, its line named" ;;
*) fail "key with a space: $out" ;; esac
case "$out" in *bad*key-with*) fail "the refusal shows the key" ;; *) ok "the refusal hides the key" ;; esac
out=$(HEPTAPOD_API_KEY="$KEY,,$KEY2" refused)
case "$out" in "2 "*"HEPTAPOD_API_KEY: key 2 of the list is empty"*) ok "empty key in the list refused" ;;
*) fail "empty key in the list: $out" ;; esac

check_schemas
finish
