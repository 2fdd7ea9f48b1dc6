"""heptapod_client - a client for the heptapod HTTP API (docs/api.md).

One file, standard library only, Python 3.9 or later: copy it next to your code.

    from heptapod_client import Client, HeptapodError

    client = Client("http://localhost:8080", api_key=None, timeout=60, retries=2)
    page = client.generate(text=["It was a dark and stormy night"], height=4, width=48)
    for event in client.stream(height=8, width=32, iterations=8, seed=1):
        ...  # {"event": "iteration", "data": {...}} per iteration, then "done"

Design:
- Requests are the API's own JSON fields, passed as keyword arguments and sent
  unchanged, so every field of docs/api.md works, and a misspelt one is refused
  by the daemon (400 invalid_field) rather than silently dropped here.
- Every failure is a HeptapodError carrying what the daemon said: the HTTP
  status, the error `code`, `message` and `field`, the `Retry-After` seconds
  and the request id. Failures with no answer (refused connection, timeout,
  a body that is not the API's) are HeptapodError too, with status None and
  code `unreachable`, `timeout` or `bad_response`.
- With retries=N, an answer 429 (queue full) or 503 (loading, draining,
  connections exhausted) is retried up to N times after the Retry-After the
  daemon asked for (1 s when it names none), as long as that wait is at most
  max_retry_wait; a stream is only retried before its first event.
- stream() reads Server-Sent Events as the specification says (CRLF, CR or
  LF line ends, `data` lines joined, comments such as keep-alives skipped).
  Leaving the loop early closes the connection, which cancels the generation
  on the daemon.
"""

import email.utils
import http.client
import json
import socket
import time
import urllib.parse

__all__ = ["Client", "HeptapodError", "SSEParser"]
__version__ = "1.0"

RETRY_STATUSES = (429, 503)
DEFAULT_RETRY_WAIT_S = 1.0


class HeptapodError(Exception):
    """An error answer of the daemon, or no usable answer at all.

    status       the HTTP status (an int), or None when there was no answer;
                 200 for an `error` event inside a stream that had started
    code         the API's error code ("out_of_range", "overloaded", ...) or
                 "unreachable", "timeout", "bad_response"
    message      the daemon's message (or what went wrong on the way)
    field        the request field at fault, when the daemon names one
    retry_after  seconds from Retry-After (float), or None
    request_id   X-Request-Id of the answer, when there was one
    """

    def __init__(self, status, code, message, field=None, retry_after=None, request_id=None):
        super().__init__("%s%s: %s" % (code, "" if status is None else " (HTTP %d)" % status,
                                       message))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.request_id = request_id


class SSEParser:
    """Server-Sent Events from lines of text, one line (without its end) at a
    time: feed() returns a finished event as (name, data) or None."""

    def __init__(self):
        self._name = ""
        self._data = []

    def feed(self, line):
        if line == "":
            if not self._data:  # an event with no data is not dispatched
                self._name = ""
                return None
            event = (self._name or "message", "\n".join(self._data))
            self._name, self._data = "", []
            return event
        if line.startswith(":"):  # a comment: keep-alive
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        # "id", "retry" and unknown fields carry nothing this API uses.
        return None


def _lines(response, chunk=8192):
    """Lines of a streamed body, ended by CRLF, LF or CR, decoded as UTF-8."""
    buf = b""
    pending_cr = False
    while True:
        data = response.read1(chunk) if hasattr(response, "read1") else response.read(1)
        if not data:
            if buf:
                yield buf.decode("utf-8", "replace")
            return
        if pending_cr and data.startswith(b"\n"):
            data = data[1:]
        pending_cr = False
        buf += data
        while True:
            cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            line, end = buf[:cut], buf[cut:cut + 1]
            buf = buf[cut + 1:]
            if end == b"\r":
                if buf.startswith(b"\n"):
                    buf = buf[1:]
                elif not buf:
                    pending_cr = True  # the LF of a CRLF may come in the next chunk
            yield line.decode("utf-8", "replace")


def _retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Client:
    """A connection to one daemon. Each call opens its own HTTP connection, so
    one Client may be shared by threads.

    base_url        e.g. "http://localhost:8080" (a path prefix, for a daemon
                    behind a proxy, is kept)
    api_key         sent as `Authorization: Bearer KEY` when set
    timeout         seconds to wait for a connection or for any byte of an
                    answer (a stream's keep-alives count)
    retries         how many times a 429 or 503 answer is retried (0: never)
    max_retry_wait  the longest Retry-After honoured, in seconds; a longer
                    one raises at once
    """

    def __init__(self, base_url="http://localhost:8080", api_key=None, timeout=60.0, retries=0,
                 max_retry_wait=30.0, user_agent="heptapod-client-python/" + __version__):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("base_url must be http://HOST[:PORT][/PREFIX] or https://...: %r"
                             % base_url)
        if retries < 0 or max_retry_wait < 0:
            raise ValueError("retries and max_retry_wait must be >= 0")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.user_agent = user_agent

    # --- the API ----------------------------------------------------------------

    def generate(self, **request):
        """POST /generate and return the finished answer as a dict (grid,
        text rows for byte models, iterations, seed, remask_noise, order,
        remask, timings, request_id). Raises HeptapodError."""
        if request.get("stream"):
            raise ValueError("generate() answers once; use stream() for events")
        return self._json("POST", "/generate", request)

    def stream(self, **request):
        """POST /generate with "stream": true; yields {"event": "iteration",
        "data": {...}} after each iteration, then {"event": "done", "data":
        {...}}. An `error` event raises HeptapodError (status 200)."""
        body = dict(request, stream=True)
        conn, resp = self._open("POST", "/generate", body)
        try:
            ctype = resp.getheader("Content-Type", "")
            if not ctype.startswith("text/event-stream"):
                raise HeptapodError(resp.status, "bad_response",
                                    "expected text/event-stream, got %r" % ctype)
            parser = SSEParser()
            for line in _lines(resp):
                event = parser.feed(line)
                if event is None:
                    continue
                name, text = event
                try:
                    data = json.loads(text)
                except ValueError:
                    raise HeptapodError(resp.status, "bad_response",
                                        "event %s: data is not JSON: %.200r" % (name, text))
                if name == "error":
                    err = data.get("error", {}) if isinstance(data, dict) else {}
                    raise HeptapodError(resp.status, err.get("code", "bad_response"),
                                        err.get("message", text), err.get("field"), None,
                                        resp.getheader("X-Request-Id"))
                yield {"event": name, "data": data}
                if name == "done":
                    return
            raise HeptapodError(resp.status, "bad_response", "the stream ended before `done`")
        except socket.timeout:
            raise HeptapodError(None, "timeout", "no event within %g s" % self.timeout)
        finally:
            conn.close()

    def models(self):
        """GET /v1/models: the list of loaded models (dicts)."""
        return self._json("GET", "/v1/models", None)["data"]

    def ready(self):
        """True when GET /readyz answers 200 (every model loaded, not draining)."""
        try:
            self._json("GET", "/readyz", None, retry=False)
            return True
        except HeptapodError as e:
            if e.status is None:
                raise
            return False

    # --- HTTP -----------------------------------------------------------------------

    def _json(self, method, path, body, retry=True):
        conn, resp = self._open(method, path, body, retry)
        try:
            raw = resp.read()
        except socket.timeout:
            raise HeptapodError(None, "timeout", "no answer within %g s" % self.timeout)
        finally:
            conn.close()
        try:
            return json.loads(raw)
        except ValueError:
            raise HeptapodError(resp.status, "bad_response", "not JSON: %.200r" % raw)

    def _open(self, method, path, body, retry=True):
        """Sends the request and returns (connection, response) for a 2xx
        answer, after the retries allowed; raises HeptapodError otherwise."""
        attempt = 0
        while True:
            conn, resp = self._send(method, path, body)
            if 200 <= resp.status < 300:
                return conn, resp
            try:
                err = self._error(resp)
            finally:
                conn.close()
            if not retry or err.status not in RETRY_STATUSES or attempt >= self.retries:
                raise err
            wait = DEFAULT_RETRY_WAIT_S if err.retry_after is None else err.retry_after
            if wait > self.max_retry_wait:
                raise err
            attempt += 1
            time.sleep(wait)

    def _send(self, method, path, body):
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        headers = {"User-Agent": self.user_agent, "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self._prefix + path, body=data, headers=headers)
            return conn, conn.getresponse()
        except socket.timeout:
            conn.close()
            raise HeptapodError(None, "timeout", "no answer from %s within %g s"
                                % (self._where(), self.timeout))
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise HeptapodError(None, "unreachable", "%s: %s" % (self._where(), e))

    def _error(self, resp):
        """The HeptapodError of a non-2xx answer."""
        retry_after = _retry_after(resp.getheader("Retry-After"))
        request_id = resp.getheader("X-Request-Id")
        try:
            raw = resp.read()
            err = json.loads(raw)["error"]
            code, message = err["code"], err["message"]
            field = err.get("field")
        except (ValueError, KeyError, TypeError, OSError):
            code, message, field = "bad_response", "HTTP %d %s" % (resp.status, resp.reason), None
        return HeptapodError(resp.status, code, message, field, retry_after, request_id)

    def _where(self):
        return "%s://%s%s" % ("https" if self._https else "http", self._host,
                              "" if self._port is None else ":%d" % self._port)
