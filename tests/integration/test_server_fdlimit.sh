#!/bin/sh
# test_server_fdlimit.sh - at its descriptor limit the daemon refuses with
# 503 at once, does not spin, and recovers (fdlimit_check.py).
set -eu
BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
if /usr/bin/python3 tests/integration/fdlimit_check.py "$BIN"; then
    echo "all passed"
else
    echo "FAIL: descriptor-limit checks"
    exit 1
fi
