"""flood.py - many connections, opened fast, held idle or dropped at once.

The attacker from 127.0.0.3 holds 1,000 idle connections (no byte sent)
then four threads open and close connections as fast as they can: some
close at once with a FIN, some with a reset (SO_LINGER 0), some after half
a request. The per-client cap refuses all but 64 of the idle ones at once
with 429, which the metrics count; the good client on 127.0.0.2 is served
as usual, and descriptors return to their baseline once the attacker is
gone.
"""

import threading
import time

from harness import (ATTACKER_ADDR, Attack, Daemon, GoodClient, SLOW, Swarm, baseline,
                     check_baseline, check_clean_exit, connect_from, rst_close, warm_up)

HOLD = 1000
DURATION = 6.0


class Churner(threading.Thread):
    """Opens and closes connections to port in a loop until stopped."""

    def __init__(self, port, kind):
        super().__init__(daemon=True)
        self.port = port
        self.kind = kind
        self.opened = 0
        self.errors = 0
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            try:
                s = connect_from(ATTACKER_ADDR, self.port, timeout=2.0)
            except OSError:
                self.errors += 1
                time.sleep(0.01)
                continue
            self.opened += 1
            try:
                if self.kind == "half":
                    s.sendall(b"POST /generate HTTP/1.1\r\nHost: heptapod\r\nContent-Le")
                if self.kind in ("rst", "half"):
                    rst_close(s)
                else:
                    s.close()
            except OSError:
                s.close()

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=30)


def connection_flood(binary):
    a = Attack("connection flood")
    with Daemon(binary) as d:
        warm_up(d)
        base = baseline(d)
        refused0 = d.metric("heptapod_connections_refused_total", {"reason": "per_client"})
        good = GoodClient(d.port)
        good.start()
        idle = Swarm(d.port, HOLD, [ATTACKER_ADDR], b"", b"", every=3600.0)
        idle.start()
        # The holders' refusals are timed before the churn starts: under
        # the churn they measure how fast two cores accept, not whether a
        # refusal waits in the backlog.
        time.sleep(1.5 * SLOW)
        churners = [Churner(d.port, k) for k in ("fin", "rst", "half", "rst")]
        for c in churners:
            c.start()
        time.sleep(DURATION)
        for c in churners:
            c.stop()
        conns = idle.snapshot()
        idle.stop()
        good.stop()
        a.good_check(good)
        opened = sum(c.opened for c in churners)
        a.check(opened >= 1000, "churn: %d connections opened and dropped in %.0f s "
                "(%d connect errors)" % (opened, DURATION, sum(c.errors for c in churners)))
        fast = [c for c in conns if c.status == 429 and c.answered_at - c.opened <= 1.0 * SLOW]
        a.check(len(fast) >= HOLD - 64,
                "idle holders: %d of %d refused with 429 at once (per-client cap 64); "
                "%d without an answer" % (len(fast), HOLD,
                                          sum(1 for c in conns if c.status is None)))
        if d.alive():
            refused = d.metric("heptapod_connections_refused_total",
                               {"reason": "per_client"}) - refused0
            a.check(refused >= len(fast), "connections_refused_total{per_client} rose by %d, "
                    "%d refusals seen" % (refused, len(fast)))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a
