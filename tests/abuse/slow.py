"""slow.py - clients that hold connections by sending slowly.

slow_headers: 1,100 connections from one address, each trickling header
bytes and reconnecting when closed. The per-client cap refuses all but 64
at once (429), the header deadline closes those 64 (408), and the good
client on another address never notices.

slow_headers_spread: the same from 38 addresses, so the per-client cap
does not help; with a global limit of 512 the main port fills. What must
hold then: connections above the limit are refused at once (503, never left
in the backlog), the header deadline frees the slots (408) although bytes
keep arriving, the good client is answered 200 once it retries after the
fast 503, and the admin listener answers /healthz and /metrics throughout.
The good client must be able to read each 503: a refusal that closes while
the client is still sending makes it fail with a broken pipe or a reset
instead (RFC 9112, section 9.6: close the write side, then drain).

slow_bodies: POSTs that announce 1,000 bytes and send one a second get 408
at the body deadline and are closed.
"""

import json
import time

from harness import (ATTACKER_ADDR, GOOD_ADDR, SLOW, SMALL_BODY, Attack, Daemon, GoodClient,
                     Prober, Swarm, attacker_addr, baseline, check_baseline, check_clean_exit,
                     connect_from, warm_up)

HEADER_PREFIX = b"POST /generate HTTP/1.1\r\nHost: heptapod\r\n"
HEADER_TRICKLE = b"X-Slow: a\r\n"
FAST = 1.0  # seconds within which a refusal counts as immediate


def _refusals(conns, statuses):
    """(refused at once, answered late, reset without an answer, never
    answered) among conns."""
    fast = late = reset = none = 0
    for c in conns:
        if c.status in statuses:
            if c.answered_at - c.opened <= FAST * SLOW:
                fast += 1
            else:
                late += 1
        elif c.status is None:
            if c.closed_at is not None:
                reset += 1
            else:
                none += 1
    return fast, late, reset, none


def _two_write_clients(port, n=5):
    """n clients that find the port full and send their request in two
    writes 50 ms apart, as a proxy forwarding headers then body does.
    Returns what each one read: the refusal's status, or the error that
    took its place."""
    out = []
    for _ in range(n):
        try:
            s = connect_from(GOOD_ADDR, port)
        except OSError as e:
            out.append(e.__class__.__name__)
            continue
        try:
            time.sleep(0.05)
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: heptapod\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % len(SMALL_BODY))
            time.sleep(0.05)
            s.sendall(SMALL_BODY)
            data = s.recv(4096)
            out.append(data[9:12].decode() if data.startswith(b"HTTP/1.") else "no answer")
        except OSError as e:
            out.append(e.__class__.__name__)
        finally:
            s.close()
    return out


def _json_error(c):
    _, _, body = c.data.partition(b"\r\n\r\n")
    try:
        return json.loads(body.decode("utf-8"))["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def slow_headers(binary):
    """1,100 slowloris connections from one address, daemon defaults."""
    a = Attack("slow headers (1 address)")
    with Daemon(binary) as d:
        warm_up(d)
        base = baseline(d)
        good = GoodClient(d.port)
        good.start()
        swarm = Swarm(d.port, 1100, [ATTACKER_ADDR], HEADER_PREFIX, HEADER_TRICKLE,
                      every=2.0, reconnect=True)
        swarm.start()
        # The default header deadline is 10 s: run past it, with the first
        # wave's held connections answered by then.
        time.sleep(12.5)
        conns = swarm.snapshot()
        swarm.stop()
        good.stop()
        a.good_check(good)
        first = conns[:1100]
        fast, late, reset, none = _refusals(first, (429,))
        a.check(fast >= 1100 - 64,
                "first wave: %d of 1100 refused with 429 at once, %d late, %d reset without "
                "an answer, %d unanswered (per-client cap 64)" % (fast, late, reset, none))
        held = [c for c in first if c.status not in (429,)]
        timed_out = [c for c in held if c.status == 408 and c.closed_at is not None]
        a.check(held and len(timed_out) == len(held),
                "held connections: %d of %d got 408 and were closed by the header deadline "
                "(10 s)" % (len(timed_out), len(held)))
        slow_408 = [c for c in timed_out if c.answered_at - c.opened > 10.0 + 2.0 * SLOW]
        a.check(not slow_408, "%d connections got their 408 more than 2 s after the 10 s "
                "deadline" % len(slow_408))
        if d.alive():
            refused = d.metric("heptapod_connections_refused_total", {"reason": "per_client"})
            timeouts = d.metric("heptapod_request_timeouts_total", {"phase": "headers"})
            a.check(refused >= fast, "connections_refused_total{per_client} %d, %d refusals seen"
                    % (refused, fast))
            a.check(timeouts >= len(timed_out), "request_timeouts_total{headers} %d, %d 408s "
                    "seen" % (timeouts, len(timed_out)))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a


def slow_headers_spread(binary):
    """1,100 slowloris connections from 38 addresses fill a 512-slot main port."""
    a = Attack("slow headers (38 addresses)")
    limit, deadline_s = 512, 2.0
    flags = ["--max-connections", str(limit), "--header-timeout-ms", "2000", "--admin-port", "0"]
    with Daemon(binary, flags) as d:
        a.check(d.admin_port, "admin listener announced ('admin listening on')")
        warm_up(d)
        base = baseline(d)
        prober = None
        if d.admin_port:
            prober = Prober(d.admin_port, ["/healthz", "/metrics"], interval=0.2)
            prober.start()
        good = GoodClient(d.port, bound=deadline_s + 3.0, retry_503=True)
        good.start()
        # The good client waits until the attacker holds every slot, so that
        # it meets the full port: refused at once, served once the header
        # deadline frees the slots.
        good.pause()
        sources = [attacker_addr(i) for i in range(38)]  # 127.0.0.3 .. 127.0.0.40
        swarm = Swarm(d.port, 1100, sources, HEADER_PREFIX, HEADER_TRICKLE, every=0.5)
        swarm.start()
        end = time.monotonic() + 1.0 * SLOW
        while time.monotonic() < end and sum(c.connected for c in swarm.snapshot()) < 1100:
            time.sleep(0.02)
        time.sleep(0.2)
        two_writes = _two_write_clients(d.port)
        good.resume()
        time.sleep(deadline_s + 3.0 * SLOW)
        conns = swarm.snapshot()
        swarm.stop()
        time.sleep(1.0)
        good.stop()
        if prober:
            prober.stop()
        a.good_check(good, "good client (retrying fast 503s)")
        slow_refusals = [s for s in good.refusals if s > FAST * SLOW]
        a.check(good.refusals, "good client met the full port: %d fast 503s before its 200s"
                % len(good.refusals))
        a.check(not slow_refusals, "good client: %d refusals took over %.1f s (max %.2f s)"
                % (len(slow_refusals), FAST * SLOW, max(good.refusals or [0])))
        fast, late, reset, none = _refusals(conns, (503, 429))
        held = [c for c in conns if c.status is not None and c.status not in (503, 429)]
        a.check(fast + reset >= len(conns) - limit and none <= limit - len(held),
                "%d of %d refused at once above the %d-connection limit (%d with 503/429, %d "
                "reset); %d late, %d never answered (left in the backlog?)"
                % (fast + reset, len(conns), limit, fast, reset, late, none))
        a.check(reset == 0, "%d refused connections read their 503/429, %d were reset "
                "instead" % (fast, reset))
        a.check(all(x == "503" for x in two_writes), "clients sending headers, then body, "
                "to the full port read: %s" % ", ".join(two_writes))
        a.check(all(_json_error(c) for c in conns if c.status in (503, 429)),
                "refusals carry a JSON error body")
        timed_out = [c for c in held if c.status == 408 and c.closed_at is not None
                     and c.answered_at - c.opened <= deadline_s + 1.5 * SLOW]
        a.check(held and len(timed_out) == len(held),
                "%d of %d held connections got 408 and were closed within %.1f s of the "
                "2 s header deadline, although bytes kept coming"
                % (len(timed_out), len(held), 1.5 * SLOW))
        if prober:
            bad = [r for r in prober.results if r[1] != 200]
            a.check(prober.results and not bad,
                    "admin listener: %d of %d probes failed (%s)"
                    % (len(bad), len(prober.results), bad[:3]))
            full = max((_gauge(b, 'heptapod_connections{listener="main"}')
                        for b in prober.bodies), default=0)
            a.check(full >= limit - 2, "heptapod_connections{listener=\"main\"} peaked at %d, "
                    "the main port never looked full (limit %d)" % (full, limit))
            if d.alive():
                refused = d.metric("heptapod_connections_refused_total", {"reason": "limit"})
                a.check(refused >= fast - 64, "connections_refused_total{limit} %d for %d "
                        "refusals seen" % (refused, fast))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a


def _gauge(body, key):
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0


def slow_bodies(binary):
    """60 POSTs that send their 1,000-byte body one byte a second."""
    a = Attack("slow bodies")
    n, deadline_s = 60, 2.0
    with Daemon(binary, ["--body-timeout-ms", "2000"]) as d:
        warm_up(d)
        base = baseline(d)
        good = GoodClient(d.port)
        good.start()
        prefix = (b"POST /generate HTTP/1.1\r\nHost: heptapod\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        swarm = Swarm(d.port, n, [ATTACKER_ADDR], prefix, b" ", every=1.0)
        swarm.start()
        time.sleep(deadline_s + 3.0 * SLOW)
        conns = swarm.snapshot()
        swarm.stop()
        good.stop()
        a.good_check(good)
        ok = [c for c in conns if c.status == 408 and c.closed_at is not None
              and c.answered_at - c.opened <= deadline_s + 2.0 * SLOW]
        codes = sorted(set(str(c.status) for c in conns))
        a.check(len(ok) == n, "%d of %d slow bodies got 408 and were closed within 2 s of the "
                "2 s body deadline (statuses: %s)" % (len(ok), n, ",".join(codes)))
        a.check(all(_json_error(c) == "request_timeout" for c in ok),
                "each 408 carries the JSON error request_timeout")
        if d.alive():
            t = d.metric("heptapod_request_timeouts_total", {"phase": "body"})
            a.check(t >= len(ok), "request_timeouts_total{body} %d, %d 408s seen"
                    % (t, len(ok)))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a
