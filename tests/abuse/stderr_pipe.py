"""stderr_pipe.py - a log reader that stops reading.

The daemon's stderr is a pipe that the test stops reading once the
daemon announced its port (as when a log collector hangs). The access log
goes there too, so 2,000 requests write far more than the pipe holds
(64 KiB) and the daemon's log buffer (set to 16 KiB) together. The event
loop must never block on it: the requests, the good client and /healthz
keep being answered, the lines that could not be written are counted in a
metric, and once the pipe is drained logging resumes.
"""

import http.client
import os
import re
import threading
import time

from harness import (ATTACKER_ADDR, HOST, SLOW, SMALL_BODY, Attack, Daemon, DaemonError,
                     GoodClient, Prober, baseline, check_baseline, check_clean_exit, warm_up)

REQUESTS = 2000


def _load(port, n, bound):
    """n requests on keep-alive connections from 127.0.0.3, alternating
    GET /healthz and a small POST /generate. Stops at the first failure
    (a frozen loop would make each of the rest wait out its timeout).
    Returns (answered 200 in time, sent)."""
    ok = sent = 0
    conn = None
    for i in range(n):
        if conn is None:
            conn = http.client.HTTPConnection(HOST, port, timeout=bound,
                                              source_address=(ATTACKER_ADDR, 0))
        t0 = time.monotonic()
        sent += 1
        try:
            if i % 2:
                conn.request("POST", "/generate", body=SMALL_BODY,
                             headers={"Content-Type": "application/json"})
            else:
                conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            good = r.status == 200 and time.monotonic() - t0 <= bound
        except (OSError, http.client.HTTPException):
            good = False
            conn.close()
            conn = None
        ok += good
        if not good:
            break
    if conn:
        conn.close()
    return ok, sent


class Drainer(threading.Thread):
    """Reads the daemon's stderr pipe to its end, keeping what it read."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.text = b""
        self._mu = threading.Lock()

    def run(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self._mu:
                self.text += chunk

    def has(self, needle):
        with self._mu:
            return needle in self.text


def full_stderr_pipe(binary):
    a = Attack("full stderr pipe")
    # A small log buffer, so that the 2,000 requests' lines overflow it.
    with Daemon(binary, ["--log-buffer-bytes", "16384"], stderr_pipe=True) as d:
        warm_up(d)
        base = baseline(d)
        good = GoodClient(d.port, interval=0.2)
        probe = Prober(d.port, ["/healthz"], interval=0.2)
        good.start()
        probe.start()
        ok, sent = _load(d.port, REQUESTS, 5.0 * SLOW)
        good.stop()
        probe.stop()
        a.good_check(good)
        a.check(ok == REQUESTS, "%d of %d requests answered 200 within %.0f s with stderr "
                "unread (sent %d)" % (ok, REQUESTS, 5.0 * SLOW, sent))
        bad = [r for r in probe.results if r[1] != 200]
        a.check(probe.results and not bad, "/healthz: %d of %d probes failed"
                % (len(bad), len(probe.results)))
        dropped = None
        try:
            m = d.metrics(timeout=5.0 * SLOW)
        except DaemonError as e:
            m = None
            a.check(False, "metrics while stderr is full: %s" % e)
        if m is not None:
            names = [k for k in m if re.search(r"log\w*drop|drop\w*log", k.split("{")[0])]
            dropped = sum(m[k] for k in names)
            a.check(names and dropped > 0, "log lines dropped and counted: %s"
                    % (", ".join("%s %g" % (k, m[k]) for k in names) or "no such metric"))
        drain = Drainer(d.proc.stderr.fileno())
        drain.start()
        time.sleep(0.5)
        rid = "after-drain-%d" % os.getpid()
        c = http.client.HTTPConnection(HOST, d.port, timeout=5.0 * SLOW)
        try:
            c.request("GET", "/healthz", headers={"X-Request-Id": rid})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            c.close()
        end = time.monotonic() + 3.0 * SLOW
        while not drain.has(rid.encode()) and time.monotonic() < end:
            time.sleep(0.05)
        a.check(drain.has(rid.encode()), "logging resumed once the pipe was drained")
        check_baseline(a, d, base)
        check_clean_exit(a, d)
        drain.join(timeout=5)
    return a
