#!/bin/sh
# test_browser.sh - the playground and the JavaScript client against live
# daemons: client_test.mjs under Node (fixture model, API key, a small
# queue), the README's JavaScript example, then playground_test.mjs in
# headless Debian chromium (default and Sudoku models, as `make run` serves them), which
# writes a screenshot beside the binary (playground.png), directly and
# through deploy/nginx.conf. Run from the repository root with HEPTAPOD_BIN
# set (make browser does); needs node and chromium (make test-deps).
set -eu
. tests/integration/server_lib.sh
. tests/integration/proxy_lib.sh

for tool in node "${CHROMIUM:-chromium}"; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (make test-deps installs it)"; exit 1; }
done

# Requests without deadline_ms have none, so that the long requests of the
# client test are admitted, however slow the measured rate says they are.
start_server --api-key test-key --max-batch-cells 1024 --max-queue 1 --retry-after-s 2 \
    --max-iterations 100000 --default-deadline-ms 0
if node tests/browser/client_test.mjs "$URL" >"$TMP/client.out" 2>&1; then
    ok "JavaScript client: $(grep -c '^ok' "$TMP/client.out") checks"
else
    cat "$TMP/client.out"
    fail "JavaScript client"
fi
stop_server

# The README's JavaScript example, as printed, against a daemon without a key.
start_server
mkdir -p "$TMP/example"
curl -s -o "$TMP/example/heptapod.mjs" "$URL/static/heptapod.js"
awk '/^```js$/ { on = 1; next } /^```$/ { on = 0 } on' README.md |
    sed "s|http://127.0.0.1:8080|$URL|g" >"$TMP/example/example.mjs"
grep -q 'new Client' "$TMP/example/example.mjs" || fail "no JavaScript example found in README.md"
if (cd "$TMP/example" && node example.mjs) >"$TMP/example.out" 2>&1; then
    expect "README example: 4 text rows, then 8 iterations" \
        "$(sed -n '5,12s/ .*//p' "$TMP/example.out" | tr '\n' ' ')" "1 2 3 4 5 6 7 8 "
    expect "README example: the last iteration leaves nothing open" "$(sed -n 12p "$TMP/example.out")" "8 0"
    expect "README example: the first row starts with the prompt" \
        "$(head -c 16 "$TMP/example.out")" "Once upon a time"
else
    fail "README example: $(cat "$TMP/example.out")"
fi
stop_server

start_server --model models/default.safetensors --model models/sudoku.safetensors
shot=$(dirname "$BIN")/playground.png
rm -f "$shot"
if node tests/browser/playground_test.mjs "$URL" "$shot" >"$TMP/page.out" 2>&1; then
    sed 's/^/  /' "$TMP/page.out"
    ok "playground in chromium: $(grep -c '^ok' "$TMP/page.out") checks"
else
    cat "$TMP/page.out"
    fail "playground in chromium"
fi
[ -s "$shot" ] && ok "screenshot $shot ($(wc -c <"$shot") bytes)" || fail "no screenshot at $shot"

# The same page through the shipped nginx config (relative URLs, the policy,
# an unbuffered stream and a cancel all pass through a proxy).
start_nginx
if node tests/browser/playground_test.mjs "$NGINX_URL" "$TMP/nginx.png" "$URL" >"$TMP/nginx.out" 2>&1; then
    ok "playground through deploy/nginx.conf: $(grep -c '^ok' "$TMP/nginx.out") checks"
else
    cat "$TMP/nginx.out"
    fail "playground through deploy/nginx.conf"
fi
stop_server
expect "exit code after SIGTERM" "$STOP_CODE" 0
finish
