"""stream.py - clients that open long SSE streams and vanish mid-stream.

Six waves of 12 streams of a full 32x128 grid over 256 iterations (one
fills a batch, so the rest queue; long enough, at a few seconds each, that
no stream can finish between its first event and its client leaving), from 127.0.0.3. Once the first
iteration event arrives, the whole wave is dropped: with FINs, with resets
(SO_LINGER 0), or half each, most of them before any byte of their
answer; one wave is reset as soon as the daemon holds all 12, running or
queued. The daemon must cancel all of that work: every
stream counts as a "cancelled" generation (or was refused at admission
because its work could not finish in time behind the rest of its wave),
nothing stays active or queued,
and the cells counter stops moving shortly after the last client left.
The good client on 127.0.0.2 is served throughout and the daemon ends at
its baseline.
"""

import select
import time

from harness import (ATTACKER_ADDR, Attack, Daemon, GoodClient, SLOW, baseline,
                     check_baseline, check_clean_exit, connect_from, rst_close, warm_up)

WAVE_KINDS = ("fin", "rst", "mixed", "queued", "fin", "rst")
WAVES = len(WAVE_KINDS)
PER_WAVE = 12
LONG = b'{"height":32,"width":128,"iterations":256,"seed":%d,"stream":true}'
MODEL_LABEL = {"model": "byte_f32"}


def _request(seed):
    body = LONG % seed
    return (b"POST /generate HTTP/1.1\r\nHost: heptapod\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _wave(d, n, seed0, how):
    """Opens n streams, waits for the first iteration event on any, then
    drops them all (how: 'fin', 'rst' or 'mixed'; 'queued': drops them as
    soon as the daemon holds them all, running or queued, whether or not
    an event came). Returns whether that point was reached."""
    port = d.port
    refused0 = d.metric("heptapod_admission_refusals_total", MODEL_LABEL)
    socks = []
    for i in range(n):
        s = connect_from(ATTACKER_ADDR, port, timeout=5.0)
        s.sendall(_request(seed0 + i))
        socks.append(s)
    data = {s: b"" for s in socks}
    seen = False
    end = time.monotonic() + 10.0 * SLOW
    while how == "queued" and not seen and time.monotonic() < end:
        # Held, or refused at admission (fair sharing may turn part of a
        # wave away): every request of the wave has been read.
        held = d.metric("heptapod_active_requests", MODEL_LABEL) + d.metric(
            "heptapod_queue_depth", MODEL_LABEL)
        seen = held + d.metric("heptapod_admission_refusals_total", MODEL_LABEL) - refused0 >= n
        time.sleep(0.02)
    while not seen and time.monotonic() < end:
        r, _, _ = select.select(socks, [], [], 0.1)
        for s in r:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            data[s] += chunk
            if b"event: iteration" in data[s]:
                seen = True
        # A wave refused whole at admission (its client over its fair share
        # while the last wave's work is still leaving) has nothing to drop.
        if all(v.startswith(b"HTTP/1.1 4") for v in data.values()):
            seen = True
    if how != "queued":
        time.sleep(0.5)
    for i, s in enumerate(socks):
        if how in ("rst", "queued") or (how == "mixed" and i % 2):
            rst_close(s)
        else:
            s.close()
    return seen


def _idle(d):
    return (d.metric("heptapod_active_requests", MODEL_LABEL) == 0
            and d.metric("heptapod_queue_depth", MODEL_LABEL) == 0)


def disconnect_storm(binary):
    a = Attack("disconnect storm mid-stream")
    with Daemon(binary, ["--max-batch-cells", "4096", "--max-iterations", "256"]) as d:
        warm_up(d)
        base = baseline(d)
        cancelled0 = d.metric("heptapod_generations_total",
                              {"model": "byte_f32", "outcome": "cancelled"})
        refused0 = d.metric("heptapod_admission_refusals_total", MODEL_LABEL)
        good = GoodClient(d.port)
        good.start()
        events, missed = 0, []
        for w, how in enumerate(WAVE_KINDS):
            ran = _wave(d, PER_WAVE, 100 * w, how)
            events += ran
            if not ran:
                missed.append("%d (%s)" % (w + 1, how))
        left = time.monotonic()
        good.stop()
        a.good_check(good)
        a.check(events == WAVES, "%d of %d waves ran (an event seen, all held or all refused) before "
                "their clients left%s" % (events, WAVES,
                                          "; not: " + ", ".join(missed) if missed else ""))
        end = left + 3.0 * SLOW
        while d.alive() and not _idle(d) and time.monotonic() < end:
            time.sleep(0.05)
        settled = time.monotonic() - left
        if d.alive():
            a.check(_idle(d), "nothing active or queued %.1f s after the last client left "
                    "(took %.2f s)" % (3.0 * SLOW, settled))
            c1 = d.metric("heptapod_cells_computed_total", MODEL_LABEL)
            time.sleep(0.5)
            c2 = d.metric("heptapod_cells_computed_total", MODEL_LABEL)
            a.check(c2 == c1, "cells counter still at %d after 0.5 s (was %d)" % (c2, c1))
            n = d.metric("heptapod_generations_total",
                         {"model": "byte_f32", "outcome": "cancelled"}) - cancelled0
            # Admission may refuse part of a wave up front (its work would not
            # finish in time behind the rest): such a stream was answered 429
            # or 422 and never became a generation.
            r = d.metric("heptapod_admission_refusals_total", MODEL_LABEL) - refused0
            why = {k.split('reason="')[1].rstrip('"}'): v for k, v in d.metrics().items()
                   if k.startswith("heptapod_admission_refusals_total{") and v}
            a.check(n + r == WAVES * PER_WAVE and n >= WAVES,
                    "every dropped stream cancelled (%d) or refused at admission (%d: %s), of %d"
                    % (n, r, why, WAVES * PER_WAVE))
        check_baseline(a, d, base)
        check_clean_exit(a, d)
    return a
