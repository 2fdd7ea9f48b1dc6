#!/usr/bin/python3
"""run.py - the abuse suite: hostile clients against a live daemon.

Each attack starts a daemon of its own on 127.0.0.1, attacks it from
127.0.0.3 (and up) while a good client on 127.0.0.2 keeps sending a small
POST /generate, then checks that every good request was answered 200 in
time, that RSS and open descriptors returned to their baseline, and that
SIGTERM still ends the daemon with exit code 0.

    run.py [--bin PATH] [--report] [ATTACK...]

Without --report the suite stops at the first attack that fails and exits
1. With --report it runs every attack and prints one line each: the
outcome, the good client's success rate and its p50/max latency (the
before/after table of docs). ATTACK names one attack (see --list) to run
only some. The binary comes from --bin, else HEPTAPOD_BIN.
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdlimit  # noqa: E402
import flood  # noqa: E402
import framing  # noqa: E402
import poison  # noqa: E402
import slow  # noqa: E402
import stderr_pipe  # noqa: E402
import stream  # noqa: E402
import work  # noqa: E402
from harness import Attack, raise_fd_limit  # noqa: E402

ATTACKS = [
    ("slow_headers", slow.slow_headers),
    ("slow_headers_spread", slow.slow_headers_spread),
    ("slow_bodies", slow.slow_bodies),
    ("connection_flood", flood.connection_flood),
    ("descriptor_exhaustion", fdlimit.descriptor_exhaustion),
    ("disconnect_storm", stream.disconnect_storm),
    ("expensive_requests", work.work_flood),
    ("stderr_pipe", stderr_pipe.full_stderr_pipe),
    ("poison", poison.poison_corpus),
    ("framing", framing.framing),
]


def run_one(name, fn, binary):
    t0 = time.monotonic()
    try:
        a = fn(binary)
    except Exception:  # a harness failure is reported like a failed check
        a = Attack(name)
        a.check(False, "error: " + traceback.format_exc().strip().splitlines()[-1])
        traceback.print_exc()
    return a, time.monotonic() - t0


def good_figures(a):
    if not a.good:
        return "-", "-"
    n, good, p50, mx, _ = a.good
    rate = "%d%% (%d/%d)" % (round(100.0 * good / n), good, n) if n else "-"
    return rate, "%.3f / %.3f s" % (p50, mx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("HEPTAPOD_BIN"))
    ap.add_argument("--report", action="store_true",
                    help="run every attack and print the table; never stop early")
    ap.add_argument("--list", action="store_true", help="list the attacks")
    ap.add_argument("attacks", nargs="*")
    args = ap.parse_args()
    if args.list:
        print("\n".join(n for n, _ in ATTACKS))
        return 0
    if not args.bin:
        ap.error("give --bin or set HEPTAPOD_BIN")
    binary = os.path.abspath(args.bin)
    chosen = [(n, f) for n, f in ATTACKS if not args.attacks or n in args.attacks]
    unknown = set(args.attacks) - set(n for n, _ in ATTACKS)
    if unknown:
        ap.error("unknown attack(s): %s" % ", ".join(sorted(unknown)))
    raise_fd_limit()
    rows, failed = [], 0
    for name, fn in chosen:
        print("== %s" % name, flush=True)
        a, secs = run_one(name, fn, binary)
        for ok, msg in a.checks:
            print("%s: %s" % ("ok" if ok else "FAIL", msg), flush=True)
        for msg in a.notes:
            print("note: %s" % msg, flush=True)
        rate, lat = good_figures(a)
        print("-- %s: %s (%.1f s)" % (name, "FAILED" if a.failed() else "passed", secs),
              flush=True)
        rows.append((name, a.outcome(), rate, lat))
        if a.failed():
            failed += 1
            if not args.report:
                break
    if args.report:
        print()
        print("| attack | outcome | good client ok | good p50 / max |")
        print("| --- | --- | --- | --- |")
        for r in rows:
            print("| %s | %s | %s | %s |" % r)
    print("%d of %d attacks failed" % (failed, len(rows)) if failed else
          "all %d attacks passed" % len(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
