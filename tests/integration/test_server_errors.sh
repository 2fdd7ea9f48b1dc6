#!/bin/sh
# test_server_errors.sh - every error status of the daemon, each with the one
# JSON error shape of proto/openapi.json: 400, 404 (path, model), 405, 413
# (declared and chunked), 415, 422, 429 with Retry-After when the queue is
# full, 504 when the deadline passes (a status for JSON, an `error` event
# once an SSE stream started).
set -eu
. tests/integration/server_lib.sh
VALIDATE="$PY tests/integration/validate.py"

# A checkpoint that cannot be loaded stops the daemon with exit code 1.
set +e
"$BIN" serve --host 127.0.0.1 --port 0 --model "$TMP/missing.safetensors" 2>"$TMP/bad.log"
code=$?
set -e
expect "exit code with a missing checkpoint" "$code" 1
grep -q "cannot load model missing" "$TMP/bad.log" && ok "the log names the model" ||
    fail "no load error in the log: $(cat "$TMP/bad.log")"

# A batch holds one 32x128 grid, so a second request waits in the queue.
# Requests without deadline_ms have none, so that such a grid with 100000
# iterations is admitted and holds the batch until its client leaves.
start_server --max-body-bytes 2048 --max-queue 1 --max-batch-cells 4096 \
    --max-iterations 100000 --max-batch-wait-ms 0 --default-deadline-ms 0

# expect_error WHAT STATUS CODE PATH METHOD: checks $TMP/body after a request.
expect_error() {
    expect "$1: status" "$2" "$3"
    got=$(json "$TMP/body" "d['error']['code']" 2>/dev/null || echo "not an error body")
    expect "$1: code" "$got" "$4"
    schema response "$5" "$6" "$3" "$TMP/body"
}

s=$(post '{"height":')
expect_error "truncated JSON" "$s" 400 invalid_json /generate post
s=$(post '[1,2]')
expect_error "not an object" "$s" 400 invalid_type /generate post
s=$(post '{"height":2,"width":2,"temprature":1}')
expect_error "unknown field" "$s" 400 invalid_field /generate post
expect "the field is named" "$(json "$TMP/body" "d['error'].get('field')")" temprature

s=$(curl -s -o "$TMP/body" -w '%{http_code}' "$URL/nope")
expect_error "unknown path" "$s" 404 not_found /generate post
s=$(post '{"model":"nope","height":1,"width":1}')
expect_error "unknown model" "$s" 404 not_found /generate post

s=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$URL/generate")
expect_error "GET /generate" "$s" 405 method_not_allowed /generate post
expect "Allow of /generate" "$(header Allow)" POST
s=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X POST "$URL/metrics")
expect_error "POST /metrics" "$s" 405 method_not_allowed /metrics get
expect "Allow of /metrics" "$(header Allow)" "GET, HEAD"

big=$("$PY" -c "print('{\"height\":2,\"width\":2,\"text\":[\"' + 'a' * 3000 + '\"]}')")
s=$(post "$big")
expect_error "body above max_body_bytes" "$s" 413 payload_too_large /generate post
s=$(post "$big" -H 'Transfer-Encoding: chunked')
expect_error "chunked body above max_body_bytes" "$s" 413 payload_too_large /generate post
# The connection survives a refused chunked body: the daemon read it all.
s=$(post '{"height":1,"width":1,"iterations":1}')
expect "a request after the 413" "$s" 200

s=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
    --data-binary '{"height":1,"width":1}' "$URL/generate")
expect_error "text/plain body" "$s" 415 unsupported_media_type /generate post
s=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST --data-binary '{"height":1}' "$URL/generate")
expect_error "form-encoded body" "$s" 415 unsupported_media_type /generate post

s=$(post '{"height":1000,"width":4}')
expect_error "height above the model's" "$s" 422 out_of_range /generate post
s=$(post '{"height":2,"width":2,"temperature":-1}')
expect_error "negative temperature" "$s" 422 out_of_range /generate post
s=$(post '{"height":2,"width":2,"iterations":0}')
expect_error "zero iterations" "$s" 422 out_of_range /generate post
s=$(post '{"height":2,"width":2,"order":"random"}')
expect_error "unknown order" "$s" 422 out_of_range /generate post
expect "the order field is named" "$(json "$TMP/body" "d['error'].get('field')")" order
s=$(post '{"height":2,"width":2,"remask":1}')
expect_error "remask of 1" "$s" 422 out_of_range /generate post
expect "the remask field is named" "$(json "$TMP/body" "d['error'].get('field')")" remask

# --- 504: the deadline passes -----------------------------------------------
# Admission refuses up front what the measured rate says cannot finish in
# time (test_server_admission.sh), so a 504 comes from what that estimate
# leaves out: here the batch, which a grid of the whole budget holds while
# small requests with short deadlines wait in the queue behind it.
LONG='"height":32,"width":128,"iterations":100000,"seed":1'
SMALL='"height":1,"width":1,"iterations":1'
curl -sN -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary "{$LONG,\"stream\":true}" "$URL/generate" &
long_pid=$!
wait_for '[ "$(metric "heptapod_active_requests{model=\"byte_f32\"}")" = 1 ]' 20 ||
    fail "the long request never became active"
t0=$(date +%s%N)
s=$(post "{$SMALL,\"deadline_ms\":300}")
t1=$(date +%s%N)
expect_error "JSON past its deadline" "$s" 504 deadline_exceeded /generate post
ms=$(((t1 - t0) / 1000000))
[ "$ms" -lt 3000 ] && ok "504 after $ms ms" || fail "504 took $ms ms for a 300 ms deadline"
curl -sN -o "$TMP/sse.txt" -X POST -H 'Content-Type: application/json' \
    --data-binary "{$SMALL,\"deadline_ms\":300,\"stream\":true}" "$URL/generate"
v=$($VALIDATE sse "$TMP/sse.txt" || true)
case "$v" in *" error") ok "SSE past its deadline ends with an error event ($v)" ;;
*) fail "SSE past its deadline: $v" ;; esac
grep -q '"code":"deadline_exceeded"' "$TMP/sse.txt" && ok "the error event says deadline_exceeded" ||
    fail "no deadline_exceeded in the stream: $(tail -c 300 "$TMP/sse.txt")"

# --- 429: the queue is full --------------------------------------------------
# The long request still holds the batch.
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary '{"height":1,"width":1,"iterations":1}' "$URL/generate" &
queued_pid=$!
wait_for '[ "$(metric "heptapod_queue_depth{model=\"byte_f32\"}")" = 1 ]' 20 ||
    fail "the second request never waited in the queue"
s=$(post '{"height":1,"width":1,"iterations":1}')
expect_error "queue full" "$s" 429 overloaded /generate post
expect "Retry-After with 429" "$(header Retry-After)" 1
cancelled0=$(metric 'heptapod_generations_total{model="byte_f32",outcome="cancelled"}')
# The queued client first: had the long one left first, the queued request
# could have been admitted and finished before its own client's departure
# was noticed.
kill "$queued_pid" 2>/dev/null || true
wait "$queued_pid" 2>/dev/null || true
wait_for '[ "$(metric "heptapod_queue_depth{model=\"byte_f32\"}")" = 0 ]' 10 ||
    fail "the gone client's request stayed queued"
kill "$long_pid" 2>/dev/null || true
wait "$long_pid" 2>/dev/null || true
wait_for '[ "$(metric "heptapod_generations_total{model=\"byte_f32\",outcome=\"cancelled\"}")" = $((cancelled0 + 2)) ]' 10 &&
    ok "both gone clients cancelled their requests (queued and active)" ||
    fail "cancelled: $(metric 'heptapod_generations_total{model="byte_f32",outcome="cancelled"}'), want $((cancelled0 + 2))"
expect "queue empty again" "$(metric 'heptapod_queue_depth{model="byte_f32"}')" 0
expect "batch empty again" "$(metric 'heptapod_active_requests{model="byte_f32"}')" 0

# Counted by endpoint and status.
for st in 400 404 405 413 415 422 429 504; do
    n=$(curl -s "$URL/metrics" | grep -c "^heptapod_http_requests_total{endpoint=\"[^\"]*\",status=\"$st\"}" || true)
    [ "$n" -ge 1 ] && ok "status $st counted" || fail "status $st not in heptapod_http_requests_total"
done

check_schemas
stop_server
expect "exit code after SIGTERM" "$STOP_CODE" 0
finish
