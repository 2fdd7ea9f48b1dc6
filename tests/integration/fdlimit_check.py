"""fdlimit_check.py BIN - the daemon at its descriptor limit (test_server_fdlimit.sh).

The daemon runs with a hard RLIMIT_NOFILE of 200 and --max-connections 190,
so that accepting runs out of descriptors before the connection limit is
reached. 300 clients connect and stay. Checks: the ones beyond what the
descriptors allow get an immediate 503 rather than a hang; the loop does not
spin on the still-readable listener (the daemon's CPU time while they hold
on); once they leave, a new client is served; the out-of-descriptors
warning is logged without flooding; SIGTERM exits 0. Exit status: failures.
"""
import os
import re
import socket
import subprocess
import sys
import time

BIN = sys.argv[1]
failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    failures += not cond


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


d = subprocess.Popen(["sh", "-c", 'ulimit -n 200 && exec "$0" serve --host 127.0.0.1 --port 0 '
                      "--model tests/fixtures/byte_f32.safetensors --max-connections 190 "
                      "--max-connections-per-client 0 --access-log ''", BIN],
                     stderr=subprocess.PIPE)
port, end = None, time.time() + 20
while port is None and time.time() < end:
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", d.stderr.readline().decode())
    port = int(m.group(1)) if m else None
if port is None:
    print("FAIL: the daemon did not start")
    d.kill()
    sys.exit(1)
time.sleep(0.3)

held = []
for _ in range(300):
    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
time.sleep(0.5)
c0 = cpu_seconds(d.pid)
time.sleep(3)
spent = cpu_seconds(d.pid) - c0
answered = 0
for s in held:
    s.setblocking(False)
    try:
        answered += s.recv(64).startswith(b"HTTP/1.1 503")
    except OSError:
        pass
fds = len(os.listdir("/proc/%d/fd" % d.pid))
check(answered >= 50, "%d of 300 got an immediate 503 at the descriptor limit" % answered)
check(spent < 0.5, "the loop idles while the listener stays readable (%.2f s of CPU in 3 s)" % spent)
check(fds <= 200, "descriptors within the limit (%d)" % fds)
for s in held:
    s.close()
time.sleep(1.5)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
check(s.recv(64).startswith(b"HTTP/1.1 200"), "served again once the clients left")
s.close()
d.terminate()
code = d.wait(timeout=30)
log = d.stderr.read().decode()
warned = log.count("out of descriptors")
check(1 <= warned <= 10, "the out-of-descriptors warning logged %d time(s)" % warned)
check(code == 0, "exit code %s after SIGTERM" % code)
sys.exit(failures)
