"""framing.py - oversized and malformed HTTP framing, on raw sockets.

Each shape is a request a proxy in front could frame differently from the
daemon (request smuggling), or one too large to hold. Each carries a valid
small /generate body, so that serving it would show. The daemon must
answer with one 4xx/501 (one status line, never a 200), close the
connection, and not move the generation counters.

Three shapes are decided by libmicrohttpd 0.9.75 before the daemon's
handler sees the request, and are a documented requirement on the reverse
proxy (which refuses them): an invalid Content-Length value gets
libmicrohttpd's own 400 with its status line written twice (a
libmicrohttpd defect), so there the check is "refused and closed, never
200"; a NUL in a header line is cut there and bare-LF line endings are
accepted, so those two are only printed, with the checks that the daemon
answers once and lives.
"""

import time

from harness import (Attack, Daemon, GoodClient, SLOW, baseline, check_baseline,
                     check_clean_exit, raw_exchange, served_generations, warm_up)

BODY = b'{"height":2,"width":8,"iterations":2,"seed":1}'  # 46 bytes
HEAD = b"POST /generate HTTP/1.1\r\nHost: heptapod\r\nContent-Type: application/json\r\n"
MAX_BODY = 4096


def chunked(data, size=16):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def cl(n=len(BODY)):
    return b"Content-Length: %d\r\n" % n


# (name, request, allowed statuses, JSON error code or None, kind)
# kind: "strict" (one 4xx/501, closed, nothing served), "mhd" (libmicrohttpd
# answers itself: refused and closed, never 200), "proxy" (printed only).
SHAPES = [
    ("two different Content-Length", HEAD + cl() + cl(47) + b"\r\n" + BODY + b" ",
     {400}, "bad_request", "strict"),
    ("repeated Content-Length", HEAD + cl() + cl() + b"\r\n" + BODY, {400}, "bad_request",
     "strict"),
    ("Content-Length -1", HEAD + b"Content-Length: -1\r\n\r\n" + BODY, None, None, "mhd"),
    ("Content-Length +46", HEAD + b"Content-Length: +46\r\n\r\n" + BODY, None, None, "mhd"),
    ("Content-Length '46, 46'", HEAD + b"Content-Length: 46, 46\r\n\r\n" + BODY, None, None,
     "mhd"),
    ("Content-Length with Transfer-Encoding: chunked",
     HEAD + cl() + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY), {400}, "bad_request",
     "strict"),
    ("Transfer-Encoding: identity", HEAD + b"Transfer-Encoding: identity\r\n\r\n" + BODY,
     {501}, "not_implemented", "strict"),
    ("Transfer-Encoding: gzip, chunked",
     HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked(BODY), {501},
     "not_implemented", "strict"),
    ("Transfer-Encoding twice",
     HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(BODY),
     {400}, "bad_request", "strict"),
    ("path /generate%00.css",
     HEAD.replace(b"/generate", b"/generate%00.css") + cl() + b"\r\n" + BODY, {400},
     "bad_request", "strict"),
    ("path with %0d%0a",
     HEAD.replace(b"/generate", b"/generate%0d%0aX-Injected:%201") + cl() + b"\r\n" + BODY,
     {400}, "bad_request", "strict"),
    ("raw control byte in the path",
     HEAD.replace(b"/generate", b"/generate\x01") + cl() + b"\r\n" + BODY, {400},
     "bad_request", "strict"),
    ("control byte in a header value", HEAD + b"X-Note: a\x01b\r\n" + cl() + b"\r\n" + BODY,
     {400}, "bad_request", "strict"),
    ("control byte in a header name", HEAD + b"X-No\x01te: a\r\n" + cl() + b"\r\n" + BODY,
     {400}, "bad_request", "strict"),
    ("64 KiB header block",
     HEAD + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(64)) + cl() +
     b"\r\n" + BODY, range(400, 500), None, "strict"),
    ("body above max_body_bytes (Content-Length)",
     HEAD + cl(100000) + b"\r\n" + b" " * 8192, {413}, "payload_too_large", "strict"),
    ("body above max_body_bytes (chunked, complete)",
     HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b" " * 12000, 4000), {413},
     "payload_too_large", "strict"),
    # Refused once the limit is passed, not at the end of a body that may
    # never end.
    ("body above max_body_bytes (chunked, still coming)",
     HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b" " * 12000, 4000)[:-5], {413},
     "payload_too_large", "strict"),
    ("bad chunk size", HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n",
     range(400, 500), None, "strict"),
    ("chunk size overflowing 64 bits",
     HEAD + b"Transfer-Encoding: chunked\r\n\r\n1000000000000002e\r\n" + BODY + b"\r\n0\r\n\r\n",
     range(400, 500), None, "strict"),
    # These two are served when well formed otherwise; Connection: close
    # spares the wait for the keep-alive connection to end.
    ("NUL in a header line",
     HEAD + b"X-Note: a\x00b\r\nConnection: close\r\n" + cl() + b"\r\n" + BODY, None, None,
     "proxy"),
    ("bare LF line endings",
     (HEAD + b"Connection: close\r\n" + cl()).replace(b"\r\n", b"\n") + b"\n" + BODY, None,
     None, "proxy"),
]


def _describe(r):
    lines = r.status_lines()
    return "%s, %d status line%s, %s" % (
        "/".join(x.decode() for x in lines) or "no answer", len(lines),
        "" if len(lines) == 1 else "s",
        "closed" if r.closed else "left open (%.1f s)" % r.seconds)


def check_shape(a, d, name, req, allowed, code, kind):
    time.sleep(0.05)
    before = served_generations(d)
    r = raw_exchange(d.port, req, wait=3.0 * SLOW)
    time.sleep(0.05)
    if not d.alive():
        a.died = True
        a.check(False, "%s: the daemon died" % name)
        return
    moved = served_generations(d) - before
    lines = r.status_lines()
    what = "%s: %s" % (name, _describe(r))
    if kind == "proxy":
        a.note("%s (proxy must refuse: libmicrohttpd decides before the handler)" % what)
        a.check(len(lines) == 1, "%s: answered once" % name)
        return
    if kind == "mhd":
        a.note("%s (libmicrohttpd's own answer; the proxy refuses it)" % what)
        a.check(lines and all(x.startswith(b"4") for x in lines) and r.closed and not moved,
                "%s: refused and closed, never served" % what)
        return
    st = r.status()
    a.check(len(lines) == 1 and st in allowed and r.closed and not moved,
            "%s%s (want one %s, then close)" % (
                what, ", served" if moved else "",
                "/".join(str(x) for x in sorted(allowed)) if isinstance(allowed, set) else "4xx"))
    if code and st in allowed:
        got = r.json_error()
        a.check(got == code, "%s: JSON error code %s (want %s)" % (name, got, code))


def framing(binary):
    a = Attack("oversized and malformed framing")
    with Daemon(binary, ["--max-body-bytes", str(MAX_BODY)]) as d:
        warm_up(d)
        base = baseline(d)
        good = GoodClient(d.port)
        good.start()
        for shape in SHAPES:
            good.pause()  # its own generations must not count as served
            check_shape(a, d, *shape)
            good.resume()
            time.sleep(0.3)
            if a.died:
                break
        good.stop()
        a.good_check(good)
        if not a.died:
            check_baseline(a, d, base)
            check_clean_exit(a, d)
    return a
