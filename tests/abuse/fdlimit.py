"""fdlimit.py - a daemon that runs out of descriptors before connections.

The daemon runs with a hard RLIMIT_NOFILE of 200 and --max-connections 190
(above what 200 descriptors allow beside its own files), so accepting hits
EMFILE before the connection limit. The attacker from 127.0.0.3 opens 300
connections and holds them. Those beyond what the descriptors allow get an
immediate 503 (through the reserved descriptor) rather than a hang; the loop
does not spin on the listener that stays readable (the daemon's CPU time
while they hold on); the warning is logged without flooding; once they
leave, the good client is served, descriptors return to their baseline and
SIGTERM exits 0.
"""

import time

from harness import (ATTACKER_ADDR, Attack, Daemon, GoodClient, SLOW, baseline,
                     check_baseline, check_clean_exit, connect_from, warm_up)

HOLD = 300


def descriptor_exhaustion(binary):
    a = Attack("descriptor exhaustion")
    flags = ["--max-connections", "190", "--max-connections-per-client", "0"]
    with Daemon(binary, flags, nofile=200) as d:
        warm_up(d)
        base = baseline(d)
        held = [connect_from(ATTACKER_ADDR, d.port, timeout=5.0 * SLOW) for _ in range(HOLD)]
        time.sleep(0.5 * SLOW)
        c0 = d.cpu_seconds()
        time.sleep(3.0)
        spent = d.cpu_seconds() - c0
        answered = 0
        for s in held:
            s.setblocking(False)
            try:
                answered += s.recv(64).startswith(b"HTTP/1.1 503")
            except OSError:
                pass
        fds = d.fds()
        a.check(answered >= 50, "%d of %d got an immediate 503 at the descriptor limit"
                % (answered, HOLD))
        a.check(spent < 0.5, "the loop idles while the listener stays readable "
                "(%.2f s of CPU in 3 s)" % spent)
        a.check(fds <= 200, "descriptors within the limit (%d)" % fds)
        for s in held:
            s.close()
        time.sleep(1.5 * SLOW)
        good = GoodClient(d.port)
        good.start()
        time.sleep(1.0)
        good.stop()
        a.good_check(good)
        warned = d.log_tail(10000).count("out of descriptors")
        a.check(1 <= warned <= 10, "the out-of-descriptors warning logged %d time(s)" % warned)
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a
