#!/bin/sh
# test_server_drain.sh - SIGTERM drains: readiness turns 503 at once, new work
# gets 503 with Retry-After, liveness stays 200, a long generation in flight
# still completes, and the process exits 0. With a short drain timeout the
# work left is cut (503 for JSON, an error event for SSE) and the process
# still exits 0.
set -eu
. tests/integration/server_lib.sh

ACTIVE='heptapod_active_requests{model="byte_f32"}'
ITERS='heptapod_iterations_total{model="byte_f32"}'

# --- a generation in flight completes -----------------------------------------
start_server --max-iterations 100000 --drain-timeout-s 60
# Long enough (about 6 s, whatever the build's speed, with room for a machine
# that was slower while it was measured) for the checks below to
# run while it is still in flight.
post '{"height":32,"width":128,"iterations":4,"seed":5}' >/dev/null
K=$(json "$TMP/body" "max(20, int(6000 / (d['timings']['compute_ms'] / 4)))")
curl -s -o "$TMP/long.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"height\":32,\"width\":128,\"iterations\":$K,\"seed\":5}" "$URL/generate" \
    >"$TMP/long.status" &
client=$!
wait_for '[ "$(metric "$ACTIVE")" = 1 ] && [ "$(metric "$ITERS")" -ge 1 ]' 20 ||
    fail "the long request never started"
kill -TERM "$SERVER_PID"
wait_for '[ "$(curl -s -o "$TMP/ready.json" -w "%{http_code}" "$URL/readyz")" = 503 ]' 5 &&
    ok "readiness is 503 while draining" || fail "readiness did not turn 503"
expect "readiness says draining" "$(json "$TMP/ready.json" "d['status']")" draining
expect "liveness still 200" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" 200
s=$(post '{"height":2,"width":2,"iterations":2}')
expect "new work while draining" "$s" 503
expect "its error code" "$(json "$TMP/body" "d['error']['code']")" unavailable
expect "Retry-After with 503" "$(header Retry-After)" 1
schema response /generate post 503 "$TMP/body"
schema response /readyz get 503 "$TMP/ready.json"
wait "$client" || true
expect "the request in flight completed" "$(cat "$TMP/long.status")" 200
expect "with every iteration" "$(json "$TMP/long.json" "d['iterations']")" "$K"
set +e
wait "$SERVER_PID"
code=$?
set -e
SERVER_PID=
expect "exit code after the drain" "$code" 0
grep -q '"msg":"drained"' "$TMP/server.log" && ok "logged: drained" || fail "no 'drained' in the log"

# --- the drain timeout cuts what is left ---------------------------------------
# Two requests that would run for minutes: with no default deadline and no
# bound on queued work, admission takes both whenever they arrive.
start_server --max-iterations 100000 --drain-timeout-s 1 --default-deadline-ms 0 \
    --max-queue-cell-iterations 1099511627776
LONG='"height":16,"width":64,"iterations":100000,"seed":5'
curl -sN -o "$TMP/cut.sse" -X POST -H 'Content-Type: application/json' \
    --data-binary "{$LONG,\"stream\":true}" "$URL/generate" &
sse_client=$!
curl -s -o "$TMP/cut.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary "{$LONG}" "$URL/generate" >"$TMP/cut.status" &
json_client=$!
wait_for '[ "$(metric "$ACTIVE")" = 2 ]' 20 || fail "the two long requests never ran together"
t0=$(date +%s%N)
kill -TERM "$SERVER_PID"
set +e
wait "$SERVER_PID"
code=$?
set -e
SERVER_PID=
ms=$((($(date +%s%N) - t0) / 1000000))
expect "exit code after the drain timeout" "$code" 0
[ "$ms" -lt 6000 ] && ok "stopped $ms ms after SIGTERM (timeout 1 s)" || fail "took $ms ms to stop"
wait "$sse_client" || true
wait "$json_client" || true
expect "the cut JSON request" "$(cat "$TMP/cut.status")" 503
schema response /generate post 503 "$TMP/cut.json"
grep -q '^event: error' "$TMP/cut.sse" && grep -q '"code":"unavailable"' "$TMP/cut.sse" &&
    ok "the cut stream ends with an unavailable error event" ||
    fail "the cut stream ends: $(tail -c 200 "$TMP/cut.sse")"
schema sse "$TMP/cut.sse"

check_schemas
finish
