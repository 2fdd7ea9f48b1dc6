#!/bin/sh
# test_server_listen.sh - the listeners as a raw-socket client sees them:
# strict framing, total header and body timeouts, the per-address and
# global connection limits refused at once, and the admin listener.
set -eu
. tests/integration/server_lib.sh

start_server --admin-port 0 --max-connections 24 --max-connections-per-client 4 \
    --header-timeout-ms 800 --body-timeout-ms 800
ADMIN_PORT=$(sed -n 's/.*admin listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -n 1)
[ -n "$ADMIN_PORT" ] || { fail "no admin listener in the log"; finish; }

if $PY tests/integration/listen_check.py "$PORT" "$ADMIN_PORT"; then
    ok "listener checks"
else
    fail "listener checks"
fi
kill -0 "$SERVER_PID" 2>/dev/null && ok "the daemon is alive" || fail "the daemon died"
finish
