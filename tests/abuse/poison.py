"""poison.py - the poison corpus: requests that once crashed or hurt a
server like this one, replayed one by one.

poison/NAME.json is a POST /generate body, sent with Connection: close;
poison/NAME.http is a raw request, sent byte for byte (poison/make_poison.py
says where each comes from and regenerates them). Every one must be
answered, never dropped: a 2xx or 4xx whose body is JSON (an error in the
error shape; for a stream, every SSE data line), and the daemon must stay
alive for the next. The
good client on 127.0.0.2 is served throughout.
"""

import json
import os
import re
import time

from harness import (Attack, Daemon, GoodClient, SLOW, baseline, check_baseline,
                     check_clean_exit, raw_exchange, warm_up)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "poison")


def corpus():
    """[(name, request bytes)] in name order."""
    out = []
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name)
        with open(path, "rb") as f:
            data = f.read()
        if name.endswith(".json"):
            req = (b"POST /generate HTTP/1.1\r\nHost: heptapod\r\nConnection: close\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % len(data)) + data
        elif name.endswith(".http"):
            req = data
        else:
            continue
        out.append((name, req))
    return out


def parse_responses(data):
    """The complete responses in data, in order, 1xx interim ones skipped:
    [(status, {lower-case header: value}, body)]."""
    out = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return out
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            return out
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if 100 <= status < 200:
            data = rest
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, rest, done = _dechunk(rest)
            if not done:
                return out
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if len(rest) < n:
                return out
            body, rest = rest[:n], rest[n:]
        else:
            body, rest = rest, b""
        out.append((status, headers, body))
        data = rest


def _dechunk(data):
    body = b""
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return body, b"", False
        try:
            n = int(line.split(b";")[0], 16)
        except ValueError:
            return body, b"", False
        if n == 0:
            _, sep, rest = rest.partition(b"\r\n")
            return body, rest, True
        if len(rest) < n + 2:
            return body, b"", False
        body += rest[:n]
        data = rest[n + 2:]


def json_ok(status, headers, body):
    """Whether a response body is JSON (for an error, the error shape
    {"error": {"code", "message"}}), or an SSE stream of JSON data lines
    that ends with a done or error event."""
    try:
        if headers.get("content-type", "").startswith("text/event-stream"):
            lines = body.decode("utf-8").split("\n")
            data = [ln[5:].strip() for ln in lines if ln.startswith("data:")]
            for d in data:
                json.loads(d)
            return bool(data) and ("event: done" in lines or "event: error" in lines)
        doc = json.loads(body.decode("utf-8"))
        if status >= 400:
            err = doc["error"]
            return isinstance(err["code"], str) and isinstance(err["message"], str)
        return True
    except (ValueError, KeyError, TypeError):
        return False


def _replay(d, items, bad):
    """Sends items in turn; returns the index after the one that killed
    the daemon, or len(items)."""
    for i, (name, req) in enumerate(items):
        r = raw_exchange(d.port, req, wait=60.0 * SLOW, done=parse_responses)
        resp = parse_responses(r.data)
        if not resp:
            time.sleep(0.3)  # a dying daemon may close before it is gone
        if not d.alive():
            bad.append("%s: the daemon died" % name)
            return i + 1
        if not resp:
            bad.append("%s: no complete response (%s, %d bytes%s)"
                       % (name, "closed" if r.closed else "open", len(r.data),
                          ", " + r.error if r.error else ""))
            continue
        status, headers, body = resp[0]
        if not (200 <= status < 300 or 400 <= status < 500):
            bad.append("%s: status %d" % (name, status))
        elif not json_ok(status, headers, body):
            bad.append("%s: %d without a JSON body: %r" % (name, status, body[:80]))
    return len(items)


def poison_corpus(binary):
    """Replays the corpus; a request that kills the daemon is recorded and
    the rest replayed on a fresh one, so one run lists every failure."""
    a = Attack("poison corpus")
    items, bad, at, clients = corpus(), [], 0, []
    while at < len(items):
        with Daemon(binary) as d:
            warm_up(d)
            base = baseline(d)
            good = GoodClient(d.port)
            clients.append(good)
            good.start()
            at = _replay(d, items, bad) if at == 0 else at + _replay(d, items[at:], bad)
            time.sleep(0.2)
            good.stop()
            if d.alive():
                check_baseline(a, d, base)
                check_clean_exit(a, d)
            else:
                a.died = True
    a.good_check(clients)
    a.check(not bad, "%d of %d poison requests answered 2xx/4xx with JSON%s"
            % (len(items) - len(bad), len(items), (": " + "; ".join(bad[:4]) +
                                                   (" ..." if len(bad) > 4 else ""))
               if bad else ""))
    return a
