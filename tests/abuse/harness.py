"""harness.py - the small client library the abuse tests share.

An attack runs against a daemon of its own (Daemon: started on 127.0.0.1
port 0 with the fixture model, the port read from its log line, stopped with
SIGTERM and required to exit 0). While the attacker works from 127.0.0.3
(and up), a GoodClient thread on 127.0.0.2 keeps sending a small POST
/generate and times every answer. An Attack collects named checks; a failed
check never stops the attack, so the report can say everything that went
wrong. Baseline compares the daemon's RSS and open descriptors before and
after.

Everything is standard library: sockets, threads and http.client. Clients
bind their source address before connecting, so the daemon sees the good
client and the attacker as different peers.
"""

import errno
import http.client
import json
import os
import re
import resource
import select
import selectors
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "tests", "fixtures", "byte_f32.safetensors")
HOST = "127.0.0.1"
GOOD_ADDR = "127.0.0.2"
ATTACKER_ADDR = "127.0.0.3"
SMALL_BODY = b'{"height":2,"width":8,"iterations":2,"seed":1}'

# Tolerances of the return to baseline: RSS is generous (allocator arenas,
# sanitizer shadow memory), descriptors nearly exact.
RSS_SLACK_KIB = 32 * 1024
FD_SLACK = 2

# Sanitized builds run several times slower; bounds on the daemon's answers
# are scaled by this factor (run.py sets it from HEPTAPOD_ABUSE_SLOW).
SLOW = float(os.environ.get("HEPTAPOD_ABUSE_SLOW", "1"))


def attacker_addr(i):
    """The i-th attacker source address: 127.0.0.3, 127.0.0.4, ..."""
    return "127.0.0.%d" % (3 + i)


def raise_fd_limit(want=8192):
    """Lets this process (and the daemons it starts) hold `want` descriptors
    if the hard limit allows, since the attacks open over a thousand."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- the daemon ---------------------------------------------------------------


class DaemonError(Exception):
    pass


class Daemon:
    """One `heptapod serve` on 127.0.0.1 port 0. Use as a context manager:
    leaving it kills the daemon if it still runs. With stderr_pipe the log
    goes to a pipe that only the test reads (and may stop reading)."""

    def __init__(self, binary, flags=(), stderr_pipe=False, model=MODEL, nofile=None):
        self.binary = binary
        self.flags = list(flags)
        self.stderr_pipe = stderr_pipe
        self.model = model
        self.nofile = nofile  # a hard RLIMIT_NOFILE for the daemon alone
        self.proc = None
        self.port = None
        self.admin_port = None
        self.log_path = None
        self.exit_code = None
        self._pipe_text = b""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.kill()
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    def start(self, timeout=15.0):
        args = [self.binary, "serve", "--host", HOST, "--port", "0", "--model", self.model]
        args += self.flags
        if self.stderr_pipe:
            err = subprocess.PIPE
        else:
            fd, self.log_path = tempfile.mkstemp(prefix="heptapod-abuse-", suffix=".log")
            err = fd
        env = dict(os.environ)
        # Under ASan, freed memory waits in a quarantine (256 MiB by default)
        # and then in the allocator's free lists, both of which read as RSS
        # growth; a small quarantine and a prompt return of free pages to the
        # system keep RSS meaningful. Other builds ignore the variable.
        if "quarantine_size_mb" not in env.get("ASAN_OPTIONS", ""):
            env["ASAN_OPTIONS"] = ":".join(
                x for x in (env.get("ASAN_OPTIONS", ""), "quarantine_size_mb=8",
                            "allocator_release_to_os_interval_ms=200") if x)
        limit = None
        if self.nofile:
            n = self.nofile

            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
            env=env, preexec_fn=limit)
        if not self.stderr_pipe:
            os.close(err)
        want_admin = "--admin-port" in self.flags
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self._log_so_far(0.05)
            m = re.search(r"(?<!admin )listening on http://127\.0\.0\.1:(\d+)", text)
            a = re.search(r"admin listening on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            if a:
                self.admin_port = int(a.group(1))
            if self.port and (self.admin_port or not want_admin):
                break
            if self.port and want_admin and "ready:" in text:
                break  # no admin listener in this build: the attack will say so
            if self.proc.poll() is not None:
                raise DaemonError("the daemon exited at start:\n" + text[-2000:])
        if not self.port:
            raise DaemonError("the daemon did not announce its port")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st, _, _ = http_get(self.port, "/readyz", timeout=2)
            if st == 200:
                return
            time.sleep(0.05)
        raise DaemonError("the daemon never became ready")

    def _log_so_far(self, wait):
        if self.stderr_pipe:
            fd = self.proc.stderr.fileno()
            r, _, _ = select.select([fd], [], [], wait)
            if r:
                chunk = os.read(fd, 65536)
                self._pipe_text += chunk
            return self._pipe_text.decode("utf-8", "replace")
        time.sleep(wait)
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=20):
        if self.log_path:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        """User + system CPU time the daemon has used."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def scrape_port(self):
        """Where metrics are read: the admin listener if there is one."""
        return self.admin_port or self.port

    def metrics(self, timeout=5):
        """The live scrape as {sample: value}, keyed by the sample text
        before the value, e.g. 'heptapod_connections{listener="main"}'."""
        st, body, _ = http_get(self.scrape_port(), "/metrics", timeout=timeout)
        if st != 200:
            raise DaemonError("GET /metrics answered %s" % st)
        out = {}
        for line in body.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            try:
                out[key] = float(val)
            except ValueError:
                pass
        return out

    def metric(self, name, match=None, timeout=5):
        """The sum of the samples of family `name` whose labels contain every
        'k="v"' of `match` (a dict); 0 if there is none."""
        return metric_sum(self.metrics(timeout), name, match)

    def stop(self, timeout=30):
        """SIGTERM, then waits; returns the exit code (None if it had to be
        killed)."""
        if not self.alive():
            self.exit_code = self.proc.returncode if self.proc else None
            return self.exit_code
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.kill()
            self.exit_code = None
        return self.exit_code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()


def metric_sum(samples, name, match=None):
    total = 0.0
    for key, val in samples.items():
        fam, _, labels = key.partition("{")
        if fam != name:
            continue
        if match and not all('%s="%s"' % kv in labels for kv in match.items()):
            continue
        total += val
    return total


def served_generations(d):
    """Generations that reached the engine plus /generate answers of 200:
    what must not move when a request is refused."""
    m = d.metrics()
    return metric_sum(m, "heptapod_generations_total") + metric_sum(
        m, "heptapod_http_requests_total", {"endpoint": "/generate", "status": "200"}
    )


# --- plain clients ------------------------------------------------------------


def _conn(port, source, timeout):
    return http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=(source, 0))


def http_get(port, path, source=GOOD_ADDR, timeout=5):
    """(status or None, body, seconds) of one GET on a fresh connection."""
    t0 = time.monotonic()
    c = _conn(port, source, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body, time.monotonic() - t0
    except (OSError, http.client.HTTPException):
        return None, b"", time.monotonic() - t0
    finally:
        c.close()


def http_post(port, body, source=GOOD_ADDR, timeout=5, path="/generate",
              ctype="application/json"):
    """(status or None, headers dict, body, seconds) of one POST on a fresh
    connection."""
    t0 = time.monotonic()
    c = _conn(port, source, timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data, \
            time.monotonic() - t0
    except (OSError, http.client.HTTPException) as e:
        return None, {}, e.__class__.__name__.encode(), time.monotonic() - t0
    finally:
        c.close()


def connect_from(source, port, timeout=5.0, linger0=False):
    """A blocking TCP socket to the daemon from a chosen source address."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if linger0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((HOST, port))
    return s


def rst_close(s):
    """Closes with a reset (SO_LINGER 0) instead of a FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    s.close()


class Raw:
    """What one raw exchange produced: every byte read, whether the daemon
    closed the connection (EOF or reset) and how long that took."""

    def __init__(self, data, closed, seconds, error=None):
        self.data = data
        self.closed = closed
        self.seconds = seconds
        self.error = error

    def status_lines(self):
        return re.findall(rb"HTTP/1\.[01] (\d{3})", self.data)

    def status(self):
        m = re.match(rb"HTTP/1\.[01] (\d{3})", self.data)
        return int(m.group(1)) if m else None

    def body(self):
        _, _, b = self.data.partition(b"\r\n\r\n")
        return b

    def json_error(self):
        """The error code of a JSON error body, or None."""
        try:
            return json.loads(self.body().decode("utf-8"))["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


def raw_exchange(port, data, source=ATTACKER_ADDR, wait=3.0, done=None):
    """Sends `data` verbatim, then reads until the daemon closes, `wait`
    seconds pass, or done(bytes read so far) is true."""
    t0 = time.monotonic()
    try:
        s = connect_from(source, port, timeout=wait)
    except OSError as e:
        return Raw(b"", False, time.monotonic() - t0, "connect: %s" % e)
    out, closed, error = b"", False, None
    try:
        s.sendall(data)
        end = t0 + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            out += chunk
            if done and done(out):
                break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    except OSError as e:
        error = str(e)
    finally:
        s.close()
    return Raw(out, closed, time.monotonic() - t0, error)


# --- the good client ----------------------------------------------------------


class GoodClient(threading.Thread):
    """Sends SMALL_BODY to POST /generate from 127.0.0.2, one fresh
    connection at a time, until stopped. An answer counts as good if it is a
    200 within `bound` seconds. With retry_503, a fast 503 (the connection
    limit) is retried until the bound: the request is good if a 200 comes
    within the bound, counting from its first attempt."""

    def __init__(self, port, bound=5.0, interval=0.1, retry_503=False):
        super().__init__(daemon=True)
        self.port = port
        self.bound = bound * SLOW
        self.interval = interval
        self.retry_503 = retry_503
        self.results = []  # (start, seconds, status or error name, attempts)
        self.refusals = []  # seconds each 503/429 took to arrive
        self._stop_ev = threading.Event()
        self._mu = threading.Lock()
        self._go = threading.Event()
        self._go.set()
        self._busy = threading.Lock()

    def pause(self):
        """Returns once no request is in flight; none starts until resume."""
        self._go.clear()
        with self._busy:
            pass

    def resume(self):
        self._go.set()

    def run(self):
        while not self._stop_ev.is_set():
            if not self._go.wait(0.1):
                continue
            with self._busy:
                if self._go.is_set():
                    self._one()
            self._stop_ev.wait(self.interval)

    def _one(self):
        t0 = time.monotonic()
        status, attempts = None, 0
        while True:
            attempts += 1
            left = self.bound - (time.monotonic() - t0)
            st, _, body, secs = http_post(self.port, SMALL_BODY, timeout=max(left, 0.1) + 1)
            status = st if st is not None else body.decode()  # the error, e.g. timeout
            if st in (429, 503):
                with self._mu:
                    self.refusals.append(secs)
            if not (self.retry_503 and st == 503):
                break
            if time.monotonic() - t0 >= self.bound or self._stop_ev.is_set():
                break
            time.sleep(0.05)
        with self._mu:
            self.results.append((t0, time.monotonic() - t0, status, attempts))

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=30)

    def stats(self):
        """(requests, good, p50 seconds, max seconds, statuses seen)."""
        return merged_stats([self])


def merged_stats(clients):
    """GoodClient.stats over several clients (e.g. one per daemon)."""
    res = []
    for c in clients:
        with c._mu:
            res += [r + (c.bound,) for r in c.results]
    lat = [r[1] for r in res]
    good = sum(1 for r in res if r[2] == 200 and r[1] <= r[4])
    seen = {}
    for r in res:
        seen[r[2]] = seen.get(r[2], 0) + 1
    p50 = statistics.median(lat) if lat else 0.0
    return len(res), good, p50, max(lat) if lat else 0.0, seen


class Prober(threading.Thread):
    """GETs each path in turn from 127.0.0.2 every `interval` s and records
    (path, status, seconds): the admin listener's probes and scrapes."""

    def __init__(self, port, paths, interval=0.2, timeout=5.0):
        super().__init__(daemon=True)
        self.port = port
        self.paths = paths
        self.interval = interval
        self.timeout = timeout * SLOW
        self.results = []
        self.bodies = []
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            for p in self.paths:
                st, body, secs = http_get(self.port, p, timeout=self.timeout)
                self.results.append((p, st, secs))
                if p == "/metrics" and st == 200:
                    self.bodies.append(body)
            self._stop_ev.wait(self.interval)

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=30)


# --- results ------------------------------------------------------------------


class Attack:
    """The checks of one attack and its good client's figures."""

    def __init__(self, name):
        self.name = name
        self.checks = []  # (ok, message)
        self.good = None  # GoodClient.stats()
        self.died = False
        self.notes = []

    def check(self, ok, msg):
        self.checks.append((bool(ok), msg))
        return ok

    def note(self, msg):
        """Something printed, not asserted (e.g. a shape the proxy owns)."""
        self.notes.append(msg)

    def failed(self):
        return self.died or any(not ok for ok, _ in self.checks)

    def outcome(self):
        if self.died:
            return "daemon died"
        bad = [m for ok, m in self.checks if not ok]
        if not bad:
            return "ok"
        more = " (+%d more)" % (len(bad) - 2) if len(bad) > 2 else ""
        return "; ".join(bad[:2]) + more

    def good_check(self, clients, what="good client"):
        """Every good request answered 200 within its bound (clients: one
        GoodClient or a list)."""
        st = merged_stats(clients if isinstance(clients, list) else [clients])
        self.good = st
        n, good, p50, mx, seen = st
        self.check(n > 0, "%s sent %d requests" % (what, n))
        self.check(
            good == n,
            "%s %d/%d ok (statuses %s), p50 %.2f s, max %.2f s"
            % (what, good, n, _fmt_seen(seen), p50, mx),
        )


def _fmt_seen(seen):
    return ",".join("%s:%d" % kv for kv in sorted(seen.items(), key=lambda kv: str(kv[0])))


def baseline(d):
    """(RSS KiB, descriptors) of a daemon at rest."""
    return d.rss_kib(), d.fds()


def check_baseline(a, d, base, settle=8.0):
    """Waits up to `settle` s for RSS and descriptors to return to `base`."""
    rss0, fd0 = base
    end = time.monotonic() + settle * SLOW
    rss, fds = rss0, fd0
    while d.alive():
        rss, fds = d.rss_kib(), d.fds()
        if rss <= rss0 + RSS_SLACK_KIB and fds <= fd0 + FD_SLACK:
            break
        if time.monotonic() >= end:
            break
        time.sleep(0.2)
    if not a.check(d.alive(), "daemon alive after the attack"):
        a.died = True
        return
    a.check(fds <= fd0 + FD_SLACK, "descriptors %d (baseline %d, slack %d)" % (fds, fd0, FD_SLACK))
    a.check(rss <= rss0 + RSS_SLACK_KIB, "RSS %d KiB (baseline %d KiB, slack %d KiB)"
            % (rss, rss0, RSS_SLACK_KIB))


def check_clean_exit(a, d):
    """SIGTERM drains and exits 0 (under ASan: no leak either)."""
    if not d.alive():
        a.died = True
        a.check(False, "the daemon died (exit %s)" % d.proc.returncode)
        return
    code = d.stop()
    a.check(code == 0, "exit code %s after SIGTERM" % code)


def warm_up(d, n=5):
    """A few small requests, so the baseline includes a served request's
    allocations (thread pools, arenas)."""
    for _ in range(n):
        http_post(d.port, SMALL_BODY, timeout=10 * SLOW)
        http_get(d.port, "/metrics")


def nonblocking_connect(source, port, linger0=False):
    """A non-blocking socket whose connect to the daemon is under way."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    if linger0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.bind((source, 0))
    rc = s.connect_ex((HOST, port))
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(rc, os.strerror(rc))
    return s


# --- many attacker connections --------------------------------------------------


class Conn:
    """One attacker connection of a Swarm and what became of it."""

    __slots__ = ("sock", "source", "opened", "connected", "sent", "data", "closed_at",
                 "answered_at", "status")

    def __init__(self, sock, source, opened):
        self.sock = sock
        self.source = source
        self.opened = opened
        self.connected = False
        self.sent = 0
        self.data = b""
        self.closed_at = None
        self.answered_at = None
        self.status = None


class Swarm(threading.Thread):
    """n attacker connections, spread round-robin over `sources`, driven by
    one thread: each sends `prefix` once connected, then one byte of
    `trickle` (cycled) every `every` seconds, and never finishes its
    request. What the daemon answers, and when it closes, is recorded per
    connection. With reconnect, a connection the daemon closed is replaced
    at the next tick, as a real slowloris does."""

    def __init__(self, port, n, sources, prefix, trickle, every=1.0, reconnect=False):
        super().__init__(daemon=True)
        self.port = port
        self.n = n
        self.sources = sources
        self.prefix = prefix
        self.trickle = trickle
        self.every = every
        self.reconnect = reconnect
        self.conns = []  # every connection ever opened, in order
        self.open_errors = 0
        self.started = None
        self._stop_ev = threading.Event()
        self._mu = threading.Lock()
        self._sel = None
        self._next_src = 0

    def _open(self, now):
        src = self.sources[self._next_src % len(self.sources)]
        self._next_src += 1
        try:
            s = nonblocking_connect(src, self.port)
        except OSError:
            self.open_errors += 1
            return
        c = Conn(s, src, now)
        with self._mu:
            self.conns.append(c)
        self._sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def _close(self, c, now):
        if c.closed_at is not None:
            return
        c.closed_at = now
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _send(self, c, data):
        try:
            n = c.sock.send(data)
            c.sent += n
        except BlockingIOError:
            pass
        except OSError:
            self._read(c, time.monotonic())  # whatever arrived before the reset
            self._close(c, time.monotonic())

    def _read(self, c, now):
        """Reads what is there; returns False once the peer closed."""
        try:
            chunk = c.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            return False
        if c.answered_at is None:
            c.answered_at = now
        c.data += chunk
        if c.status is None:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", c.data)
            if m:
                c.status = int(m.group(1))
        return True

    def run(self):
        self._sel = selectors.DefaultSelector()
        self.started = time.monotonic()
        for _ in range(self.n):
            self._open(time.monotonic())
        next_tick = self.started + self.every
        pos = 0
        while not self._stop_ev.is_set():
            timeout = max(0.0, min(0.05, next_tick - time.monotonic()))
            events = self._sel.select(timeout) if self._sel.get_map() else []
            if not events:
                time.sleep(timeout)
            now = time.monotonic()
            for key, mask in events:
                c = key.data
                if mask & selectors.EVENT_WRITE and not c.connected:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._close(c, now)
                        continue
                    c.connected = True
                    self._sel.modify(c.sock, selectors.EVENT_READ, c)
                    self._send(c, self.prefix)
                    continue
                if mask & selectors.EVENT_READ and not self._read(c, now):
                    self._close(c, now)
            if now >= next_tick:
                next_tick = now + self.every
                i = pos % max(len(self.trickle), 1)
                byte = self.trickle[i:i + 1]
                pos += 1
                live = 0
                for key in list(self._sel.get_map().values()):
                    c = key.data
                    live += 1
                    if byte and c.connected and c.closed_at is None:
                        self._send(c, byte)
                if self.reconnect:
                    for _ in range(self.n - live):
                        self._open(now)
        for key in list(self._sel.get_map().values()):
            key.data.sock.close()
        self._sel.close()

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=30)

    def snapshot(self):
        with self._mu:
            return list(self.conns)

