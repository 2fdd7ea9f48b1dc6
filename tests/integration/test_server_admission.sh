#!/bin/sh
# test_server_admission.sh - admission by work, fairly, on a live daemon.
# Two clients from two source addresses (127.0.0.2 is A, 127.0.0.3 is B):
# A's backlog cannot starve B's single request (round-robin: B starts after
# at most one more of A's); the queue is bounded by work as well as count,
# and a client with nothing queued still gets in when A filled it, while A
# is refused for its share; requests that cannot finish before their
# deadline at the measured rate are refused up front (422 alone, 429 behind
# the queue), never before a rate was measured; Retry-After comes from the
# queued work and the rate; the gauges and refusal counters tell it all.
# Behind a proxy, the last address of X-Forwarded-For names the client; with
# API keys, the key does.
set -eu
. tests/integration/server_lib.sh

A='--interface 127.0.0.2'
B='--interface 127.0.0.3'
REFUSED='heptapod_admission_refusals_total{model="byte_f32",reason='
QUEUED='heptapod_queue_depth{model="byte_f32"}'
ACTIVE='heptapod_active_requests{model="byte_f32"}'
WORK='heptapod_queue_cell_iterations{model="byte_f32"}'
RATE='heptapod_cell_iterations_per_second{model="byte_f32"}'

# send CLIENT BODY: a JSON request in the background.
send() {
    # shellcheck disable=SC2086
    curl -s -o /dev/null $1 -X POST -H 'Content-Type: application/json' \
        --data-binary "$2" "$URL/generate" &
}

# expect_refusal WHAT STATUS CODE REASON: checks $TMP/body and that the
# refusal was counted under REASON.
expect_refusal() {
    expect "$1: status" "$2" "$3"
    expect "$1: code" "$(json "$TMP/body" "d['error']['code']" 2>/dev/null || echo none)" "$4"
    schema response /generate post "$3" "$TMP/body"
}

# retry_matches MESSAGE SED: Retry-After (in $TMP/headers) is the number of
# seconds the sed script finds in the message (an expression), rounded up,
# give or take the message's rounding; and not the constant setting.
retry_matches() {
    x=$(echo "$1" | sed -n "$2")
    ra=$(header Retry-After)
    awk -v a="$ra" "BEGIN { x = $x; exit !(a >= 1 && a >= x - 0.2 && a <= x + 1.2) }" &&
        ok "Retry-After $ra s for $x s in the message" ||
        fail "Retry-After '$ra' for '$x' s in the message: $1"
}

# --- fairness: A floods, then B sends one ------------------------------------------
# A batch holds one 32x64 grid, so requests run one after the other.
start_server --max-batch-cells 2048 --max-queue 64 --max-batch-wait-ms 0 \
    --access-log "$TMP/access.log"
FLOOD='{"height":32,"width":64,"iterations":16,"seed":1}'
i=0
while [ $i -lt 20 ]; do
    send "$A -H X-Request-Id:flood-$i" "$FLOOD"
    i=$((i + 1))
done
wait_for '[ "$(metric "$QUEUED")" -ge 15 ]' 20 || fail "A's requests never queued up"
# shellcheck disable=SC2086
s=$(post '{"height":8,"width":16,"iterations":4,"seed":2}' $B -H 'X-Request-Id: single')
expect "B's request" "$s" 200
# From the access log (one line per answer, in the order they ended): how
# many of A's requests ended between B's arrival and B's end. The one
# running when B came, and at most one more.
wait_for '[ "$(grep -c flood- "$TMP/access.log")" -ge 20 ]' 30 || fail "A's requests did not all end"
n=$("$PY" - "$TMP/access.log" <<'PY'
import datetime, json, sys
t = lambda r: datetime.datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
rows = [json.loads(l) for l in open(sys.argv[1]) if '"flood-' in l or '"single"' in l]
b = next(r for r in rows if r["request_id"] == "single")
arrival, end = t(b) - b["total_ms"] / 1000, t(b)
ended = sum(1 for r in rows if r["request_id"] != "single" and arrival < t(r) <= end)
print(ended, round(b["queued_ms"]), sum(1 for r in rows if r["request_id"] != "single" and t(r) > end))
PY
)
set -- $n
[ "$1" -le 2 ] && ok "B waited $2 ms, while $1 of A's requests ended; $3 of A's ended after B" ||
    fail "B waited $2 ms, for $1 of A's requests"
stop_server

# --- bounds, fair share, deadline, Retry-After ----------------------------------------
# Count and work bounds small enough to reach; no default deadline, so only
# requests that name one can be refused on it; no drain wait at the end for
# the requests left waiting (here and below).
start_server --max-batch-cells 2048 --max-queue 8 --max-queue-cell-iterations 1000000 \
    --max-iterations 100000 --max-batch-wait-ms 0 --default-deadline-ms 0 --drain-timeout-s 0
BIG='"height":32,"width":64,"iterations":100' # 204,800 cell-iterations
ONE='{"height":1,"width":1,"iterations":1}'

# Cold: no rate measured yet, so nothing is refused on its deadline; the
# deadline passes while it runs instead.
s=$(post "{$BIG,\"deadline_ms\":100}")
expect_refusal "cold start, deadline too short" "$s" 504 deadline_exceeded
expect "no deadline refusal before a measurement" "$(metric "${REFUSED}\"deadline\"}")" 0

# A long stream from A holds the batch; its passes measure the rate.
curl -sN -o /dev/null $A -X POST -H 'Content-Type: application/json' \
    --data-binary '{"height":32,"width":64,"iterations":100000,"stream":true}' "$URL/generate" &
wait_for '[ "$(metric "$ACTIVE")" = 1 ]' 20 || fail "the long request never became active"
wait_for 'awk -v r="$(metric "$RATE")" "BEGIN { exit !(r > 0) }"' 10 || fail "no rate measured"
rate=$(metric "$RATE")
ok "measured rate: $rate cell-iterations/s"

# Alone, a request that needs more than its deadline at that rate: 422.
s=$(post "{$BIG,\"deadline_ms\":100}" $A)
expect_refusal "cannot finish in its deadline" "$s" 422 out_of_range
msg=$(json "$TMP/body" "d['error']['message']")
case "$msg" in *"204,800 cell-iterations need about"*"cell-iterations/s, above the"*"deadline"*)
    ok "the message gives the figures: $msg" ;;
*) fail "message: $msg" ;; esac

# A queues four big ones: 819,200 cell-iterations.
for i in 0 1 2 3; do send "$A" "{$BIG}"; done
wait_for '[ "$(metric "$QUEUED")" = 4 ]' 10 || fail "A's four requests never queued"
expect "queued work gauge" "$(metric "$WORK")" 819200

# Fits alone, not behind A's own backlog: 429 with the time it would need.
s=$(post "{\"height\":1,\"width\":1,\"iterations\":1,\"deadline_ms\":2000}" $A)
expect_refusal "late behind the queue" "$s" 429 overloaded
# Retry-After: the time beyond the deadline, from the figures the message gives.
retry_matches "$(json "$TMP/body" "d['error']['message']")" \
    's/.*finish in about \([0-9.]*\) s .* after the \([0-9.]*\) s left.*/\1 - \2/p'

# A fifth big one passes the work bound.
s=$(post "{$BIG}" $A)
expect_refusal "work bound" "$s" 429 overloaded
case "$(json "$TMP/body" "d['error']['message']")" in *max_queue_cell_iterations*) ok "the message names the work bound" ;;
*) fail "message: $(json "$TMP/body" "d['error']['message']")" ;; esac
retry_matches "$(json "$TMP/body" "d['error']['message']")" 's/.*about \([0-9.]*\) s of work at the measured.*/\1/p'

# Small ones fill the count bound.
for i in 0 1 2 3; do send "$A" "$ONE"; done
wait_for '[ "$(metric "$QUEUED")" = 8 ]' 10 || fail "the count bound was not reached"
s=$(post "$ONE" $A)
expect_refusal "count bound" "$s" 429 overloaded
case "$(json "$TMP/body" "d['error']['message']")" in *max_queue*) ok "the message names the count bound" ;;
*) fail "message: $(json "$TMP/body" "d['error']['message']")" ;; esac

# B has nothing queued: it still gets in; A, now over its share, does not.
send "$B" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 9 ]' 10 && ok "B's first request is admitted over the full queue" ||
    fail "B's request was not queued"
s=$(post "$ONE" $A)
expect_refusal "A over its fair share" "$s" 429 overloaded
case "$(json "$TMP/body" "d['error']['message']")" in *"fair share"*) ok "the message says fair share" ;;
*) fail "message: $(json "$TMP/body" "d['error']['message']")" ;; esac

for r in queue_full queue_work client_share deadline; do
    n=$(metric "${REFUSED}\"$r\"}")
    [ "$n" -ge 1 ] && ok "refusals counted: $r = $n" || fail "no refusal counted for $r"
done
expect "deadline refusals (422 and 429)" "$(metric "${REFUSED}\"deadline\"}")" 2

stop_server

# --- who is a client behind a proxy: the last address of X-Forwarded-For ------------
start_server --max-batch-cells 2048 --max-queue 2 --max-iterations 100000 --max-batch-wait-ms 0 \
    --default-deadline-ms 0 --drain-timeout-s 0 --client-header X-Forwarded-For
curl -sN -o /dev/null -X POST -H 'Content-Type: application/json' -H 'X-Forwarded-For: 192.0.2.9' \
    --data-binary '{"height":32,"width":64,"iterations":100000,"stream":true}' "$URL/generate" &
wait_for '[ "$(metric "$ACTIVE")" = 1 ]' 20 || fail "the long request never became active"
send "-H X-Forwarded-For:198.51.100.1" "$ONE"
send "-H X-Forwarded-For:198.51.100.1" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 2 ]' 10 || fail "the first client's requests never queued"
# A first entry the client wrote itself makes no new client.
s=$(post "$ONE" -H 'X-Forwarded-For: 203.0.113.7, 198.51.100.1')
expect_refusal "the same last address is the same client" "$s" 429 overloaded
send "-H X-Forwarded-For:198.51.100.1,198.51.100.2" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 3 ]' 10 && ok "another last address is another client" ||
    fail "the second client's request was not admitted"
s=$(post "$ONE" -H 'X-Forwarded-For: 198.51.100.1')
expect_refusal "the first client over its share" "$s" 429 overloaded
case "$(json "$TMP/body" "d['error']['message']")" in *"fair share"*) ok "refused for its fair share" ;;
*) fail "message: $(json "$TMP/body" "d['error']['message']")" ;; esac
# Of two header lines, the last one counts (a proxy adds its own line).
send "-H X-Forwarded-For:198.51.100.1 -H X-Forwarded-For:198.51.100.3" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 4 ]' 10 && ok "the last header line names the client" ||
    fail "the third client's request was not admitted"

stop_server

# --- who is a client with API keys: its key, whatever its address ----------------------
printf 'key-one\nkey-two\n' >"$TMP/keys"
start_server --max-batch-cells 2048 --max-queue 2 --max-iterations 100000 --max-batch-wait-ms 0 \
    --default-deadline-ms 0 --drain-timeout-s 0 --api-key-file "$TMP/keys"
K1='-H X-Api-Key:key-one'
curl -sN -o /dev/null -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer key-two' \
    --data-binary '{"height":32,"width":64,"iterations":100000,"stream":true}' "$URL/generate" &
wait_for '[ "$(metric "$ACTIVE")" = 1 ]' 20 || fail "the long request never became active"
send "$K1" "$ONE"
send "$K1" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 2 ]' 10 || fail "the first key's requests never queued"
s=$(post "$ONE" -H 'Authorization: Bearer key-one')
expect_refusal "the same key is the same client" "$s" 429 overloaded
send "-H X-Api-Key:key-two" "$ONE"
wait_for '[ "$(metric "$QUEUED")" = 3 ]' 10 && ok "another key from the same address is another client" ||
    fail "the second key's request was not admitted"

check_schemas
stop_server
finish
