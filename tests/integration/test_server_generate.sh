#!/bin/sh
# test_server_generate.sh - generation through the daemon: JSON and SSE
# answers (iterations + 1 events) valid against proto/openapi.json, the same
# seed giving the same grid, requests of different sizes batched together
# giving the grids each gets alone, request ids, the access log, /healthz,
# /readyz and /v1/models.
set -eu
. tests/integration/server_lib.sh
VALIDATE="$PY tests/integration/validate.py"

# A long batch wait makes requests sent together start in one batch.
start_server --access-log "$TMP/access.log" --max-batch-wait-ms 100

expect "GET /healthz" "$(curl -s -o "$TMP/h.json" -w '%{http_code}' "$URL/healthz")" 200
schema response /healthz get 200 "$TMP/h.json"
expect "GET /readyz" "$(curl -s -o "$TMP/r.json" -w '%{http_code}' "$URL/readyz")" 200
schema response /readyz get 200 "$TMP/r.json"
expect "GET /v1/models" "$(curl -s -o "$TMP/m.json" -w '%{http_code}' "$URL/v1/models")" 200
schema response /v1/models get 200 "$TMP/m.json"
expect "the fixture is the default model" "$(json "$TMP/m.json" "d['default']")" byte_f32

# --- JSON ---------------------------------------------------------------------
REQ='{"height":4,"width":6,"iterations":5,"seed":7,"temperature":0.8}'
expect "JSON generate" "$(post "$REQ" -H 'X-Request-Id: test-123')" 200
schema response /generate post 200 "$TMP/body"
expect "X-Request-Id echoed" "$(header X-Request-Id)" test-123
expect "request_id in the body" "$(json "$TMP/body" "d['request_id']")" test-123
expect "grid shape" "$(json "$TMP/body" "[len(d['grid'])] + sorted({len(r) for r in d['grid']})")" "[4, 6]"
expect "no open cell at the end" "$(json "$TMP/body" "sum(c is None for r in d['grid'] for c in r)")" 0
expect "iterations run" "$(json "$TMP/body" "d['iterations']")" 5
expect "seed echoed" "$(json "$TMP/body" "d['seed']")" 7
expect "default order and remask echoed" "$(json "$TMP/body" "[d['order'], d['remask']]")" "['confidence', 0]"
cp "$TMP/body" "$TMP/first.json"

# An id the daemon makes itself when none (or a bad one) is sent.
post "$REQ" -H 'X-Request-Id: bad id with spaces' >/dev/null
gen_id=$(header X-Request-Id)
[ -n "$gen_id" ] && [ "$gen_id" != "bad id with spaces" ] && ok "generated request id $gen_id" ||
    fail "a bad X-Request-Id was not replaced: '$gen_id'"

# --- the same seed, the same grid ---------------------------------------------
post "$REQ" >/dev/null
expect "same seed, same grid" "$(json "$TMP/body" "d['grid']")" "$(json "$TMP/first.json" "d['grid']")"
post '{"height":4,"width":6,"iterations":5,"seed":8,"temperature":0.8}' >/dev/null
[ "$(json "$TMP/body" "d['grid']")" != "$(json "$TMP/first.json" "d['grid']")" ] &&
    ok "another seed, another grid" || fail "seeds 7 and 8 gave the same grid"

# --- SSE ----------------------------------------------------------------------
curl -sN -D "$TMP/sse.h" -o "$TMP/sse.txt" -X POST -H 'Content-Type: application/json' \
    --data-binary '{"height":4,"width":6,"iterations":5,"seed":7,"temperature":0.8,"stream":true}' \
    "$URL/generate"
expect "SSE content type" "$(tr -d '\r' <"$TMP/sse.h" | sed -n 's/^Content-Type: *//Ip')" text/event-stream
expect "SSE events (iterations + 1, valid)" "$($VALIDATE sse "$TMP/sse.txt" || true)" "6 5 done"
last_grid=$(grep '^data: {"iteration":5' "$TMP/sse.txt" | sed 's/^data: //' >"$TMP/last.json" &&
    json "$TMP/last.json" "d['grid']")
expect "SSE last grid = JSON grid" "$last_grid" "$(json "$TMP/first.json" "d['grid']")"
expect "a browser-style fetch reader" \
    "$(node tests/integration/sse_fetch.mjs "$URL" '{"height":4,"width":6,"iterations":5,"seed":7,"stream":true}' 2>&1)" \
    "6 5 done"
grep '^data: {"iteration"' "$TMP/sse.txt" | sed 's/^data: //' >"$TMP/iters.jsonl"
opens=$("$PY" -c "import json,sys; print([json.loads(l)['open'] for l in open(sys.argv[1])])" "$TMP/iters.jsonl")
"$PY" -c "import sys; o=eval(sys.argv[1]); sys.exit(not (o[-1] == 0 and o == sorted(o, reverse=True)))" "$opens" &&
    ok "open cells shrink to 0: $opens" || fail "open cells per iteration: $opens"

# --- batching does not change results -----------------------------------------
# Sizes and sampling differ; each is first generated alone, then all at once.
set -- '{"height":3,"width":5,"iterations":60,"seed":11,"temperature":1.0}' \
    '{"height":8,"width":8,"iterations":60,"seed":12,"temperature":0.7,"top_k":20}' \
    '{"height":1,"width":1,"iterations":60,"seed":13}' \
    '{"height":16,"width":20,"iterations":60,"seed":14,"temperature":1.0,"top_p":0.9}' \
    '{"given":[[72,105,null],[null,33]],"width":4,"iterations":60,"seed":15}' \
    '{"height":5,"width":9,"iterations":60,"seed":16,"order":"margin","remask":0.3}' \
    '{"given":[[72,105]],"height":2,"width":7,"iterations":12,"seed":17,"order":"raster"}'
i=0
for r in "$@"; do
    i=$((i + 1))
    post "$r" >/dev/null
    json "$TMP/body" "d['grid']" >"$TMP/alone.$i"
done
before=$(metric 'heptapod_batch_grids_bucket{model="byte_f32",le="1"}')
i=0
pids=
for r in "$@"; do
    i=$((i + 1))
    curl -s -o "$TMP/together.$i.json" -X POST -H 'Content-Type: application/json' \
        --data-binary "$r" "$URL/generate" &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
after=$(metric 'heptapod_batch_grids_bucket{model="byte_f32",le="1"}')
total=$(metric 'heptapod_forward_passes_total{model="byte_f32"}')
i=0
for r in "$@"; do
    i=$((i + 1))
    expect "request $i: batched grid = alone grid" "$(json "$TMP/together.$i.json" "d['grid']")" "$(cat "$TMP/alone.$i")"
done
# Alone, the seven would have run 432 single-grid batches; together, fewer than
# one request's 60 (60 iterations each, so that they overlap even when the
# machine is slow to start the clients).
[ "$((after - before))" -lt 60 ] && ok "batches held several grids ($((after - before)) single-grid batches)" ||
    fail "the concurrent requests never shared a batch ($((after - before)) single-grid batches of $total)"

# --- the access log -----------------------------------------------------------
line=$(grep '"request_id":"test-123"' "$TMP/access.log" | head -n 1)
[ -n "$line" ] || fail "no access-log line for test-123"
for kv in '"method":"POST"' '"path":"/generate"' '"status":200' '"model":"byte_f32"' \
    '"cells":24' '"iterations":5' '"queued_ms":' '"total_ms":' '"time":'; do
    case "$line" in *"$kv"*) ;; *) fail "access log lacks $kv: $line" ;; esac
done
ok "access log line: $line"
"$PY" -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$TMP/access.log" &&
    ok "every access-log line is JSON" || fail "an access-log line is not JSON"

check_schemas
stop_server
expect "exit code after SIGTERM" "$STOP_CODE" 0
finish
