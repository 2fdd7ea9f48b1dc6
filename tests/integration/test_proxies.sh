#!/bin/sh
# test_proxies.sh - the daemon behind the real HAProxy and nginx, run from
# the shipped configs of deploy/ (addresses rewritten in a temporary copy):
# SSE events pass one by one, request-smuggling framings are refused or
# normalised, slow-body clients are held by the proxy while a good client
# is served, slow headers and bodies are cut in bounded time, a draining
# replica's requests are retried (HAProxy), and the request that once
# crashed replicas is not replayed onto the others. Loopback only
# (127.0.0.2-9 as distinct client addresses); about 35 s. The checks live in
# proxies.py beside this file, the processes and clients in proxy_lib.py.
# Run from the repository root with HEPTAPOD_BIN set (make integration does).
set -eu
: "${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}"
exec /usr/bin/python3 tests/integration/proxies.py
