#!/bin/sh
# test_server_logpipe.sh - a stderr that nobody reads never freezes the
# daemon. The daemon's stderr is a pipe (one page of kernel buffer) that the
# test holds open without reading, with the access log on stderr and a
# small log buffer: 2000 requests are all served, /healthz keeps answering
# fast throughout, the lines that did not fit are counted in
# heptapod_log_lines_dropped_total; once the pipe is drained new lines
# arrive again; and SIGTERM with the pipe stuck again still exits promptly
# (the log flush at exit is bounded). An access log to a file has a buffer
# and counters of its own.
set -eu
. tests/integration/server_lib.sh

"$PY" - "$BIN" "$MODEL" <<'EOF' || fail "see above"
import fcntl, http.client, os, re, select, signal, subprocess, sys, time

BIN, MODEL = sys.argv[1], sys.argv[2]
F_SETPIPE_SZ = 1031
failed = 0


def check(what, cond, detail=""):
    global failed
    if cond:
        print("ok:", what)
    else:
        failed += 1
        print("FAIL:", what, detail)


r, w = os.pipe()
fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
proc = subprocess.Popen(
    [BIN, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "0",
     "--log-buffer-bytes", "16384", "--access-log", "-"],
    stdout=subprocess.DEVNULL, stderr=w)
os.close(w)


def read_pipe(timeout):
    """What the pipe holds within timeout seconds (without blocking longer)."""
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([r], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
        if len(chunk) < 65536:
            timeout = 0.05  # drained: stop soon
            end = min(end, time.monotonic() + timeout)
    return out


try:
    # The port comes from the first lines; after that nobody reads the pipe.
    log, port = b"", None
    end = time.monotonic() + 15
    while port is None and time.monotonic() < end:
        log += read_pipe(0.2)
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log)
        port = int(m.group(1)) if m else None
    if port is None:
        print(log.decode(errors="replace"))
        sys.exit("FAIL: the server did not start")

    def request(method, path, body=None, headers=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t0 = time.monotonic()
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        data = resp.read()
        if conn is None:
            c.close()
        return resp.status, data, time.monotonic() - t0

    while request("GET", "/readyz")[0] != 200:
        time.sleep(0.05)

    gen = b'{"height":2,"width":3,"iterations":2,"seed":1}'
    hdr = {"Content-Type": "application/json"}
    served, worst_health, t_start = 0, 0.0, time.monotonic()
    keep = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(2000):
            if i % 2:
                st = request("POST", "/generate", gen, hdr, keep)[0]
            else:
                st = request("GET", "/healthz", conn=keep)[0]
            served += st == 200
            if i % 50 == 0:  # a probe on a fresh connection, as a load balancer's
                st, _, took = request("GET", "/healthz")
                worst_health = max(worst_health, took if st == 200 else 99)
    except OSError as e:  # a frozen daemon: the client's timeout
        print(f"request {served + 1} failed: {e!r}")
        worst_health = 99
    keep.close()
    elapsed = time.monotonic() - t_start
    print(f"{served} of 2000 requests served in {elapsed:.2f} s with stderr blocked; "
          f"slowest /healthz probe {worst_health * 1000:.1f} ms")
    check("every request served while stderr was blocked", served == 2000, f"{served}/2000")
    check("/healthz answered within 1 s throughout", worst_health < 1.0, f"{worst_health:.3f} s")

    st, metrics, _ = request("GET", "/metrics")
    m = re.search(rb'^heptapod_log_lines_dropped_total\{log="stderr"\} (\S+)$', metrics, re.M)
    dropped = float(m.group(1)) if m else 0
    m = re.search(rb'^heptapod_log_lines_written_total\{log="stderr"\} (\S+)$', metrics, re.M)
    written = float(m.group(1)) if m else 0
    print(f"log lines written {written:.0f}, dropped {dropped:.0f}")
    check("dropped lines counted", dropped > 0, f"dropped={dropped}")
    check("lines written counted", written > 0, f"written={written}")

    # Drain the pipe: lines flow again, whole, and new ones arrive.
    old = read_pipe(2.0)
    bad = [l for l in old.split(b"\n")[:-1] if not (l.startswith(b"{") and l.endswith(b"}"))]
    check("every line read is whole", not bad, repr(bad[:2]))
    request("GET", "/healthz", headers={"X-Request-Id": "after-drain-1"})
    fresh = b""
    end = time.monotonic() + 5
    while b"after-drain-1" not in fresh and time.monotonic() < end:
        fresh += read_pipe(0.2)
    check("new lines arrive once the pipe is drained", b"after-drain-1" in fresh)

    # Stuck again, then SIGTERM: the exit does not wait on the reader.
    for i in range(600):
        request("GET", "/healthz")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - t0
    print(f"exit with stderr stuck took {took:.2f} s")
    check("exits with stderr stuck", code == 0, f"code={code}")
    check("the exit is bounded (< 5 s)", took < 5.0, f"{took:.2f} s")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    os.close(r)
sys.exit(1 if failed else 0)
EOF

# --- the access log to a file goes through a buffer of its own --------------
start_server --access-log "$TMP/access.log"
i=0
while [ $i -lt 20 ]; do
    curl -s -o /dev/null -H "X-Request-Id: file-line-$i" "$URL/healthz"
    i=$((i + 1))
done
wait_for '[ "$(grep -c "\"request_id\":\"file-line-" "$TMP/access.log")" -eq 20 ]' 5 &&
    ok "20 access lines in the file" || fail "access lines in the file: $(grep -c file-line- "$TMP/access.log")"
grep -q '"msg":"access"' "$TMP/server.log" && fail "access lines on stderr too" || ok "none on stderr"
written=$(metric 'heptapod_log_lines_written_total{log="access_log"}')
[ "${written%.*}" -ge 20 ] && ok "written lines of the file counted ($written)" || fail "access_log written: $written"
expect "no access line dropped" "$(metric 'heptapod_log_lines_dropped_total{log="access_log"}')" 0
stop_server
expect "exit code" "$STOP_CODE" 0

finish
