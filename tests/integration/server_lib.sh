# server_lib.sh - shared by the test_server_*.sh scripts (sourced, POSIX sh):
# start the daemon on 127.0.0.1 on a free port, talk to it with curl, read
# its metrics, and always kill it on exit.
#
# A script sets `set -eu`, sources this file, calls start_server with extra
# flags, then uses $URL. Failures are counted by fail(); finish() prints the
# verdict and exits non-zero if anything failed.

BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
FIX=tests/fixtures
MODEL=$FIX/byte_f32.safetensors
PY=/usr/bin/python3
TMP=$(mktemp -d)
SERVER_PID=
failures=0

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    # Background curl clients of the test, if any are left.
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

ok() {
    echo "ok: $*"
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures failure(s); server log:"
        tail -n 30 "$TMP/server.log" 2>/dev/null || true
        exit 1
    fi
    echo "all passed"
}

# start_server [FLAGS...]: starts the daemon with the fixture model (unless
# FLAGS name models themselves via --model) on port 0, reads the port it
# bound from its log and waits until /readyz answers 200 (sending the header
# $READY_HEADER if set).
start_server() {
    case " $* " in
    *" --model "*) set -- "$@" ;;
    *) set -- --model "$MODEL" "$@" ;;
    esac
    : >"$TMP/server.log"
    "$BIN" serve --host 127.0.0.1 --port 0 "$@" >"$TMP/server.out" 2>"$TMP/server.log" &
    SERVER_PID=$!
    PORT=
    i=0
    while [ $i -lt 300 ]; do
        PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -n 1)
        [ -n "$PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
        i=$((i + 1))
    done
    if [ -z "$PORT" ]; then
        cat "$TMP/server.log"
        echo "FAIL: the server did not start"
        exit 1
    fi
    URL="http://127.0.0.1:$PORT"
    i=0
    while [ $i -lt 300 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' ${READY_HEADER:+-H "$READY_HEADER"} "$URL/readyz")" = 200 ] &&
            return 0
        sleep 0.05
        i=$((i + 1))
    done
    echo "FAIL: the server never became ready"
    cat "$TMP/server.log"
    exit 1
}

# stop_server: SIGTERM, then waits; sets STOP_CODE to the exit status.
stop_server() {
    kill -TERM "$SERVER_PID"
    set +e
    wait "$SERVER_PID"
    STOP_CODE=$?
    set -e
    SERVER_PID=
}

# post BODY [CURL_ARGS...]: POST /generate with a JSON body; the response
# body lands in $TMP/body, headers in $TMP/headers; prints the status.
post() {
    body=$1
    shift
    curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data-binary "$body" "$@" "$URL/generate"
}

# header NAME: the value of a response header in $TMP/headers.
header() {
    tr -d '\r' <"$TMP/headers" | sed -n "s/^$1: *//Ip" | head -n 1
}

# metric 'NAME{LABELS}': the value of one sample of a live scrape (0 if absent).
metric() {
    curl -s "$URL/metrics" | awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }'
}

# json FILE EXPR: evaluates a Python expression on the parsed JSON `d`.
json() {
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

# wait_for 'SHELL CONDITION' SECONDS: polls until the condition holds or the
# time runs out (measured by the clock, however slow each check is).
wait_for() {
    end=$(($(date +%s%N) + $2 * 1000000000))
    while :; do
        if eval "$1"; then return 0; fi
        [ "$(date +%s%N)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# expect WHAT GOT WANT: records a failure unless GOT = WANT.
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# schema response PATH METHOD STATUS FILE, or schema sse FILE: queues a
# validation against proto/openapi.json (on a copy of FILE) for one run of
# validate.py at check_schemas, since each run pays for loading jsonschema.
n_schema=0
schema() {
    n_schema=$((n_schema + 1))
    eval "src=\${$#}"
    cp "$src" "$TMP/schema.$n_schema"
    line=
    while [ $# -gt 1 ]; do
        line="$line $1"
        shift
    done
    echo "$line $TMP/schema.$n_schema" >>"$TMP/schemas"
}

check_schemas() {
    [ "$n_schema" -gt 0 ] || return 0
    if "$PY" tests/integration/validate.py list "$TMP/schemas" >"$TMP/schemas.out"; then
        ok "$n_schema responses valid against proto/openapi.json"
    else
        grep '^FAIL' "$TMP/schemas.out" | while read -r l; do echo "$l"; done
        fail "$(grep -c '^FAIL' "$TMP/schemas.out") responses invalid against proto/openapi.json"
    fi
}
