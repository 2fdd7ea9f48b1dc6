#!/bin/sh
# test_client_python.sh - clients/python/heptapod_client.py against live
# daemons (generate, stream, cancel, typed errors, API key, 429 with
# Retry-After and retries), a scripted server for retry timing, the SSE
# parser, and the README's Python example. Run from the repository root with
# HEPTAPOD_BIN set (make integration does).
set -eu
BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
HEPTAPOD_BIN=$BIN exec /usr/bin/python3 clients/python/test_client.py
