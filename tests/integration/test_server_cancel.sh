#!/bin/sh
# test_server_cancel.sh - a client that goes away cancels its request before
# the next iteration, wherever the request is: streaming mid-generation,
# waiting for a JSON answer mid-generation, or still in the queue. The
# metrics show the cancellation and that its cells stop being computed.
set -eu
. tests/integration/server_lib.sh

# One 32x128 grid fills a batch, so a second request has to queue. Its
# 100000 iterations run until the client leaves: with no default deadline,
# admission has no reason to refuse it.
start_server --max-iterations 100000 --max-batch-cells 4096 --max-batch-wait-ms 0 \
    --access-log "$TMP/access.log" --sse-keepalive-ms 200 --default-deadline-ms 0
LONG='{"height":32,"width":128,"iterations":100000,"seed":3'
CELLS='heptapod_cells_computed_total{model="byte_f32"}'
CANCELLED='heptapod_generations_total{model="byte_f32",outcome="cancelled"}'
ACTIVE='heptapod_active_requests{model="byte_f32"}'
QUEUED='heptapod_queue_depth{model="byte_f32"}'

# gt A B: A > B for the decimal numbers the metrics print.
gt() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'
}

# stops_computing: the cells counter stands still once nothing is active.
stops_computing() {
    wait_for '[ "$(metric "$ACTIVE")" = 0 ]' 10 || fail "a request stayed active"
    c1=$(metric "$CELLS")
    sleep 0.5
    c2=$(metric "$CELLS")
    expect "$1: cells stop increasing" "$c2" "$c1"
}

# --- a stream cut mid-generation ----------------------------------------------
curl -sN -o "$TMP/sse.txt" -X POST -H 'Content-Type: application/json' \
    -H 'X-Request-Id: sse-gone' --data-binary "$LONG,\"stream\":true}" "$URL/generate" &
pid=$!
wait_for '[ "$(cat "$TMP/sse.txt" 2>/dev/null | grep -c "^event: iteration")" -ge 2 ]' 20 ||
    fail "the stream never showed two iterations"
c0=$(metric "$CELLS")
sleep 0.3
c1=$(metric "$CELLS")
gt "$c1" "$c0" && ok "cells are being computed ($c0 -> $c1)" || fail "cells did not grow: $c0 -> $c1"
n0=$(metric "$CANCELLED")
kill "$pid"
wait "$pid" 2>/dev/null || true
wait_for '[ "$(metric "$CANCELLED")" = $((n0 + 1)) ]' 5 && ok "stream disconnect counted as cancelled" ||
    fail "cancelled generations: $(metric "$CANCELLED"), want $((n0 + 1))"
stops_computing "stream disconnect"

# --- a browser page that aborts its fetch mid-stream ------------------------------------
n0=$(metric "$CANCELLED")
expect "the page read two events, then aborted" \
    "$(node tests/integration/sse_fetch.mjs "$URL" "$LONG,\"stream\":true}" 2 2>&1)" "2 2 aborted"
wait_for '[ "$(metric "$CANCELLED")" = $((n0 + 1)) ]' 5 && ok "an aborted fetch cancels its request" ||
    fail "cancelled generations: $(metric "$CANCELLED"), want $((n0 + 1))"
stops_computing "aborted fetch"

# --- a JSON request whose client leaves mid-generation --------------------------
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -H 'X-Request-Id: json-gone' \
    --data-binary "$LONG}" "$URL/generate" &
pid=$!
wait_for '[ "$(metric "$ACTIVE")" = 1 ]' 10 || fail "the JSON request never became active"
sleep 0.2
n0=$(metric "$CANCELLED")
kill "$pid"
wait "$pid" 2>/dev/null || true
wait_for '[ "$(metric "$CANCELLED")" = $((n0 + 1)) ]' 5 && ok "JSON disconnect counted as cancelled" ||
    fail "cancelled generations: $(metric "$CANCELLED"), want $((n0 + 1))"
stops_computing "JSON disconnect"

# --- requests that leave the queue before they ever ran ----------------------------
# A queued stream gets keep-alive comments; a queued JSON request gets nothing
# until its answer, so its departure is noticed on the socket itself.
curl -sN -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary "$LONG,\"stream\":true}" "$URL/generate" &
long=$!
wait_for '[ "$(metric "$ACTIVE")" = 1 ]' 10 || fail "the long request never became active"
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -H 'X-Request-Id: queued-gone' \
    --data-binary '{"height":4,"width":4,"iterations":2}' "$URL/generate" &
queued=$!
curl -sN -o "$TMP/queued.sse" -X POST -H 'Content-Type: application/json' \
    -H 'X-Request-Id: queued-sse-gone' \
    --data-binary '{"height":4,"width":4,"iterations":2,"stream":true}' "$URL/generate" &
queued_sse=$!
wait_for '[ "$(metric "$QUEUED")" = 2 ]' 10 || fail "the two requests never queued"
wait_for 'grep -q "^: keepalive" "$TMP/queued.sse" 2>/dev/null' 5 && ok "a queued stream gets keep-alive comments" ||
    fail "no keep-alive comment while queued: $(cat "$TMP/queued.sse")"
n0=$(metric "$CANCELLED")
kill "$queued" "$queued_sse"
wait "$queued" 2>/dev/null || true
wait "$queued_sse" 2>/dev/null || true
wait_for '[ "$(metric "$QUEUED")" = 0 ]' 5 && ok "gone clients leave the queue" ||
    fail "queue depth stayed $(metric "$QUEUED")"
expect "queued disconnects counted as cancelled" "$(metric "$CANCELLED")" $((n0 + 2))
expect "the long request still runs" "$(metric "$ACTIVE")" 1
kill "$long"
wait "$long" 2>/dev/null || true
stops_computing "long request gone"

# --- the access log tells what happened ------------------------------------------
for id in sse-gone json-gone queued-gone queued-sse-gone; do
    line=$(grep "\"request_id\":\"$id\"" "$TMP/access.log" || true)
    case "$line" in *'"outcome":"cancelled"'*) ok "access log: $id cancelled" ;;
    *) fail "access log for $id: $line" ;; esac
done
case "$(grep '"request_id":"json-gone"' "$TMP/access.log")" in
*'"status":499'*) ok "a JSON client gone before its answer is logged as 499" ;;
*) fail "json-gone status: $(grep '"request_id":"json-gone"' "$TMP/access.log")" ;;
esac

stop_server
expect "exit code after SIGTERM" "$STOP_CODE" 0
finish
