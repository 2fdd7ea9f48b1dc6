"""listen_check.py - raw-socket checks of the listeners (test_server_listen.sh).

Usage: listen_check.py PORT ADMIN_PORT

The daemon runs with --max-connections 24 --max-connections-per-client 4
--header-timeout-ms 800 --body-timeout-ms 800. Each check prints "ok: ..."
or "FAIL: ..."; the exit status is the number of failures.
"""
import json
import socket
import sys
import time

PORT, ADMIN = int(sys.argv[1]), int(sys.argv[2])
failures = 0
BODY = b'{"height":1,"width":2,"iterations":1,"seed":1}'
POST = b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


def connect(port=PORT, src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(5)
    return s


def read_all(s, limit=5.0):
    """Everything until the peer closes (or `limit` seconds pass)."""
    out, end = b"", time.time() + limit
    try:
        while time.time() < end:
            b = s.recv(65536)
            if not b:
                return out, True
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out, False


def exchange(data, port=PORT, src="127.0.0.1"):
    s = connect(port, src)
    t0 = time.time()
    s.sendall(data)
    out, closed = read_all(s)
    s.close()
    return out, closed, time.time() - t0


def status(out):
    line = out.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def error_code(out):
    try:
        return json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]["code"]
    except (ValueError, KeyError, IndexError):
        return None


def metric(name, labels):
    out, _, _ = exchange(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", ADMIN)
    for line in out.decode().splitlines():
        if line.startswith(name + "{") and all(l in line for l in labels):
            return float(line.rsplit(" ", 1)[1])
    return None


# Framing: refused with one status line and a closed connection, never served.
shapes = {
    "two Content-Length": (POST + b"Content-Length: %d\r\nContent-Length: 5\r\n\r\n" % len(BODY) + BODY, 400, "bad_request"),
    "Content-Length with chunked": (POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}{}{\r\n0\r\n\r\n", 400, "bad_request"),
    "two Transfer-Encoding": (POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    "Transfer-Encoding identity": (POST + b"Transfer-Encoding: identity\r\n\r\n" + BODY, 501, "not_implemented"),
    "Transfer-Encoding gzip, chunked": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + BODY, 501, "not_implemented"),
    "%00 in the path": (b"POST /generate%00.css HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY, 400, "bad_request"),
    "%0a in the query": (b"GET /healthz?a=%0a HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request"),
    "raw control byte in the path": (b"GET /healthz\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request"),
    "control byte in a header value": (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x1bb\r\n\r\n", 400, "bad_request"),
}
for what, (data, want, code) in shapes.items():
    out, closed, dt = exchange(data)
    check(status(out) == want and error_code(out) == code and out.count(b"HTTP/1.1 ") == 1 and closed,
          "%s: %d %s, one status line, closed (got %r)" % (what, want, code, out[:40]))

# A well-formed request on the same kind of connection is served.
out, _, _ = exchange(POST + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY) + BODY)
check(status(out) == 200, "a well-formed POST /generate is served")

# Header and body timeouts: 408 and closed, counted.
h0 = metric("heptapod_request_timeouts_total", ['phase="headers"', 'listener="main"']) or 0
out, closed, dt = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
check(status(out) == 408 and error_code(out) == "request_timeout" and closed and 0.7 < dt < 3,
      "slow headers: 408 after %.2f s, closed" % dt)
s = connect()
t0 = time.time()
for b in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 40:
    try:
        s.send(bytes([b]))
    except OSError:
        break
    time.sleep(0.05)
    if time.time() - t0 > 3:
        break
out, closed = read_all(s, 2)
check(status(out) == 408 and time.time() - t0 < 3,
      "a byte every 50 ms does not extend the header deadline (%.2f s)" % (time.time() - t0))
s.close()
b0 = metric("heptapod_request_timeouts_total", ['phase="body"', 'listener="main"']) or 0
out, closed, dt = exchange(POST + b"Content-Length: 100\r\n\r\n{")
check(status(out) == 408 and closed and 0.7 < dt < 3, "slow body: 408 after %.2f s, closed" % dt)
h1 = metric("heptapod_request_timeouts_total", ['phase="headers"', 'listener="main"'])
b1 = metric("heptapod_request_timeouts_total", ['phase="body"', 'listener="main"'])
check(h1 == h0 + 2 and b1 == b0 + 1, "timeouts counted by phase (%s -> %s, %s -> %s)" % (h0, h1, b0, b1))

# An idle keep-alive connection is closed quietly after the header timeout.
s = connect()
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
time.sleep(0.2)
first = s.recv(4096)
out, closed = read_all(s, 3)
check(status(first) == 200 and out == b"" and closed, "idle keep-alive closed without a 408")
s.close()

# Per-address cap: the fifth connection from one address gets 429 at once;
# another address is unaffected.
held = [connect(src="127.0.0.3") for _ in range(4)]
time.sleep(0.1)
out, closed, dt = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", src="127.0.0.3")
check(status(out) == 429 and error_code(out) == "overloaded" and closed and dt < 1,
      "fifth connection from one address: 429 in %.3f s" % dt)
out, _, _ = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", src="127.0.0.2")
check(status(out) == 200, "another address is still served")

# Global limit: fill it from many addresses; the next one gets 503 at once,
# while the admin listener answers.
for a in range(4, 40):
    try:
        held.append(connect(src="127.0.0.%d" % a))
    except OSError:
        pass
time.sleep(0.2)
out, closed, dt = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", src="127.0.0.2")
check(status(out) == 503 and b"Retry-After:" in out and closed and dt < 1,
      "at max_connections: 503 with Retry-After in %.3f s" % dt)
out, _, _ = exchange(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", ADMIN)
check(status(out) == 200, "the admin listener answers /readyz while the main one is full")
conns = metric("heptapod_connections", ['listener="main"'])
check(conns == 24, "heptapod_connections{listener=main} is the limit (%s)" % conns)
refused = metric("heptapod_connections_refused_total", ['reason="limit"', 'listener="main"'])
check(refused is not None and refused >= 1, "refusals at the limit counted (%s)" % refused)
for s in held:
    s.close()

# The admin listener serves only the health endpoints.
out, _, _ = exchange(b"GET /v1/models HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", ADMIN)
check(status(out) == 404, "the admin listener does not serve /v1/models")
time.sleep(1.2)
out, _, _ = exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", src="127.0.0.2")
check(status(out) == 200, "served again once the held connections left")

sys.exit(failures)
