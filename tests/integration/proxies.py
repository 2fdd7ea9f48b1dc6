#!/usr/bin/python3
"""proxies.py - heptapod replicas behind the real HAProxy and nginx of deploy/.

Run by test_proxies.sh. For each proxy it starts three replicas (port 0 and
admin port 0, with the settings of deploy/heptapod.service), then the proxy
from its shipped config with only addresses and ports rewritten (see
proxy_lib.py), and checks through it:

  sse       events of a stream arrive one by one, spaced as the replica
            writes them (compared with the same stream fetched directly);
  smuggle   ambiguous framings sent as raw bytes are refused or normalised:
            the client gets at most one answer, and no replica ever serves
            a request hidden in the body (found by its X-Request-Id in the
            replicas' access logs);
  slowbody  300 clients trickling request bodies are held by the proxy: the
            replicas' open connections stay at their baseline and a good
            client's small /generate is answered promptly; a 65th connection
            from one address is refused;
  limits    the largest request the daemon's limits allow passes, larger
            bodies and /metrics are refused, with JSON errors;
  trickle   headers (both) and bodies (HAProxy) sent a byte a second are
            cut 10 s after the connection, however steady the bytes;
  drain     SIGTERM to a replica under load: its stream finishes, it exits
            0, and HAProxy's clients see only 200s (nginx's see its 503s);
  poison    the request that crashed replicas is answered with a 4xx, not
            replayed, and every replica is still alive.

Every process it starts is killed on the way out, however it ends. Prints
what it measured; exit status 1 if any check failed.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from proxy_lib import (TMP, Replica, check, check_json_error, cleanup, error_code, fail, failures,
                       free_port, note, ok, on_signal, raw_exchange, request, start_haproxy,
                       start_nginx, statuses, stop, wait_until)

REPLICAS = 3
GOOD_ADDR = "127.0.0.3"  # the well-behaved client
# Attackers: 60 connections from each, below the proxies' 64 per address.
ATTACK_ADDRS = ["127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"]
CAP_ADDR = "127.0.0.8"  # one address going over the per-address cap
TRICKLE_ADDR = "127.0.0.9"  # one slow-header and one slow-body client
SMALL = b'{"height":4,"width":4,"iterations":2,"seed":1}'
POISON = b'{"text":["ab"],"open":"\\u0000","height":1,"width":2}'
# A stream whose iterations take tens of ms, so that bunching shows; its
# height is sized to the build's speed by sized_stream().
STREAM = {"height": 32, "width": 64, "iterations": 8, "seed": 7, "stream": True}
ITERATION_MS = 60


def sized_stream(port):
    """Sets STREAM's height so that one iteration takes about ITERATION_MS on
    this build and machine (a sanitizer build is ten times slower). The
    fastest of three tries, as other work on the machine only slows it."""
    ms = 0
    for _ in range(3):
        st, body = request(port, "POST", "/generate",
                           json.dumps({"height": 16, "width": 64, "iterations": 2, "seed": 1}))
        if st == 200:
            t = json.loads(body)["timings"]["compute_ms"] / 2
            ms = min(ms, t) if ms else t
    if ms > 0:
        STREAM["height"] = max(1, min(32, round(16 * ITERATION_MS / ms)))
    return ms


def stream_times(port):
    """Streams STREAM from port: arrival times (ms after the request was sent)
    of each `iteration` event and of the `done` event."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/generate", body=json.dumps(STREAM),
              headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    r = c.getresponse()
    its, done = [], None
    while True:
        line = r.readline()
        if not line:
            break
        t = (time.monotonic() - t0) * 1000
        if line.startswith(b"event: iteration"):
            its.append(t)
        elif line.startswith(b"event: done"):
            done = t
    c.close()
    return r.status, its, done


# --- the checks -----------------------------------------------------------------


def gaps(times):
    return [round(b - a, 1) for a, b in zip(times, times[1:])]


def check_sse(name, port, replicas):
    """Events through the proxy arrive as spaced as the replica writes them.
    The replica writes one every few tens of ms; a proxy that holds them
    back delivers several within a millisecond of each other. A busy machine
    can deschedule the client too, so the direct stream is measured beside
    it and its bunched pairs (plus one) are allowed, and a failure must show
    on three tries. Bunched: under 5 ms, or a quarter of the direct stream's
    median gap if that is less."""
    for attempt in (1, 2, 3):
        _, direct, _ = stream_times(replicas[0].port)
        st, its, done = stream_times(port)
        g, dg = gaps(its), gaps(direct)
        floor = min(5.0, sorted(dg)[len(dg) // 2] / 4) if dg else 5.0
        note("%s: %d iteration events, first at %.0f ms (direct %.0f ms), gaps %s ms (direct %s ms)"
             % (name, len(its), its[0] if its else -1, direct[0] if direct else -1, g, dg))
        if not check(st == 200 and len(its) == STREAM["iterations"] and done is not None,
                     "%s: the stream completes through the proxy" % name, (st, len(its), done)):
            return
        bunched = sum(1 for x in g if x < floor)
        allowed = 1 + sum(1 for x in dg if x < floor)
        if bunched <= allowed or attempt == 3:
            break
    check(bunched <= allowed, "%s: SSE events arrive one by one (%d of %d gaps under %.1f ms, "
          "%d allowed)" % (name, bunched, len(g), floor, allowed), g)


def smuggle_cases(k):
    """(name, raw request) pairs. The first request asks for Connection: close,
    so any request a replica sees after it on that connection is hidden in
    its body; the hidden one is GET /v1/models with X-Request-Id smugK-hidden."""
    body = SMALL
    hidden = ("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: smug%d-hidden\r\n\r\n"
              % k).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = ("POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nX-Request-Id: smug%d-first\r\n" % k).encode()
    return [
        ("two Content-Length",
         head + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" %
         (len(body), len(body) + len(hidden)) + body + hidden),
        ("Content-Length: -1", head + b"Content-Length: -1\r\n\r\n" + body + hidden),
        ("Content-Length + Transfer-Encoding",
         head + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" %
         (len(chunked) + len(hidden)) + chunked + hidden),
        ("Transfer-Encoding: gzip, chunked",
         head + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked + hidden),
        ("NUL in a header value",
         head + b"X-Note: a\x00b\r\nContent-Length: %d\r\n\r\n" % len(body) + body),
        ("bare LF line endings",
         (head + b"Content-Length: %d\r\n\r\n" % len(body)).replace(b"\r\n", b"\n") + body),
        ("NUL in the path (%00)",
         head.replace(b"POST /generate ", b"POST /generate%00.css ") +
         b"Content-Length: %d\r\n\r\n" % len(body) + body),
    ]


# What each proxy does with each shape (HAProxy 2.6, nginx 1.22 of Debian 12,
# with the deploy/ configs): "refused NNN" (the proxy answers NNN itself,
# with a JSON error body, and nothing reaches a replica), "refused NNN page"
# (the same with the built-in page of HAProxy's parser, which no setting
# replaces), or "forwarded NNN" (one clean request reaches a replica, which
# answers NNN). Both close the connection after each.
SMUGGLE_EXPECT = {
    "haproxy": {
        "two Content-Length": "refused 400 page",
        "Content-Length: -1": "refused 400 page",
        # Transfer-Encoding wins, Content-Length is dropped; the replica gets
        # a plain chunked request.
        "Content-Length + Transfer-Encoding": "forwarded 200",
        "Transfer-Encoding: gzip, chunked": "refused 422 page",
        # HAProxy's parser lets these two through; the config's deny rules
        # refuse them.
        "NUL in a header value": "refused 400",
        "NUL in the path (%00)": "refused 400",
        # Rewritten with CRLF line endings.
        "bare LF line endings": "forwarded 200",
    },
    "nginx": {
        "two Content-Length": "refused 400",
        "Content-Length: -1": "refused 400",
        "Content-Length + Transfer-Encoding": "refused 400",
        "Transfer-Encoding: gzip, chunked": "refused 501",
        "NUL in a header value": "refused 400",
        "NUL in the path (%00)": "refused 400",
        "bare LF line endings": "forwarded 200",
    },
}


def check_smuggle(name, port, replicas):
    cases = smuggle_cases(0)
    for k, (shape, _) in enumerate(cases):
        raw = smuggle_cases(k)[k][1]
        got, closed = raw_exchange(port, raw)
        st = statuses(got)
        time.sleep(0.2)  # the access log line follows the answer
        ids = [i for r in replicas for i in r.access_ids()]
        served = ids.count("smug%d-first" % k)
        hidden = ids.count("smug%d-hidden" % k)
        outcome = "%s %s" % ("forwarded" if served else "refused", st[0] if st else "-")
        note("%s: %-36s -> %s, %s, replicas served it %d time(s), hidden request %d time(s)"
             % (name, shape, st, "closed" if closed else "left open", served, hidden))
        check(len(st) == 1 and st[0] >= 400 or (len(st) == 1 and served == 1),
              "%s: %s answered once (refused, or served as one request)" % (name, shape), st)
        check(served <= 1 and hidden == 0,
              "%s: %s: nothing hidden reaches a replica" % (name, shape), (served, hidden))
        check(closed, "%s: %s: the connection is closed after the answer" % (name, shape))
        want = SMUGGLE_EXPECT[name][shape]
        check(outcome == want.replace(" page", ""), "%s: %s: %s" % (name, shape, want), outcome)
        if outcome.startswith("refused") and not want.endswith(" page"):
            check_json_error(name, shape, st[0], got.partition(b"\r\n\r\n")[2])


class Trickle(threading.Thread):
    """A client that sends `head`, then one byte of `drip` a second until
    the proxy answers or closes: when that happened (seconds after the
    connection) and what it answered."""

    def __init__(self, port, head, drip):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind((TRICKLE_ADDR, 0))
        self.sock.connect(("127.0.0.1", port))
        self.t0 = time.monotonic()
        self.sock.sendall(head)
        self.drip = drip
        self.ended = None  # seconds after the connection
        self.answer = b""
        self.halt = threading.Event()
        self.start()

    def run(self):
        i = 0
        while not self.halt.is_set():
            r, _, _ = select.select([self.sock], [], [], 1.0)
            try:
                if r:
                    self.answer = self.sock.recv(4096)
                    break
                self.sock.send(self.drip[i % len(self.drip):][:1])
                i += 1
            except OSError:
                break
        if not self.halt.is_set():
            self.ended = time.monotonic() - self.t0

    def stop(self):
        self.halt.set()
        self.join()
        self.sock.close()


def start_trickles(port):
    """A slow-header and a slow-body client; checked by check_trickles."""
    return (Trickle(port, b"POST /generate HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),
            Trickle(port, b"POST /generate HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n", b" "))


def check_trickles(name, trickles):
    """The proxy bounds the total time of a request's headers (both proxies)
    and of its body (HAProxy; nginx only bounds the time between two reads of
    a body, so a client sending a byte a second keeps its connection)."""
    left = 14 - (time.monotonic() - trickles[0].t0)
    wait_until(lambda: all(t.ended is not None for t in trickles), left)
    for t, what in zip(trickles, ("headers", "body")):
        st = statuses(t.answer)
        note("%s: slow %s, one byte a second: %s after %s s%s"
             % (name, what, "answer %s" % st if st else ("closed" if t.ended else "still open"),
                "%.1f" % t.ended if t.ended else "%.0f" % (time.monotonic() - t.t0),
                "" if not st else ", " + error_code(t.answer.partition(b"\r\n\r\n")[2])))
        if name == "nginx" and what == "body":
            check(t.ended is None, "%s: a trickled body is held (no total body timeout)" % name)
        else:
            check(t.ended is not None and 9.0 <= t.ended <= 12.0,
                  "%s: slow %s: cut at 10 s in total" % (name, what), t.ended)
            if st:
                check(st == [408], "%s: slow %s: answered 408" % (name, what), st)
            # HAProxy answers slow headers from its HTTP parser, with its
            # built-in page; nginx closes without an answer.
            if st and what == "body":
                check_json_error(name, "slow " + what, 408, t.answer.partition(b"\r\n\r\n")[2])
        t.stop()


def check_slowbody(name, port, replicas):
    base_fds = [r.fds() for r in replicas]
    base_conn = [r.connections() for r in replicas]
    head = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n")
    socks = []
    t0 = time.monotonic()
    for addr in ATTACK_ADDRS:
        for _ in range(60):
            s = socket.socket()
            s.bind((addr, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(head)
            socks.append(s)
    # One body byte a second from each, for about 4 s, while a good client asks.
    lat = []
    results = []
    for second in range(4):
        for s in socks:
            try:
                s.send(b" ")
            except OSError:
                pass
        t = time.monotonic()
        st, _ = request(port, "POST", "/generate", SMALL, source=GOOD_ADDR, timeout=10)
        lat.append((time.monotonic() - t) * 1000)
        results.append(st)
        time.sleep(max(0.0, second + 1 - (time.monotonic() - t0)))
    fds = [r.fds() for r in replicas]
    conn = [r.connections() for r in replicas]
    # Still held by the proxy: nothing answered, nothing closed.
    r, _, _ = select.select(socks, [], [], 0)
    held = len(socks) - len(r)
    note("%s: %d slow-body connections, %d still held after %.1f s; good client: %s in %s ms"
         % (name, len(socks), held, time.monotonic() - t0, results,
            [round(x) for x in lat]))
    note("%s: replica descriptors %s -> %s, connections gauge %s -> %s"
         % (name, base_fds, fds, base_conn, conn))
    check(held >= len(socks) - 5, "%s: the proxy holds the slow bodies (%d of %d)"
          % (name, held, len(socks)))
    check(all(s == 200 for s in results) and max(lat) < 2000,
          "%s: the good client is answered under the slow-body attack (max %.0f ms)"
          % (name, max(lat)), results)
    check(all(f <= b + 4 for f, b in zip(fds, base_fds)),
          "%s: replicas' open descriptors stay at their baseline" % name, (base_fds, fds))
    if all(c is not None for c in conn):
        check(all(c <= 2 for c in conn), "%s: replicas' main connections stay low %s"
              % (name, conn), conn)
    for s in socks:
        s.close()

    # One address over the per-address cap: the connections past 64 are refused.
    over = []
    for _ in range(70):
        s = socket.socket()
        s.bind((CAP_ADDR, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(head)
        over.append(s)
    time.sleep(1.0)
    r, _, _ = select.select(over, [], [], 0)
    answers = []
    for s in r:
        try:
            answers.append(statuses(s.recv(4096))[:1] or ["closed"])
        except OSError:
            answers.append(["reset"])
    note("%s: 70 connections from one address: %d refused %s"
         % (name, len(r), sorted({a[0] for a in answers}, key=str)))
    check(all(a[0] in ("closed", "reset", 429) for a in answers),
          "%s: refused at once (a reset or 429)" % name, answers)
    check(6 <= len(r) <= 8, "%s: connections past 64 from one address are refused" % name, len(r))
    for s in over:
        s.close()


def check_limits(name, port, replicas, limits):
    """The largest request the daemon's limits allow passes; a larger body
    and /metrics are refused by the proxy with JSON errors."""
    h = limits["max_height"]
    w = limits["max_cells"] // h
    big = json.dumps({"height": h, "width": w, "iterations": 1, "seed": 1,
                      "given": [[None] * w for _ in range(h)]}).encode()
    st, body = request(port, "POST", "/generate", big, source=GOOD_ADDR, timeout=30)
    check(st == 200, "%s: the largest grid the limits allow (%dx%d given, %d bytes) passes"
          % (name, h, w, len(big)), (st, body[:200]))
    # Past what the proxy holds: HAProxy one buffer (48 KiB), nginx 1 MiB.
    size = 49153 if name == "haproxy" else (1 << 20) + 1
    st, body = request(port, "POST", "/generate", b" " * size, source=GOOD_ADDR)
    check(st == 413, "%s: a %d-byte body gets 413 from the proxy" % (name, size), st)
    check_json_error(name, "too large", st, body)
    st, body = request(port, "GET", "/metrics", source=GOOD_ADDR)
    check(st == 404, "%s: /metrics is not served to clients" % name, st)
    check_json_error(name, "/metrics", st, body)


def check_poison(name, port, replicas):
    st, body = request(port, "POST", "/generate", POISON, source=GOOD_ADDR)
    time.sleep(0.5)
    alive = [r.alive() for r in replicas]
    health = [request(r.admin, "GET", "/healthz")[0] if r.alive() else 0 for r in replicas]
    note("%s: poison request -> %d %s; replicas alive %s, /healthz %s"
         % (name, st, body[:120].decode(errors="replace"), alive, health))
    check(400 <= st < 500, "%s: the poison request gets a 4xx, not a replayed 5xx" % name, st)
    if st == 502:
        check_json_error(name, "a replica failed", st, body)
    check(all(alive) and all(h == 200 for h in health),
          "%s: every replica is alive after the poison request" % name, (alive, health))


def check_drain(name, port, replicas):
    """SIGTERM to a replica with a stream in flight: its stream ends with
    `done`, it exits 0, and clients of the proxy meanwhile get answers:
    through HAProxy all 200 (its 503s are retried elsewhere, then the health
    check on the admin port takes it out); through nginx, which cannot retry
    a POST on 503, 200 or the daemon's 503. Returns the replica it stopped."""
    victim = replicas[0]
    stream = dict(STREAM, iterations=48)  # about 3 s
    out = {}
    started = threading.Event()

    def long_stream():
        c = http.client.HTTPConnection("127.0.0.1", victim.port, timeout=60)
        try:
            c.request("POST", "/generate", body=json.dumps(stream),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            done = False
            for line in iter(r.readline, b""):
                started.set()
                done = done or line.startswith(b"event: done")
            out["stream"] = (r.status, done)
        except (OSError, http.client.HTTPException) as e:
            out["stream"] = (0, str(e))
        finally:
            started.set()
            c.close()

    t = threading.Thread(target=long_stream)
    t.start()
    started.wait(10)
    victim.proc.send_signal(signal.SIGTERM)
    answers = []

    def client():
        answers.append(request(port, "POST", "/generate", SMALL, source=GOOD_ADDR))

    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        burst = [threading.Thread(target=client) for _ in range(6)]
        for b in burst:
            b.start()
        for b in burst:
            b.join()
    t.join(60)
    try:
        code = victim.proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    refused = sum(1 for line in open(victim.access, errors="replace")
                  if '"status":503' in line)
    got = sorted({st for st, _ in answers})
    note("%s: drain of one replica: its stream %s, exit %s; %d client requests meanwhile, "
         "%d answered 200; the draining replica refused %d with 503"
         % (name, out.get("stream"), code, len(answers),
            sum(1 for st, _ in answers if st == 200), refused))
    check(out.get("stream") == (200, True) and code == 0,
          "%s: the draining replica finishes its stream and exits 0" % name, (out, code))
    if name == "haproxy":
        check(got == [200], "%s: every request during the drain is answered 200" % name, got)
    else:
        bad = [(st, b[:80]) for st, b in answers
               if st != 200 and not (st == 503 and error_code(b) == "unavailable")]
        check(not bad, "%s: requests during the drain get 200 or the daemon's 503" % name, bad)
    return victim


def run(name, start):
    """Three fresh replicas and the proxy start(port, replicas) in front of
    them; every check through it; then both stopped."""
    replicas = []
    proxy = None
    try:
        replicas = [Replica("%s-replica%d" % (name, i + 1)) for i in range(REPLICAS)]
        port = free_port()
        proxy = start(port, replicas)
        if not wait_until(lambda: request(port, "GET", "/v1/models", timeout=2)[0] == 200, 15):
            fail("%s did not start:\n%s" % (name, open(os.path.join(TMP, name + ".log"),
                                                       errors="replace").read()[-2000:]))
            return
        ok("%s in front of %d replicas on 127.0.0.1:%d" % (name, REPLICAS, port))
        trickles = start_trickles(port)
        ms = sized_stream(replicas[0].port)
        note("%s: a 16x64 iteration takes %.1f ms here: streams of %dx64"
             % (name, ms, STREAM["height"]))
        check_sse(name, port, replicas)
        check_smuggle(name, port, replicas)
        check_slowbody(name, port, replicas)
        limits = json.loads(request(replicas[0].port, "GET", "/v1/models")[1])["data"][0]["limits"]
        check_limits(name, port, replicas, limits)
        check_trickles(name, trickles)
        victim = check_drain(name, port, replicas)
        check_poison(name, port, [r for r in replicas if r is not victim])
    except RuntimeError as e:  # a replica that did not start
        fail("%s: %s" % (name, e))
    finally:
        if proxy:
            stop(proxy)
        for r in replicas:
            stop(r.proc)


def main():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    os.chmod(TMP, 0o755)
    t0 = time.monotonic()
    try:
        for name, start in (("haproxy", start_haproxy), ("nginx", start_nginx)):
            t = time.monotonic()
            run(name, start)
            note("%s: %.1f s" % (name, time.monotonic() - t))
    finally:
        cleanup()
    print("%d failure(s) in %.1f s" % (len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
