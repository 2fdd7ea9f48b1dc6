#!/bin/sh
# test_server_api.sh - the API where clients look for it: /openapi.json,
# the playground's files (types, Content-Security-Policy, ETag, no key
# needed, not on the admin listener), /v1/models items with an id and
# /v1/models/{name}, CORS (off by default; a list; "*"; preflights before
# the key; refused settings), the client address and user agent in the
# access log, and the playground and a stream through the shipped nginx
# and HAProxy configs.
set -eu
. tests/integration/server_lib.sh
. tests/integration/proxy_lib.sh

KEY='Authorization: Bearer k1'
APP=https://app.example
start_server --api-key k1 --admin-port 0 --access-log "$TMP/access.log" \
    --cors-allow-origin "$APP, http://localhost:3000"
ADMIN=http://127.0.0.1:$(sed -n 's/.*admin listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -n 1)

# get PATH [CURL_ARGS...]: GET into $TMP/body and $TMP/headers; prints the status.
get() {
    path=$1
    shift
    rm -f "$TMP/body"
    curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$@" "$URL$path"
}

# --- /openapi.json and the playground's files: no key needed ----------------------
expect "GET /openapi.json without a key" "$(get /openapi.json)" 200
cmp -s "$TMP/body" proto/openapi.json && ok "/openapi.json is proto/openapi.json byte for byte" ||
    fail "/openapi.json differs from proto/openapi.json"
expect "/openapi.json type" "$(header Content-Type)" "application/json"

expect "GET / without a key" "$(get /)" 200
expect "/ is HTML" "$(header Content-Type)" "text/html; charset=utf-8"
csp=$(header Content-Security-Policy)
case "$csp" in
*"default-src 'none'"*"script-src 'self'"*) ok "/ has a strict Content-Security-Policy" ;;
*) fail "Content-Security-Policy: '$csp'" ;;
esac
case "$csp" in *unsafe*) fail "the policy allows something unsafe: $csp" ;; *) ok "no 'unsafe-*' in the policy" ;; esac
grep -qi '<script>' "$TMP/body" && fail "the page has an inline script" || ok "the page has no inline script"
grep -Eiq ' (style|on[a-z]+)=' "$TMP/body" && fail "the page has inline styles or handlers" ||
    ok "no inline style attribute or event handler"
# Every URL the page names is relative and served (so it works behind a proxy).
refs=$(grep -oE '(src|href)="[^"]*"' "$TMP/body" | sed -E 's/^[a-z]+="(.*)"$/\1/')
[ -n "$refs" ] || fail "no src/href found in the page"
total=$(wc -c <"$TMP/body")
for r in $refs; do
    case $r in
    data:*) continue ;;
    /* | *://*) fail "the page names a non-relative URL: $r" ;;
    *)
        code=$(get "/$r")
        case "$r:$(header Content-Type)" in
        *.js:text/javascript* | *.css:text/css*) expect "/$r is served with its type" "$code" 200 ;;
        *) fail "/$r: $code $(header Content-Type)" ;;
        esac
        expect "/$r: nosniff" "$(header X-Content-Type-Options)" nosniff
        total=$((total + $(wc -c <"$TMP/body")))
        ;;
    esac
done
expect "GET /static/heptapod.js" "$(get /static/heptapod.js)" 200
total=$((total + $(wc -c <"$TMP/body")))
[ "$total" -lt 40960 ] && ok "the playground is $total bytes (< 40 KB)" || fail "the playground is $total bytes"
cmp -s "$TMP/body" server/static/heptapod.js && ok "/static/heptapod.js is server/static/heptapod.js" ||
    fail "/static/heptapod.js differs from the source"

get / >/dev/null
etag=$(header ETag)
expect "a second GET / with If-None-Match" "$(get / -H "If-None-Match: $etag")" 304
expect "304 has no body" "$(cat "$TMP/body" 2>/dev/null | wc -c)" 0
expect "HEAD /" "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -I "$URL/")" "200 0"
expect "POST / is refused" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/")" 405
expect "no playground on the admin listener" "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/")" 404
expect "the API still needs the key" "$(get /v1/models)" 401

# --- models: id, one by name --------------------------------------------------------
expect "GET /v1/models" "$(get /v1/models -H "$KEY")" 200
schema response /v1/models GET 200 "$TMP/body"
expect "each item's id is its name" "$(json "$TMP/body" '[(m["id"], m["name"]) for m in d["data"]]')" \
    "[('byte_f32', 'byte_f32')]"
cp "$TMP/body" "$TMP/list.json"
expect "GET /v1/models/byte_f32" "$(get /v1/models/byte_f32 -H "$KEY")" 200
schema response "/v1/models/{name}" GET 200 "$TMP/body"
expect "/v1/models/byte_f32 is the list's item" \
    "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))["data"][0])' \
        "$TMP/body" "$TMP/list.json")" True
expect "GET /v1/models/nope" "$(get /v1/models/nope -H "$KEY")" 404
schema response "/v1/models/{name}" GET 404 "$TMP/body"
expect "its error names the model" "$(json "$TMP/body" 'd["error"]["code"], "nope" in d["error"]["message"]')" \
    "not_found True"
expect "GET /v1/models/byte_f32 without the key" "$(get /v1/models/byte_f32)" 401
expect "POST /v1/models/byte_f32" "$(get /v1/models/byte_f32 -H "$KEY" -X POST)" 405
expect "GET /v1/models/ (no name)" "$(get /v1/models/ -H "$KEY")" 404

# --- CORS with a list of origins ---------------------------------------------------------
expect "preflight from an allowed origin, without the key" \
    "$(get /generate -X OPTIONS -H "Origin: $APP" -H 'Access-Control-Request-Method: POST' \
        -H 'Access-Control-Request-Headers: content-type, authorization')" 204
expect "preflight: Allow-Origin" "$(header Access-Control-Allow-Origin)" "$APP"
expect "preflight: Allow-Methods" "$(header Access-Control-Allow-Methods)" "POST, OPTIONS"
case "$(header Access-Control-Allow-Headers)" in
*Authorization*Content-Type*) ok "preflight: Authorization and Content-Type allowed" ;;
*) fail "Access-Control-Allow-Headers: $(header Access-Control-Allow-Headers)" ;;
esac
expect "preflight: Max-Age" "$(header Access-Control-Max-Age)" 600
expect "preflight: Vary" "$(header Vary)" Origin
expect "preflight of a GET route" \
    "$(get /v1/models/byte_f32 -X OPTIONS -H 'Origin: http://localhost:3000' \
        -H 'Access-Control-Request-Method: GET'; header Access-Control-Allow-Methods)" "204GET, HEAD, OPTIONS"
expect "preflight from another origin" \
    "$(get /generate -X OPTIONS -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST')" 204
expect "... gets no Allow-Origin" "$(header Access-Control-Allow-Origin)" ""
expect "... nor Allow-Methods" "$(header Access-Control-Allow-Methods)" ""
expect "OPTIONS that is no preflight" "$(get /generate -X OPTIONS -H "Origin: $APP")" 405
expect "... names OPTIONS in Allow" "$(header Allow)" "POST, OPTIONS"

expect "POST from an allowed origin" "$(post '{"height":2,"width":3,"seed":1}' -H "$KEY" -H "Origin: $APP")" 200
expect "answer: Allow-Origin" "$(header Access-Control-Allow-Origin)" "$APP"
expect "answer: Vary" "$(header Vary)" Origin
expect "answer: exposed headers" "$(header Access-Control-Expose-Headers)" "X-Request-Id, Retry-After"
expect "an error for an allowed origin" "$(post '{"height":2,"width":3}' -H "Origin: $APP")" 401
expect "... is readable by the page" "$(header Access-Control-Allow-Origin)" "$APP"
expect "a stream for an allowed origin" \
    "$(post '{"height":2,"width":3,"iterations":2,"stream":true}' -H "$KEY" -H "Origin: $APP")" 200
expect "... carries Allow-Origin" "$(header Access-Control-Allow-Origin)" "$APP"
expect "POST from another origin" "$(post '{"height":2,"width":3}' -H "$KEY" -H 'Origin: https://evil.example')" 200
expect "... gets no Allow-Origin" "$(header Access-Control-Allow-Origin)" ""
expect "... but Vary" "$(header Vary)" Origin

# --- the access log: client address and user agent -----------------------------------------
curl -s -o /dev/null -A 'heptapod-test/1.0' -H 'X-Request-Id: ua-1' "$URL/healthz"
curl -s -o /dev/null --interface 127.0.0.2 -A "$(printf 'odd\302\251agent')" -H 'X-Request-Id: ua-2' "$URL/healthz"
curl -s -o /dev/null -H 'User-Agent:' -H 'X-Request-Id: ua-3' "$URL/healthz"
wait_for 'grep -q "\"ua-3\"" "$TMP/access.log"' 5 || fail "the access log lacks ua-3"
fields() {
    grep "\"request_id\":\"$1\"" "$TMP/access.log" |
        $PY -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["client"], d["user_agent"])'
}
expect "access log: address and agent" "$(fields ua-1)" "127.0.0.1 heptapod-test/1.0"
expect "access log: another address, a non-ASCII agent made safe" "$(fields ua-2)" "127.0.0.2 odd??agent"
expect "access log: no agent is null" "$(fields ua-3)" "127.0.0.1 None"
$PY -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$TMP/access.log" &&
    ok "every access-log line is JSON" || fail "an access-log line is not JSON"
stop_server
check_schemas

# --- CORS off (the default) and "*" ----------------------------------------------------------------
start_server
expect "CORS off: a preflight is just an OPTIONS" \
    "$(get /generate -X OPTIONS -H "Origin: $APP" -H 'Access-Control-Request-Method: POST')" 405
expect "CORS off: Allow" "$(header Allow)" POST
expect "CORS off: no Allow-Origin" "$(get /v1/models -H "Origin: $APP"; header Access-Control-Allow-Origin)" 200
expect "CORS off: no Vary" "$(header Vary)" ""
stop_server
start_server --cors-allow-origin '*'
expect "CORS '*': any origin" "$(get /v1/models -H 'Origin: https://any.example'; header Access-Control-Allow-Origin)" "200*"
stop_server
for bad in 'https://app.example/path' 'app.example' 'https://a.example, *.example'; do
    if "$BIN" serve --model "$MODEL" --port 0 --cors-allow-origin "$bad" >"$TMP/bad.out" 2>&1; then
        fail "--cors-allow-origin '$bad' was accepted"
    else
        grep -q 'cors_allow_origin' "$TMP/bad.out" && ok "--cors-allow-origin '$bad' is refused, naming the setting" ||
            fail "refusal of '$bad' does not name the setting: $(cat "$TMP/bad.out")"
    fi
done

# --- through the shipped nginx and HAProxy configs ----------------------------------------------
# through NAME BASE: the playground, its module and a stream through a proxy at BASE.
through() {
    expect "$1: GET /" "$(curl -s -o "$TMP/p.html" -D "$TMP/headers" -w '%{http_code}' "$2/")" 200
    cmp -s "$TMP/p.html" server/static/index.html && ok "$1: the page arrives whole" || fail "$1: the page differs"
    case "$(header Content-Security-Policy)" in "default-src 'none'"*) ok "$1: the policy passes" ;;
    *) fail "$1: no Content-Security-Policy" ;; esac
    expect "$1: the module" "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$2/static/heptapod.js")" \
        "200 text/javascript; charset=utf-8"
    curl -sN -o "$TMP/p.sse" -X POST -H 'Content-Type: application/json' \
        --data-binary '{"height":3,"width":8,"iterations":4,"stream":true,"seed":2}' "$2/generate"
    expect "$1: a stream passes whole" "$($PY tests/integration/validate.py sse "$TMP/p.sse")" "5 4 done"
}

start_server --admin-port 0
start_nginx
through nginx "$NGINX_URL"
start_haproxy
through haproxy "$HAPROXY_URL"
stop_server
finish
