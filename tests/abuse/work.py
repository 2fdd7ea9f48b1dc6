"""work.py - cheap requests that buy minutes of work.

The attacker on 127.0.0.3 keeps 20 requests of the largest grid the model
allows (32x128 cells, 64 iterations: about a second each on two cores)
in flight for 8 s, sending a new one whenever one is answered. Admission
counts work and shares it between clients round-robin, so the good
client's small request on 127.0.0.2 is not queued behind the attacker's
backlog: it is answered 200 within the usual bound. What the attacker gets
when the queue is full is a 429 with a Retry-After of at least a second.
"""

import re
import socket
import threading
import time

from harness import (ATTACKER_ADDR, Attack, Daemon, GoodClient, baseline, check_baseline,
                     check_clean_exit, connect_from, warm_up)

BIG = b'{"height":32,"width":128,"iterations":64,"seed":%d}'
IN_FLIGHT = 20
DURATION = 8.0


class Hog(threading.Thread):
    """Sends BIG requests back to back until stopped, then drops the one
    in flight (the daemon cancels it); records each status and the
    Retry-After of each 429."""

    def __init__(self, port, seed):
        super().__init__(daemon=True)
        self.port = port
        self.seed = seed
        self.statuses = {}
        self.retry_after = []
        self._stop_ev = threading.Event()

    def _one(self, n):
        body = BIG % (self.seed * 1000 + n)
        req = (b"POST /generate HTTP/1.1\r\nHost: heptapod\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        try:
            s = connect_from(ATTACKER_ADDR, self.port)
            s.sendall(req)
            s.settimeout(0.1)
        except OSError:
            return "connect failed", None
        data = b""
        try:
            while not self._stop_ev.is_set():
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        if not m:
            return ("dropped" if self._stop_ev.is_set() else "no answer"), None
        r = re.search(rb"(?im)^retry-after:\s*(\S+)", data)
        return int(m.group(1)), r.group(1).decode() if r else None

    def run(self):
        n = 0
        while not self._stop_ev.is_set():
            n += 1
            st, retry = self._one(n)
            self.statuses[st] = self.statuses.get(st, 0) + 1
            if st == 429:
                self.retry_after.append(retry)
                self._stop_ev.wait(0.2)

    def stop(self):
        self._stop_ev.set()


def work_flood(binary):
    a = Attack("expensive requests")
    with Daemon(binary) as d:
        warm_up(d)
        base = baseline(d)
        hogs = [Hog(d.port, i) for i in range(IN_FLIGHT)]
        for h in hogs:
            h.start()
        time.sleep(1.0)  # the attacker's backlog first, then the good client
        good = GoodClient(d.port, interval=0.2)
        good.start()
        time.sleep(DURATION)
        good.stop()
        for h in hogs:
            h.stop()
        a.good_check(good)
        statuses, retry = {}, []
        for h in hogs:
            h.join(timeout=60)
            retry += h.retry_after
            for k, v in h.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        a.note("attacker statuses: %s" % ", ".join("%s: %d" % kv for kv in sorted(
            statuses.items(), key=lambda kv: str(kv[0]))))
        bad_retry = [r for r in retry if not (r and r.isdigit() and int(r) >= 1)]
        a.check(not bad_retry, "%d of the attacker's 429s without a Retry-After >= 1 s (%s)"
                % (len(bad_retry), ", ".join(sorted(set(str(r) for r in bad_retry)))[:80]))
        if retry:
            a.note("Retry-After values: %s" % ", ".join(sorted(set(retry), key=str)[:10]))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a
