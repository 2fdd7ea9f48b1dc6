#!/bin/sh
# test_browser.sh - the playground and the JavaScript client against live
# daemons: client_test.mjs under Node (fixture model, API key, a small
# queue), then playground_test.mjs in headless Debian chromium (default
# model, as `make run` serves it), which writes a screenshot beside the
# binary (playground.png). Run from the repository root with HEPTAPOD_BIN
# set (make browser does); needs node and chromium (make deps).
set -eu
. tests/integration/server_lib.sh

for tool in node "${CHROMIUM:-chromium}"; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (make deps installs it)"; exit 1; }
done

start_server --api-key test-key --max-batch-cells 1024 --max-queue 1 --retry-after-s 2 \
    --max-iterations 100000
if node tests/browser/client_test.mjs "$URL" >"$TMP/client.out" 2>&1; then
    ok "JavaScript client: $(grep -c '^ok' "$TMP/client.out") checks"
else
    cat "$TMP/client.out"
    fail "JavaScript client"
fi
stop_server

start_server --model models/default.safetensors
shot=$(dirname "$BIN")/playground.png
if node tests/browser/playground_test.mjs "$URL" "$shot" >"$TMP/page.out" 2>&1; then
    sed 's/^/  /' "$TMP/page.out"
    ok "playground in chromium: $(grep -c '^ok' "$TMP/page.out") checks"
else
    cat "$TMP/page.out"
    fail "playground in chromium"
fi
[ -s "$shot" ] && ok "screenshot $shot ($(wc -c <"$shot") bytes)" || fail "no screenshot at $shot"
stop_server
expect "exit code after SIGTERM" "$STOP_CODE" 0
finish
