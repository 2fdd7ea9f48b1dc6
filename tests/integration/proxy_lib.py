"""proxy_lib.py - what tests/integration/proxies.py runs its checks with:
processes it must not leave behind, HTTP on new connections and raw sockets,
heptapod replicas started with the settings of deploy/heptapod.service, and
HAProxy and nginx started from the shipped configs of deploy/ with only
addresses and ports rewritten (a temporary copy; nginx as one foreground
process with every path in the temporary directory, HAProxy in the
foreground). Failures are counted in `failures`; every process started is
killed by cleanup().
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("HEPTAPOD_BIN") or sys.exit("set HEPTAPOD_BIN to the heptapod binary")
MODEL = "models/default.safetensors"

failures = []
procs = []  # every process started, killed in cleanup()
TMP = tempfile.mkdtemp(prefix="heptapod-proxies.")


def ok(msg):
    print("ok: " + msg, flush=True)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def check(cond, msg, why=""):
    (ok if cond else fail)(msg + ("" if cond or not why else ": " + str(why)))
    return cond


def note(msg):
    print("   " + msg, flush=True)


# --- processes ------------------------------------------------------------------


def spawn(argv, log, env=None):
    """Starts argv with stdout and stderr into TMP/log; registered for cleanup."""
    out = open(os.path.join(TMP, log), "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         env=env)
    out.close()
    procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait_s=5):
    """Sends sig, waits up to wait_s, then SIGKILL; forgets the process."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(wait_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)


def cleanup():
    for p in list(procs):
        stop(p, signal.SIGKILL)
    shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, frame):
    sys.exit(128 + signum)


def free_port():
    """A port nothing listens on now (for the proxies, whose configs need one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, seconds, step=0.05):
    """Polls cond() until it holds or the time runs out; its last value."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --- HTTP -----------------------------------------------------------------------


def request(port, method, path, body=None, headers=None, source=None, timeout=10):
    """One request on a new connection: (status, body bytes), or (0, error text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        h = dict(headers or {})
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e).encode()
    finally:
        c.close()


def raw_exchange(port, data, wait_s=3.0):
    """Sends raw bytes, reads until the peer closes or wait_s passes:
    (bytes received, whether the connection was closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    got, closed = b"", False
    try:
        s.sendall(data)
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return got, closed


def statuses(raw):
    """Status codes of the HTTP responses in a raw byte stream, in order."""
    return [int(m) for m in re.findall(rb"(?:^|\r?\n)HTTP/1\.[01] (\d{3}) ", raw)]


# The error code of the daemon's JSON error shape for each status a proxy
# answers itself (proto/openapi.json, Error).
ERROR_CODES = {400: "bad_request", 404: "not_found", 408: "request_timeout",
               413: "payload_too_large", 429: "overloaded", 501: "not_implemented",
               502: "unavailable", 503: "unavailable", 504: "deadline_exceeded"}


def error_code(body):
    """error.code of a JSON error body, or what was found instead."""
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "not a JSON error: %r" % body[:60]


def check_json_error(name, what, status, body):
    """A proxy's own error answer has the daemon's JSON shape and code."""
    want = ERROR_CODES.get(status)
    check(want and error_code(body) == want, "%s: %s: JSON error %s" % (name, what, want),
          error_code(body))


# --- replicas -------------------------------------------------------------------


def unit_env():
    """The HEPTAPOD_* settings deploy/heptapod.service gives the daemon."""
    env = {}
    for m in re.finditer(r"^Environment=(HEPTAPOD_\w+)=(\S*)$",
                         open("deploy/heptapod.service").read(), re.M):
        env[m.group(1)] = m.group(2)
    return env


class Replica:
    def __init__(self, name):
        self.name = name
        self.access = os.path.join(TMP, name + ".access.log")
        env = dict(os.environ)
        env.update(unit_env())
        # Addresses, threads and the model come from the flags below.
        self.proc = spawn([BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port",
                           "0", "--threads", "1", "--model", MODEL, "--access-log", self.access],
                          name + ".log", env)
        self.log = os.path.join(TMP, name + ".log")
        self.port = self.admin = None
        wait_until(self._parse_ports, 15)
        if not self.port or not self.admin:
            raise RuntimeError("%s did not start with an admin listener:\n%s" %
                               (name, open(self.log, errors="replace").read()[-2000:]))
        if not wait_until(lambda: request(self.admin, "GET", "/readyz")[0] == 200, 15):
            raise RuntimeError("%s never became ready" % name)

    def _parse_ports(self):
        for line in open(self.log, errors="replace"):
            try:
                msg = json.loads(line).get("msg", "")
            except ValueError:
                continue
            m = re.match(r"(admin )?listening on http://127\.0\.0\.1:(\d+)", msg)
            if m and m.group(1):
                self.admin = int(m.group(2))
            elif m:
                self.port = int(m.group(2))
        return (self.port and self.admin) or self.proc.poll() is not None

    def alive(self):
        return self.proc.poll() is None

    def fds(self):
        """Open descriptors of the process (listeners, model, logs, connections)."""
        try:
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))
        except OSError:
            return -1

    def connections(self):
        """The heptapod_connections{listener="main"} gauge, or None if not exported."""
        st, body = request(self.admin, "GET", "/metrics", timeout=5)
        m = re.search(rb'^heptapod_connections\{listener="main"\} (\S+)$', body, re.M)
        return float(m.group(1)) if st == 200 and m else None

    def access_ids(self):
        """Request ids of the access log's lines."""
        ids = []
        try:
            for line in open(self.access, errors="replace"):
                try:
                    ids.append(json.loads(line).get("request_id"))
                except ValueError:
                    pass
        except OSError:
            pass
        return ids


# --- proxies --------------------------------------------------------------------


def rewrite_servers(text, pattern, replicas, make):
    """Replaces the i-th line matching pattern by make(match, replicas[i])."""
    lines, i = [], 0
    for line in text.splitlines(keepends=True):
        m = re.match(pattern, line)
        if m:
            if i < len(replicas):
                lines.append(make(m, replicas[i]))
            i += 1
        else:
            lines.append(line)
    if i != len(replicas):
        raise RuntimeError("config lists %d replicas, the test runs %d" % (i, len(replicas)))
    return "".join(lines)


def start_haproxy(port, replicas):
    cfg = open("deploy/haproxy.cfg").read()
    cfg = cfg.replace("    bind :8080\n", "    bind 127.0.0.1:%d\n" % port)
    cfg = rewrite_servers(
        cfg, r"^(\s*server \S+ )\S+:8080( .*\bcheck port )8081\b(.*\n)$", replicas,
        lambda m, r: "%s127.0.0.1:%d%s%d%s" % (m.group(1), r.port, m.group(2), r.admin, m.group(3)))
    path = os.path.join(TMP, "haproxy.cfg")
    open(path, "w").write(cfg)
    p = spawn(["haproxy", "-db", "-f", path], "haproxy.log")
    return p


def start_nginx(port, replicas):
    snippet = open("deploy/nginx.conf").read()
    snippet = snippet.replace("    listen 80;\n", "    listen 127.0.0.1:%d;\n" % port)
    snippet = snippet.replace("    listen [::]:80;\n", "")
    snippet = rewrite_servers(
        snippet, r"^(\s*server )\S+:8080( .*\n)$", replicas,
        lambda m, r: "%s127.0.0.1:%d%s" % (m.group(1), r.port, m.group(2)))
    inc = os.path.join(TMP, "nginx-heptapod.conf")
    open(inc, "w").write(snippet)
    main = os.path.join(TMP, "nginx.conf")
    paths = "".join("    %s_temp_path %s/nginx-%s;\n" % (k, TMP, k)
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    open(main, "w").write(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        "pid %s/nginx.pid;\nerror_log %s/nginx-error.log info;\n"
        "events { worker_connections 4096; }\n"
        "http {\n    access_log %s/nginx-access.log;\n%s    include %s;\n}\n"
        % (TMP, TMP, TMP, paths, inc))
    return spawn(["nginx", "-p", TMP, "-c", main], "nginx.log")
